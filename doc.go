// Package frog implements FROG (Fisher ROw-wise preconditioninG), a
// second-order optimizer that preconditions every output row of a layer
// with its own empirical-Fisher block, solved by a few conjugate-gradient
// iterations for all rows at once, and normalizes each row's step so that
// it does not depend on the scale of the gradient. It also implements the
// legacy Kronecker variant K-FROG.
//
// The package works on plain []float32 slices with explicit shapes, so any
// Go training code can drive it:
//
//   - PreconditionRows is the stateless row-wise solve for one layer.
//   - Optimizer (New) keeps per-layer state (momentum, random subsampling,
//     the damping schedule) and updates the caller's weights in place.
//   - KFROG (NewKFROG) is the legacy optimizer with the same kind of API.
//
// Tensors are row-major in PyTorch layout: linear weights [out][in],
// convolution weights [Cout][Cin/groups][kh][kw], activations and output
// gradients NCHW. The math follows the specification FROG.md of this
// project; the reference vectors recorded from the original implementation
// are checked by the tests.
package frog
