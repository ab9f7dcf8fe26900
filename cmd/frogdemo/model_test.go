package main

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// smallModel is a network small enough for finite differences in float64
// terms, with random inputs and labels. Its weight gradients are split
// along the inner dimension whatever GOMAXPROCS is, and one forward and
// backward pass has run on another batch first, so that the tests see
// buffers a previous batch has written.
func smallModel(t *testing.T, batch int) (*Model, *Workspace, []uint8) {
	t.Helper()
	m := NewModel(Arch{C1: 3, C2: 4, Hidden: 6}, 7)
	rng := rand.New(rand.NewPCG(3, 4))
	// Non-zero biases, so that their gradients are checked in general position.
	for _, p := range m.Params() {
		if strings.HasSuffix(p.Name, "bias") {
			for i := range p.W {
				p.W[i] = float32(0.1 * rng.NormFloat64())
			}
		}
	}
	ws := NewWorkspace(m, batch, true)
	ws.c1.wgrad = newSplitKChunks(m.conv1.layer.WeightLen(), 3)
	ws.c2.wgrad = newSplitKChunks(m.conv2.layer.WeightLen(), 3)
	labels := make([]uint8, batch)
	fill := func() {
		for i := range ws.x[:batch*imageSide*imageSide] {
			ws.x[i] = float32(rng.NormFloat64())
		}
		for i := range labels {
			labels[i] = uint8(rng.IntN(classes))
		}
	}
	fill()
	m.Forward(ws, batch)
	Loss(ws, labels, true)
	m.Backward(ws)
	fill()
	return m, ws, labels
}

// TestSplitK compares the split weight-gradient product with a float64
// reference, with more chunks than GOMAXPROCS may give and a k that does
// not divide evenly; the accumulators hold a previous product's values.
func TestSplitK(t *testing.T) {
	const m, n, k, lda, ldb = 5, 7, 1031, 6, 9
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := make([]float32, k*lda), make([]float32, k*ldb)
	for i := range a {
		a[i] = float32(rng.NormFloat64())
	}
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	s := newSplitKChunks(m*n, 4)
	for _, p := range s.partial {
		for i := range p {
			p[i] = 1e3
		}
	}
	c := make([]float32, m*n)
	for i := range c {
		c[i] = -1e3
	}
	s.gemm(m, n, k, a, lda, b, ldb, c)
	if s.chunks != 4 {
		t.Fatalf("%d chunks, want 4", s.chunks)
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var want float64
			for l := 0; l < k; l++ {
				want += float64(a[l*lda+i]) * float64(b[l*ldb+j])
			}
			if got := float64(c[i*n+j]); math.Abs(got-want) > 1e-3*(1+math.Abs(want)) {
				t.Errorf("C[%d,%d] = %v, want %v", i, j, got, want)
			}
		}
	}
}

// TestGradients compares every parameter gradient of the backward pass with
// central finite differences of the mean loss, on a few coordinates of
// each tensor.
func TestGradients(t *testing.T) {
	const batch = 3
	m, ws, labels := smallModel(t, batch)
	loss := func() float64 {
		m.Forward(ws, batch)
		l, _ := Loss(ws, labels, false)
		return l
	}
	m.Forward(ws, batch)
	Loss(ws, labels, true)
	m.Backward(ws)
	grads := map[string][]float32{}
	for _, p := range m.Params() {
		grads[p.Name] = append([]float32(nil), p.G...)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range m.Params() {
		for trial := 0; trial < 12; trial++ {
			i := rng.IntN(len(p.W))
			orig := p.W[i]
			// A small step: a larger one moves ReLU and max-pool kinks.
			const h = float32(1e-3)
			p.W[i] = orig + h
			up := loss()
			p.W[i] = orig - h
			down := loss()
			p.W[i] = orig
			fd := (up - down) / float64(2*h)
			got := float64(grads[p.Name][i])
			// float32 forward passes: allow an absolute floor as well.
			if math.Abs(fd-got) > 2e-3+0.05*math.Abs(fd) {
				t.Errorf("%s[%d]: backward %.6g, finite difference %.6g", p.Name, i, got, fd)
			}
		}
	}
}

// TestWeightGradientFromOutputGradients checks the activations and output
// gradients the preconditioned layers hand to FROG against the gradients
// they came from (which TestGradients checks): the weight gradient is
// sum_{n,l} y(n,j,l) u(n,l) and the bias gradient sum_{n,l} y(n,j,l).
func TestWeightGradientFromOutputGradients(t *testing.T) {
	const batch = 2
	m, ws, labels := smallModel(t, batch)
	m.Forward(ws, batch)
	Loss(ws, labels, true)
	m.Backward(ws)
	for _, pl := range m.Preconditioned() {
		if err := pl.Layer.Validate(); err != nil {
			t.Error(err)
		}
		b := pl.Batch(ws)
		if len(b.Acts) != batch*pl.Layer.ActLen() || len(b.OutGrads) != batch*pl.Layer.OutGradLen() {
			t.Fatalf("%s: %d activations and %d output gradients for a batch of %d", pl.Layer.Name, len(b.Acts), len(b.OutGrads), batch)
		}
		g := pl.Layer.Geometry()
		d, locs, rows := g.PatchLen(), g.Locations(), g.OutChannels
		patches := make([]float32, locs*d)
		want, wantB := make([]float64, rows*d), make([]float64, rows)
		for n := 0; n < batch; n++ {
			g.Im2col(patches, d, b.Acts[n*g.ImageLen():], 0)
			for j := 0; j < rows; j++ {
				for l := 0; l < locs; l++ {
					y := float64(b.OutGrads[(n*rows+j)*locs+l])
					wantB[j] += y
					for k := 0; k < d; k++ {
						want[j*d+k] += y * float64(patches[l*d+k])
					}
				}
			}
		}
		for i, w := range want {
			if got := float64(pl.GradW[i]); math.Abs(got-w) > 1e-5+1e-3*math.Abs(w) {
				t.Fatalf("%s weight %d: gradient %v, from output gradients %v", pl.Layer.Name, i, got, w)
			}
		}
		for j, w := range wantB {
			if got := float64(pl.GradB[j]); math.Abs(got-w) > 1e-5+1e-4*math.Abs(w) {
				t.Errorf("%s bias %d: gradient %v, from output gradients %v", pl.Layer.Name, j, got, w)
			}
		}
	}
}

// TestLossGradient checks the softmax cross-entropy gradient at the logits.
func TestLossGradient(t *testing.T) {
	const batch = 3
	m, ws, labels := smallModel(t, batch)
	m.Forward(ws, batch)
	base, _ := Loss(ws, labels, true)
	grad := append([]float32(nil), ws.dlogits[:batch*classes]...)
	for i := range grad {
		orig := ws.logits[i]
		const h = 1e-2
		ws.logits[i] = orig + h
		up, _ := Loss(ws, labels, false)
		ws.logits[i] = orig - h
		down, _ := Loss(ws, labels, false)
		ws.logits[i] = orig
		if fd := (up - down) / (2 * h); math.Abs(fd-float64(grad[i])) > 1e-4 {
			t.Errorf("logit %d: gradient %v, finite difference %v (loss %v)", i, grad[i], fd, base)
		}
	}
}
