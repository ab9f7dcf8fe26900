package cg

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/internal/rowdiff"
	"gonum.org/v1/gonum/mat"
)

// perRow applies a different dense SPD matrix to every row.
type perRow struct {
	n    int
	mats []*mat.SymDense
}

func (o perRow) Apply(q, p []float32) {
	for j, a := range o.mats {
		for i := 0; i < o.n; i++ {
			var s float64
			for k := 0; k < o.n; k++ {
				s += a.At(i, k) * float64(p[j*o.n+k])
			}
			q[j*o.n+i] = float32(s)
		}
	}
}

// randomSPD returns B^T B + shift*I for a random B, condition number modest.
func randomSPD(rng *rand.Rand, n int, shift float64) *mat.SymDense {
	b := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			b.Set(i, j, rng.NormFloat64())
		}
	}
	a := mat.NewSymDense(n, nil)
	a.SymOuterK(1, b.T())
	for i := 0; i < n; i++ {
		a.SetSym(i, i, a.At(i, i)+shift)
	}
	return a
}

// With as many iterations as unknowns, CG solves each row's system to
// float32 accuracy: compare with gonum's float64 Cholesky solve.
func TestSolveMatchesExactSolve(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 5, 8} {
		const rows = 4
		op := perRow{n: n}
		b := make([]float32, rows*n)
		for i := range b {
			b[i] = float32(rng.NormFloat64())
		}
		// A row near the float32 limit (A p would overflow unscaled) and a
		// tiny one: the power-of-two row scaling keeps both in range.
		b[0] = float32(float64(b[0]) * 1e37)
		b[len(b)-1] *= 1e-30
		for j := 0; j < rows; j++ {
			op.mats = append(op.mats, randomSPD(rng, n, float64(n)))
		}
		s := Solver{Iters: 3 * n}
		z := make([]float32, rows*n)
		res := s.Solve(op, b, z, rows, n)
		for j := 0; j < rows; j++ {
			var chol mat.Cholesky
			if !chol.Factorize(op.mats[j]) {
				t.Fatal("not SPD")
			}
			rhs := mat.NewVecDense(n, nil)
			for i := 0; i < n; i++ {
				rhs.SetVec(i, float64(b[j*n+i]))
			}
			var want mat.VecDense
			if err := chol.SolveVecTo(&want, rhs); err != nil {
				t.Fatal(err)
			}
			var num, den float64
			for i := 0; i < n; i++ {
				d := float64(z[j*n+i]) - want.AtVec(i)
				num += d * d
				den += want.AtVec(i) * want.AtVec(i)
			}
			if e := math.Sqrt(num / den); e > 1e-4 {
				t.Errorf("n=%d row %d: relative error %.3g", n, j, e)
			}
			if res.Breakdown[j] {
				t.Errorf("n=%d row %d: breakdown on an SPD system", n, j)
			}
		}
	}
}

// A relative tolerance stops early with the residual below it.
func TestSolveTolerance(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n, rows = 12, 3
	op := perRow{n: n}
	for j := 0; j < rows; j++ {
		op.mats = append(op.mats, randomSPD(rng, n, 4*n))
	}
	b := make([]float32, rows*n)
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	s := Solver{Iters: 100, Tolerance: 1e-3, Eps: 1e-30}
	z := make([]float32, rows*n)
	res := s.Solve(op, b, z, rows, n)
	if res.Iterations >= 100 {
		t.Errorf("ran all %d iterations", res.Iterations)
	}
	for j := 0; j < rows; j++ {
		var bn float64
		for _, v := range b[j*n : (j+1)*n] {
			bn += float64(v) * float64(v)
		}
		if res.Residual[j] > 1e-3*math.Sqrt(bn) {
			t.Errorf("row %d: residual %g above tolerance", j, res.Residual[j])
		}
	}
}

// An operator that is not positive definite breaks a row down; that row
// keeps a finite direction and is reported, the others are unaffected.
type negRow struct{ n int }

