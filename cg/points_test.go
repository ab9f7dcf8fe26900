package cg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/frogopt/frog/internal/rowdiff"
)

// pointsRows is A_j = X^T diag(v_j) X + shift*I with X points x n, in
// plain float64 loops, which offers to be solved in the points' space
// (PointsSpace) when solve is set.
type pointsRows struct {
	n, points, rows int
	x, v            []float64 // points x n, rows x points
	shift           float32
	solve           bool
	gram            []float64
	starts, grams   int // StartPoints and TimesGram calls
}

const pointsPad = 3 // an odd row stride for the rows x points blocks

// image returns X p for a vector p of length n.
func (o *pointsRows) image(p []float32) []float64 {
	t := make([]float64, o.points)
	for i := range t {
		for k, pk := range p {
			t[i] += o.x[i*o.n+k] * float64(pk)
		}
	}
	return t
}

func (o *pointsRows) ApplyUnshifted(q, p []float32) {
	n := o.n
	for j := 0; j < o.rows; j++ {
		t := o.image(p[j*n : (j+1)*n])
		for k := 0; k < n; k++ {
			var s float64
			for i, ti := range t {
				s += o.x[i*n+k] * o.v[j*o.points+i] * ti
			}
			q[j*n+k] = float32(s)
		}
	}
}

func (o *pointsRows) Apply(q, p []float32) {
	o.ApplyUnshifted(q, p)
	for i := range q {
		q[i] += o.shift * p[i]
	}
}

func (o *pointsRows) Shift() float32 { return o.shift }

func (o *pointsRows) PointsSolve(iters int) (points, ld int, ok bool) {
	return o.points, o.points + pointsPad, o.solve
}

func (o *pointsRows) StartPoints(u, r []float32) {
	o.starts++
	ld := o.points + pointsPad
	for j := 0; j < o.rows; j++ {
		for i, v := range o.image(r[j*o.n : (j+1)*o.n]) {
			u[j*ld+i] = float32(v)
		}
	}
	o.gram = make([]float64, o.points*o.points)
	for a := 0; a < o.points; a++ {
		for b := 0; b < o.points; b++ {
			for k := 0; k < o.n; k++ {
				o.gram[a*o.points+b] += o.x[a*o.n+k] * o.x[b*o.n+k]
			}
		}
	}
}

func (o *pointsRows) Weigh(s, t []float32, j0, j1 int) {
	ld := o.points + pointsPad
	for j := j0; j < j1; j++ {
		for i := 0; i < o.points; i++ {
			s[j*ld+i] = float32(o.v[j*o.points+i] * float64(t[j*ld+i]))
		}
	}
}

func (o *pointsRows) TimesGram(w, s []float32) {
	o.grams++
	o.combine(w, o.points+pointsPad, s, o.points, func(a, b int) float64 { return o.gram[a*o.points+b] })
}

func (o *pointsRows) Expand(z, c []float32) {
	o.combine(z, o.n, c, o.n, func(a, k int) float64 { return o.x[a*o.n+k] })
}

// combine writes dst_j = c_j M (cols values, row stride ldd) for every
// row j, c_j a row of points coefficients (stride points+pointsPad) and M
// given by element.
func (o *pointsRows) combine(dst []float32, ldd int, c []float32, cols int, m func(a, k int) float64) {
	ld := o.points + pointsPad
	for j := 0; j < o.rows; j++ {
		for k := 0; k < cols; k++ {
			var sum float64
			for a := 0; a < o.points; a++ {
				sum += float64(c[j*ld+a]) * m(a, k)
			}
			dst[j*ldd+k] = float32(sum)
		}
	}
}

// randomPoints returns a pointsRows of random X and positive weights, and
// a random right-hand side.
func randomPoints(rng *rand.Rand, n, points, rows int, shift float32) (*pointsRows, []float32) {
	o := &pointsRows{n: n, points: points, rows: rows, shift: shift, solve: true,
		x: make([]float64, points*n), v: make([]float64, rows*points)}
	for i := range o.x {
		o.x[i] = rng.NormFloat64()
	}
	for i := range o.v {
		o.v[i] = 0.1 + rng.Float64()
	}
	b := make([]float32, rows*n)
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	return o, b
}

