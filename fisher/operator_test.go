package fisher

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/cg"
	"github.com/frogopt/frog/internal/rowdiff"
	"github.com/google/go-cmp/cmp"
)

// The operator against its definition, row by row with explicit D x D
// matrices: Q_j = (sum_i w_ji x_i x_i^T) p_j + tau p_j.
func TestOperatorMatchesExplicitMatrices(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for _, c := range []struct{ rows, d, n int }{{1, 1, 1}, {3, 7, 11}, {5, 16, 40}, {4, 33, 9}} {
		x := make([]float32, c.n*c.d)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		w := make([]float32, c.rows*c.n)
		for i := range w {
			w[i] = float32(rng.Float64())
		}
		p := make([]float32, c.rows*c.d)
		for i := range p {
			p[i] = float32(rng.NormFloat64())
		}
		const tau = 0.25
		for _, uniform := range []bool{false, true} {
			op := Operator{Rows: c.rows, Len: c.d, Points: c.n, Patches: x, Weights: w, Damping: tau}
			if uniform {
				op.Weights, op.Uniform = nil, 0.5
			}
			q := make([]float32, len(p))
			op.Apply(q, p)
			// The Fisher part alone (cg.Shifted): Q - tau*P.
			if op.Shift() != tau {
				t.Fatalf("Shift() = %v, want %v", op.Shift(), tau)
			}
			unshifted := make([]float32, len(p))
			op.ApplyUnshifted(unshifted, p)
			if op.Damping != tau {
				t.Fatalf("ApplyUnshifted left the damping at %v", op.Damping)
			}
			for i, v := range unshifted {
				if want := float64(q[i]) - tau*float64(p[i]); math.Abs(float64(v)-want) > 1e-4*(1+math.Abs(want)) {
					t.Fatalf("%+v uniform=%v: unshifted Q[%d] = %v, want %v", c, uniform, i, v, want)
				}
			}
			for j := 0; j < c.rows; j++ {
				for a := 0; a < c.d; a++ {
					want := tau * float64(p[j*c.d+a])
					for i := 0; i < c.n; i++ {
						wt := 0.5
						if !uniform {
							wt = float64(w[j*c.n+i])
						}
						var xp float64
						for b := 0; b < c.d; b++ {
							xp += float64(x[i*c.d+b]) * float64(p[j*c.d+b])
						}
						want += wt * float64(x[i*c.d+a]) * xp
					}
					if got := float64(q[j*c.d+a]); math.Abs(got-want) > 1e-4*(1+math.Abs(want)) {
						t.Fatalf("%+v uniform=%v: Q[%d][%d] = %v, want %v", c, uniform, j, a, got, want)
					}
				}
			}
		}
	}
}

// Fill's traces and weights against the formulas of FROG.md steps 1-3,
// including the power-of-two patch scale and a row of zero gradients.
func TestRowWeightsFill(t *testing.T) {
	// Fill takes four locations at a time: 7 leaves three over; and four
	// rows at a time: 9 leaves one over.
	for _, locs := range []int{4, 7, 1, 64} {
		for _, rows := range []int{3, 9} {
			rowWeightsFill(t, rows, locs)
		}
	}
}