func (o negRow) Apply(q, p []float32) {
	for i := range p {
		q[i] = p[i]
		if i < o.n {
			q[i] = -p[i]
		}
	}
}

func TestSolveBreakdown(t *testing.T) {
	const n, rows = 4, 2
	b := []float32{1, 2, 3, 4, 1, 2, 3, 4}
	z := make([]float32, rows*n)
	s := Solver{Iters: 4, Eps: 1e-10}
	res := s.Solve(negRow{n: n}, b, z, rows, n)
	if !res.Breakdown[0] || res.Breakdown[1] || res.Breakdowns != 1 {
		t.Fatalf("breakdown flags %v (%d), want only row 0", res.Breakdown, res.Breakdowns)
	}
	for i, v := range z {
		if v != v || math.IsInf(float64(v), 0) {
			t.Fatalf("z[%d] = %v", i, v)
		}
		if math.Abs(float64(v-b[i])) > 1e-6 { // row 0 falls back to b, row 1 solves I z = b
			t.Fatalf("z[%d] = %v, want %v", i, v, b[i])
		}
	}
}

// The solve writes every value of z whatever z held before: a zero row,
// a row that breaks down and an ordinary row, with z full of NaN, and no
// iteration at all.
func TestSolveOverwritesZ(t *testing.T) {
	const n, rows = 4, 3
	b := []float32{1, 2, 3, 4, 0, 0, 0, 0, 1, -2, 3, -4}
	for _, iters := range []int{0, 1, 3} {
		z := make([]float32, rows*n)
		for i := range z {
			z[i] = float32(math.NaN())
		}
		s := Solver{Iters: iters, Eps: 1e-10}
		s.Solve(negRow{n: n}, b, z, rows, n)
		for i, v := range z {
			if v != v {
				t.Fatalf("%d iterations: z[%d] = %v", iters, i, v)
			}
			if i >= n && i < 2*n && v != 0 {
				t.Fatalf("%d iterations: z[%d] = %v for a zero row", iters, i, v)
			}
			if iters == 0 && v != 0 {
				t.Fatalf("no iteration: z[%d] = %v, want 0", i, v)
			}
		}
	}
}

// Given the rows' MaxAbsBits (BMaxBits), a solve gives the same bits as
// one that reads b to find them, on rows of very different magnitudes.
func TestSolveKnownRowScales(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n, rows = 6, 5
	op := perRow{n: n}
	for j := 0; j < rows; j++ {
		op.mats = append(op.mats, randomSPD(rng, n, 0.5))
	}
	b := make([]float32, rows*n)
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	for i := range b[:n] {
		b[i] *= 1e30
	}
	for i := range b[2*n : 3*n] {
		b[2*n+i] *= 1e-30
	}
	clear(b[3*n : 4*n])
	tops := make([]uint32, rows)
	for j := range tops {
		tops[j] = blas.MaxAbsBits(b[j*n : (j+1)*n])
	}
	for _, keep := range []bool{false, true} {
		plain, known := Solver{Iters: 3, Eps: 1e-12, KeepScaled: keep}, Solver{Iters: 3, Eps: 1e-12, KeepScaled: keep, BMaxBits: tops}
		zPlain, zKnown := make([]float32, rows*n), make([]float32, rows*n)
		rPlain := plain.Solve(op, b, zPlain, rows, n)
		rKnown := known.Solve(op, b, zKnown, rows, n)
		for i := range zPlain {
			if math.Float32bits(zPlain[i]) != math.Float32bits(zKnown[i]) {
				t.Fatalf("keep %v: z[%d] = %v with the rows' scales given, %v without", keep, i, zKnown[i], zPlain[i])
			}
		}
		for j := 0; j < rows; j++ {
			if rPlain.Scale[j] != rKnown.Scale[j] || rPlain.Residual[j] != rKnown.Residual[j] {
				t.Fatalf("keep %v, row %d: scale %v residual %v given, %v %v without", keep, j, rKnown.Scale[j], rKnown.Residual[j], rPlain.Scale[j], rPlain.Residual[j])
			}
		}
		if rPlain.Scale[0] == 1 || rPlain.Scale[2] == 1 {
			t.Fatalf("keep %v: scales %v: the large and tiny rows were not rescaled", keep, rPlain.Scale)
		}
	}
}

