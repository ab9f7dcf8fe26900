package main

import (
	"math"
	"math/rand/v2"

	"github.com/frogopt/frog"
)

// Arch is the shape of the CNN: conv(3x3, C1) - ReLU - maxpool 2 -
// conv(3x3, C2) - ReLU - maxpool 2 - dense(Hidden) - ReLU - dense(10).
type Arch struct {
	C1     int `json:"conv1_channels"`
	C2     int `json:"conv2_channels"`
	Hidden int `json:"hidden"`
}

// DefaultArch is the network of the demo: 206,922 parameters.
var DefaultArch = Arch{C1: 16, C2: 32, Hidden: 128}

const (
	imageSide = 28
	classes   = 10
)

// Model holds the parameters and their gradients.
type Model struct {
	Arch         Arch
	conv1, conv2 *convLayer
	fc1, fc2     *denseLayer
}

// NewModel initializes the weights from seed: He-normal for the layers
// followed by a ReLU, uniform in +-1/sqrt(fan-in) for the classifier (the
// PyTorch default), zero biases.
func NewModel(a Arch, seed uint64) *Model {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	conv3x3 := func(name string, in, out, side int) frog.Layer {
		return frog.Layer{Name: name, InChannels: in, OutChannels: out, InH: side, InW: side,
			Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}, Bias: frog.PlainBias}
	}
	m := &Model{Arch: a,
		conv1: newConvLayer(conv3x3("conv1", 1, a.C1, imageSide)),
		conv2: newConvLayer(conv3x3("conv2", a.C1, a.C2, imageSide/2)),
		fc1:   newDenseLayer(a.C2*(imageSide/4)*(imageSide/4), a.Hidden),
		fc2:   newDenseLayer(a.Hidden, classes),
	}
	heNormal(rng, m.conv1.w, m.conv1.layer.RowLen())
	heNormal(rng, m.conv2.w, m.conv2.layer.RowLen())
	heNormal(rng, m.fc1.w, m.fc1.in)
	bound := 1 / math.Sqrt(float64(m.fc2.in))
	for i := range m.fc2.w {
		m.fc2.w[i] = float32((2*rng.Float64() - 1) * bound)
	}
	return m
}

// newConvLayer allocates the parameters of l; its geometry comes from l.
func newConvLayer(l frog.Layer) *convLayer {
	wl := l.WeightLen()
	return &convLayer{layer: l, geom: l.Geometry(),
		w: make([]float32, wl), b: make([]float32, l.OutChannels),
		gw: make([]float32, wl), gb: make([]float32, l.OutChannels)}
}

func newDenseLayer(in, out int) *denseLayer {
	return &denseLayer{in: in, out: out,
		w: make([]float32, in*out), b: make([]float32, out),
		gw: make([]float32, in*out), gb: make([]float32, out),
		wgrad: newSplitK(in * out)}
}

func heNormal(rng *rand.Rand, w []float32, fanIn int) {
	std := math.Sqrt(2 / float64(fanIn))
	for i := range w {
		w[i] = float32(rng.NormFloat64() * std)
	}
}

// Clone returns an independent copy of the parameters, so that every
// optimizer starts from the same weights.
func (m *Model) Clone() *Model {
	c := NewModel(m.Arch, 0)
	for i, p := range m.Params() {
		q := c.Params()[i]
		copy(q.W, p.W)
	}
	return c
}

// Param is one parameter tensor and its gradient.
type Param struct {
	Name string
	W, G []float32
}

// Params lists every parameter tensor in a fixed order.
func (m *Model) Params() []Param {
	return []Param{
		{"conv1.weight", m.conv1.w, m.conv1.gw}, {"conv1.bias", m.conv1.b, m.conv1.gb},
		{"conv2.weight", m.conv2.w, m.conv2.gw}, {"conv2.bias", m.conv2.b, m.conv2.gb},
		{"fc1.weight", m.fc1.w, m.fc1.gw}, {"fc1.bias", m.fc1.b, m.fc1.gb},
		{"fc2.weight", m.fc2.w, m.fc2.gw}, {"fc2.bias", m.fc2.b, m.fc2.gb},
	}
}

