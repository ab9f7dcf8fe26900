package frog

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// Reliability: bad input at every entry point leaves everything as it was,
// non-finite input and CG breakdowns never produce NaN weights, and the
// update does not depend on the scale of the data where it must not.

// rbWorld is a small training setup: a convolution with a plain bias, a
// linear layer with a joint bias, and a plain parameter, with its own
// deterministic data.
type rbWorld struct {
	conv, lin    Layer
	wConv, bConv []float32
	wLin, bLin   []float32
	theta        []float32
	batch        int
	rng          *rand.Rand
}

func rbConvLayer() Layer {
	return Layer{Name: "conv", InChannels: 2, OutChannels: 3, InH: 5, InW: 4, Kernel: [2]int{3, 2},
		Stride: [2]int{1, 2}, Padding: [2]int{1, 0}, Bias: PlainBias}
}

func newRBWorld(seed uint64) *rbWorld {
	w := &rbWorld{conv: rbConvLayer(), lin: Linear("lin", 6, 4, JointBias), batch: 6,
		rng: rand.New(rand.NewPCG(seed, 7))}
	w.wConv = rbVec(w.rng, w.conv.WeightLen(), 0.5)
	w.bConv = rbVec(w.rng, w.conv.Rows(), 0.1)
	w.wLin = rbVec(w.rng, w.lin.WeightLen(), 0.5)
	w.bLin = rbVec(w.rng, w.lin.Rows(), 0.1)
	w.theta = rbVec(w.rng, 5, 1)
	return w
}