// shiftedRows is perRow plus shift*I, and says so (Shifted): CG adds the
// shift itself.
type shiftedRows struct {
	perRow
	shift   float32
	applied int // ApplyUnshifted calls
}

func (o *shiftedRows) Apply(q, p []float32) {
	o.perRow.Apply(q, p)
	for i := range q {
		q[i] += o.shift * p[i]
	}
}

func (o *shiftedRows) Shift() float32 { return o.shift }

func (o *shiftedRows) ApplyUnshifted(q, p []float32) {
	o.applied++
	o.perRow.Apply(q, p)
}

// randomShifted returns rows random SPD matrices of order n with the
// given shift, and a random right-hand side.
func randomShifted(rng *rand.Rand, n, rows int, shift float32) (*shiftedRows, []float32) {
	op := &shiftedRows{perRow: perRow{n: n}, shift: shift}
	for j := 0; j < rows; j++ {
		op.mats = append(op.mats, randomSPD(rng, n, 0.1))
	}
	b := make([]float32, rows*n)
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	return op, b
}

// plainOperator hides everything but Apply.
type plainOperator struct{ op Operator }

func (o plainOperator) Apply(q, p []float32) { o.op.Apply(q, p) }

// An operator that declares its shift (cg.Shifted) is solved with the
// shift added in the row updates: the same iterates, to rounding, as
// through Apply alone, and Apply is never called.
func TestSolveShifted(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const n, rows = 7, 4
	op, b := randomShifted(rng, n, rows, 0.75)
	for _, iters := range []int{1, 3, n} {
		op.applied = 0
		s, plain := Solver{Iters: iters, Eps: 1e-12}, Solver{Iters: iters, Eps: 1e-12}
		z, zPlain := make([]float32, rows*n), make([]float32, rows*n)
		res := s.Solve(op, b, z, rows, n)
		resPlain := plain.Solve(plainOperator{op}, b, zPlain, rows, n)
		if op.applied != res.Iterations || res.Iterations != iters {
			t.Fatalf("%d iterations: ApplyUnshifted ran %d times over %d iterations", iters, op.applied, res.Iterations)
		}
		if j, d, nz := rowdiff.Far(z, zPlain, n, 1e-4); j >= 0 {
			t.Fatalf("%d iterations, row %d: shifted solve differs from the plain one by %v (|z| %v)", iters, j, d, nz)
		}
		for j := 0; j < rows; j++ {
			var nb float64
			for _, v := range b[j*n : (j+1)*n] {
				nb += float64(v) * float64(v)
			}
			// The recurrence's residuals agree to float32 rounding of b.
			if r, rp := res.Residual[j], resPlain.Residual[j]; math.Abs(r-rp) > 1e-3*math.Sqrt(nb) {
				t.Fatalf("%d iterations, row %d: residual %v shifted, %v plain", iters, j, r, rp)
			}
		}
	}
}

// shiftedOperator is an Operator that declares its shift.
type shiftedOperator interface {
	Operator
	Shifted
}

// curved gives a shifted operator curvatures (Curvature) from its
// ApplyUnshifted, and counts the calls of both.
type curved struct {
	shiftedOperator
	n                     int
	unshifted, curvatures int
}

func (o *curved) ApplyUnshifted(q, p []float32) {
	o.unshifted++
	o.shiftedOperator.ApplyUnshifted(q, p)
}

func (o *curved) Curvatures(pq []float64, p []float32) {
	o.curvatures++
	q := make([]float32, len(p))
	o.shiftedOperator.ApplyUnshifted(q, p)
	for j := range pq {
		pq[j] = 0
		for i := j * o.n; i < (j+1)*o.n; i++ {
			pq[j] += float64(p[i]) * float64(q[i])
		}
	}
}