// PrecLayer is a layer a FROG-type optimizer preconditions: its library
// description, its parameters and gradients, and where the last batch's
// inputs and output gradients lie in a Workspace.
type PrecLayer struct {
	Layer          frog.Layer
	Weight, Bias   []float32
	GradW, GradB   []float32
	acts, outGrads func(ws *Workspace) []float32
}

// Batch is the layer's input to Optimizer.Step for the workspace's last
// forward and backward pass.
func (p PrecLayer) Batch(ws *Workspace) frog.Batch {
	return frog.Batch{Grad: p.GradW, BiasGrad: p.GradB,
		Acts: p.acts(ws)[:ws.batch*p.Layer.ActLen()], OutGrads: p.outGrads(ws)[:ws.batch*p.Layer.OutGradLen()],
		BatchSize: ws.batch}
}

// Preconditioned lists both convolutions and the hidden dense layer: the
// layers FROG.md says to precondition. The classifier (fc2) is left out.
func (m *Model) Preconditioned() []PrecLayer {
	convLayer := func(c *convLayer, acts, grads func(ws *Workspace) []float32) PrecLayer {
		return PrecLayer{Layer: c.layer, Weight: c.w, Bias: c.b, GradW: c.gw, GradB: c.gb,
			acts: acts, outGrads: grads}
	}
	return []PrecLayer{
		convLayer(m.conv1, func(ws *Workspace) []float32 { return ws.x }, func(ws *Workspace) []float32 { return ws.dz1 }),
		convLayer(m.conv2, func(ws *Workspace) []float32 { return ws.p1 }, func(ws *Workspace) []float32 { return ws.dz2 }),
		{
			Layer:  frog.Linear("fc1", m.fc1.in, m.fc1.out, frog.PlainBias),
			Weight: m.fc1.w, Bias: m.fc1.b, GradW: m.fc1.gw, GradB: m.fc1.gb,
			acts:     func(ws *Workspace) []float32 { return ws.p2 },
			outGrads: func(ws *Workspace) []float32 { return ws.dh },
		},
	}
}

// Plain lists the parameters no optimizer preconditions: the classifier.
func (m *Model) Plain() []Param {
	return m.Params()[6:]
}

// Workspace holds the activations and gradients of batches of up to its
// capacity, for one model.
type Workspace struct {
	capacity, batch int
	c1, c2          *convBuffers
	act             activationLoop
	x               []float32 // B x 1 x 28 x 28 input
	a1              []float32 // conv1 output after ReLU, B x C1 x 28 x 28
	p1              []float32 // pooled, B x C1 x 14 x 14
	arg1            []int32
	a2, p2          []float32 // conv2 after ReLU (B x C2 x 14 x 14), pooled (B x C2*7*7)
	arg2            []int32
	h               []float32 // fc1 output after ReLU, B x Hidden
	logits          []float32 // B x 10
	// gradients of the mean loss
	dlogits, dh []float32 // at the logits, at fc1's pre-activation output
	dp2, dz2    []float32 // at conv2's pooled output, at its pre-activation output
	dp1, dz1    []float32
}

