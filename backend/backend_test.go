package backend

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/conv"
	"github.com/frogopt/frog/internal/rowdiff"
)

// An engine told the magnitudes of the data (ActsMaxBits, GradRowMaxBits)
// gives the same bits as one that finds them itself.
func TestCPUKnownMagnitudes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, jointBias := range []bool{false, true} {
		g := conv.Geometry{InChannels: 5, OutChannels: 6, InH: 7, InW: 6, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1}.Normalized()
		job := randomJob(rng, g, jointBias, 3, 1e-3, 1e-90)
		d, rows := job.RowLen(), job.Rows()
		for i := range job.Acts {
			job.Acts[i] *= 1e-32 // a patch scale far from 1: unscaled, the products underflow
		}
		for i := range job.Grad[:d] {
			job.Grad[i] *= 1e25 // a row scale far from 1
		}
		run := func(known bool) Job {
			j := job.withOutputs()
			if known {
				j.ActsMaxBits, j.ActsMaxKnown = blas.MaxAbsBits(j.Acts), true
				j.GradRowMaxBits = make([]uint32, rows)
				for r := range j.GradRowMaxBits {
					j.GradRowMaxBits[r] = blas.MaxAbsBits(j.Grad[r*d : (r+1)*d])
				}
			}
			var c CPU
			if err := c.Precondition(&j); err != nil {
				t.Fatal(err)
			}
			return j
		}
		plain, known := run(false), run(true)
		for i := range plain.Dir {
			if math.Float32bits(plain.Dir[i]) != math.Float32bits(known.Dir[i]) {
				t.Fatalf("joint bias %v: dir[%d] = %v with the magnitudes given, %v without", jointBias, i, known.Dir[i], plain.Dir[i])
			}
		}
		for _, p := range [][2][]float64{{plain.Trace, known.Trace}, {plain.Residual, known.Residual}, {plain.Scale, known.Scale}} {
			if !slices.Equal(p[0], p[1]) {
				t.Fatalf("joint bias %v: diagnostics %v with the magnitudes given, %v without", jointBias, p[1], p[0])
			}
		}
	}
}

// From channel-last images (channelLast) the engine gives what it gives
// from stored patches, to rounding: directions, traces, residuals and
// scales, over strides, groups, rectangular kernels, a dilation in
// height, and a shape too large for the fused kernel; with a joint bias
// it stores the patches.
func TestChannelLastMatchesStoredPatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	geoms := []conv.Geometry{
		{InChannels: 32, OutChannels: 16, InH: 9, InW: 8, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1},
		{InChannels: 64, OutChannels: 32, InH: 9, InW: 11, KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 2},
		{InChannels: 64, OutChannels: 16, InH: 10, InW: 9, KernelH: 2, KernelW: 1, DilationH: 2, PadH: 2},
		{InChannels: 32, OutChannels: 16, InH: 7, InW: 12, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1},
		// Too many rows for the fused kernel: the two image products.
		{InChannels: 64, OutChannels: 256, InH: 9, InW: 12, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1},
	}
	for gi, g := range geoms {
		g = g.Normalized()
		for _, jointBias := range []bool{false, true} {
			job := randomJob(rng, g, jointBias, 3, 1e-2, 1e-8)
			d, rows := job.RowLen(), job.Rows()
			// The portable kernels (noasm) have no fused product to read
			// the images: there the patches are stored either way.
			want := !jointBias && blas.Current().Name() != blas.Portable().Name()
			if uses := canUseImages(g, blas.Current(), g.GroupOutChannels(), d, jointBias); uses != want {
				t.Fatalf("geometry %d, joint bias %v: channel-last %v, want %v", gi, jointBias, uses, want)
			}
			run := func(store bool) Job {
				j := job.withOutputs()
				c := CPU{storePatches: store, alwaysImages: !store}
				// Twice: the second call runs on the buffers of the first.
				for range 2 {
					if err := c.Precondition(&j); err != nil {
						t.Fatal(err)
					}
				}
				return j
			}
			stored, images := run(true), run(false)
			if r, diff, norm := rowdiff.Far(images.Dir, stored.Dir, d, 1e-5); r >= 0 {
				t.Fatalf("geometry %d, bias %v, row %d: directions differ by %v (|dir| %v)", gi, jointBias, r, diff, norm)
			}
			for r := 0; r < rows; r++ {
				for _, p := range [][2]float64{{stored.Trace[r], images.Trace[r]}, {stored.Scale[r], images.Scale[r]}, {stored.Residual[r], images.Residual[r]}} {
					if math.Abs(p[0]-p[1]) > 1e-4*math.Abs(p[0]) {
						t.Fatalf("geometry %d, bias %v, row %d: diagnostics %v from images, %v from patches", gi, jointBias, r, p[1], p[0])
					}
				}
			}
		}
	}
}

