//go:build !race

// The race detector makes sync.Pool drop items on purpose, so allocation
// counts are only meaningful without it.

package frog

import (
	"testing"

	"github.com/frogopt/frog/blas"
)

// A steady-state step allocates nothing: buffers belong to the layer (or
// the Preconditioner) and are reused; also when CG runs in the points'
// space (blas.RecurrenceEnv).
func TestSteadyStateAllocatesNothing(t *testing.T) {
	for _, mode := range []string{"off", "always"} {
		t.Run(blas.RecurrenceEnv+"="+mode, func(t *testing.T) {
			t.Setenv(blas.RecurrenceEnv, mode)
			steadyStateAllocatesNothing(t)
		})
	}
}

func steadyStateAllocatesNothing(t *testing.T) {
	l := Layer{Name: "c", InChannels: 3, OutChannels: 16, InH: 8, InW: 8, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}, Bias: PlainBias}
	cfg := DefaultConfig()
	cfg.SampleSize, cfg.Momentum, cfg.Backend = 4, 0.9, BackendCPU
	opt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, b := make([]float32, l.WeightLen()), make([]float32, l.Rows())
	if err := opt.AddLayer(l, w, b); err != nil {
		t.Fatal(err)
	}
	const batch = 16
	in := rowsInput(l, batch, batch, 1)
	step := Batch{Grad: in.Grad, BiasGrad: make([]float32, l.Rows()), Acts: in.Acts, OutGrads: in.OutGrads, BatchSize: batch}
	if err := opt.Step("c", step); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(10, func() { _ = opt.Step("c", step) }); n != 0 {
		t.Errorf("Optimizer.Step: %v allocations per steady-state step", n)
	}

	p, err := NewPreconditioner(BackendCPU)
	if err != nil {
		t.Fatal(err)
	}
	dir := make([]float32, l.Rows()*l.SolveLen())
	var diag RowDiagnostics
	if err := p.Precondition(in, dir, &diag); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(10, func() { _ = p.Precondition(in, dir, &diag) }); n != 0 {
		t.Errorf("Preconditioner.Precondition: %v allocations per call", n)
	}
}