func rbVec(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

// batchFor draws a fresh batch for a layer.
func rbBatch(rng *rand.Rand, l Layer, batch int) Batch {
	in := Batch{
		Grad:      rbVec(rng, l.WeightLen(), 1),
		Acts:      rbVec(rng, batch*l.ActLen(), 1),
		OutGrads:  rbVec(rng, batch*l.OutGradLen(), 0.1),
		BatchSize: batch,
	}
	if l.Bias != NoBias {
		in.BiasGrad = rbVec(rng, l.Rows(), 1)
	}
	return in
}

func rbConfig() Config {
	cfg := DefaultConfig()
	cfg.LR = 0.05
	cfg.Momentum = 0.9
	cfg.Nesterov = true
	cfg.WeightDecay = 0.01
	cfg.SampleSize = 4 // below the batch: the generator matters
	cfg.DampingSteps, cfg.DampingFinal = 5, 1e-3
	cfg.Seed = 11
	cfg.Backend = BackendCPU
	return cfg
}

func rbKConfig() KConfig {
	cfg := DefaultKConfig()
	cfg.LR = 0.05
	cfg.Momentum = 0.5
	cfg.YMomentum = 0.9
	cfg.SampleSize = 4
	cfg.YSampleSize = 3
	cfg.Seed = 5
	return cfg
}

// optimizerAPI is what the two optimizers share.
type optimizerAPI interface {
	AddLayer(l Layer, weight, bias []float32) error
	AddParam(name string, theta []float32) error
	Step(name string, in Batch) error
	StepParam(name string, grad []float32) error
	SetLR(lr float64) error
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

func (w *rbWorld) register(t testing.TB, o optimizerAPI) {
	t.Helper()
	for _, err := range []error{
		o.AddLayer(w.conv, w.wConv, w.bConv),
		o.AddLayer(w.lin, w.wLin, w.bLin),
		o.AddParam("theta", w.theta),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// rbStepData is one training step's inputs for every registration.
type rbStepData struct {
	conv, lin Batch
	theta     []float32
}

func rbData(seed uint64, steps int) []rbStepData {
	rng := rand.New(rand.NewPCG(seed, 99))
	w := newRBWorld(0)
	out := make([]rbStepData, steps)
	for i := range out {
		out[i] = rbStepData{conv: rbBatch(rng, w.conv, w.batch), lin: rbBatch(rng, w.lin, w.batch), theta: rbVec(rng, 5, 1)}
	}
	return out
}

func rbTrain(t testing.TB, o optimizerAPI, data []rbStepData) {
	t.Helper()
	for _, d := range data {
		if err := o.Step("conv", d.conv); err != nil {
			t.Fatal(err)
		}
		if err := o.Step("lin", d.lin); err != nil {
			t.Fatal(err)
		}
		if err := o.StepParam("theta", d.theta); err != nil {
			t.Fatal(err)
		}
	}
}

// stateBytes serializes, bit for bit, everything an optimizer holds and the
// caller's parameters: weights, biases, momentum, generators, counters,
// statistics and the configuration.
type stateWriter struct{ b []byte }

func (s *stateWriter) f32(v []float32) {
	s.b = binary.LittleEndian.AppendUint64(s.b, uint64(len(v)))
	for _, x := range v {
		s.b = binary.LittleEndian.AppendUint32(s.b, math.Float32bits(x))
	}
}

func (s *stateWriter) f64(v []float64) {
	s.b = binary.LittleEndian.AppendUint64(s.b, uint64(len(v)))
	for _, x := range v {
		s.b = binary.LittleEndian.AppendUint64(s.b, math.Float64bits(x))
	}
}

func (s *stateWriter) i64(v ...int64) {
	for _, x := range v {
		s.b = binary.LittleEndian.AppendUint64(s.b, uint64(x))
	}
}

func (s *stateWriter) ints(v []int) {
	s.i64(int64(len(v)))
	for _, x := range v {
		s.i64(int64(x))
	}
}

func (s *stateWriter) bools(v []bool) {
	for _, x := range v {
		if x {
			s.b = append(s.b, 1)
		} else {
			s.b = append(s.b, 0)
		}
	}
}

func (s *stateWriter) base(b *layerBase) {
	s.f32(b.weight)
	s.f32(b.bias)
	s.f32(b.mom)
	s.f32(b.momB)
	s.i64(b.steps, b.skipped)
	rng, _ := b.pcg.MarshalBinary()
	s.b = append(s.b, rng...)
	s.ints(b.lastSamples)
}

func (s *stateWriter) params(order []string, params map[string]*param) {
	for _, name := range order {
		if p, ok := params[name]; ok {
			s.b = append(s.b, name...)
			s.f32(p.theta)
			s.f32(p.mom)
			s.i64(p.steps, p.skipped)
		}
	}
}

func frogState(o *Optimizer) []byte {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var s stateWriter
	s.b = append(s.b, strings.Join(o.order, ",")...)
	s.f64([]float64{o.cfg.LR})
	for _, name := range o.order {
		if fl, ok := o.layers[name]; ok {
			fl.mu.Lock()
			s.base(&fl.layerBase)
			s.f64(fl.diag.Trace)
			s.f64(fl.diag.Residual)
			s.f64(fl.diag.Scale)
			s.bools(fl.diag.Breakdown)
			fl.mu.Unlock()
		}
	}
	s.params(o.order, o.params)
	return s.b
}

func kfrogState(o *KFROG) []byte {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var s stateWriter
	s.b = append(s.b, strings.Join(o.order, ",")...)
	s.f64([]float64{o.cfg.LR})
	for _, name := range o.order {
		if kl, ok := o.layers[name]; ok {
			kl.mu.Lock()
			s.base(&kl.layerBase)
			s.f64(kl.ybuf)
			s.f64(kl.actDiag)
			s.f32(kl.solution)
			s.f64(kl.residual)
			kl.mu.Unlock()
		}
	}
	s.params(o.order, o.params)
	return s.b
}

func stateOf(o optimizerAPI) []byte {
	switch o := o.(type) {
	case *Optimizer:
		return frogState(o)
	case *KFROG:
		return kfrogState(o)
	}
	panic("unknown optimizer")
}

func newOptimizer(t *testing.T, kind string) optimizerAPI {
	t.Helper()
	if kind == "kfrog" {
		o, err := NewKFROG(rbKConfig())
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	o, err := New(rbConfig())
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func copyBatch(in Batch) Batch {
	cp := func(s []float32) []float32 {
		if s == nil {
			return nil
		}
		return append([]float32(nil), s...)
	}
	in.Grad, in.BiasGrad, in.Acts, in.OutGrads = cp(in.Grad), cp(in.BiasGrad), cp(in.Acts), cp(in.OutGrads)
	return in
}

// TestBadInputChangesNothing feeds every public entry point of both
// optimizers bad input after two good steps. Each call must fail with an
// error naming the layer, leave the whole state bit for bit as it was, and
// a following good step must give what an untouched twin gives.
func TestBadInputChangesNothing(t *testing.T) {
	data := rbData(1, 3)
	for _, kind := range []string{"frog", "kfrog"} {
		t.Run(kind, func(t *testing.T) {
			w := newRBWorld(3)
			o := newOptimizer(t, kind)
			w.register(t, o)
			twinW := newRBWorld(3)
			twin := newOptimizer(t, kind)
			twinW.register(t, twin)
			rbTrain(t, o, data[:2])
			rbTrain(t, twin, data[:2])

			good := data[2]
			type badCall struct {
				name  string
				layer string // the layer the error must name ("" for none)
				want  string // a fragment of the message
				call  func() error
			}
			step := func(layer string, mod func(*Batch)) func() error {
				return func() error {
					in := copyBatch(good.conv)
					if layer == "lin" {
						in = copyBatch(good.lin)
					}
					mod(&in)
					return o.Step(layer, in)
				}
			}
			calls := []badCall{
				{"unregistered layer", "nope", "no layer of this name", func() error { return o.Step("nope", good.conv) }},
				{"param stepped as layer", "theta", "no layer of this name", func() error { return o.Step("theta", good.conv) }},
				{"layer stepped as param", "conv", "no parameter of this name", func() error { return o.StepParam("conv", good.theta) }},
				{"short gradient", "conv", "gradient", step("conv", func(b *Batch) { b.Grad = b.Grad[1:] })},
				{"nil gradient", "lin", "gradient", step("lin", func(b *Batch) { b.Grad = nil })},
				{"short bias gradient", "conv", "bias gradient", step("conv", func(b *Batch) { b.BiasGrad = b.BiasGrad[:1] })},
				{"missing bias gradient", "lin", "bias gradient", step("lin", func(b *Batch) { b.BiasGrad = nil })},
				{"long activations", "conv", "activations", step("conv", func(b *Batch) { b.Acts = append(b.Acts, 0) })},
				{"short output gradients", "lin", "output gradients", step("lin", func(b *Batch) { b.OutGrads = b.OutGrads[2:] })},
				{"zero batch", "conv", "batch size", step("conv", func(b *Batch) { b.BatchSize = 0 })},
				{"negative batch", "conv", "batch size", step("conv", func(b *Batch) { b.BatchSize = -3 })},
				{"batch size not the data's", "conv", "activations", step("conv", func(b *Batch) { b.BatchSize = 5 })},
				{"huge batch size", "conv", "activations", step("conv", func(b *Batch) { b.BatchSize = math.MaxInt / 2 })},
				{"sample out of range", "conv", "outside the batch", step("conv", func(b *Batch) { b.Samples = []int{0, 6} })},
				{"negative sample", "lin", "outside the batch", step("lin", func(b *Batch) { b.Samples = []int{-1} })},
				{"repeated sample", "conv", "repeated", step("conv", func(b *Batch) { b.Samples = []int{2, 1, 2} })},
				{"empty samples", "lin", "empty", step("lin", func(b *Batch) { b.Samples = []int{} })},
				{"subsample larger than the batch", "conv", "for a batch of", step("conv", func(b *Batch) { b.Samples = []int{0, 1, 2, 3, 4, 5, 0} })},
				{"y sample out of range", "lin", "y sample", step("lin", func(b *Batch) { b.YSamples = []int{7} })},
				{"y sample repeated", "conv", "repeated", step("conv", func(b *Batch) { b.YSamples = []int{3, 3} })},
				{"NaN gradient", "conv", "gradient[4] = NaN", step("conv", func(b *Batch) { b.Grad[4] = float32(math.NaN()) })},
				{"Inf bias gradient", "conv", "bias gradient[1] = +Inf", step("conv", func(b *Batch) { b.BiasGrad[1] = float32(math.Inf(1)) })},
				{"NaN activation", "lin", "activations[7] = NaN", step("lin", func(b *Batch) { b.Acts[7] = float32(math.NaN()) })},
				{"-Inf output gradient", "lin", "output gradients[3] = -Inf", step("lin", func(b *Batch) { b.OutGrads[3] = float32(math.Inf(-1)) })},
				{"NaN weight", "conv", "weight[2] = NaN", func() error {
					saved := w.wConv[2]
					w.wConv[2] = float32(math.NaN())
					err := o.Step("conv", good.conv)
					w.wConv[2] = saved
					return err
				}},
				{"Inf bias", "lin", "bias[0] = +Inf", func() error {
					saved := w.bLin[0]
					w.bLin[0] = float32(math.Inf(1))
					err := o.Step("lin", good.lin)
					w.bLin[0] = saved
					return err
				}},
				{"overflowing step", "conv", "the step would make", func() error {
					if err := o.SetLR(1e300); err != nil {
						return err
					}
					err := o.Step("conv", good.conv)
					_ = o.SetLR(0.05)
					return err
				}},
				{"overflowing parameter step", "theta", "the step would make", func() error {
					if err := o.SetLR(1e300); err != nil {
						return err
					}
					err := o.StepParam("theta", good.theta)
					_ = o.SetLR(0.05)
					return err
				}},
				{"param: unregistered", "nope", "no parameter of this name", func() error { return o.StepParam("nope", good.theta) }},
				{"param: short gradient", "theta", "gradient", func() error { return o.StepParam("theta", good.theta[1:]) }},
				{"param: NaN gradient", "theta", "gradient[0] = NaN", func() error {
					g := append([]float32(nil), good.theta...)
					g[0] = float32(math.NaN())
					return o.StepParam("theta", g)
				}},
				{"SetLR negative", "", "lr", func() error { return o.SetLR(-1) }},
				{"SetLR NaN", "", "lr", func() error { return o.SetLR(math.NaN()) }},
				{"SetLR Inf", "", "lr", func() error { return o.SetLR(math.Inf(1)) }},
				{"AddLayer duplicate", "conv", "already registered", func() error { return o.AddLayer(w.conv, make([]float32, w.conv.WeightLen()), make([]float32, 3)) }},
				{"AddLayer duplicate of a param", "theta", "already registered", func() error { return o.AddLayer(Linear("theta", 1, 1, NoBias), []float32{0}, nil) }},
				{"AddLayer no name", "", "needs a name", func() error { return o.AddLayer(Linear("", 1, 1, NoBias), []float32{0}, nil) }},
				{"AddLayer wrong weight", "x", "weight", func() error { return o.AddLayer(Linear("x", 2, 2, NoBias), []float32{0}, nil) }},
				{"AddLayer bias for none", "x", "bias given", func() error { return o.AddLayer(Linear("x", 1, 1, NoBias), []float32{0}, []float32{0}) }},
				{"AddLayer missing bias", "x", "bias", func() error { return o.AddLayer(Linear("x", 1, 1, PlainBias), []float32{0}, nil) }},
				{"AddLayer bad bias mode", "x", "bias mode", func() error { return o.AddLayer(Linear("x", 1, 1, BiasMode(7)), []float32{0}, nil) }},
				{"AddLayer zero channels", "x", "channels", func() error { return o.AddLayer(Linear("x", 0, 1, NoBias), nil, nil) }},
				{"AddLayer kernel too big", "x", "kernel", func() error {
					return o.AddLayer(Layer{Name: "x", InChannels: 1, OutChannels: 1, InH: 2, InW: 2, Kernel: [2]int{3, 3}}, make([]float32, 9), nil)
				}},
				{"AddLayer groups", "x", "groups", func() error {
					return o.AddLayer(Layer{Name: "x", InChannels: 3, OutChannels: 2, Groups: 2}, make([]float32, 3), nil)
				}},
				{"AddLayer huge", "x", "accepts", func() error { return o.AddLayer(Linear("x", 1<<30, 1<<30, NoBias), nil, nil) }},
				{"AddLayer overflowing size", "x", "accepts", func() error {
					return o.AddLayer(Layer{Name: "x", InChannels: 1 << 20, OutChannels: 1, InH: 1 << 20, InW: 1 << 20}, nil, nil)
				}},
				{"AddParam duplicate", "theta", "already registered", func() error { return o.AddParam("theta", []float32{1}) }},
				{"AddParam duplicate of a layer", "lin", "already registered", func() error { return o.AddParam("lin", []float32{1}) }},
				{"AddParam no name", "", "needs a name", func() error { return o.AddParam("", []float32{1}) }},
				{"AddParam empty", "p", "at least one value", func() error { return o.AddParam("p", nil) }},
			}
			if kind == "frog" {
				calls = append(calls, badCall{"FROG with YSamples", "lin", "YSamples", step("lin", func(b *Batch) { b.YSamples = []int{0} })})
			}
			for _, c := range calls {
				before := stateOf(o)
				err := c.call()
				if err == nil {
					t.Errorf("%s: no error", c.name)
					continue
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s: error %q does not say %q", c.name, err, c.want)
				}
				var le *LayerError
				if c.layer != "" || errors.As(err, &le) {
					if !errors.As(err, &le) || le.Layer != c.layer {
						t.Errorf("%s: error %q does not name layer %q", c.name, err, c.layer)
					}
				}
				hyper := strings.HasPrefix(c.name, "SetLR") || strings.HasPrefix(c.name, "AddLayer")
				if !hyper && (strings.Contains(c.name, "NaN") || strings.Contains(c.name, "Inf") || strings.Contains(c.name, "overflowing")) {
					if !errors.Is(err, ErrNonFinite) {
						t.Errorf("%s: error %q does not wrap ErrNonFinite", c.name, err)
					}
				}
				if after := stateOf(o); string(after) != string(before) {
					t.Errorf("%s: the state changed", c.name)
				}
			}
			rbTrain(t, o, data[2:])
			rbTrain(t, twin, data[2:])
			if string(stateOf(o)) != string(stateOf(twin)) {
				t.Fatal("a good step after the bad calls differs from the untouched twin's")
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	mod := func(f func(*Config)) Config {
		c := DefaultConfig()
		f(&c)
		return c
	}
	for name, cfg := range map[string]Config{
		"negative lr":              mod(func(c *Config) { c.LR = -1e-3 }),
		"NaN lr":                   mod(func(c *Config) { c.LR = math.NaN() }),
		"negative tau":             mod(func(c *Config) { c.Damping = -1 }),
		"Inf tau":                  mod(func(c *Config) { c.Damping = math.Inf(1) }),
		"negative momentum":        mod(func(c *Config) { c.Momentum = -0.9 }),
		"negative weight decay":    mod(func(c *Config) { c.WeightDecay = -1 }),
		"negative lr ratio":        mod(func(c *Config) { c.LROtherRatio = -1 }),
		"zero iterations":          mod(func(c *Config) { c.Iters = 0 }),
		"negative iterations":      mod(func(c *Config) { c.Iters = -4 }),
		"Nesterov without mu":      mod(func(c *Config) { c.Nesterov = true }),
		"negative sample size":     mod(func(c *Config) { c.SampleSize = -1 }),
		"zero denom_eps":           mod(func(c *Config) { c.DenomEps = 0 }),
		"unknown reduction":        mod(func(c *Config) { c.Reduction = 5 }),
		"negative tolerance":       mod(func(c *Config) { c.Tolerance = -1 }),
		"schedule to zero tau":     mod(func(c *Config) { c.DampingSteps = 10 }),
		"schedule from zero tau":   mod(func(c *Config) { c.DampingSteps, c.DampingFinal, c.Damping = 10, 1e-3, 0 }),
		"negative schedule length": mod(func(c *Config) { c.DampingSteps = -1 }),
		"unknown backend":          mod(func(c *Config) { c.Backend = "tpu" }),
	} {
		if o, err := New(cfg); err == nil || o != nil {
			t.Errorf("New with %s: no error", name)
		}
	}
	kmod := func(f func(*KConfig)) KConfig {
		c := DefaultKConfig()
		f(&c)
		return c
	}
	for name, cfg := range map[string]KConfig{
		"negative lr":          kmod(func(c *KConfig) { c.LR = -1 }),
		"negative momentum":    kmod(func(c *KConfig) { c.Momentum = -1 }),
		"y_momentum 1":         kmod(func(c *KConfig) { c.YMomentum = 1 }),
		"negative y_momentum":  kmod(func(c *KConfig) { c.YMomentum = -0.1 }),
		"zero eps":             kmod(func(c *KConfig) { c.Eps = 0 }),
		"zero iterations":      kmod(func(c *KConfig) { c.Iters = 0 }),
		"Nesterov without mu":  kmod(func(c *KConfig) { c.Nesterov = true }),
		"negative sample size": kmod(func(c *KConfig) { c.YSampleSize = -2 }),
		"unknown reduction":    kmod(func(c *KConfig) { c.Reduction = -1 }),
	} {
		if o, err := NewKFROG(cfg); err == nil || o != nil {
			t.Errorf("NewKFROG with %s: no error", name)
		}
	}
}

// TestPreconditionRowsBadInput checks the stateless entry point: an error
// naming the layer for every bad input, and inputs left as they were.
func TestPreconditionRowsBadInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	l := rbConvLayer()
	l.Name = "stem"
	good := func() RowsInput {
		return RowsInput{Layer: l, Grad: rbVec(rng, l.Rows()*l.SolveLen(), 1), Acts: rbVec(rng, 3*l.ActLen(), 1),
			OutGrads: rbVec(rng, 3*l.OutGradLen(), 1), Samples: 3, BatchSize: 8, Damping: 1e-4, Iters: 3, DenomEps: 1e-10}
	}
	dir := make([]float32, l.Rows()*l.SolveLen())
	if _, err := PreconditionRows(good(), dir); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*RowsInput, *[]float32){
		"zero samples":        func(in *RowsInput, _ *[]float32) { in.Samples = 0 },
		"batch below samples": func(in *RowsInput, _ *[]float32) { in.BatchSize = 2 },
		"zero iterations":     func(in *RowsInput, _ *[]float32) { in.Iters = 0 },
		"negative damping":    func(in *RowsInput, _ *[]float32) { in.Damping = -1 },
		"NaN damping":         func(in *RowsInput, _ *[]float32) { in.Damping = math.NaN() },
		"zero eps":            func(in *RowsInput, _ *[]float32) { in.DenomEps = 0 },
		"Inf eps":             func(in *RowsInput, _ *[]float32) { in.DenomEps = math.Inf(1) },
		"negative tolerance":  func(in *RowsInput, _ *[]float32) { in.Tolerance = -1 },
		"bad reduction":       func(in *RowsInput, _ *[]float32) { in.Reduction = 9 },
		"short gradient":      func(in *RowsInput, _ *[]float32) { in.Grad = in.Grad[:3] },
		"short direction":     func(_ *RowsInput, d *[]float32) { *d = (*d)[1:] },
		"long activations":    func(in *RowsInput, _ *[]float32) { in.Acts = append(in.Acts, 1) },
		"short out grads":     func(in *RowsInput, _ *[]float32) { in.OutGrads = in.OutGrads[1:] },
		"huge samples":        func(in *RowsInput, _ *[]float32) { in.Samples, in.BatchSize = math.MaxInt/3, math.MaxInt },
		"NaN gradient":        func(in *RowsInput, _ *[]float32) { in.Grad[0] = float32(math.NaN()) },
		"Inf activation":      func(in *RowsInput, _ *[]float32) { in.Acts[5] = float32(math.Inf(-1)) },
		"NaN out grad":        func(in *RowsInput, _ *[]float32) { in.OutGrads[2] = float32(math.NaN()) },
		"NaN gradient first":  func(in *RowsInput, _ *[]float32) { in.Grad[7], in.Acts[1] = float32(math.NaN()), float32(math.NaN()) },
		"Inf activation first": func(in *RowsInput, _ *[]float32) {
			in.Acts[3], in.OutGrads[0] = float32(math.Inf(1)), float32(math.NaN())
		},
		"bad layer":          func(in *RowsInput, _ *[]float32) { in.Layer.Stride[0] = -1 },
		"joint bias lengths": func(in *RowsInput, _ *[]float32) { in.Layer.Bias = JointBias },
	}
	for name, mod := range cases {
		in, d := good(), dir
		mod(&in, &d)
		saved := [][]float32{append([]float32(nil), in.Grad...), append([]float32(nil), in.Acts...), append([]float32(nil), in.OutGrads...)}
		_, err := PreconditionRows(in, d)
		var le *LayerError
		if !errors.As(err, &le) || le.Layer != "stem" {
			t.Errorf("%s: error %v does not name the layer", name, err)
		}
		if strings.Contains(name, "NaN g") || strings.Contains(name, "Inf a") || strings.Contains(name, "NaN o") {
			if !errors.Is(err, ErrNonFinite) {
				t.Errorf("%s: %v does not wrap ErrNonFinite", name, err)
			}
			// The first non-finite value, in the order gradient,
			// activations, output gradients.
			want := map[string]string{
				"NaN gradient": "gradient[0] = NaN", "Inf activation": "activations[5] = -Inf",
				"NaN out grad": "output gradients[2] = NaN", "NaN gradient first": "gradient[7] = NaN",
				"Inf activation first": "activations[3] = +Inf",
			}[name]
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %v, want it to say %q", name, err, want)
			}
		}
		for i, s := range [][]float32{in.Grad, in.Acts, in.OutGrads} {
			if !bitsEqual(s, saved[i]) {
				t.Errorf("%s: input %d changed", name, i)
			}
		}
	}
	var p Preconditioner
	if err := p.init(BackendCPU); err != nil {
		t.Fatal(err)
	}
	if err := p.Precondition(good(), dir, nil); err == nil {
		t.Error("nil diagnostics: no error")
	}
}

func bitsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestSkipNonFinite checks the option: a step with NaN or Inf input is
// skipped and counted, nothing else changes, and the next good step is the
// untouched twin's.
func TestSkipNonFinite(t *testing.T) {
	data := rbData(4, 2)
	for _, kind := range []string{"frog", "kfrog"} {
		t.Run(kind, func(t *testing.T) {
			var o, twin optimizerAPI
			if kind == "frog" {
				cfg := rbConfig()
				cfg.SkipNonFinite = true
				o, _ = New(cfg)
				twin, _ = New(cfg)
			} else {
				cfg := rbKConfig()
				cfg.SkipNonFinite = true
				o, _ = NewKFROG(cfg)
				twin, _ = NewKFROG(cfg)
			}
			newRBWorld(8).register(t, o)
			newRBWorld(8).register(t, twin)
			rbTrain(t, o, data[:1])
			rbTrain(t, twin, data[:1])
			bad := copyBatch(data[1].conv)
			bad.OutGrads[0] = float32(math.NaN())
			badLin := copyBatch(data[1].lin)
			badLin.Grad[3] = float32(math.Inf(1))
			badTheta := append([]float32(nil), data[1].theta...)
			badTheta[1] = float32(math.NaN())
			for _, err := range []error{o.Step("conv", bad), o.Step("lin", badLin), o.StepParam("theta", badTheta), o.Step("conv", bad)} {
				if err != nil {
					t.Fatalf("skipped step returned %v", err)
				}
			}
			skipped := map[string]int64{"theta": paramsOf(o)["theta"].skipped}
			for _, name := range []string{"conv", "lin"} {
				skipped[name] = statsSkipped(t, o, name)
			}
			if skipped["conv"] != 2 || skipped["lin"] != 1 || skipped["theta"] != 1 {
				t.Fatalf("skip counts %v, want conv 2, lin 1, theta 1", skipped)
			}
			rbTrain(t, o, data[1:])
			rbTrain(t, twin, data[1:])
			ckA, _ := o.MarshalBinary()
			ckB, _ := twin.MarshalBinary()
			if string(ckA) == string(ckB) {
				t.Fatal("skip counts are not in the checkpoint")
			}
			// Apart from the skip counters, the state is the twin's: every
			// tensor of the layers and of the parameter, and then the whole
			// state with the counters set to the twin's.
			pa, pb := paramsOf(o)["theta"], paramsOf(twin)["theta"]
			tensors := map[string][2][]float32{"theta": {pa.theta, pb.theta}, "theta momentum": {pa.mom, pb.mom}}
			for _, n := range []string{"conv", "lin"} {
				ba, bb := baseOf(o, n), baseOf(twin, n)
				tensors[n+" weight"] = [2][]float32{ba.weight, bb.weight}
				tensors[n+" bias"] = [2][]float32{ba.bias, bb.bias}
				tensors[n+" momentum"] = [2][]float32{ba.mom, bb.mom}
				tensors[n+" bias momentum"] = [2][]float32{ba.momB, bb.momB}
			}
			for what, ab := range tensors {
				if !bitsEqual(ab[0], ab[1]) {
					t.Fatalf("%s differs from the twin's after skipped steps", what)
				}
			}
			for _, n := range []string{"conv", "lin"} {
				baseOf(o, n).skipped = baseOf(twin, n).skipped
			}
			pa.skipped = pb.skipped
			if string(stateOf(o)) != string(stateOf(twin)) {
				t.Fatal("apart from the skip counters, the state differs from the twin's")
			}
		})
	}
}

// baseOf is the state common to FROG and K-FROG of the layer name.
func baseOf(o optimizerAPI, name string) *layerBase {
	switch o := o.(type) {
	case *Optimizer:
		return &o.layers[name].layerBase
	case *KFROG:
		return &o.layers[name].layerBase
	}
	panic("unknown optimizer")
}

// paramsOf is an optimizer's plain parameters.
func paramsOf(o optimizerAPI) map[string]*param {
	switch o := o.(type) {
	case *Optimizer:
		return o.params
	case *KFROG:
		return o.params
	}
	panic("unknown optimizer")
}

// statsSkipped is the skip counter that Stats reports for the layer name.
func statsSkipped(t *testing.T, o optimizerAPI, name string) int64 {
	t.Helper()
	var skipped int64
	var err error
	switch o := o.(type) {
	case *Optimizer:
		var st LayerStats
		st, err = o.Stats(name)
		skipped = st.Skipped
	case *KFROG:
		var st KStats
		st, err = o.Stats(name)
		skipped = st.Skipped
	}
	if err != nil {
		t.Fatal(err)
	}
	return skipped
}

// TestBreakdownGivesFiniteWeights builds finite inputs on which the float32
// row operator overflows (a patch 1e-20 times smaller than the largest with
// an output gradient 1e30 times larger), so that p.q is infinite and CG
// breaks down at its first iteration. The rows are marked, the direction
// is the normalized gradient, and the optimizer's weights stay finite.
func TestBreakdownGivesFiniteWeights(t *testing.T) {
	l := Linear("fc", 4, 2, NoBias)
	acts := []float32{1, 1, 1, 1, 1e-20, 1e-20, 1e-20, 1e-20}
	outg := []float32{1e-10, 1e-10, 1e20, 1e20}
	grad := []float32{1, 2, 3, 4, -1, 0.5, 2, 1}
	dir := make([]float32, 8)
	in := RowsInput{Layer: l, Grad: grad, Acts: acts, OutGrads: outg, Samples: 2, BatchSize: 2, Damping: 1e-6, Iters: 4, DenomEps: 1e-10}
	d, err := PreconditionRows(in, dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Breakdowns() == 0 {
		t.Fatal("no breakdown on inputs built to overflow the row operator")
	}
	if !allFinite(dir) {
		t.Fatalf("direction %v is not finite", dir)
	}
	for j := 0; j < 2; j++ {
		if !d.Breakdown[j] {
			continue
		}
		// The fallback is the gradient itself, normalized: c_j e_j.
		var n float64
		for _, v := range grad[j*4 : (j+1)*4] {
			n += float64(v) * float64(v)
		}
		for i, v := range grad[j*4 : (j+1)*4] {
			if want := float64(v) / math.Sqrt(n); math.Abs(float64(dir[j*4+i])-want) > 1e-6 {
				t.Errorf("row %d: direction %v, want the normalized gradient", j, dir[j*4:(j+1)*4])
				break
			}
		}
	}
	o, _ := New(Config{LR: 0.1, Iters: 4, Damping: 1e-6, DenomEps: 1e-10, Momentum: 0.9, Backend: BackendCPU})
	weight := []float32{1, 1, 1, 1, 1, 1, 1, 1}
	if err := o.AddLayer(l, weight, nil); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 3; k++ {
		if err := o.Step("fc", Batch{Grad: grad, Acts: acts, OutGrads: outg, BatchSize: 2}); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := o.Stats("fc")
	if st.Rows.Breakdowns() == 0 || !allFinite(weight) {
		t.Fatalf("breakdowns %v, weights %v", st.Rows.Breakdown, weight)
	}
}

// rbRows is a preconditioning problem with data of unit scale.
func rbRows(seed uint64, l Layer) RowsInput {
	rng := rand.New(rand.NewPCG(seed, 3))
	r := 4
	return RowsInput{Layer: l, Grad: rbVec(rng, l.Rows()*l.SolveLen(), 1), Acts: rbVec(rng, r*l.ActLen(), 1),
		OutGrads: rbVec(rng, r*l.OutGradLen(), 1), Samples: r, BatchSize: 16, Damping: 1e-4, Iters: 4, DenomEps: 1e-10}
}

func scaled(s []float32, f float64) []float32 {
	out := make([]float32, len(s))
	for i, v := range s {
		out[i] = float32(float64(v) * f)
	}
	return out
}

// TestScale checks item 3 of the reliability issue: with ScaleInvariant the
// direction does not depend on the scale of the activations or the output
// gradients (1e-20 to 1e20); without it (the reference), large scales give
// the same direction and nothing overflows, and at 1e-20 the direction is
// the documented normalized, damped gradient.
func TestScale(t *testing.T) {
	// The float32 rounding of the scaled inputs, amplified by CG: the
	// reference vectors' tolerance.
	const tol = 1e-4
	layers := []Layer{
		rbConvLayer(),
		Linear("fc", 7, 5, NoBias),
		{Name: "joint", InChannels: 2, OutChannels: 4, InH: 4, InW: 4, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}, Bias: JointBias},
	}
	for _, l := range layers {
		for _, inv := range []bool{false, true} {
			base := rbRows(5, l)
			base.ScaleInvariant = inv
			want := make([]float32, len(base.Grad))
			wantDiag, err := PreconditionRows(base, want)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []float64{1e-20, 1e20, 0x1p-66, 0x1p66} {
				exact := f == 0x1p-66 || f == 0x1p66
				if exact && !inv {
					continue
				}
				for _, which := range []string{"activations", "output gradients", "both"} {
					in := base
					if which != "output gradients" {
						in.Acts = scaled(base.Acts, f)
					}
					if which != "activations" {
						in.OutGrads = scaled(base.OutGrads, f)
					}
					got := make([]float32, len(base.Grad))
					diag, err := PreconditionRows(in, got)
					if err != nil {
						t.Fatalf("%s x %g: %v", which, f, err)
					}
					if !allFinite(got) || diag.Breakdowns() != 0 {
						t.Fatalf("%s x %g: direction not finite or CG broke down", which, f)
					}
					for j, tr := range diag.Trace {
						if math.IsInf(tr, 0) || math.IsNaN(tr) {
							t.Fatalf("%s x %g: trace %d = %v", which, f, j, tr)
						}
					}
					e := relErr(toF64(got), toF64(want))
					// A joint bias's constant coordinate fixes the scale of
					// the activations: scaling them changes the problem.
					jointActs := l.Bias == JointBias && which != "output gradients"
					switch {
					case jointActs:
					case exact:
						// Scaling by a power of two changes no rounding: the
						// scale-invariant direction is the same bit for bit.
						if !bitsEqual(got, want) {
							t.Errorf("%s: %s x %g: direction not bit-identical (%.3g)", l.Name, which, f, e)
						}
					case inv || f > 1:
						if !(e <= tol) {
							t.Errorf("%s, scale invariant %v: %s x %g: direction differs by %.3g", l.Name, inv, which, f, e)
						}
						// Traces scale with the data, exactly as the formula does.
						k := 1.0
						if which != "output gradients" {
							k *= f * f
						}
						if which != "activations" {
							k *= f * f
						}
						for j := range diag.Trace {
							if r := diag.Trace[j] / (k * wantDiag.Trace[j]); math.Abs(r-1) > 1e-5 {
								t.Errorf("%s: %s x %g: trace %d is %g times the expected", l.Name, which, f, j, r)
							}
						}
					default:
						// The reference at 1e-20: t_j << eps, the Fisher term
						// vanishes next to tau, and dir_j = e_j/(sqrt(tau)|e_j|).
						sd := l.SolveLen()
						for j := 0; j < l.Rows(); j++ {
							ej := base.Grad[j*sd : (j+1)*sd]
							var n float64
							for _, v := range ej {
								n += float64(v) * float64(v)
							}
							want := scaled(ej, 1/math.Sqrt(base.Damping*n))
							if e := relErr(toF64(got[j*sd:(j+1)*sd]), toF64(want)); !(e <= 1e-4) {
								t.Errorf("%s: %s x %g: row %d is not the damped gradient direction (%.3g)", l.Name, which, f, j, e)
							}
						}
					}
				}
			}
		}
	}
}

// TestScaleInvariantOptimizer: the option on the optimizer; steps on data
// scaled by 1e-20 and 1e20 move the weights as on the unscaled data.
func TestScaleInvariantOptimizer(t *testing.T) {
	data := rbData(6, 2)
	run := func(f float64, inv bool) []float32 {
		cfg := rbConfig()
		cfg.ScaleInvariant = inv
		o, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		w := newRBWorld(2)
		w.conv.Bias = NoBias
		if err := o.AddLayer(w.conv, w.wConv, nil); err != nil {
			t.Fatal(err)
		}
		for _, d := range data {
			in := copyBatch(d.conv)
			in.BiasGrad = nil
			in.Acts = scaled(in.Acts, f)
			in.OutGrads = scaled(in.OutGrads, f)
			if err := o.Step("conv", in); err != nil {
				t.Fatal(err)
			}
		}
		return w.wConv
	}
	w0 := newRBWorld(2).wConv
	delta := func(w []float32) []float32 {
		d := make([]float32, len(w))
		for i := range w {
			d[i] = w[i] - w0[i]
		}
		return d
	}
	want := delta(run(1, true))
	for _, f := range []float64{1e-20, 1e20} {
		if e := relErr(toF64(delta(run(f, true))), toF64(want)); !(e <= 1e-4) {
			t.Errorf("scale invariant, data x %g: update differs by %.3g", f, e)
		}
	}
	if e := relErr(toF64(delta(run(1e20, false))), toF64(delta(run(1, false)))); !(e <= 1e-4) {
		t.Errorf("reference mode, data x 1e20: update differs by %.3g", e)
	}
}

// TestKFROGActivationScale: K-FROG's direction scales as 1/a with the
// activations (eps negligible), including far outside float32's range for
// a^2 (the operator is shifted by a power of two there); nothing overflows.
func TestKFROGActivationScale(t *testing.T) {
	data := rbData(9, 1)
	run := func(f float64) []float32 {
		cfg := rbKConfig()
		cfg.Momentum, cfg.YMomentum, cfg.Eps = 0, 0, 1e-60
		o, _ := NewKFROG(cfg)
		w := newRBWorld(1)
		if err := o.AddLayer(w.conv, w.wConv, w.bConv); err != nil {
			t.Fatal(err)
		}
		in := copyBatch(data[0].conv)
		in.Acts = scaled(in.Acts, f)
		in.Samples = []int{0, 2, 3, 5}
		if err := o.Step("conv", in); err != nil {
			t.Fatal(err)
		}
		return scaled(o.layers["conv"].rhs, f) // the direction
	}
	want := run(1)
	for _, f := range []float64{0x1p-70, 0x1p70, 0x1p-40} {
		got := run(f)
		if !allFinite(got) {
			t.Fatalf("x %g: update not finite", f)
		}
		if e := relErr(toF64(got), toF64(want)); !(e <= 1e-4) {
			t.Errorf("activations x %g: update x a differs by %.3g", f, e)
		}
	}
}

// TestTinyData: activations and gradients whose largest magnitude is below
// float32's normal range (where the engine's power-of-two factors would
// overflow float32) give a finite direction and finite weights.
func TestTinyData(t *testing.T) {
	l := rbConvLayer()
	l.Bias = NoBias
	for _, inv := range []bool{false, true} {
		in := rbRows(8, l)
		in.ScaleInvariant = inv
		in.Acts = scaled(in.Acts, 0x1p-128)
		in.Grad = scaled(in.Grad, 0x1p-140) // subnormal rows: taken as zero
		got := make([]float32, len(in.Grad))
		if _, err := PreconditionRows(in, got); err != nil || !allFinite(got) {
			t.Fatalf("scale invariant %v: %v, %v", inv, err, got)
		}
		if slices.ContainsFunc(got, func(v float32) bool { return v != 0 }) {
			t.Fatalf("scale invariant %v: subnormal gradient rows give the direction %v, want zero", inv, got)
		}
	}
	for _, kind := range []string{"frog", "kfrog"} {
		o := newOptimizer(t, kind)
		w := newRBWorld(1)
		if err := o.AddLayer(l, w.wConv, nil); err != nil {
			t.Fatal(err)
		}
		in := rbBatch(rand.New(rand.NewPCG(1, 1)), l, 6)
		in.Acts = scaled(in.Acts, 0x1p-135)
		in.Grad = scaled(in.Grad, 0x1p-140)
		if err := o.Step(l.Name, in); err != nil || !allFinite(w.wConv) {
			t.Fatalf("%s: %v", kind, err)
		}
	}
}

// A gradient near the float32 limit that momentum makes overflow is an
// error wrapping ErrNonFinite that names the effective gradient, and
// leaves the state as it was. The gradient is chosen so that the first
// step's effective gradient is finite and the second's is not: FROG's
// Nesterov momentum 0.9 makes them 1.9 g and 2.71 g. (K-FROG's direction
// already overflows at the first step for gradients this large.)
func TestMomentumOverflow(t *testing.T) {
	o := newOptimizer(t, "frog")
	w := newRBWorld(0)
	w.register(t, o)
	in := rbData(3, 1)[0].lin
	for i := range in.Grad {
		in.Grad[i] = 1.5e38
	}
	if err := o.Step("lin", in); err != nil {
		t.Fatalf("first step: %v", err)
	}
	before := stateOf(o)
	err := o.Step("lin", in)
	if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "effective gradient (after momentum) overflows") {
		t.Fatalf("second step: %v, want the effective gradient's overflow", err)
	}
	if string(stateOf(o)) != string(before) {
		t.Error("the failed step changed the state")
	}
}
