package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// The Fisher product on rows given as windows of images (FisherProduct.
// Image) against a float64 oracle on the same rows stored, with the same
// bits on every kernel set and every core count, X never read.
func TestImageFisher(t *testing.T) {
	if !hasAVX2 {
		t.Skip("no AVX2")
	}
	rng := rand.New(rand.NewPCG(17, 18))
	cases := []struct{ r, c, width, height, images int }{
		{32, 32, 32, 5, 3},   // tiles within output rows
		{16, 32, 12, 7, 2},   // tiles across output rows (gathered)
		{64, 64, 8, 3, 4},    // runs of 192, strips of two tiles
		{16, 128, 6, 4, 2},   // runs of 384, tiles of 16 rows
		{256, 128, 8, 6, 2},  // too large to fuse: two products
		{256, 64, 12, 40, 1}, // two products, blocks of 21 output rows
	}
	for _, tc := range cases {
		wp, hp := tc.width+2, tc.height+2
		m := ImageRows{
			Width: tc.width, Height: tc.height, ImageLen: hp * wp * tc.c,
			RowStride: wp * tc.c, ColStride: tc.c,
			Segs: 3, SegLen: 3 * tc.c, SegStride: wp * tc.c,
		}
		m.Data = randSlice(rng, tc.images*m.ImageLen)
		r, d, n := tc.r, 3*m.SegLen, tc.images*tc.width*tc.height
		name := fmt.Sprintf("R=%d/C=%d/W=%d", tc.r, tc.c, tc.width)
		if !ReadsImage(avx2{}, r, d, &m) {
			t.Fatalf("%s: image rows not read", name)
		}
		x := make([]float32, n*d)
		m.Rows(x, d, 0, n)
		p, w := randSlice(rng, r*d), randSlice(rng, r*n)
		var first []float32
		for _, set := range kernelSets() {
			for _, procs := range []int{1, 2, 3} {
				q := make([]float32, r*d)
				for i := range q {
					q[i] = nan32
				}
				mi := m
				f := FisherProduct{Rows: r, Len: d, Points: n, P: p, Image: &mi, Weights: w, Q: q, Alpha: 0.75}
				prev := runtime.GOMAXPROCS(procs)
				f.PackPoints(avx2{})
				var done bool
				// Twice: the second call must not see what the first
				// left in the workspace.
				withKernels(set, func() { done = (avx2{}).fuseFisher(&f) && (avx2{}).fuseFisher(&f) })
				runtime.GOMAXPROCS(prev)
				if !done {
					t.Fatalf("%s: not fused", name)
				}
				if first == nil {
					first = q
					checkFisherOracle(t, name, r, d, n, p, x, w, q, 0.75, 0)
					continue
				}
				for i := range q {
					if math.Float32bits(q[i]) != math.Float32bits(first[i]) {
						t.Fatalf("%s on %s, %d cores: Q[%d] = %v, first run %v", name, set.name, procs, i, q[i], first[i])
					}
				}
			}
		}
	}
}
