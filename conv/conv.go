package conv

import (
	"errors"
	"fmt"

	"github.com/frogopt/frog/asm"
)

// Geometry describes a 2-D convolution: the input it reads and the kernel
// that slides over it. Zero strides and dilations mean 1, zero groups 1.
type Geometry struct {
	InChannels, OutChannels int
	InH, InW                int
	KernelH, KernelW        int
	StrideH, StrideW        int
	PadH, PadW              int
	DilationH, DilationW    int
	Groups                  int
}

// Normalized returns g with zero strides, dilations and groups replaced by 1.
func (g Geometry) Normalized() Geometry {
	one := func(v *int) {
		if *v == 0 {
			*v = 1
		}
	}
	one(&g.StrideH)
	one(&g.StrideW)
	one(&g.DilationH)
	one(&g.DilationW)
	one(&g.Groups)
	return g
}

// Validate reports the first inconsistency in a normalized geometry.
func (g Geometry) Validate() error {
	switch {
	case g.InChannels <= 0 || g.OutChannels <= 0:
		return fmt.Errorf("channels must be positive (in %d, out %d)", g.InChannels, g.OutChannels)
	case g.InH <= 0 || g.InW <= 0:
		return fmt.Errorf("input size must be positive (%dx%d)", g.InH, g.InW)
	case g.KernelH <= 0 || g.KernelW <= 0:
		return fmt.Errorf("kernel size must be positive (%dx%d)", g.KernelH, g.KernelW)
	case g.StrideH <= 0 || g.StrideW <= 0:
		return fmt.Errorf("stride must be positive (%dx%d)", g.StrideH, g.StrideW)
	case g.DilationH <= 0 || g.DilationW <= 0:
		return fmt.Errorf("dilation must be positive (%dx%d)", g.DilationH, g.DilationW)
	case g.PadH < 0 || g.PadW < 0:
		return fmt.Errorf("padding must not be negative (%dx%d)", g.PadH, g.PadW)
	case g.Groups <= 0:
		return fmt.Errorf("groups must be positive (%d)", g.Groups)
	case g.InChannels%g.Groups != 0 || g.OutChannels%g.Groups != 0:
		return fmt.Errorf("groups %d must divide in channels %d and out channels %d", g.Groups, g.InChannels, g.OutChannels)
	}
	if g.OutH() <= 0 || g.OutW() <= 0 {
		return errors.New("kernel (dilated) is larger than the padded input")
	}
	return nil
}

// OutH is the output height.
func (g Geometry) OutH() int {
	return (g.InH+2*g.PadH-g.DilationH*(g.KernelH-1)-1)/g.StrideH + 1
}

// OutW is the output width.
func (g Geometry) OutW() int {
	return (g.InW+2*g.PadW-g.DilationW*(g.KernelW-1)-1)/g.StrideW + 1
}

// Locations is the number of output locations per sample, OutH*OutW.
func (g Geometry) Locations() int { return g.OutH() * g.OutW() }

// GroupInChannels is the number of input channels a group reads.
func (g Geometry) GroupInChannels() int { return g.InChannels / g.Groups }

// GroupOutChannels is the number of output channels (weight rows) of a group.
func (g Geometry) GroupOutChannels() int { return g.OutChannels / g.Groups }

// PatchLen is the length of one patch of a group, Cin/groups*kh*kw: the
// row length D of the weight.
func (g Geometry) PatchLen() int { return g.GroupInChannels() * g.KernelH * g.KernelW }

// ImageLen is the number of values in one input sample, Cin*H*W.
func (g Geometry) ImageLen() int { return g.InChannels * g.InH * g.InW }

// OutputLen is the number of values in one output sample, Cout*OutH*OutW.
func (g Geometry) OutputLen() int { return g.OutChannels * g.Locations() }

// Im2col unfolds the channels of group of one image (img holds Cin*H*W
// values) into Locations() patch rows of dst, row l at dst[l*ld:], each of
// PatchLen() values ordered (c, i, j). When ld > PatchLen() the remaining
// column(s) of each row are left as they are (the caller may keep a
// constant 1 there for a bias).
func (g Geometry) Im2col(dst []float32, ld int, img []float32, group int) {
	g.Im2colRange(dst, ld, img, group, 0, g.Locations())
}

