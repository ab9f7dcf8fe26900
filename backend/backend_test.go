package backend

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/conv"
)

// An engine told the magnitudes of the data (ActsMaxBits, GradRowMaxBits)
// gives the same bits as one that finds them itself.
func TestCPUKnownMagnitudes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, jointBias := range []bool{false, true} {
		g := conv.Geometry{InChannels: 5, OutChannels: 6, InH: 7, InW: 6, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1}.Normalized()
		const samples = 3
		job := Job{Geometry: g, JointBias: jointBias, Samples: samples, LossScale: 3, Damping: 1e-3, Iters: 3, DenomEps: 1e-90}
		d, rows := job.RowLen(), job.Rows()
		job.Acts = make([]float32, samples*g.ImageLen())
		job.OutGrads = make([]float32, samples*g.OutputLen())
		job.Grad = make([]float32, rows*d)
		for _, s := range [][]float32{job.Acts, job.OutGrads, job.Grad} {
			for i := range s {
				s[i] = float32(rng.NormFloat64())
			}
		}
		for i := range job.Acts {
			job.Acts[i] *= 1e-32 // a patch scale far from 1: unscaled, the products underflow
		}
		for i := range job.Grad[:d] {
			job.Grad[i] *= 1e25 // a row scale far from 1
		}
		run := func(known bool) Job {
			j := job
			if known {
				j.ActsMaxBits, j.ActsMaxKnown = blas.MaxAbsBits(j.Acts), true
				j.GradRowMaxBits = make([]uint32, rows)
				for r := range j.GradRowMaxBits {
					j.GradRowMaxBits[r] = blas.MaxAbsBits(j.Grad[r*d : (r+1)*d])
				}
			}
			j.Dir = make([]float32, rows*d)
			j.Trace, j.Residual, j.Scale = make([]float64, rows), make([]float64, rows), make([]float64, rows)
			j.Breakdown = make([]bool, rows)
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
