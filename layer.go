package frog

import (
	"fmt"

	"github.com/frogopt/frog/conv"
)

// BiasMode says whether a layer has a bias and how it is updated.
type BiasMode int

const (
	// NoBias: the layer has no bias.
	NoBias BiasMode = iota
	// PlainBias: the bias takes momentum SGD at lr*LROtherRatio with
	// coupled L2, as in the original implementation (FROG.md item 8).
	PlainBias
	// JointBias: the bias is preconditioned with its row, as the last
	// coordinate of an augmented patch with a constant 1.
	JointBias
)

// String names the mode: "none", "plain" or "joint".
func (m BiasMode) String() string {
	switch m {
	case NoBias:
		return "none"
	case PlainBias:
		return "plain"
	case JointBias:
		return "joint"
	}
	return fmt.Sprintf("BiasMode(%d)", int(m))
}

// Layer describes a preconditioned layer: a 2-D convolution, or a linear
// layer as the 1x1 convolution of 1x1 inputs (see Linear).
//
// Zero values of Kernel, Stride and Dilation mean 1, zero InH and InW mean
// 1, and zero Groups means 1, so a Layer literal needs only what differs
// from a 1x1 convolution.
type Layer struct {
	// Name identifies the layer in errors, statistics and checkpoints.
	Name string
	// InChannels and OutChannels: the input features and the weight rows.
	InChannels, OutChannels int
	// InH and InW are the spatial size of the input.
	InH, InW int
	// Kernel, Stride, Padding and Dilation are [height, width].
	Kernel, Stride, Padding, Dilation [2]int
	// Groups splits the channels into independent groups; Groups ==
	// InChannels == OutChannels is a depthwise convolution.
	Groups int
	// Bias is how the bias, if any, is updated.
	Bias BiasMode
}

// Linear returns the layer description of a dense layer with in inputs and
// out outputs: weight [out][in], activations [B][in], output gradients [B][out].
func Linear(name string, in, out int, bias BiasMode) Layer {
	return Layer{Name: name, InChannels: in, OutChannels: out, Bias: bias}
}

// Geometry returns the layer's convolution geometry with defaults filled in.
func (l Layer) Geometry() conv.Geometry {
	def := func(v int) int {
		if v == 0 {
			return 1
		}
		return v
	}
	return conv.Geometry{
		InChannels: l.InChannels, OutChannels: l.OutChannels,
		InH: def(l.InH), InW: def(l.InW),
		KernelH: def(l.Kernel[0]), KernelW: def(l.Kernel[1]),
		StrideH: def(l.Stride[0]), StrideW: def(l.Stride[1]),
		PadH: l.Padding[0], PadW: l.Padding[1],
		DilationH: def(l.Dilation[0]), DilationW: def(l.Dilation[1]),
		Groups: def(l.Groups),
	}
}

// Validate reports what is wrong with the description, naming the layer.
func (l Layer) Validate() error {
	if err := l.Geometry().Validate(); err != nil {
		return l.errorf("%w", err)
	}
	if l.Bias < NoBias || l.Bias > JointBias {
		return l.errorf("unknown bias mode %d", int(l.Bias))
	}
	// Bound the sizes so that no length computed from them overflows an
	// int (the products are formed in float64 here, where they cannot).
	g := l.Geometry()
	for _, v := range []int{g.InChannels, g.OutChannels, g.InH, g.InW, g.KernelH, g.KernelW,
		g.StrideH, g.StrideW, g.PadH, g.PadW, g.DilationH, g.DilationW, g.Groups} {
		if v > maxDim {
			return l.errorf("a size of %d is larger than the %d this library accepts", v, maxDim)
		}
	}
	f := func(v int) float64 { return float64(v) }
	for _, s := range []struct {
		what string
		n    float64
	}{
		{"activations per sample", f(g.InChannels) * f(g.InH) * f(g.InW)},
		{"output gradients per sample", f(g.OutChannels) * f(g.OutH()) * f(g.OutW())},
		{"weights", f(g.OutChannels) * (f(g.GroupInChannels())*f(g.KernelH)*f(g.KernelW) + 1)},
	} {
		if s.n > maxLen {
			return l.errorf("%s: %.0f values is more than the %d this library accepts", s.what, s.n, maxLen)
		}
	}
	return nil
}

// maxDim bounds every size of a layer and maxLen every length derived
// from them, so that lengths never overflow an int.
const (
	maxDim = 1 << 24
	maxLen = 1 << 40
)

// mulLen is a*b for non-negative lengths, or -1 when the product would
// not fit the bound maxLen*maxDim (no real slice is that long).
func mulLen(a, b int) int {
	if a < 0 || b < 0 || float64(a)*float64(b) > float64(maxLen)*float64(maxDim) {
		return -1
	}
	return a * b
}

// Rows is R, the number of weight rows (output channels).
func (l Layer) Rows() int { return l.OutChannels }

// RowLen is D, the length of a weight row: Cin/groups*kh*kw.
func (l Layer) RowLen() int { return l.Geometry().PatchLen() }

// WeightLen is the number of weights, Rows()*RowLen().
func (l Layer) WeightLen() int { return l.Rows() * l.RowLen() }

// ActLen is the number of activations per sample, Cin*H*W.
func (l Layer) ActLen() int { return l.Geometry().ImageLen() }

// OutGradLen is the number of output gradients per sample, Cout*OutH*OutW.
func (l Layer) OutGradLen() int { return l.Geometry().OutputLen() }

// SolveLen is the row length of the preconditioned system: RowLen(), plus
// one for a joint bias.
func (l Layer) SolveLen() int {
	if l.Bias == JointBias {
		return l.RowLen() + 1
	}
	return l.RowLen()
}

func (l Layer) errorf(format string, args ...any) error {
	return &LayerError{Layer: l.Name, Err: fmt.Errorf(format, args...)}
}

// LayerError is the error returned for a problem with one layer's input or
// state. Nothing was changed when it is returned.
type LayerError struct {
	Layer string
	Err   error
}

// Error formats the layer name and the problem.
func (e *LayerError) Error() string { return fmt.Sprintf("frog: layer %q: %v", e.Layer, e.Err) }

// Unwrap returns the underlying error.
func (e *LayerError) Unwrap() error { return e.Err }