// Im2colRange is Im2col for the locations l0 <= l < l1 only, row l at
// dst[(l-l0)*ld:]: a caller can unfold an image a few rows at a time and
// use each piece while it is in cache.
func (g Geometry) Im2colRange(dst []float32, ld int, img []float32, group, l0, l1 int) {
	ow := g.OutW()
	kh, kw := g.KernelH, g.KernelW
	cg := g.GroupInChannels()
	c0 := group * cg
	hw := g.InH * g.InW
	d := g.PatchLen()
	spanH, spanW := (kh-1)*g.DilationH, (kw-1)*g.DilationW
	for l := l0; l < l1; l++ {
		oy, ox := l/ow, l%ow
		y0 := oy*g.StrideH - g.PadH
		yInside := y0 >= 0 && y0+spanH < g.InH
		x0 := ox*g.StrideW - g.PadW
		row := dst[(l-l0)*ld:][:d]
		if yInside && x0 >= 0 && x0+spanW < g.InW {
			// The whole window lies inside the image: no test per
			// element, and each kernel row is a run of the input line.
			g.interiorPatch(row, img[c0*hw+y0*g.InW+x0:], cg, hw)
			continue
		}
		k := 0
		for c := 0; c < cg; c++ {
			plane := img[(c0+c)*hw : (c0+c+1)*hw]
			for i := 0; i < kh; i++ {
				y := y0 + i*g.DilationH
				if y < 0 || y >= g.InH {
					clear(row[k : k+kw])
					k += kw
					continue
				}
				line := plane[y*g.InW : (y+1)*g.InW]
				for j := 0; j < kw; j++ {
					x := x0 + j*g.DilationW
					if x < 0 || x >= g.InW {
						row[k] = 0
					} else {
						row[k] = line[x]
					}
					k++
				}
			}
		}
	}
}

// interiorPatch writes the patch whose window starts at src[0] (the
// top-left input value of the group's first channel) and lies wholly
// inside the image; channel planes are hw apart.
func (g Geometry) interiorPatch(row, src []float32, cg, hw int) {
	kh, kw := g.KernelH, g.KernelW
	dh, dw := g.DilationH*g.InW, g.DilationW
	switch {
	case kw == 3 && kh == 3 && dw == 1:
		// The common 3x3 window: nine values a channel, three runs of
		// three, in assembly where available.
		asm.Patch3x3(row[:9*cg], src, cg, hw, dh)
	case kw == 3 && dw == 1:
		k := 0
		for c := 0; c < cg; c++ {
			plane := src[c*hw:]
			for i := 0; i < kh; i++ {
				s := plane[i*dh : i*dh+3]
				r := row[k : k+3]
				r[0], r[1], r[2] = s[0], s[1], s[2]
				k += 3
			}
		}
	case kw == 1 && kh == 1:
		for c := range row {
			row[c] = src[c*hw]
		}
	default:
		k := 0
		for c := 0; c < cg; c++ {
			plane := src[c*hw:]
			for i := 0; i < kh; i++ {
				line := plane[i*dh:]
				for j := 0; j < kw; j++ {
					row[k] = line[j*dw]
					k++
				}
			}
		}
	}
}

// Padded is the geometry of one group's input channels with the padding
// written out (see PadImage): no padding, the image larger by it on each
// side, one group. Its patches, at the same locations, are g's.
func (g Geometry) Padded() Geometry {
	p := g
	p.InChannels, p.OutChannels = g.GroupInChannels(), g.GroupOutChannels()
	p.InH, p.InW = g.InH+2*g.PadH, g.InW+2*g.PadW
	p.PadH, p.PadW, p.Groups = 0, 0, 1
	return p
}

// PadImage writes group's input channels of img into dst with the
// padding as zeros around each plane: dst holds Padded().ImageLen()
// values. The patches of a padded image all lie inside it, so unfolding
// them takes no bounds tests.
func (g Geometry) PadImage(dst, img []float32, group int) {
	cg, h, w := g.GroupInChannels(), g.InH, g.InW
	pw := w + 2*g.PadW
	top, bottom := g.PadH*pw, (h+g.PadH)*pw
	plane := (h + 2*g.PadH) * pw
	dst = dst[:cg*plane]
	for c := 0; c < cg; c++ {
		src := img[(group*cg+c)*h*w:][:h*w]
		out := dst[c*plane : (c+1)*plane : (c+1)*plane]
		clear(out[:top+g.PadW])
		for y := 0; y < h; y++ {
			row := out[top+y*pw+g.PadW:]
			copy(row[:w], src[y*w:(y+1)*w])
			if y+1 < h {
				// The right padding of this line and the left of the next.
				clear(row[w : w+2*g.PadW])
			}
		}
		// The right padding of the last line, and the rows below.
		clear(out[bottom-g.PadW:])
	}
}

// SquaredNorms writes |row|^2 of each of the n rows of x (row length d,
// stride ld) into norms, accumulated in float64 so that the squares of
// large or tiny entries neither overflow nor vanish.
func SquaredNorms(norms []float64, x []float32, n, d, ld int) {
	for i := 0; i < n; i++ {
		var s float64
		for _, v := range x[i*ld : i*ld+d] {
			s += float64(v) * float64(v)
		}
		norms[i] = s
	}
}
