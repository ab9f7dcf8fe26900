package main

import (
	"runtime"
	"sync"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/conv"
)

// parallelFor splits [0, n) into one contiguous range per core and runs
// body on each concurrently. The per-sample loops (im2col, layout changes,
// pooling) use it; the products parallelize inside blas.Gemm.
func parallelFor(n int, body func(lo, hi int)) {
	parts := min(runtime.GOMAXPROCS(0), n)
	if parts <= 1 {
		body(0, n)
		return
	}
	var wg sync.WaitGroup
	for p := 0; p < parts; p++ {
		lo, hi := p*n/parts, (p+1)*n/parts
		wg.Add(1)
		go func() {
			defer wg.Done()
			body(lo, hi)
		}()
	}
	wg.Wait()
}

// gemmSplitK computes C = A^T B (C is m x n, A is k x m with stride lda, B
// is k x n with stride ldb), splitting the long inner dimension k across
// the cores: a weight gradient sums over every (sample, location) pair but
// has few outputs, and blas.Gemm parallelizes over the outputs only.
// partial holds one m*n accumulator per extra core.
func gemmSplitK(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, partial [][]float32) {
	parts := min(len(partial)+1, max(1, k/256))
	if parts <= 1 {
		blas.Gemm(true, false, m, n, k, 1, a, lda, b, ldb, 0, c, n)
		return
	}
	var wg sync.WaitGroup
	for p := 0; p < parts; p++ {
		lo, hi := p*k/parts, (p+1)*k/parts
		dst := c
		if p > 0 {
			dst = partial[p-1]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			blas.Gemm(true, false, m, n, hi-lo, 1, a[lo*lda:], lda, b[lo*ldb:], ldb, 0, dst, n)
		}()
	}
	wg.Wait()
	for p := 1; p < parts; p++ {
		blas.Axpy(1, partial[p-1][:m*n], c[:m*n])
	}
}

// newPartials returns the per-core accumulators of gemmSplitK.
func newPartials(size int) [][]float32 {
	p := make([][]float32, runtime.GOMAXPROCS(0)-1)
	for i := range p {
		p[i] = make([]float32, size)
	}
	return p
}

// convLayer is a 2-D convolution with a bias, computed as one product of
// the im2col'd batch with the weight.
type convLayer struct {
	geom conv.Geometry
	// w is Cout x D (the library's row layout), b is Cout.
	w, b   []float32
	gw, gb []float32
}

// convBuffers is one batch's scratch of a convolution.
type convBuffers struct {
	cols    []float32 // B*L x D patches
	nhwc    []float32 // B*L x Cout: the product, and in backward dL/dy
	dcols   []float32 // B*L x D patch gradients
	partial [][]float32
}

func newConvBuffers(g conv.Geometry, batch int, needInputGrad bool) *convBuffers {
	n := batch * g.Locations()
	cb := &convBuffers{
		cols:    make([]float32, n*g.PatchLen()),
		nhwc:    make([]float32, n*g.OutChannels),
		partial: newPartials(g.OutChannels * g.PatchLen()),
	}
	if needInputGrad {
		cb.dcols = make([]float32, n*g.PatchLen())
	}
	return cb
}

// forward writes the pre-activation output (B x Cout x L, NCHW) of the
// batch in (B x Cin x H x W).
func (c *convLayer) forward(cb *convBuffers, in, out []float32, batch int) {
	g := c.geom
	locs, d, cout, imgLen := g.Locations(), g.PatchLen(), g.OutChannels, g.ImageLen()
	parallelFor(batch, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			g.Im2col(cb.cols[n*locs*d:], d, in[n*imgLen:], 0)
		}
	})
	blas.Gemm(false, true, batch*locs, cout, d, 1, cb.cols, d, c.w, d, 0, cb.nhwc, cout)
	parallelFor(batch, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			src, dst := cb.nhwc[n*locs*cout:(n+1)*locs*cout], out[n*cout*locs:(n+1)*cout*locs]
			for co := 0; co < cout; co++ {
				bias, plane := c.b[co], dst[co*locs:(co+1)*locs]
				for l := range plane {
					plane[l] = src[l*cout+co] + bias
				}
			}
		}
	})
}

