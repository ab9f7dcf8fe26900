// Package conv holds the convolution geometry FROG needs: output sizes,
// the unfolding of input images into patch rows (im2col) for a subsample
// of a batch, one channel group at a time, and the squared norms of those
// patches that the Fisher trace is built from.
//
// Images are NCHW, row-major, as in PyTorch. A patch is ordered (c, i, j),
// matching the weight layout [Cout][Cin/groups][kh][kw], so that a weight
// row and a patch row have the same coordinates. Padding contributes zeros.
// A linear layer is the 1x1 convolution of 1x1 images.
package conv
