package blas

import (
	"github.com/frogopt/frog/asm"
	"github.com/frogopt/frog/internal/buf"
)

// PixelWindows describes the points of a Fisher product as the windows of
// images that a convolution of stride and dilation 1 reads, its output
// the size of its input: point (s, y, x) holds, for every channel and
// kernel tap (i, j), the value of pixel (y+i-KernelH/2, x+j-KernelW/2) of
// image s, 0 outside the image (KernelH and KernelW odd). Pixels holds
// the pixels' values channel-last, in the same scale as the points:
// pixel (s, y, x) is row (s*Height+y)*Width+x, Channels values.
//
// The points' Gram matrix is then a sum of the pixels' one: X_n.X_n' is
// the sum over the taps t that lie inside the image for both points of
// H_a.H_a' for the pixels a and a' that t reads, and with the output the
// size of the image, a' = n' + d_t for a shift d_t of the tap alone.
// Forming the pixels' Gram matrix takes Channels of the Len =
// Channels*KernelH*KernelW coordinates, a ninth of the products for a
// 3 x 3 kernel, and the sums a few additions per element.
type PixelWindows struct {
	Pixels                           []float32
	Samples, Height, Width, Channels int
	KernelH, KernelW                 int
}

// fits reports whether w describes the n points of d coordinates.
func (w *PixelWindows) fits(n, d int) bool {
	return w.KernelH%2 == 1 && w.KernelW%2 == 1 && w.Samples > 0 &&
		n == w.Samples*w.Height*w.Width && d == w.Channels*w.KernelH*w.KernelW &&
		len(w.Pixels) >= n*w.Channels
}

// pixelGram is the workspace of the Gram matrix from pixels: the pixels'
// Gram matrix, its rows apart by PointsStride with margin zeros before the
// first and after the last, so that a row read shifted by a tap's d_t
// stays inside it; and per tap the mask of the points whose window has
// that tap inside the image.
type pixelGram struct {
	gram   []float32
	margin int
	masks  []float32
	task   pixelSums
}

// formPixelGram writes the Gram matrix of f's points into f.gram from
// the pixels of f.Windows: the pixels' Gram matrix by the product that
// formGram runs on X, then for every point the sums of its taps' rows of
// it, masked and shifted, over the columns of the upper product; the
// rest copied from the mirror image. Each element is the sum over the
// taps, in their order, of the terms whose tap lies inside both windows
// (the others add a zero): X_n.X_n' and X_n'.X_n add the same terms in
// the same order, so the copy has the bits the sum would have given.
func (f *FisherProduct) formPixelGram(k Kernels) {
	w := f.Windows
	n, ld := f.Points, PointsStride(f.Points)
	pg := &f.pixels
	pg.margin = ((w.KernelH/2)*w.Width + w.KernelW/2 + 15) &^ 15
	pg.gram = buf.Grow(pg.gram, 2*pg.margin+n*ld)
	clear(pg.gram[:pg.margin])
	clear(pg.gram[pg.margin+n*ld:])
	f.gramOf(k, w.Pixels, n, w.Channels, nil, pg.gram[pg.margin:], ld)
	taps := w.KernelH * w.KernelW
	pg.masks = buf.Grow(pg.masks, taps*n)
	for t := 0; t < taps; t++ {
		i, j := t/w.KernelW-w.KernelH/2, t%w.KernelW-w.KernelW/2
		m := pg.masks[t*n : (t+1)*n]
		for p := range m {
			y, x := p/w.Width%w.Height+i, p%w.Width+j
			m[p] = 0
			if y >= 0 && y < w.Height && x >= 0 && x < w.Width {
				m[p] = 1
			}
		}
	}
	pg.task = pixelSums{f: f, ld: ld}
	Parallel(&pg.task, (n+mirrorTile-1)/mirrorTile)
	pg.task = pixelSums{}
	f.mirrorUpper(f.gram, n, ld)
}

// pixelSums writes the rows of the points' Gram matrix from the pixels'
// one, from each row's upperFrom on: a part's blocks of mirrorTile rows,
// block b to part b % parts (the rows shorten down the matrix).
type pixelSums struct {
	f  *FisherProduct
	ld int
}

func (t *pixelSums) RunPart(part, parts int) {
	f, ld := t.f, t.ld
	w, pg := f.Windows, &f.pixels
	n := f.Points
	for ib := part * mirrorTile; ib < n; ib += parts * mirrorTile {
		for p := ib; p < min(ib+mirrorTile, n); p++ {
			c0 := upperFrom(p)
			row := f.gram[p*ld+c0 : p*ld+n]
			clear(row)
			for tap := 0; tap < w.KernelH*w.KernelW; tap++ {
				if pg.masks[tap*n+p] == 0 {
					continue
				}
				// Pixel a = p + shift of the tap, and for column q the
				// pixel q + shift, row a of the pixels' Gram matrix
				// read shifted by the same amount.
				shift := (tap/w.KernelW-w.KernelH/2)*w.Width + tap%w.KernelW - w.KernelW/2
				src := pg.gram[pg.margin+(p+shift)*ld+shift+c0:][:n-c0]
				mulAdd(pg.masks[tap*n+c0:tap*n+n], src, row)
			}
		}
	}
}

// mulAdd computes y[i] += m[i]*x[i], exactly for a mask m of zeros and
// ones.
func mulAdd(m, x, y []float32) {
	if hasAVX2 {
		asm.MulAdd(m, x, y)
		return
	}
	y = y[:len(x)]
	for i, v := range x {
		y[i] += m[i] * v
	}
}