// backward takes dL/dout (B x Cout x L) of the batch whose forward ran
// last, writes the weight and bias gradients, and, when din is not nil,
// the input gradient.
func (c *convLayer) backward(cb *convBuffers, dout, din []float32, batch int) {
	g := c.geom
	locs, d, cout, imgLen := g.Locations(), g.PatchLen(), g.OutChannels, g.ImageLen()
	parallelFor(batch, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			src, dst := dout[n*cout*locs:(n+1)*cout*locs], cb.nhwc[n*locs*cout:(n+1)*locs*cout]
			for co := 0; co < cout; co++ {
				plane := src[co*locs : (co+1)*locs]
				for l, v := range plane {
					dst[l*cout+co] = v
				}
			}
		}
	})
	gemmSplitK(cout, d, batch*locs, cb.nhwc, cout, cb.cols, d, c.gw, cb.partial)
	clear(c.gb)
	for co := 0; co < cout; co++ {
		var s float32
		for n := 0; n < batch; n++ {
			for _, v := range dout[(n*cout+co)*locs : (n*cout+co+1)*locs] {
				s += v
			}
		}
		c.gb[co] = s
	}
	if din == nil {
		return
	}
	blas.Gemm(false, false, batch*locs, d, cout, 1, cb.nhwc, cout, c.w, d, 0, cb.dcols, d)
	parallelFor(batch, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			img := din[n*imgLen : (n+1)*imgLen]
			clear(img)
			g.Col2im(img, cb.dcols[n*locs*d:], d, 0)
		}
	})
}

// denseLayer is y = x W^T + b with W out x in.
type denseLayer struct {
	in, out int
	w, b    []float32
	gw, gb  []float32
	partial [][]float32
}

func (l *denseLayer) forward(x, y []float32, batch int) {
	blas.Gemm(false, true, batch, l.out, l.in, 1, x, l.in, l.w, l.in, 0, y, l.out)
	for n := 0; n < batch; n++ {
		blas.Axpy(1, l.b, y[n*l.out:(n+1)*l.out])
	}
}

// backward writes the gradients of W and b and, when dx is not nil, of x.
func (l *denseLayer) backward(x, dy, dx []float32, batch int) {
	gemmSplitK(l.out, l.in, batch, dy, l.out, x, l.in, l.gw, l.partial)
	clear(l.gb)
	for n := 0; n < batch; n++ {
		blas.Axpy(1, dy[n*l.out:(n+1)*l.out], l.gb)
	}
	if dx != nil {
		blas.Gemm(false, false, batch, l.in, l.out, 1, dy, l.out, l.w, l.in, 0, dx, l.in)
	}
}

// reluInPlace applies max(0, v).
func reluInPlace(x []float32) {
	parallelFor(len(x), func(lo, hi int) {
		for i, v := range x[lo:hi] {
			if v < 0 {
				x[lo+i] = 0
			}
		}
	})
}

// reluBackward zeroes the gradient where the ReLU output y is not positive.
func reluBackward(dy, y []float32) {
	parallelFor(len(dy), func(lo, hi int) {
		for i, v := range y[lo:hi] {
			if v <= 0 {
				dy[lo+i] = 0
			}
		}
	})
}

// maxPool2 is 2x2 max pooling with stride 2 over planes of h x w (even),
// remembering which input won for the backward pass.
func maxPool2(in, out []float32, argmax []int32, planes, h, w int) {
	oh, ow := h/2, w/2
	parallelFor(planes, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			src := in[p*h*w : (p+1)*h*w]
			for y := 0; y < oh; y++ {
				for x := 0; x < ow; x++ {
					best := int32((2*y)*w + 2*x)
					for _, off := range [3]int32{1, int32(w), int32(w) + 1} {
						if i := int32((2*y)*w+2*x) + off; src[i] > src[best] {
							best = i
						}
					}
					o := p*oh*ow + y*ow + x
					out[o] = src[best]
					argmax[o] = best
				}
			}
		}
	})
}

// maxPool2Backward routes each output gradient to the input that won.
func maxPool2Backward(dout, din []float32, argmax []int32, planes, h, w int) {
	olen := (h / 2) * (w / 2)
	parallelFor(planes, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			dst := din[p*h*w : (p+1)*h*w]
			clear(dst)
			for o, g := range dout[p*olen : (p+1)*olen] {
				dst[argmax[p*olen+o]] += g
			}
		}
	})
}