// A PointsSpace operator that accepts is solved on coefficients: the same
// iterates, to rounding, as the solve of the same operator with
// curvatures (Curvature) and without the points' space, with the same
// residuals (neither forms the last iteration's), iterations and stops,
// for every shift, tolerance, number of iterations and scale kept or not;
// a zero row stays zero, z's old contents (NaN) are overwritten, and
// StartPoints runs once and TimesGram once an iteration but the last. One
// that declines is solved as a Shifted operator.
func TestSolvePoints(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	const rows = 5
	// Fewer points than unknowns, with a shift that makes every matrix
	// definite; and more, with no shift.
	for _, c := range []struct {
		n, points int
		shift     float32
	}{{9, 4, 0.3}, {6, 8, 0}} {
		n, shift := c.n, c.shift
		op, b := randomPoints(rng, n, c.points, rows, shift)
		clear(b[2*n : 3*n])
		// A large row and a tiny one: scaled by powers of two.
		for i := range b[:n] {
			b[i] *= 1e30
		}
		for i := range b[3*n : 4*n] {
			b[3*n+i] *= 1e-30
		}
		for _, tol := range []float64{0, 1e-2} {
			for _, iters := range []int{1, 3, 6} {
				for _, keep := range []bool{false, true} {
					op.starts, op.grams = 0, 0
					s := Solver{Iters: iters, Eps: 1e-12, Tolerance: tol, KeepScaled: keep}
					plain := s
					z, zPlain := make([]float32, rows*n), make([]float32, rows*n)
					for i := range z {
						z[i] = float32(math.NaN())
					}
					res := s.Solve(op, b, z, rows, n)
					resPlain := plain.Solve(&curved{shiftedOperator: op, n: n}, b, zPlain, rows, n)
					name := func() string {
						return fmt.Sprintf("shift %v, tolerance %v, %d iterations, keep scaled %v", shift, tol, iters, keep)
					}
					grams := res.Iterations
					if grams == iters {
						grams-- // the last iteration needs only T.S
					}
					if op.starts != 1 || op.grams != grams {
						t.Fatalf("%s: StartPoints ran %d times, TimesGram %d times over %d iterations", name(), op.starts, op.grams, res.Iterations)
					}
					if res.Iterations != resPlain.Iterations {
						t.Fatalf("%s: %d iterations, %d with curvatures", name(), res.Iterations, resPlain.Iterations)
					}
					if j, d, nz := rowdiff.Far(z, zPlain, n, 1e-4); j >= 0 {
						t.Fatalf("%s, row %d: z differs from the solve with curvatures by %v (|z| %v)", name(), j, d, nz)
					}
					for i, v := range z[2*n : 3*n] {
						if v != 0 {
							t.Fatalf("%s: z[%d] = %v for a zero row", name(), 2*n+i, v)
						}
					}
					for j := 0; j < rows; j++ {
						var nb float64
						for _, v := range b[j*n : (j+1)*n] {
							nb += float64(v) * float64(v)
						}
						if r, rp := res.Residual[j], resPlain.Residual[j]; math.Abs(r-rp) > 1e-3*math.Sqrt(nb) || (nb == 0 && r != 0) {
							t.Fatalf("%s, row %d: residual %v, %v with curvatures (|b| %v)", name(), j, r, rp, math.Sqrt(nb))
						}
						if res.Scale[j] != resPlain.Scale[j] {
							t.Fatalf("%s, row %d: scale %v, %v with curvatures", name(), j, res.Scale[j], resPlain.Scale[j])
						}
					}
				}
			}
		}
		op.solve = false
		op.starts = 0
		var s Solver
		s.Iters = 2
		z := make([]float32, rows*n)
		s.Solve(op, b, z, rows, n)
		if op.starts != 0 {
			t.Fatalf("shift %v: a declining operator got StartPoints", shift)
		}
	}
}