// In the points' space, the Gram matrix from the pixels (windowPixels)
// gives what the patches' gives, to rounding: over kernels of every odd
// size, groups, and a patch scale far from 1; convolutions whose output
// is not the size of their input (stride 2) form it from the patches.
func TestPixelWindowsMatchPatches(t *testing.T) {
	t.Setenv(blas.RecurrenceEnv, "always")
	rng := rand.New(rand.NewPCG(13, 14))
	for gi, c := range []struct {
		g       conv.Geometry
		windows bool
		scale   float32
	}{
		{conv.Geometry{InChannels: 16, OutChannels: 24, InH: 6, InW: 5, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1}, true, 1},
		{conv.Geometry{InChannels: 16, OutChannels: 24, InH: 6, InW: 5, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1}, true, 1e-32},
		{conv.Geometry{InChannels: 12, OutChannels: 8, InH: 7, InW: 4, KernelH: 5, KernelW: 3, PadH: 2, PadW: 1, Groups: 2}, true, 1},
		{conv.Geometry{InChannels: 9, OutChannels: 16, InH: 4, InW: 4, KernelH: 1, KernelW: 1}, true, 1},
		{conv.Geometry{InChannels: 16, OutChannels: 24, InH: 8, InW: 8, KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}, false, 1},
	} {
		g := c.g.Normalized()
		job := randomJob(rng, g, false, 3, 1e-2, 1e-8)
		for i := range job.Acts {
			job.Acts[i] *= c.scale
		}
		d, rows := job.RowLen(), job.Rows()
		run := func(noWindows bool) (Job, bool) {
			j := job.withOutputs()
			e := CPU{storePatches: true, noWindows: noWindows}
			if err := e.Precondition(&j); err != nil {
				t.Fatal(err)
			}
			return j, e.op.Windows != nil
		}
		patches, _ := run(true)
		pixels, used := run(false)
		if used != c.windows {
			t.Fatalf("geometry %d: Gram matrix from the pixels %v, want %v", gi, used, c.windows)
		}
		if r, diff, norm := rowdiff.Far(pixels.Dir, patches.Dir, d, 1e-5); r >= 0 {
			t.Fatalf("geometry %d, row %d: directions differ by %v (|dir| %v)", gi, r, diff, norm)
		}
		for r := 0; r < rows; r++ {
			for _, p := range [][2]float64{{patches.Trace[r], pixels.Trace[r]}, {patches.Scale[r], pixels.Scale[r]}, {patches.Residual[r], pixels.Residual[r]}} {
				if math.Abs(p[0]-p[1]) > 1e-4*math.Abs(p[0]) {
					t.Fatalf("geometry %d, row %d: diagnostics %v from pixels, %v from patches", gi, r, p[1], p[0])
				}
			}
		}
	}
}

// The patches are read in the images where that pays (l1.conv's,
// l2.conv's and l2.conv_s2's shapes), and stored where it does not
// (l2.sc's, 1x1 with stride 2: patches a quarter of the image; l3.conv's
// and l4.conv's, small images).
func TestPrefersImages(t *testing.T) {
	shape := func(c, h, stride int) conv.Geometry {
		return conv.Geometry{InChannels: c, OutChannels: c, InH: h, InW: h, KernelH: 3, KernelW: 3, StrideH: stride, StrideW: stride, PadH: 1, PadW: 1}.Normalized()
	}
	for _, c := range []struct {
		name string
		g    conv.Geometry
		want bool
	}{
		{"l1.conv", shape(64, 32, 1), true},
		{"l2.conv", shape(128, 16, 1), true},
		{"l2.conv_s2", shape(64, 32, 2), true},
		{"l2.sc", conv.Geometry{InChannels: 64, OutChannels: 128, InH: 32, InW: 32, KernelH: 1, KernelW: 1, StrideH: 2, StrideW: 2}.Normalized(), false},
		{"l3.conv", shape(256, 8, 1), false},
		{"l4.conv", shape(512, 4, 1), false},
	} {
		if got := prefersImages(c.g, c.g.PatchLen()); got != c.want {
			t.Errorf("%s: prefers images %v, want %v", c.name, got, c.want)
		}
	}
	l1 := shape(64, 32, 1)
	if fuses := blas.Current().Name() != blas.Portable().Name(); canUseImages(l1, blas.Current(), 64, l1.PatchLen(), false) != fuses {
		t.Fatalf("l1.conv can use its images: %v, want %v (kernels %s)", !fuses, fuses, blas.Current().Name())
	}
}

// randomJob returns a job for g with normal random activations, output
// gradients and gradient, and room for its outputs.
func randomJob(rng *rand.Rand, g conv.Geometry, jointBias bool, samples int, damping, eps float64) Job {
	job := Job{Geometry: g, JointBias: jointBias, Samples: samples, LossScale: 3, Damping: damping, Iters: 4, DenomEps: eps}
	d, rows := job.RowLen(), job.Rows()
	job.Acts = make([]float32, samples*g.ImageLen())
	job.OutGrads = make([]float32, samples*g.OutputLen())
	job.Grad = make([]float32, rows*d)
	for _, s := range [][]float32{job.Acts, job.OutGrads, job.Grad} {
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
	}
	return job.withOutputs()
}

// withOutputs returns j with fresh output slices.
func (j Job) withOutputs() Job {
	rows := j.Rows()
	j.Dir = make([]float32, rows*j.RowLen())
	j.Trace, j.Residual, j.Scale = make([]float64, rows), make([]float64, rows), make([]float64, rows)
	j.Breakdown = make([]bool, rows)
	return j
}

// A steady-state preconditioning from channel-last images allocates
// nothing, on the fused and on the two-product path.
func TestChannelLastAllocates0(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, g := range []conv.Geometry{
		{InChannels: 32, OutChannels: 16, InH: 9, InW: 8, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1},
		{InChannels: 64, OutChannels: 256, InH: 9, InW: 12, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1},
	} {
		g = g.Normalized()
		job := randomJob(rng, g, false, 3, 1e-2, 1e-8)
		c := CPU{alwaysImages: true}
		if err := c.Precondition(&job); err != nil {
			t.Fatal(err)
		}
		if c.images == nil && blas.Current().Name() != blas.Portable().Name() {
			t.Fatalf("%+v: the channel-last way was not taken", g)
		}
		if n := testing.AllocsPerRun(5, func() { _ = c.Precondition(&job) }); n != 0 {
			t.Errorf("%+v: %v allocations a call", g, n)
		}
	}
}
