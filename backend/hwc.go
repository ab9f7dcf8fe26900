package backend

import (
	"runtime"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/conv"
	"github.com/frogopt/frog/internal/buf"
)

// channelLast gives the fused Fisher kernel the patches of a convolution
// without storing them: each sample's image is copied once a step into
// channel-last order, padded and scaled, and the kernel reads the patches
// there (blas.ImageRows), each a few runs of the image. Stored, the
// patches of l1.conv are 38 MB, written once a step and read from memory
// at every CG iteration; its images are 4.7 MB.
//
// The patch coordinates are then in the order (i, j, c) (conv.HWCOrder),
// so the engine solves for rows permuted into that order and permutes the
// directions back: the same operator, its coordinates renamed.
type channelLast struct {
	geom    conv.Geometry
	group   int
	samples int
	acts    []float32
	kernels blas.Kernels
	scale   float32
	// images holds each sample's channel-last padded image, scaled.
	images []float32
	// norms[s*L+l] is the squared norm of the unscaled patch (s, l).
	norms []float64
	// pix[part] holds the squared norms of one image's pixels.
	pix *[maxParts][]float64
}

// imageRows describes the patches of g (one group, no joint bias) as
// windows of the channel-last images: KernelH runs of KernelW*channels
// values.
func imageRows(g conv.Geometry, images []float32) blas.ImageRows {
	cg, pw := g.GroupInChannels(), g.InW+2*g.PadW
	return blas.ImageRows{
		Data: images, Width: g.OutW(), Height: g.OutH(), ImageLen: g.HWCLen(),
		RowStride: g.StrideH * pw * cg, ColStride: g.StrideW * cg,
		Segs: g.KernelH, SegLen: g.KernelW * cg, SegStride: g.DilationH * pw * cg,
	}
}

// canUseImages reports whether the engine can give a group's patches to
// the products as windows of channel-last images: dilation 1 along the
// width (each kernel row one run), no joint bias (its constant is no
// value of the image), and kernels whose fused product reads such rows.
func canUseImages(g conv.Geometry, k blas.Kernels, rows, d int, jointBias bool) bool {
	if jointBias || g.DilationW != 1 {
		return false
	}
	m := imageRows(g, nil)
	return blas.ReadsImage(k, rows, d, &m)
}

// prefersImages reports whether reading the patches in the images pays:
// when a sample's patches hold more values than its image, and an image
// has at least 128 output locations (the products sum over the points of
// one image at a time in runs of whole output rows, and shorter runs cost
// more than the traffic they save). Measured here against stored patches,
// interleaved in one process: l1.conv 8.5 % and l2.conv 13 % less time;
// l2.conv_s2 (stride 2: patches twice the image) 6 % less, since the
// image products sum each element in one chain and run in strips (it was
// 4-19 % more before); l3.conv (64 locations) 1-2 % more, l4.conv (16)
// 56 % more.
func prefersImages(g conv.Geometry, d int) bool {
	return g.Locations()*d > g.HWCLen() && g.Locations() >= 128
}

// RunPart writes a part's range of samples: the channel-last image, the
// squared norms of its patches, then the image scaled.
func (h *channelLast) RunPart(part, parts int) {
	g := h.geom
	hl, L, cg := g.HWCLen(), g.Locations(), g.GroupInChannels()
	pw, ow := g.InW+2*g.PadW, g.OutW()
	pix := buf.Grow(h.pix[part], hl/cg)
	h.pix[part] = pix
	for s := h.samples * part / parts; s < h.samples*(part+1)/parts; s++ {
		img := h.images[s*hl : (s+1)*hl]
		g.PadImageHWC(img, h.acts[s*g.ImageLen():], h.group)
		for p := range pix {
			v := img[p*cg : (p+1)*cg]
			pix[p] = h.kernels.Dot(v, v)
		}
		for l := 0; l < L; l++ {
			oy, ox := l/ow, l%ow
			var t float64
			for i := 0; i < g.KernelH; i++ {
				line := pix[(oy*g.StrideH+i*g.DilationH)*pw+ox*g.StrideW:]
				for j := 0; j < g.KernelW; j++ {
					t += line[j*g.DilationW]
				}
			}
			h.norms[s*L+l] = t
		}
		if h.scale != 1 {
			blas.ScaleTo(h.scale, img, img)
		}
	}
}

// permuteRows copies rows of d values from src into dst, permuted:
// dst[k] = src[perm[k]], or back, dst[perm[k]] = src[k]. Rows are split
// across the cores.
type permuteRows struct {
	src, dst []float32
	perm     []int
	d        int
	back     bool
}

func (t *permuteRows) RunPart(part, parts int) {
	rows := len(t.src) / t.d
	for j := rows * part / parts; j < rows*(part+1)/parts; j++ {
		src, dst := t.src[j*t.d:(j+1)*t.d], t.dst[j*t.d:(j+1)*t.d]
		if t.back {
			for k, p := range t.perm {
				dst[p] = src[k]
			}
			continue
		}
		for k, p := range t.perm {
			dst[k] = src[p]
		}
	}
}

// run runs t on the cores.
func (t *permuteRows) run() {
	blas.Parallel(t, min(runtime.GOMAXPROCS(0), max(1, len(t.src)>>15)))
}

// sameSizeWindows reports whether g's patches are windows of stride and
// dilation 1 centred on each pixel, the output the size of the input
// (blas.PixelWindows).
func sameSizeWindows(g conv.Geometry) bool {
	return g.StrideH == 1 && g.StrideW == 1 && g.DilationH == 1 && g.DilationW == 1 &&
		g.KernelH%2 == 1 && g.KernelW%2 == 1 && g.PadH == g.KernelH/2 && g.PadW == g.KernelW/2
}

// windowPixels writes a part's range of samples of group's channels of
// acts channel-last, unpadded, times scale (the patches' power-of-two
// scale, exact): the pixels of blas.PixelWindows.
type windowPixels struct {
	geom           conv.Geometry
	group, samples int
	acts           []float32
	pixels         []float32
	scale          float32
}

func (t *windowPixels) RunPart(part, parts int) {
	g := t.geom
	g.PadH, g.PadW = 0, 0
	hl := g.HWCLen()
	for s := t.samples * part / parts; s < t.samples*(part+1)/parts; s++ {
		img := t.pixels[s*hl : (s+1)*hl]
		g.PadImageHWC(img, t.acts[s*g.ImageLen():], t.group)
		if t.scale != 1 {
			blas.ScaleTo(t.scale, img, img)
		}
	}
}