// A row whose curvature p.(A p) is negative breaks down at the first
// iteration in the points' space too: it falls back to b, is reported,
// and the other rows are unaffected.
func TestSolvePointsBreakdown(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	const n, points, rows = 6, 3, 3
	op, b := randomPoints(rng, n, points, rows, 0)
	for i := 0; i < points; i++ {
		op.v[i] = -1 // row 0's matrix is negative semidefinite
	}
	s, plain := Solver{Iters: 3, Eps: 1e-10}, Solver{Iters: 3, Eps: 1e-10}
	z, zPlain := make([]float32, rows*n), make([]float32, rows*n)
	res := s.Solve(op, b, z, rows, n)
	resPlain := plain.Solve(plainOperator{op}, b, zPlain, rows, n)
	if !res.Breakdown[0] || res.Breakdown[1] || res.Breakdown[2] || res.Breakdowns != 1 || resPlain.Breakdowns != 1 {
		t.Fatalf("breakdowns %v (%d), through Apply %v", res.Breakdown, res.Breakdowns, resPlain.Breakdown)
	}
	for i, v := range z[:n] {
		if math.Abs(float64(v-b[i])) > 1e-6*math.Abs(float64(b[i])) {
			t.Fatalf("z[%d] = %v for the broken row, want b's %v", i, v, b[i])
		}
	}
	if j, d, nz := rowdiff.Far(z, zPlain, n, 1e-4); j >= 0 {
		t.Fatalf("row %d: z differs from the solve through Apply by %v (|z| %v)", j, d, nz)
	}
}

// normalizeRef is FROG's row normalization after a solve: z_j times c_j =
// 1/sqrt(|z_j.b_j| + eps), c_j written to norm.
func normalizeRef(z, b []float32, n int, eps float64, norm []float64) {
	for j := range norm {
		var zb float64
		for i := j * n; i < (j+1)*n; i++ {
			zb += float64(z[i]) * float64(b[i])
		}
		norm[j] = 1 / math.Sqrt(math.Abs(zb)+eps)
		for i := j * n; i < (j+1)*n; i++ {
			z[i] = float32(float64(z[i]) * norm[j])
		}
	}
}

// With Normalize the solve returns c_j z_j and c_j (Result.Norm): the
// plain solve the values of normalizing its z afterwards, the points'
// space to rounding, on rows of every scale, a zero row (c_j =
// 1/sqrt(eps), z_j = 0) and a row that breaks down, whatever KeepScaled.
func TestSolveNormalize(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	const n, points, rows, eps = 9, 4, 5, 1e-8
	op, b := randomPoints(rng, n, points, rows, 0.3)
	for i := 0; i < points; i++ {
		op.v[3*points+i] = -1 // row 3 breaks down
	}
	clear(b[2*n : 3*n])
	for i := range b[:n] {
		b[i] *= 1e30
	}
	for i := range b[4*n:] {
		b[4*n+i] *= 1e-30
	}
	for _, solve := range []bool{false, true} {
		for _, keep := range []bool{false, true} {
			op.solve = solve
			plain := Solver{Iters: 3, Eps: 1e-12}
			want := make([]float32, rows*n)
			plain.Solve(op, b, want, rows, n)
			wantNorm := make([]float64, rows)
			normalizeRef(want, b, n, eps, wantNorm)
			s := Solver{Iters: 3, Eps: 1e-12, Normalize: true, NormEps: eps, KeepScaled: keep}
			got := make([]float32, rows*n)
			res := s.Solve(op, b, got, rows, n)
			if len(res.Norm) != rows {
				t.Fatalf("points %v, keep %v: %d norms for %d rows", solve, keep, len(res.Norm), rows)
			}
			tol := 1e-6
			if solve {
				tol = 1e-4
			}
			for j := 0; j < rows; j++ {
				if math.Abs(res.Norm[j]-wantNorm[j]) > tol*wantNorm[j] {
					t.Fatalf("points %v, keep %v, row %d: c = %v, want %v", solve, keep, j, res.Norm[j], wantNorm[j])
				}
			}
			if j, d, nz := rowdiff.Far(got, want, n, tol); j >= 0 {
				t.Fatalf("points %v, keep %v, row %d: c z differs by %v (|c z| %v)", solve, keep, j, d, nz)
			}
			if !solve {
				for i := range got {
					if math.Abs(float64(got[i]-want[i])) > 1e-6*math.Abs(float64(want[i])) {
						t.Fatalf("keep %v: c z[%d] = %v, normalizing afterwards gives %v", keep, i, got[i], want[i])
					}
				}
			}
		}
	}
}
