package conv

import "github.com/frogopt/frog/asm"

// Channel-last images. A patch in the order (i, j, c), kernel row, kernel
// column, channel, is KernelH runs of KernelW*channels consecutive values
// of the channel-last (y, x, c) padded image when the dilation along the
// width is 1: the products can read the patches there instead of stored
// rows. HWCOrder maps this order to the usual (c, i, j).

// HWCLen is the length of one sample's channel-last padded image of one
// group (PadImageHWC): (InH+2*PadH) x (InW+2*PadW) x GroupInChannels.
func (g Geometry) HWCLen() int {
	return (g.InH + 2*g.PadH) * (g.InW + 2*g.PadW) * g.GroupInChannels()
}

// PadImageHWC writes group's channels of the NCHW image img into dst
// channel-last, (y, x, c), with the padding as zeros. dst holds HWCLen
// values.
func (g Geometry) PadImageHWC(dst, img []float32, group int) {
	cg, h, w := g.GroupInChannels(), g.InH, g.InW
	pw := w + 2*g.PadW
	hw := h * w
	dst = dst[:g.HWCLen()]
	clear(dst[:g.PadH*pw*cg])
	clear(dst[(h+g.PadH)*pw*cg:])
	for y := 0; y < h; y++ {
		line := dst[(y+g.PadH)*pw*cg : (y+g.PadH+1)*pw*cg]
		clear(line[:g.PadW*cg])
		clear(line[(w+g.PadW)*cg:])
	}
	// Sixteen channels at a time, each of their planes read through in
	// order (sixteen streams, not all the channels' at each row: about
	// 0.5-0.9 % less time on l1.conv, l2.conv_s2 and l2.conv), transposed
	// eight pixels by eight in registers straight into the lines (the last
	// pixels of a row one by one).
	c0 := 0
	for ; c0+16 <= cg; c0 += 16 {
		for y := 0; y < h; y++ {
			line := dst[(y+g.PadH)*pw*cg : (y+g.PadH+1)*pw*cg]
			src := img[(group*cg+c0)*hw+y*w:]
			asm.TransposePanel(w, src, hw, line[g.PadW*cg+c0:], cg)
			for x := w &^ 7; x < w; x++ {
				out := line[(x+g.PadW)*cg+c0:][:16]
				for j := range out {
					out[j] = src[j*hw+x]
				}
			}
		}
	}
	for y := 0; y < h; y++ {
		line := dst[(y+g.PadH)*pw*cg : (y+g.PadH+1)*pw*cg]
		for c := c0; c < cg; c++ {
			for x, v := range img[(group*cg+c)*hw+y*w:][:w] {
				line[(x+g.PadW)*cg+c] = v
			}
		}
	}
}

// HWCOrder writes into perm, for each coordinate k of a patch in the
// channel-last order (i, j, c), its coordinate in the order (c, i, j) of
// Im2col: perm[(i*KernelW+j)*cg+c] = (c*KernelH+i)*KernelW+j.
func (g Geometry) HWCOrder(perm []int) {
	cg, kh, kw := g.GroupInChannels(), g.KernelH, g.KernelW
	for i := 0; i < kh; i++ {
		for j := 0; j < kw; j++ {
			for c := 0; c < cg; c++ {
				perm[(i*kw+j)*cg+c] = (c*kh+i)*kw + j
			}
		}
	}
}
