package main

import (
	"runtime"

	"github.com/frogopt/frog"
	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/conv"
)

// The per-sample loops (im2col, layout changes, pooling) run on the
// library's helper goroutines through blas.Parallel; the products
// parallelize inside blas.Gemm. Each loop is a task value kept in a
// long-lived struct, so a step starts no goroutine and allocates nothing.
// Every part of these loops writes only its own samples or elements, so
// the results do not depend on how many parts run.

// span is part `part` of `parts` contiguous ranges of [0, n).
func span(n, part, parts int) (lo, hi int) {
	return part * n / parts, (part + 1) * n / parts
}

// splitK computes weight gradients C = A^T B (C is m x n, A is k x m with
// stride lda, B is k x n with stride ldb), splitting the long inner
// dimension k into chunks: a weight gradient sums over every (sample,
// location) pair but has few outputs, and blas.Gemm parallelizes over the
// outputs only. The number of chunks follows k and the number of partial
// accumulators alone, and the chunks are added up in a fixed order, so the
// bits do not depend on how many helpers are free.
type splitK struct {
	// partial holds one m*n accumulator per chunk after the first.
	partial [][]float32

	m, n, k, lda, ldb int
	a, b, c           []float32
	chunks            int
}

// newSplitK returns the accumulators of products of up to size outputs,
// one chunk per core.
func newSplitK(size int) *splitK {
	return newSplitKChunks(size, runtime.GOMAXPROCS(0))
}

// newSplitKChunks is newSplitK with at most chunks chunks.
func newSplitKChunks(size, chunks int) *splitK {
	s := &splitK{partial: make([][]float32, max(0, chunks-1))}
	for i := range s.partial {
		s.partial[i] = make([]float32, size)
	}
	return s
}

// gemm writes C = A^T B.
func (s *splitK) gemm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32) {
	s.chunks = min(len(s.partial)+1, max(1, k/256))
	if s.chunks <= 1 {
		blas.Gemm(true, false, m, n, k, 1, a, lda, b, ldb, 0, c, n)
		return
	}
	s.m, s.n, s.k, s.lda, s.ldb, s.a, s.b, s.c = m, n, k, lda, ldb, a, b, c
	blas.Parallel(s, s.chunks)
	for p := 1; p < s.chunks; p++ {
		blas.Axpy(1, s.partial[p-1][:m*n], c[:m*n])
	}
	s.a, s.b, s.c = nil, nil, nil
}

// RunPart computes the chunks part, part+parts, ...
func (s *splitK) RunPart(part, parts int) {
	for p := part; p < s.chunks; p += parts {
		lo, hi := span(s.k, p, s.chunks)
		dst := s.c
		if p > 0 {
			dst = s.partial[p-1]
		}
		blas.Gemm(true, false, s.m, s.n, hi-lo, 1, s.a[lo*s.lda:], s.lda, s.b[lo*s.ldb:], s.ldb, 0, dst, s.n)
	}
}

// convLayer is a 2-D convolution with a bias, computed as one product of
// the im2col'd batch with the weight.
type convLayer struct {
	layer frog.Layer
	geom  conv.Geometry // layer.Geometry()
	// w is Cout x D (the library's row layout), b is Cout.
	w, b   []float32
	gw, gb []float32
}

// convBuffers is one batch's scratch of a convolution.
type convBuffers struct {
	cols  []float32 // B*L x D patches
	nhwc  []float32 // B*L x Cout: the product, and in backward dL/dy
	dcols []float32 // B*L x D patch gradients
	wgrad *splitK
	loop  convLoop
}

func newConvBuffers(g conv.Geometry, batch int, needInputGrad bool) *convBuffers {
	n := batch * g.Locations()
	cb := &convBuffers{
		cols:  make([]float32, n*g.PatchLen()),
		nhwc:  make([]float32, n*g.OutChannels),
		wgrad: newSplitK(g.OutChannels * g.PatchLen()),
	}
	if needInputGrad {
		cb.dcols = make([]float32, n*g.PatchLen())
	}
	return cb
}