func rowWeightsFill(t *testing.T, rows, locs int) {
	const samples, d = 2, 5
	rng := rand.New(rand.NewPCG(1, uint64(rows)))
	y := make([]float32, samples*rows*locs)
	for i := range y {
		y[i] = float32(rng.NormFloat64())
	}
	for s := 0; s < samples; s++ { // row 1 has no signal
		for l := 0; l < locs; l++ {
			y[(s*rows+1)*locs+l] = 0
		}
	}
	norms := make([]float64, samples*locs)
	for i := range norms {
		norms[i] = 1 + rng.Float64()
	}
	const s, eps, ps = 8.0, 1e-10, 0.25
	rw := RowWeights{OutGrads: y, SampleStride: rows * locs, Rows: rows, Samples: samples, Locations: locs}
	w := make([]float32, rows*samples*locs)
	trace := make([]float64, rows)
	rw.Fill(w, trace, norms, s, d, eps, ps)
	for j := 0; j < rows; j++ {
		var tj float64
		for n := 0; n < samples; n++ {
			for l := 0; l < locs; l++ {
				v := float64(y[(n*rows+j)*locs+l])
				tj += s * v * v * norms[n*locs+l]
			}
		}
		tj /= d
		if math.Abs(trace[j]-tj) > 1e-12*tj {
			t.Errorf("trace[%d] = %v, want %v", j, trace[j], tj)
		}
		for n := 0; n < samples; n++ {
			for l := 0; l < locs; l++ {
				v := float64(y[(n*rows+j)*locs+l])
				want := s * v * v / (tj + eps) / (ps * ps)
				if got := float64(w[j*samples*locs+n*locs+l]); math.Abs(got-want) > 1e-6*want {
					t.Errorf("weight[%d][%d,%d] = %v, want %v", j, n, l, got, want)
				}
			}
		}
	}
	if trace[1] != 0 {
		t.Errorf("a row without output gradients has trace %v, want 0", trace[1])
	}
	// Rows filled in other groups (one, then the rest from row 1: four
	// at a time from there) give the same bits: a row's sums do not
	// depend on the rows filled beside it.
	w2 := make([]float32, len(w))
	trace2 := make([]float64, rows)
	rw.FillRows(0, 1, w2, trace2, norms, s, d, eps, ps)
	rw.FillRows(1, rows, w2, trace2, norms, s, d, eps, ps)
	if diff := cmp.Diff(trace, trace2); diff != "" {
		t.Errorf("rows %d, locations %d: traces by other groups of rows (-all +split):\n%s", rows, locs, diff)
	}
	if diff := cmp.Diff(w, w2); diff != "" {
		t.Errorf("rows %d, locations %d: weights by other groups of rows (-all +split):\n%s", rows, locs, diff)
	}
}

// TestPackPatches: the operator gives the same Q, bit for bit, whether the
// kernels read the patches in place or from the copy PackPatches makes. The
// avx2 kernels (where the machine has them) must make the copy; the
// portable ones make none and read in place both times.
func TestPackPatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][3]int{{64, 288, 1500}, {256, 600, 300}, {10, 33, 77}} {
		r, d, n := s[0], s[1], s[2]
		x, w, p := randomOperands(rng, r, d, n)
		for _, k := range testKernels(t) {
			op := Operator{Rows: r, Len: d, Points: n, Patches: x, Weights: w, Damping: 0.1, Kernels: k}
			plain := make([]float32, r*d)
			op.Apply(plain, p)
			if packs, want := op.PackPatches(), k.Name() == "avx2"; packs != want {
				t.Fatalf("%s R=%d D=%d N=%d: PackPatches = %v, want %v", k.Name(), r, d, n, packs, want)
			}
			packed := make([]float32, r*d)
			op.Apply(packed, p)
			for i := range plain {
				if math.Float32bits(plain[i]) != math.Float32bits(packed[i]) {
					t.Fatalf("%s R=%d D=%d N=%d: Q[%d] = %v packed, %v in place", k.Name(), r, d, n, i, packed[i], plain[i])
				}
			}
		}
	}
}

// testKernels returns the portable kernels and the avx2 ones when the
// machine has them.
func testKernels(t *testing.T) []blas.Kernels {
	kernels := []blas.Kernels{blas.Portable()}
	if k, ok := avx2Kernels(t); ok {
		kernels = append(kernels, k)
	}
	return kernels
}

// randomOperands returns patches X (n x d), weights (r x n) and directions
// (r x d) uniform in [-0.5, 0.5).
func randomOperands(rng *rand.Rand, r, d, n int) (x, w, p []float32) {
	x, w, p = make([]float32, n*d), make([]float32, r*n), make([]float32, r*d)
	for _, v := range [][]float32{x, w, p} {
		for i := range v {
			v[i] = rng.Float32() - 0.5
		}
	}
	return x, w, p
}

// avx2Kernels returns the avx2 kernels when the machine has them (and the
// assembly is built), leaving the current kernels as they were.
func avx2Kernels(t *testing.T) (blas.Kernels, bool) {
	t.Helper()
	prev := blas.Current()
	if blas.Use("avx2") != nil {
		return nil, false
	}
	k := blas.Current()
	if err := blas.Use(prev.Name()); err != nil {
		t.Fatal(err)
	}
	return k, true
}

