package conv

// Col2im is the adjoint of Im2col: it adds every value of the Locations()
// patch rows of cols (row l at cols[l*ld:], PatchLen() values ordered
// (c, i, j)) onto the input pixel of group's channels of img that Im2col
// read it from. Values that Im2col took from padding are dropped. A
// convolution's backward pass uses it to turn the patch gradients into the
// input gradient; img is accumulated into, so the caller clears it first
// when it wants the gradient of this convolution alone.
func (g Geometry) Col2im(img []float32, cols []float32, ld int, group int) {
	oh, ow := g.OutH(), g.OutW()
	kh, kw := g.KernelH, g.KernelW
	cg := g.GroupInChannels()
	c0 := group * cg
	hw := g.InH * g.InW
	for oy := 0; oy < oh; oy++ {
		for ox := 0; ox < ow; ox++ {
			row := cols[(oy*ow+ox)*ld:]
			k := 0
			for c := 0; c < cg; c++ {
				plane := img[(c0+c)*hw : (c0+c+1)*hw]
				for i := 0; i < kh; i++ {
					y := oy*g.StrideH - g.PadH + i*g.DilationH
					if y < 0 || y >= g.InH {
						k += kw
						continue
					}
					line := plane[y*g.InW : (y+1)*g.InW]
					for j := 0; j < kw; j++ {
						x := ox*g.StrideW - g.PadW + j*g.DilationW
						if x >= 0 && x < g.InW {
							line[x] += row[k]
						}
						k++
					}
				}
			}
		}
	}
}