// NewWorkspace allocates the buffers of batches of up to capacity samples;
// training needs the backward buffers too.
func NewWorkspace(m *Model, capacity int, training bool) *Workspace {
	a := m.Arch
	s, s2, s4 := imageSide*imageSide, (imageSide/2)*(imageSide/2), (imageSide/4)*(imageSide/4)
	ws := &Workspace{capacity: capacity,
		c1: newConvBuffers(m.conv1.geom, capacity, false),
		c2: newConvBuffers(m.conv2.geom, capacity, training),
		x:  make([]float32, capacity*s),
		a1: make([]float32, capacity*a.C1*s), p1: make([]float32, capacity*a.C1*s2), arg1: make([]int32, capacity*a.C1*s2),
		a2: make([]float32, capacity*a.C2*s2), p2: make([]float32, capacity*a.C2*s4), arg2: make([]int32, capacity*a.C2*s4),
		h: make([]float32, capacity*a.Hidden), logits: make([]float32, capacity*classes),
	}
	if training {
		ws.dlogits = make([]float32, capacity*classes)
		ws.dh = make([]float32, capacity*a.Hidden)
		ws.dp2 = make([]float32, capacity*a.C2*s4)
		ws.dz2 = make([]float32, capacity*a.C2*s2)
		ws.dp1 = make([]float32, capacity*a.C1*s2)
		ws.dz1 = make([]float32, capacity*a.C1*s)
	}
	return ws
}

// Forward runs the network on the batch already in ws.x (batch samples)
// and leaves the logits in ws.logits.
func (m *Model) Forward(ws *Workspace, batch int) {
	a := m.Arch
	ws.batch = batch
	s, s2 := imageSide, imageSide/2
	m.conv1.forward(ws.c1, ws.x, ws.a1, batch)
	ws.act.relu(ws.a1[:batch*a.C1*s*s])
	ws.act.maxPool2(ws.a1, ws.p1, ws.arg1, batch*a.C1, s, s)
	m.conv2.forward(ws.c2, ws.p1, ws.a2, batch)
	ws.act.relu(ws.a2[:batch*a.C2*s2*s2])
	ws.act.maxPool2(ws.a2, ws.p2, ws.arg2, batch*a.C2, s2, s2)
	m.fc1.forward(ws.p2, ws.h, batch)
	ws.act.relu(ws.h[:batch*a.Hidden])
	m.fc2.forward(ws.h, ws.logits, batch)
}

// Loss returns the mean softmax cross-entropy of the logits against the
// labels and the number of correct predictions; with grad it writes the
// gradient of the mean loss at the logits into ws.dlogits.
func Loss(ws *Workspace, labels []uint8, grad bool) (loss float64, correct int) {
	for n := 0; n < ws.batch; n++ {
		z := ws.logits[n*classes : (n+1)*classes]
		best, mx := 0, z[0]
		for k, v := range z {
			if v > mx {
				best, mx = k, v
			}
		}
		if best == int(labels[n]) {
			correct++
		}
		var sum float64
		for _, v := range z {
			sum += math.Exp(float64(v - mx))
		}
		loss += math.Log(sum) - float64(z[labels[n]]-mx)
		if grad {
			d := ws.dlogits[n*classes : (n+1)*classes]
			for k, v := range z {
				p := math.Exp(float64(v-mx)) / sum
				if k == int(labels[n]) {
					p--
				}
				d[k] = float32(p / float64(ws.batch))
			}
		}
	}
	return loss / float64(ws.batch), correct
}

// Backward computes every parameter gradient from ws.dlogits, keeping the
// output gradients of the preconditioned layers (ws.dz1, ws.dz2, ws.dh).
func (m *Model) Backward(ws *Workspace) {
	a, batch := m.Arch, ws.batch
	s, s2 := imageSide, imageSide/2
	m.fc2.backward(ws.h, ws.dlogits, ws.dh, batch)
	ws.act.reluBackward(ws.dh[:batch*a.Hidden], ws.h)
	m.fc1.backward(ws.p2, ws.dh, ws.dp2, batch)
	ws.act.maxPool2Backward(ws.dp2, ws.dz2, ws.arg2, batch*a.C2, s2, s2)
	ws.act.reluBackward(ws.dz2[:batch*a.C2*s2*s2], ws.a2)
	m.conv2.backward(ws.c2, ws.dz2, ws.dp1, batch)
	ws.act.maxPool2Backward(ws.dp1, ws.dz1, ws.arg1, batch*a.C1, s, s)
	ws.act.reluBackward(ws.dz1[:batch*a.C1*s*s], ws.a1)
	m.conv1.backward(ws.c1, ws.dz1, nil, batch)
}
