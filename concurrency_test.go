package frog

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/frogopt/frog/blas"
)

// ccLayers are layers of different shapes for the concurrency and
// determinism tests; big is large enough for the products to be split
// across cores.
func ccLayers(big bool) []Layer {
	ls := []Layer{
		{Name: "c0", InChannels: 3, OutChannels: 8, InH: 8, InW: 8, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}, Bias: PlainBias},
		{Name: "c1", InChannels: 8, OutChannels: 8, InH: 8, InW: 8, Kernel: [2]int{3, 3}, Stride: [2]int{2, 2}, Padding: [2]int{1, 1}, Groups: 2},
		Linear("fc", 16, 10, JointBias),
		{Name: "dw", InChannels: 4, OutChannels: 4, InH: 6, InW: 6, Kernel: [2]int{3, 3}, Groups: 4},
	}
	if big {
		ls = append(ls, Layer{Name: "big", InChannels: 32, OutChannels: 64, InH: 16, InW: 16,
			Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}})
	}
	return ls
}

type ccRun struct {
	weights, biases map[string][]float32
	theta           []float32
	batches         map[string][]Batch
	thetaGrads      [][]float32
}

func newCCRun(layers []Layer, steps, batch int) *ccRun {
	rng := rand.New(rand.NewPCG(77, 1))
	r := &ccRun{weights: map[string][]float32{}, biases: map[string][]float32{}, batches: map[string][]Batch{}}
	for _, l := range layers {
		r.weights[l.Name] = rbVec(rng, l.WeightLen(), 0.3)
		if l.Bias != NoBias {
			r.biases[l.Name] = rbVec(rng, l.Rows(), 0.1)
		}
		for s := 0; s < steps; s++ {
			r.batches[l.Name] = append(r.batches[l.Name], rbBatch(rng, l, batch))
		}
	}
	r.theta = rbVec(rng, 7, 1)
	for s := 0; s < steps; s++ {
		r.thetaGrads = append(r.thetaGrads, rbVec(rng, 7, 1))
	}
	return r
}

func (r *ccRun) register(t testing.TB, o optimizerAPI, layers []Layer) {
	for _, l := range layers {
		if err := o.AddLayer(l, r.weights[l.Name], r.biases[l.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.AddParam("theta", r.theta); err != nil {
		t.Fatal(err)
	}
}

// result is every parameter, in a fixed order.
func (r *ccRun) result(layers []Layer) [][]float32 {
	var out [][]float32
	for _, l := range layers {
		out = append(out, r.weights[l.Name], r.biases[l.Name])
	}
	return append(out, r.theta)
}

// train takes the steps sequentially: every layer in order, then the
// plain parameter, step after step.
func (r *ccRun) train(t testing.TB, o optimizerAPI, layers []Layer, steps int) {
	t.Helper()
	for s := 0; s < steps; s++ {
		for _, l := range layers {
			if err := o.Step(l.Name, r.batches[l.Name][s]); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.StepParam("theta", r.thetaGrads[s]); err != nil {
			t.Fatal(err)
		}
	}
}

// sameResult compares two results tensor by tensor, bit for bit.
func sameResult(a, b [][]float32) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d tensors, want %d", len(a), len(b))
	}
	for i := range a {
		if !bitsEqual(a[i], b[i]) {
			return fmt.Errorf("tensor %d differs", i)
		}
	}
	return nil
}

// TestConcurrentLayers steps every layer in its own goroutine (and the
// plain parameter in another, with Stats, SetLR and checkpoints going on
// meanwhile); the result is bit for bit the sequential one. Run it with
// -race.
func TestConcurrentLayers(t *testing.T) {
	layers := ccLayers(false)
	const steps = 3
	for _, kind := range []string{"frog", "kfrog"} {
		t.Run(kind, func(t *testing.T) {
			seq := newCCRun(layers, steps, 6)
			oSeq := newOptimizer(t, kind)
			seq.register(t, oSeq, layers)
			seq.train(t, oSeq, layers, steps)

			par := newCCRun(layers, steps, 6)
			o := newOptimizer(t, kind)
			par.register(t, o, layers)
			lr := 0.05
			var wg sync.WaitGroup
			// Every goroutine sends at most one error, so none blocks.
			errs := make(chan error, len(layers)+2)
			for _, l := range layers {
				wg.Add(1)
				go func(name string) {
					defer wg.Done()
					for s := 0; s < steps; s++ {
						if err := o.Step(name, par.batches[name][s]); err != nil {
							errs <- err
							return
						}
					}
				}(l.Name)
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				for s := 0; s < steps; s++ {
					if err := o.StepParam("theta", par.thetaGrads[s]); err != nil {
						errs <- err
						return
					}
				}
			}()
			go func() { // readers and a no-op writer, concurrently with the steps
				defer wg.Done()
				for i := 0; i < 5; i++ {
					if err := o.SetLR(lr); err != nil {
						errs <- err
						return
					}
					if _, err := o.MarshalBinary(); err != nil {
						errs <- err
						return
					}
					switch o := o.(type) {
					case *Optimizer:
						_, _ = o.Stats("c0")
					case *KFROG:
						_, _ = o.Stats("fc")
					}
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if err := sameResult(par.result(layers), seq.result(layers)); err != nil {
				t.Fatalf("concurrent steps differ from sequential ones: %v", err)
			}
		})
	}
}

// TestDeterminism: the same seed gives the same weights bit for bit, from
// run to run and with GOMAXPROCS 1, 2 and 4 (the products of the big layer
// are split across cores when GOMAXPROCS allows), for each kernel set:
// every parallel sum in blas runs over pieces fixed by the shape, added in
// a fixed order.
func TestDeterminism(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	layers := ccLayers(true)
	const steps = 2
	train := func(t *testing.T, kind string, procs int) [][]float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		r := newCCRun(layers, steps, 8)
		o := newOptimizer(t, kind)
		r.register(t, o, layers)
		r.train(t, o, layers, steps)
		return r.result(layers)
	}
	defaultKernels := blas.Current().Name()
	defer func() { _ = blas.Use(defaultKernels) }()
	for _, kernels := range []string{"purego", defaultKernels} {
		if err := blas.Use(kernels); err != nil {
			t.Fatal(err)
		}
		for _, kind := range []string{"frog", "kfrog"} {
			t.Run(kernels+"/"+kind, func(t *testing.T) {
				first := train(t, kind, 2)
				if err := sameResult(train(t, kind, 2), first); err != nil {
					t.Fatalf("run to run, GOMAXPROCS 2: %v", err)
				}
				for _, procs := range []int{1, 4} {
					if err := sameResult(train(t, kind, procs), first); err != nil {
						t.Errorf("GOMAXPROCS %d vs 2: %v", procs, err)
					}
				}
			})
		}
		if kernels == defaultKernels {
			break
		}
	}
}