// The per-sample loops of a convolution.
const (
	im2colLoop = iota // cols <- im2col(src)
	toNCHWLoop        // dst (NCHW) <- nhwc + bias
	toNHWCLoop        // nhwc <- src (NCHW)
	col2imLoop        // dst <- col2im(dcols)
)

// convLoop is one per-sample loop over a batch of a convolution.
type convLoop struct {
	kind     int
	c        *convLayer
	cb       *convBuffers
	src, dst []float32
	batch    int
}

// run runs the loop over the batch.
func (cb *convBuffers) run(kind int, c *convLayer, src, dst []float32, batch int) {
	cb.loop = convLoop{kind: kind, c: c, cb: cb, src: src, dst: dst, batch: batch}
	blas.Parallel(&cb.loop, batch)
	cb.loop = convLoop{}
}

func (t *convLoop) RunPart(part, parts int) {
	g, cb := t.c.geom, t.cb
	locs, d, cout, imgLen := g.Locations(), g.PatchLen(), g.OutChannels, g.ImageLen()
	lo, hi := span(t.batch, part, parts)
	for n := lo; n < hi; n++ {
		switch t.kind {
		case im2colLoop:
			g.Im2col(cb.cols[n*locs*d:], d, t.src[n*imgLen:], 0)
		case toNCHWLoop:
			src, dst := cb.nhwc[n*locs*cout:(n+1)*locs*cout], t.dst[n*cout*locs:(n+1)*cout*locs]
			for co := 0; co < cout; co++ {
				bias, plane := t.c.b[co], dst[co*locs:(co+1)*locs]
				for l := range plane {
					plane[l] = src[l*cout+co] + bias
				}
			}
		case toNHWCLoop:
			src, dst := t.src[n*cout*locs:(n+1)*cout*locs], cb.nhwc[n*locs*cout:(n+1)*locs*cout]
			for co := 0; co < cout; co++ {
				for l, v := range src[co*locs : (co+1)*locs] {
					dst[l*cout+co] = v
				}
			}
		case col2imLoop:
			img := t.dst[n*imgLen : (n+1)*imgLen]
			clear(img)
			g.Col2im(img, cb.dcols[n*locs*d:], d, 0)
		}
	}
}

// forward writes the pre-activation output (B x Cout x L, NCHW) of the
// batch in (B x Cin x H x W).
func (c *convLayer) forward(cb *convBuffers, in, out []float32, batch int) {
	g := c.geom
	locs, d, cout := g.Locations(), g.PatchLen(), g.OutChannels
	cb.run(im2colLoop, c, in, nil, batch)
	blas.Gemm(false, true, batch*locs, cout, d, 1, cb.cols, d, c.w, d, 0, cb.nhwc, cout)
	cb.run(toNCHWLoop, c, nil, out, batch)
}

// backward takes dL/dout (B x Cout x L) of the batch whose forward ran
// last, writes the weight and bias gradients, and, when din is not nil,
// the input gradient.
func (c *convLayer) backward(cb *convBuffers, dout, din []float32, batch int) {
	g := c.geom
	locs, d, cout := g.Locations(), g.PatchLen(), g.OutChannels
	cb.run(toNHWCLoop, c, dout, nil, batch)
	cb.wgrad.gemm(cout, d, batch*locs, cb.nhwc, cout, cb.cols, d, c.gw)
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
	cb.run(col2imLoop, c, nil, din, batch)
}

// denseLayer is y = x W^T + b with W out x in.
type denseLayer struct {
	in, out int
	w, b    []float32
	gw, gb  []float32
	wgrad   *splitK
}

func (l *denseLayer) forward(x, y []float32, batch int) {
	blas.Gemm(false, true, batch, l.out, l.in, 1, x, l.in, l.w, l.in, 0, y, l.out)
	for n := 0; n < batch; n++ {
		blas.Axpy(1, l.b, y[n*l.out:(n+1)*l.out])
	}
}

