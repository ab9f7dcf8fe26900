// Package resnet lists the distinct convolutions of the CIFAR-10 ResNet-18
// (batch 512) that the benchmarks measure, and builds deterministic
// PreconditionRows inputs for them.
package resnet

import (
	"math/rand/v2"

	"github.com/frogopt/frog"
)

// Conv is one distinct convolution shape and how often it occurs.
type Conv struct {
	Name                  string
	In, Out, Kernel       int
	Stride, InHW, Padding int
	Count                 int
}

// Convs is the table of ../shared/GUIDE.md: 20 convolutions in all.
var Convs = []Conv{
	{"stem", 3, 64, 3, 1, 32, 1, 1},
	{"l1.conv", 64, 64, 3, 1, 32, 1, 4},
	{"l2.conv_s2", 64, 128, 3, 2, 32, 1, 1},
	{"l2.sc", 64, 128, 1, 2, 32, 0, 1},
	{"l2.conv", 128, 128, 3, 1, 16, 1, 3},
	{"l3.conv_s2", 128, 256, 3, 2, 16, 1, 1},
	{"l3.sc", 128, 256, 1, 2, 16, 0, 1},
	{"l3.conv", 256, 256, 3, 1, 8, 1, 3},
	{"l4.conv_s2", 256, 512, 3, 2, 8, 1, 1},
	{"l4.sc", 256, 512, 1, 2, 8, 0, 1},
	{"l4.conv", 512, 512, 3, 1, 4, 1, 3},
}

// BatchSize is the batch the loss was averaged over.
const BatchSize = 512

// Layer returns the frog layer description.
func (c Conv) Layer() frog.Layer {
	return frog.Layer{
		Name: c.Name, InChannels: c.In, OutChannels: c.Out,
		InH: c.InHW, InW: c.InHW,
		Kernel:  [2]int{c.Kernel, c.Kernel},
		Stride:  [2]int{c.Stride, c.Stride},
		Padding: [2]int{c.Padding, c.Padding},
	}
}

// Points is N = r*OutH*OutW, the number of patches at r samples.
func (c Conv) Points(r int) int { return r * c.Layer().Geometry().Locations() }

// RowLen is D = In*k*k.
func (c Conv) RowLen() int { return c.Layer().RowLen() }

// Flops is the nominal cost of one preconditioning, iters * 4*N*D*R: two
// products with the patches at every CG iteration, as the reference runs
// them.
func (c Conv) Flops(r, iters int) float64 {
	return float64(iters) * 4 * float64(c.Points(r)) * float64(c.RowLen()) * float64(c.Out)
}

// WorkFlops is what the products of a solve on the patches run: 4*N*D*R
// an iteration but the last, which needs only the first product (2*N*D*R,
// see cg.Curvature).
func (c Conv) WorkFlops(r, iters int) float64 {
	if iters < 1 {
		return 0
	}
	return c.Flops(r, iters) - 2*float64(c.Points(r))*float64(c.RowLen())*float64(c.Out)
}

// Input builds a deterministic input with r samples and iters CG
// iterations at the reference damping, and the direction buffer.
func (c Conv) Input(r, iters int) (frog.RowsInput, []float32) {
	rng := rand.New(rand.NewPCG(uint64(c.In), uint64(c.Out)))
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
		return s
	}
	l := c.Layer()
	in := frog.RowsInput{
		Layer:     l,
		Grad:      fill(l.WeightLen()),
		Acts:      fill(r * l.ActLen()),
		OutGrads:  fill(r * l.OutGradLen()),
		Samples:   r,
		BatchSize: BatchSize,
		Reduction: frog.Mean,
		Damping:   1e-6,
		Iters:     iters,
		DenomEps:  1e-10,
	}
	return in, make([]float32, l.WeightLen())
}
