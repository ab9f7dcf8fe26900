package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// curvatureOracle returns alpha * sum_n w[j][n] (P X^T)[j][n]^2 for every
// row in float64 (w all ones when nil), and the same sums of magnitudes.
func curvatureOracle(r, d, n int, p, x, w []float32, alpha float64) (pq, mag []float64) {
	pq, mag = make([]float64, r), make([]float64, r)
	for j := 0; j < r; j++ {
		for i := 0; i < n; i++ {
			var dot float64
			for e := 0; e < d; e++ {
				dot += float64(p[j*d+e]) * float64(x[i*d+e])
			}
			wt := 1.0
			if w != nil {
				wt = float64(w[j*n+i])
			}
			pq[j] += alpha * wt * dot * dot
			mag[j] += math.Abs(alpha * wt * dot * dot)
		}
	}
	return pq, mag
}

// curvatureCase runs FisherCurvatures on f on every kernel set and one to
// three cores: every run must take the shape (unless none does), give the
// float64 oracle's values to float32 rounding and the first run's bits,
// leave P, X and Q alone, allocate nothing once warm, and leave the
// workspace such that the product that follows has the bits it has
// without a curvature call before it.
func curvatureCase(t *testing.T, name string, f *FisherProduct, x []float32, pack bool) {
	t.Helper()
	r, d, n := f.Rows, f.Len, f.Points
	want, mag := curvatureOracle(r, d, n, f.P, x, f.Weights, float64(f.Alpha))
	p0 := append([]float32(nil), f.P...)
	q := make([]float32, r*d)
	for i := range q {
		q[i] = nan32
	}
	f.Q = q
	var first []float64
	took := 0
	for _, set := range kernelSets() {
		for _, procs := range []int{1, 2, 3} {
			pq := make([]float64, r)
			for i := range pq {
				pq[i] = math.NaN()
			}
			prev := runtime.GOMAXPROCS(procs)
			if pack {
				f.PackPoints(avx2{})
			}
			var done bool
			withKernels(set, func() {
				done = FisherCurvatures(avx2{}, f, pq)
				if done && procs == 2 {
					if a := testing.AllocsPerRun(2, func() { FisherCurvatures(avx2{}, f, pq) }); a != 0 {
						t.Errorf("%s on %s: %v allocations a call", name, set.name, a)
					}
				}
			})
			runtime.GOMAXPROCS(prev)
			if !done {
				if took > 0 {
					t.Fatalf("%s on %s, %d cores: not taken, taken before", name, set.name, procs)
				}
				continue
			}
			took++
			for i := range q {
				if !math.IsNaN(float64(q[i])) {
					t.Fatalf("%s on %s: Q[%d] written", name, set.name, i)
				}
			}
			for i := range p0 {
				if math.Float32bits(f.P[i]) != math.Float32bits(p0[i]) {
					t.Fatalf("%s on %s: P[%d] changed", name, set.name, i)
				}
			}
			if first == nil {
				first = pq
				for j := range pq {
					if !(math.Abs(pq[j]-want[j]) <= 1e-5*mag[j]+1e-30) {
						t.Fatalf("%s, row %d: curvature %v, want %v", name, j, pq[j], want[j])
					}
				}
				continue
			}
			for j := range pq {
				if math.Float64bits(pq[j]) != math.Float64bits(first[j]) {
					t.Fatalf("%s on %s, %d cores, row %d: curvature %v, first run %v", name, set.name, procs, j, pq[j], first[j])
				}
			}
		}
	}
	if took == 0 {
		t.Logf("%s: not taken", name)
		return
	}
	// The product after a curvature call, and after another product.
	after := make([]float32, r*d)
	f.Q = after
	if !(avx2{}).fuseFisher(f) {
		t.Fatalf("%s: curvatures taken, the product not", name)
	}
	before := make([]float32, r*d)
	f.Q = before
	(avx2{}).fuseFisher(f)
	for i := range after {
		if math.Float32bits(after[i]) != math.Float32bits(before[i]) {
			t.Fatalf("%s: after the curvatures Q[%d] = %v, else %v", name, i, after[i], before[i])
		}
	}
	f.Q = nil
}

// FisherCurvatures on every path of the Fisher kernels (fused, the two
// products reading X or P in place, row counts off the panel width), with
// weights transposed, weights in place and none; and on rows given as
// windows of images, fused and in two products.
func TestFisherCurvatures(t *testing.T) {
	if !hasAVX2 {
		t.Skip("no AVX2")
	}
	rng := rand.New(rand.NewPCG(19, 20))
	shapes := [][3]int{{64, 288, 3000}, {32, 100, 700}, {256, 600, 900}, {256, 600, 300}, {20, 64, 1200}, {48, 37, 2111}, {16, 27, 5}}
	for _, s := range shapes {
		r, d, n := s[0], s[1], s[2]
		p, x := randSlice(rng, r*d), randSlice(rng, n*d)
		for _, weights := range []string{"transposed", "in place", "none"} {
			var w []float32
			if weights != "none" {
				w = randSlice(rng, r*n)
			}
			f := FisherProduct{Rows: r, Len: d, Points: n, P: p, X: x, Weights: w, Alpha: 0.75, Damping: 0.5}
			if weights == "none" {
				f.Alpha = 0.125
			}
			curvatureCase(t, fmt.Sprintf("R=%d/D=%d/N=%d/weights %s", r, d, n, weights), &f, x, weights != "in place")
		}
	}
	for _, tc := range []struct{ r, c, width, height, images int }{
		{32, 32, 32, 5, 3},   // fused
		{256, 128, 8, 6, 2},  // two products
		{256, 64, 16, 40, 2}, // two products, the first's points claimed
	} {
		m := testImages(rng, tc.c, tc.width, tc.height, tc.images)
		r, d, n := tc.r, 3*m.SegLen, tc.images*tc.width*tc.height
		x := make([]float32, n*d)
		m.Rows(x, d, 0, n)
		f := FisherProduct{Rows: r, Len: d, Points: n, P: randSlice(rng, r*d), Image: &m, Weights: randSlice(rng, r*n), Alpha: 1}
		curvatureCase(t, fmt.Sprintf("image R=%d/C=%d/W=%d", tc.r, tc.c, tc.width), &f, x, true)
	}
}