// An operator with curvatures (Curvature) runs the last iteration on them
// alone: ApplyUnshifted once an iteration but the last, Curvatures once,
// and the same iterates, to rounding, as the solve through ApplyUnshifted
// alone. The residuals it reports are that solve's one iteration earlier,
// where every row ran all iterations, and the same where a tolerance
// stopped them all earlier; a row that breaks down at the last iteration
// keeps its previous iterate, and at the first falls back to b.
func TestSolveCurvature(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	const n, rows = 7, 4
	shiftedOp, b := randomShifted(rng, n, rows, 0.75)
	clear(b[2*n : 3*n]) // a zero row: settled, z_j = 0
	for _, c := range []struct {
		iters int
		tol   float64
	}{{1, 0}, {2, 0}, {4, 0}, {n, 0}, {40, 0.1}} {
		op := &curved{shiftedOperator: shiftedOp, n: n}
		s := Solver{Iters: c.iters, Eps: 1e-12, Tolerance: c.tol}
		plain, before := s, s
		before.Iters--
		z, zPlain, zBefore := make([]float32, rows*n), make([]float32, rows*n), make([]float32, rows*n)
		for i := range z {
			z[i] = float32(math.NaN())
		}
		res := s.Solve(op, b, z, rows, n)
		resPlain := plain.Solve(shiftedOp, b, zPlain, rows, n)
		resBefore := before.Solve(shiftedOp, b, zBefore, rows, n)
		last := 0
		if res.Iterations == c.iters {
			last = 1
		}
		if res.Iterations != resPlain.Iterations || op.unshifted != res.Iterations-last || op.curvatures != last {
			t.Fatalf("%d iterations (tolerance %v): ran %d, %d without curvatures; ApplyUnshifted %d times, Curvatures %d",
				c.iters, c.tol, res.Iterations, resPlain.Iterations, op.unshifted, op.curvatures)
		}
		if c.tol > 0 && last != 0 {
			t.Fatalf("tolerance %v: all %d iterations ran", c.tol, c.iters)
		}
		if j, d, nz := rowdiff.Far(z, zPlain, n, 1e-5); j >= 0 {
			t.Fatalf("%d iterations, row %d: z differs from the solve without curvatures by %v (|z| %v)", c.iters, j, d, nz)
		}
		want := resPlain.Residual
		if last != 0 {
			want = resBefore.Residual
		}
		for j := 0; j < rows; j++ {
			var nb float64
			for _, v := range b[j*n : (j+1)*n] {
				nb += float64(v) * float64(v)
			}
			if r, rw := res.Residual[j], want[j]; math.Abs(r-rw) > 1e-3*math.Sqrt(nb) || (nb == 0 && r != 0) {
				t.Fatalf("%d iterations, row %d: residual %v, want %v (|b| %v)", c.iters, j, r, rw, math.Sqrt(nb))
			}
		}
	}
	// Row 0 indefinite (-I): with one iteration it breaks down at the
	// last, which is the first, and takes b.
	minusI := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		minusI.SetSym(i, i, -1)
	}
	mats := append([]*mat.SymDense{minusI}, shiftedOp.mats[1:]...)
	neg := &curved{shiftedOperator: &shiftedRows{perRow: perRow{n: n, mats: mats}}, n: n}
	s := Solver{Iters: 1, Eps: 1e-12}
	z := make([]float32, rows*n)
	res := s.Solve(neg, b, z, rows, n)
	if !res.Breakdown[0] || res.Breakdowns != 1 {
		t.Fatalf("breakdowns %v (%d), want row 0 alone", res.Breakdown, res.Breakdowns)
	}
	for i, v := range z[:n] {
		if v != b[i] {
			t.Fatalf("z[%d] = %v for the broken row, want b's %v", i, v, b[i])
		}
	}
}