// backward writes the gradients of W and b and, when dx is not nil, of x.
func (l *denseLayer) backward(x, dy, dx []float32, batch int) {
	l.wgrad.gemm(l.out, l.in, batch, dy, l.out, x, l.in, l.gw)
	clear(l.gb)
	for n := 0; n < batch; n++ {
		blas.Axpy(1, dy[n*l.out:(n+1)*l.out], l.gb)
	}
	if dx != nil {
		blas.Gemm(false, false, batch, l.in, l.out, 1, dy, l.out, l.w, l.in, 0, dx, l.in)
	}
}

// The element-wise loops of the activations.
const (
	reluLoop     = iota // x <- max(0, x)
	reluBackLoop        // dy <- 0 where y <= 0
	poolLoop            // 2x2 max pooling of planes of h x w
	poolBackLoop        // routes the pooled gradients back
)

// activationLoop is one element-wise (ReLU) or per-plane (pooling) loop;
// a Workspace keeps one.
type activationLoop struct {
	kind   int
	x, y   []float32
	argmax []int32
	n      int // elements (ReLU) or planes (pooling)
	h, w   int
}

func (t *activationLoop) do(kind int, x, y []float32, argmax []int32, n, h, w int) {
	*t = activationLoop{kind: kind, x: x, y: y, argmax: argmax, n: n, h: h, w: w}
	blas.Parallel(t, n)
	*t = activationLoop{}
}

// relu applies max(0, v) in place.
func (t *activationLoop) relu(x []float32) { t.do(reluLoop, x, nil, nil, len(x), 0, 0) }

// reluBackward zeroes the gradient dy where the ReLU output y is not
// positive.
func (t *activationLoop) reluBackward(dy, y []float32) {
	t.do(reluBackLoop, dy, y, nil, len(dy), 0, 0)
}

// maxPool2 is 2x2 max pooling with stride 2 of in, planes of h x w (even),
// into out, remembering in argmax which input won for the backward pass.
func (t *activationLoop) maxPool2(in, out []float32, argmax []int32, planes, h, w int) {
	t.do(poolLoop, in, out, argmax, planes, h, w)
}

// maxPool2Backward routes each output gradient of dout to the input of din
// that won.
func (t *activationLoop) maxPool2Backward(dout, din []float32, argmax []int32, planes, h, w int) {
	t.do(poolBackLoop, dout, din, argmax, planes, h, w)
}

func (t *activationLoop) RunPart(part, parts int) {
	lo, hi := span(t.n, part, parts)
	h, w := t.h, t.w
	oh, ow := h/2, w/2
	switch t.kind {
	case reluLoop:
		x := t.x[lo:hi]
		for i, v := range x {
			if v < 0 {
				x[i] = 0
			}
		}
	case reluBackLoop:
		dy := t.x[lo:hi]
		for i, v := range t.y[lo:hi] {
			if v <= 0 {
				dy[i] = 0
			}
		}
	case poolLoop:
		for p := lo; p < hi; p++ {
			src := t.x[p*h*w : (p+1)*h*w]
			for y := 0; y < oh; y++ {
				for x := 0; x < ow; x++ {
					best := int32((2*y)*w + 2*x)
					for _, off := range [3]int32{1, int32(w), int32(w) + 1} {
						if i := int32((2*y)*w+2*x) + off; src[i] > src[best] {
							best = i
						}
					}
					o := p*oh*ow + y*ow + x
					t.y[o] = src[best]
					t.argmax[o] = best
				}
			}
		}
	case poolBackLoop:
		olen := oh * ow
		for p := lo; p < hi; p++ {
			dst := t.y[p*h*w : (p+1)*h*w]
			clear(dst)
			for o, g := range t.x[p*olen : (p+1)*olen] {
				dst[t.argmax[p*olen+o]] += g
			}
		}
	}
}
