package frog_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/frogopt/frog"
)

// randomBatch returns n values drawn from a normal distribution of the
// given scale, from a fixed seed.
func randomBatch(seed uint64, n int, scale float64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

// The stateless entry point: precondition one 3x3 convolution's gradient
// rows from a subsample of 4 of a batch of 32.
func ExamplePreconditionRows() {
	layer := frog.Layer{
		Name:       "conv1",
		InChannels: 3, OutChannels: 8,
		InH: 16, InW: 16,
		Kernel:  [2]int{3, 3},
		Padding: [2]int{1, 1},
	}
	const samples, batch = 4, 32
	in := frog.RowsInput{
		Layer:     layer,
		Grad:      randomBatch(1, layer.Rows()*layer.SolveLen(), 0.01),
		Acts:      randomBatch(2, samples*layer.ActLen(), 1),
		OutGrads:  randomBatch(3, samples*layer.OutGradLen(), 1.0/batch),
		Samples:   samples,
		BatchSize: batch,
		Damping:   1e-6,
		Iters:     4,
		DenomEps:  1e-10,
	}
	dir := make([]float32, layer.Rows()*layer.SolveLen())
	diag, err := frog.PreconditionRows(in, dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("rows:", layer.Rows(), "row length:", layer.SolveLen())
	fmt.Println("breakdowns:", diag.Breakdowns())
	fmt.Println("all traces positive:", diag.Trace[0] > 0 && diag.Trace[7] > 0)
	// Output:
	// rows: 8 row length: 27
	// breakdowns: 0
	// all traces positive: true
}

// A training loop: register the preconditioned layers and the plain
// parameters once, then step each from its gradients, activations and
// output gradients.
func ExampleOptimizer() {
	cfg := frog.DefaultConfig()
	cfg.LR, cfg.Momentum, cfg.WeightDecay, cfg.SampleSize = 0.01, 0.9, 1e-5, 8
	cfg.Seed = 1
	opt, err := frog.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	hidden := frog.Linear("hidden", 20, 16, frog.JointBias)
	w := randomBatch(4, hidden.WeightLen(), 0.2)
	b := make([]float32, hidden.Rows())
	classifier := randomBatch(5, 16*10, 0.2) // not preconditioned
	if err := opt.AddLayer(hidden, w, b); err != nil {
		fmt.Println(err)
		return
	}
	if err := opt.AddParam("classifier", classifier); err != nil {
		fmt.Println(err)
		return
	}
	const batch = 64
	before := w[0]
	for step := 0; step < 3; step++ {
		err := opt.Step("hidden", frog.Batch{
			Grad:      randomBatch(uint64(10+step), hidden.WeightLen(), 0.01),
			BiasGrad:  randomBatch(uint64(20+step), hidden.Rows(), 0.01),
			Acts:      randomBatch(uint64(30+step), batch*hidden.ActLen(), 1),
			OutGrads:  randomBatch(uint64(40+step), batch*hidden.OutGradLen(), 1.0/batch),
			BatchSize: batch,
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		if err := opt.StepParam("classifier", randomBatch(uint64(50+step), len(classifier), 0.01)); err != nil {
			fmt.Println(err)
			return
		}
	}
	if err := opt.SetLR(0.001); err != nil { // a step schedule
		fmt.Println(err)
	}
	st, _ := opt.Stats("hidden")
	fmt.Println("steps:", st.Steps, "subsample:", len(st.Samples), "weights moved:", w[0] != before)
	// Output:
	// steps: 3 subsample: 8 weights moved: true
}

// Errors name the layer and leave everything unchanged.
func ExampleOptimizer_Step_error() {
	opt, _ := frog.New(frog.DefaultConfig())
	l := frog.Linear("fc", 4, 2, frog.NoBias)
	w := make([]float32, l.WeightLen())
	_ = opt.AddLayer(l, w, nil)
	err := opt.Step("fc", frog.Batch{Grad: make([]float32, 3), BatchSize: 1})
	fmt.Println(err)
	// Output:
	// frog: layer "fc": gradient: have 3 values, want 8
}

// K-FROG, the legacy Kronecker variant, has the same shape of API.
func ExampleKFROG() {
	cfg := frog.DefaultKConfig()
	cfg.LR, cfg.SampleSize = 0.01, 16
	opt, err := frog.NewKFROG(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	l := frog.Layer{Name: "conv", InChannels: 2, OutChannels: 4, InH: 8, InW: 8, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}}
	w := randomBatch(6, l.WeightLen(), 0.2)
	before := append([]float32(nil), w...)
	const batch = 32
	err = opt.Step("conv", frog.Batch{})
	fmt.Println(err)
	_ = opt.AddLayer(l, w, nil)
	err = opt.Step("conv", frog.Batch{
		Grad:      randomBatch(7, l.WeightLen(), 0.01),
		Acts:      randomBatch(8, batch*l.ActLen(), 1),
		OutGrads:  randomBatch(9, batch*l.OutGradLen(), 1.0/batch),
		BatchSize: batch,
	})
	var moved float64
	for i := range w {
		moved = math.Max(moved, math.Abs(float64(w[i]-before[i])))
	}
	fmt.Println(err, moved > 0)
	// Output:
	// frog: layer "conv": no layer of this name was registered
	// <nil> true
}