// An operator on rows given as windows of images (Operator.Image) applies
// what it applies on the same rows stored: bit for bit on kernels that
// copy the rows out, to rounding on the fused kernel that reads them in
// place.
func TestOperatorImage(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	const c, width, height, images, rows = 32, 8, 5, 3, 16
	wp := width + 2
	m := blas.ImageRows{
		Width: width, Height: height, ImageLen: (height + 2) * wp * c,
		RowStride: wp * c, ColStride: c, Segs: 3, SegLen: 3 * c, SegStride: wp * c,
	}
	m.Data = make([]float32, images*m.ImageLen)
	for i := range m.Data {
		m.Data[i] = float32(rng.NormFloat64())
	}
	d, n := 3*m.SegLen, images*width*height
	x := make([]float32, n*d)
	m.Rows(x, d, 0, n)
	w, p := make([]float32, rows*n), make([]float32, rows*d)
	for i := range w {
		w[i] = float32(rng.Float64())
	}
	for i := range p {
		p[i] = float32(rng.NormFloat64())
	}
	for _, k := range []blas.Kernels{blas.Portable(), blas.Current()} {
		stored := Operator{Rows: rows, Len: d, Points: n, Patches: x, Weights: w, Damping: 0.5, Kernels: k}
		image := Operator{Rows: rows, Len: d, Points: n, Image: &m, Weights: w, Damping: 0.5, Kernels: k}
		stored.PackPatches()
		image.PackPatches()
		want, got := make([]float32, rows*d), make([]float32, rows*d)
		stored.Apply(want, p)
		image.Apply(got, p)
		exact := !blas.ReadsImage(k, rows, d, &m)
		for i := range want {
			if exact && math.Float32bits(got[i]) != math.Float32bits(want[i]) || !exact && math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("%s: Q[%d] = %v from the images, %v from the stored rows", k.Name(), i, got[i], want[i])
			}
		}
	}
}

// closeRows fails unless every row of got is want's to 1e-4 of its norm.
func closeRows(t *testing.T, name string, got, want []float32, d int) {
	t.Helper()
	if j, dist, norm := rowdiff.Far(got, want, d, 1e-4); j >= 0 {
		t.Fatalf("%s, row %d: |Q - Fp| = %v, |Fp| = %v", name, j, dist, norm)
	}
}

// plainApply hides everything of an operator but Apply.
type plainApply struct{ op *Operator }

func (o plainApply) Apply(q, p []float32) { o.op.Apply(q, p) }

// CG run wholly in the points' space on the operator (cg.PointsSpace)
// gives the solve through Apply alone, to rounding, on every kernel set,
// with the patches packed or not, weighted or uniform. The shapes are too
// small to gain, so blas.RecurrenceEnv forces it.
func TestOperatorPoints(t *testing.T) {
	t.Setenv(blas.RecurrenceEnv, "always")
	rng := rand.New(rand.NewPCG(14, 15))
	for _, s := range [][3]int{{5, 40, 12}, {20, 100, 24}, {64, 37, 9}} {
		r, d, n := s[0], s[1], s[2]
		x, w, b := randomOperands(rng, r, d, n)
		for _, k := range testKernels(t) {
			for _, packed := range []bool{false, true} {
				for _, uniform := range []bool{false, true} {
					op := Operator{Rows: r, Len: d, Points: n, Patches: x, Weights: w, Damping: 0.5, Kernels: k}
					if uniform {
						op.Weights, op.Uniform = nil, 0.25
					}
					if packed {
						op.PackPatches()
					}
					name := fmt.Sprintf("%s R=%d D=%d N=%d packed=%v uniform=%v", k.Name(), r, d, n, packed, uniform)
					if _, _, ok := op.PointsSolve(3); !ok {
						t.Fatalf("%s: PointsSolve declined", name)
					}
					got, want := make([]float32, r*d), make([]float32, r*d)
					s := cg.Solver{Iters: 3, Eps: 1e-12, Kernels: k}
					s.Solve(&op, b, got, r, d)
					// plainApply is no cg.PointsSpace: the solve applies.
					s.Solve(plainApply{&op}, b, want, r, d)
					closeRows(t, name, got, want, d)
				}
			}
		}
	}
}

