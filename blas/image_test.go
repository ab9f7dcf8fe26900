package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
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
		{256, 64, 12, 40, 1}, // two products, blocks of 20 output rows
		{256, 64, 16, 40, 2}, // two products, the first's points claimed by three parts
	}
	for _, tc := range cases {
		m := testImages(rng, tc.c, tc.width, tc.height, tc.images)
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
			// With held up, a part of the second product stops in turn at
			// the start of each block, so that pieces pass between parts
			// and wait for each other.
			for _, run := range []struct {
				procs  int
				heldUp bool
			}{{1, false}, {2, false}, {3, false}, {2, true}, {3, true}} {
				procs := run.procs
				q := make([]float32, r*d)
				for i := range q {
					q[i] = nan32
				}
				mi := m
				f := FisherProduct{Rows: r, Len: d, Points: n, P: p, Image: &mi, Weights: w, Q: q, Alpha: 0.75}
				prev := runtime.GOMAXPROCS(procs)
				f.PackPoints(avx2{})
				var done bool
				var claimed atomic.Int32
				claimHook = func(part, block, piece int) {
					claimed.Add(1)
					// The part's first pair of panels in the block: the
					// others meanwhile run the rest of it and move on.
					if units := d / (2 * nr); run.heldUp && part == block%procs && piece == units*part/procs {
						time.Sleep(2 * time.Millisecond)
					}
				}
				// Twice: the second call must not see what the first
				// left in the workspace.
				withKernels(set, func() {
					for range 2 {
						done = (avx2{}).fuseFisher(&f)
					}
				})
				claimHook = nil
				runtime.GOMAXPROCS(prev)
				if fusedBlock(r, d) == 0 && set.segmented && procs > 1 && d/(2*nr) >= procs*minClaimStrips && claimed.Load() == 0 {
					t.Fatalf("%s on %s, %d cores: the second product claimed nothing", name, set.name, procs)
				}
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

// testImages returns random channel-last images of c channels, padded
// by one pixel on every side, as the rows of a 3x3 convolution's patches
// (width x height output locations an image).
func testImages(rng *rand.Rand, c, width, height, images int) ImageRows {
	wp, hp := width+2, height+2
	m := ImageRows{
		Width: width, Height: height, ImageLen: hp * wp * c,
		RowStride: wp * c, ColStride: c,
		Segs: 3, SegLen: 3 * c, SegStride: wp * c,
	}
	m.Data = randSlice(rng, images*m.ImageLen)
	return m
}

// planImage cuts each image into as few blocks as the bound allows, of
// rows as even as can be, and its blocks cover every point once in order.
func TestPlanImage(t *testing.T) {
	for _, c := range []struct{ width, height, images, maxPoints, rows, per int }{
		{16, 16, 3, 120, 6, 3}, // l2.conv_s2: 6, 6, 4 rather than 7, 7, 2
		{32, 32, 2, 240, 7, 5}, // l1.conv: 7, 7, 7, 7, 4
		{12, 40, 1, 256, 20, 2},
		{16, 16, 2, 256, 16, 1},
		{100, 3, 2, 50, 1, 3}, // rows wider than the bound: one a block
	} {
		m := ImageRows{Width: c.width, Height: c.height}
		f := FisherProduct{Points: c.images * c.width * c.height, Image: &m}
		p := planImage(&f, c.maxPoints)
		if p.blockRows != c.rows || p.rowBlocks != c.per || p.images != c.images {
			t.Fatalf("%dx%d in blocks of %d points: %+v, want %d rows, %d blocks an image", c.width, c.height, c.maxPoints, p, c.rows, c.per)
		}
		next := 0
		for b := 0; b < p.blocks(); b++ {
			n0, nb := p.block(&m, b)
			if n0 != next || nb <= 0 || nb%c.width != 0 || (nb > c.maxPoints && nb > c.width) {
				t.Fatalf("%dx%d: block %d is points %d..%d, after %d", c.width, c.height, b, n0, n0+nb, next)
			}
			next = n0 + nb
		}
		if next != f.Points {
			t.Fatalf("%dx%d: blocks end at %d of %d points", c.width, c.height, next, f.Points)
		}
	}
}