// The points' space is chosen where it saves a quarter of the flops: the
// ResNet-18 layers with far fewer patches than coordinates (l3.conv,
// l4.conv_s2, l4.conv) and dense layers on a few samples, not l3.conv_s2
// (1024 patches of 1152) or l4.sc (256 of 256), nor where the patches
// outnumber the coordinates, nor for one iteration or none, nor for a
// solve of under 2^22 flops, nor on images; RecurrenceEnv overrides the
// choice.
func TestPointsChoice(t *testing.T) {
	t.Setenv(blas.RecurrenceEnv, "")
	for _, c := range []struct {
		r, d, n, iters int
		want           bool
	}{
		{256, 2304, 1024, 4, true}, {512, 2304, 256, 4, true}, {512, 4608, 256, 4, true}, {512, 4608, 256, 2, true},
		{256, 1152, 1024, 4, false}, {512, 256, 256, 4, false}, {64, 576, 16384, 4, false},
		{512, 4608, 256, 1, false}, {512, 4608, 256, 0, false},
		// Dense layers: 64 outputs of 512 inputs on 16 samples gain; 70
		// of 34 on 17 (under 2^22 flops) do not.
		{64, 512, 16, 4, true}, {70, 34, 17, 6, false},
	} {
		if got := blas.PointsGains(c.r, c.d, c.n, c.iters); got != c.want {
			t.Errorf("PointsGains(%d, %d, %d, %d) = %v, want %v", c.r, c.d, c.n, c.iters, got, c.want)
		}
	}
	t.Setenv(blas.RecurrenceEnv, "off")
	if blas.PointsGains(512, 4608, 256, 4) {
		t.Errorf("%s=off: PointsGains(512, 4608, 256, 4) = true", blas.RecurrenceEnv)
	}
	t.Setenv(blas.RecurrenceEnv, "always")
	if !blas.PointsGains(4, 8, 16, 1) || blas.PointsGains(4, 8, 16, 0) {
		t.Errorf("%s=always: PointsGains(4, 8, 16, 1 or 0) not true, false", blas.RecurrenceEnv)
	}
	for _, s := range [][3]int{{0, 8, 16}, {4, 0, 16}, {4, 8, 0}} {
		if blas.PointsGains(s[0], s[1], s[2], 4) {
			t.Errorf("%s=always: PointsGains(%d, %d, %d, 4) = true on an empty shape", blas.RecurrenceEnv, s[0], s[1], s[2])
		}
	}
	m := blas.ImageRows{Width: 1, Height: 1, ImageLen: 8, RowStride: 8, ColStride: 8, Segs: 1, SegLen: 8, SegStride: 8, Data: make([]float32, 16)}
	op := Operator{Rows: 4, Len: 8, Points: 2, Image: &m, Uniform: 1}
	if _, _, ok := op.PointsSolve(4); ok {
		t.Errorf("PointsSolve on images: true")
	}
}

var _ cg.Curvature = (*Operator)(nil)

// Curvatures gives p_j.(Fhat_j p_j - tau p_j) of ApplyUnshifted for every
// row, on the portable kernels (their products, then a loop) and the avx2
// ones (their Fisher kernels, or the same fallback where those do not take
// the shape: weights they have no transposed copy of), patches packed or
// not, with weights and uniform, and on rows given as windows of images.
func TestOperatorCurvatures(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	m := blas.ImageRows{Width: 8, Height: 5, ImageLen: 7 * 10 * 32, RowStride: 10 * 32, ColStride: 32, Segs: 3, SegLen: 96, SegStride: 10 * 32}
	m.Data = make([]float32, 2*m.ImageLen)
	for i := range m.Data {
		m.Data[i] = rng.Float32() - 0.5
	}
	for _, s := range [][3]int{{64, 288, 1500}, {256, 600, 300}, {256, 600, 700}, {10, 33, 77}, {16, 288, 80}} {
		r, d, n := s[0], s[1], s[2]
		x, w, p := randomOperands(rng, r, d, n)
		for _, k := range testKernels(t) {
			for _, c := range []struct {
				packed, uniform, image bool
			}{{false, false, false}, {true, false, false}, {true, true, false}, {false, true, false}, {true, false, true}} {
				op := Operator{Rows: r, Len: d, Points: n, Patches: x, Weights: w, Damping: 0.1, Kernels: k}
				if c.uniform {
					op.Weights, op.Uniform = nil, 0.25
				}
				if c.image {
					if d != 3*m.SegLen || n != 2*m.Width*m.Height {
						continue
					}
					m.Rows(x, d, 0, n)
					op.Patches, op.Image = nil, &m
				}
				if c.packed {
					op.PackPatches()
				}
				name := fmt.Sprintf("%s R=%d D=%d N=%d %+v", k.Name(), r, d, n, c)
				q := make([]float32, r*d)
				op.ApplyUnshifted(q, p)
				pq := make([]float64, r)
				op.Curvatures(pq, p)
				for j := 0; j < r; j++ {
					var want, mag float64
					for a := j * d; a < (j+1)*d; a++ {
						want += float64(p[a]) * float64(q[a])
						mag += math.Abs(float64(p[a]) * float64(q[a]))
					}
					if math.Abs(pq[j]-want) > 1e-4*mag {
						t.Fatalf("%s, row %d: curvature %v, p.(B p) %v", name, j, pq[j], want)
					}
				}
			}
		}
	}
}
