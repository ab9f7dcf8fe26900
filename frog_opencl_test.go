//go:build opencl

package frog

import (
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/frogopt/frog/opencl"
)

// requireOpenCL skips without an OpenCL device, except when
// FROG_BACKEND=opencl says the run is meant to test it (CI on PoCL).
func requireOpenCL(t *testing.T) {
	t.Helper()
	t.Setenv(openclDeviceEnv, "any")
	if _, err := opencl.OpenDevice(opencl.Options{AllowCPU: true}); err != nil {
		if strings.EqualFold(os.Getenv(BackendEnv), BackendOpenCL) {
			t.Fatalf("FROG_BACKEND=opencl but no OpenCL device: %v", err)
		}
		t.Skipf("no OpenCL device: %v", err)
	}
}

// TestReferenceOpenCL is the reference harness on the OpenCL engine, which
// must really run every step (no fallback).
func TestReferenceOpenCL(t *testing.T) {
	requireOpenCL(t)
	for _, c := range loadReferenceCases(t) {
		if c.Optimizer != "frog" {
			continue // K-FROG does not use the engines
		}
		t.Run(c.Name, func(t *testing.T) {
			tol := c.Tolerance
			if tol == 0 {
				tol = 1e-4
			}
			cfg := c.frogConfig(t)
			cfg.Backend = BackendOpenCL
			opt, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer opt.Close()
			weight, bias := initialState(&c)
			if err := opt.AddLayer(c.layer(), weight, bias); err != nil {
				t.Fatal(err)
			}
			runSteps(t, &c, opt, weight, bias, tol, func(k int, s *refStep) {
				st, err := opt.Stats(c.Name)
				if err != nil {
					t.Fatal(err)
				}
				if st.Backend != BackendOpenCL || st.Fallback != "" {
					t.Fatalf("step %d ran on %q (fallback %q), want opencl", k, st.Backend, st.Fallback)
				}
				if s.TraceOverD != nil {
					checkClose(t, k, "trace_over_d", st.Rows.Trace, s.TraceOverD.Data, tol)
				}
				if s.CGSolution != nil {
					checkClose(t, k, "cg_solution", zFromDirection(opt, c.Name, st), s.CGSolution.Data, tol)
				}
			})
		})
	}
}

// openclRowsInput is a random grouped convolution with a joint bias.
func openclRowsInput() RowsInput {
	l := Layer{Name: "g", InChannels: 6, OutChannels: 8, InH: 6, InW: 5, Kernel: [2]int{3, 2},
		Stride: [2]int{2, 1}, Padding: [2]int{1, 1}, Groups: 2, Bias: JointBias}
	rng := rand.New(rand.NewPCG(1, 2))
	r := 3
	return RowsInput{
		Layer: l, Grad: rbVec(rng, l.Rows()*l.SolveLen(), 1), Acts: rbVec(rng, r*l.ActLen(), 1), OutGrads: rbVec(rng, r*l.OutGradLen(), 1),
		Samples: r, BatchSize: 16, Damping: 1e-3, Iters: 4, DenomEps: 1e-10,
	}
}

func TestOpenCLPreconditioner(t *testing.T) {
	requireOpenCL(t)
	in := openclRowsInput()
	want, _ := precondition(t, in) // PreconditionRows: always the CPU
	p, err := NewPreconditioner(BackendOpenCL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Backend() != BackendOpenCL {
		t.Fatalf("backend %q (fallback %q)", p.Backend(), p.Fallback())
	}
	dir := make([]float32, len(want))
	var diag RowDiagnostics
	for range 2 { // the second call reuses the device buffers
		if err := p.Precondition(in, dir, &diag); err != nil {
			t.Fatal(err)
		}
	}
	if e := relErr(toF64(dir), toF64(want)); !(e <= 1e-5) {
		t.Errorf("relative error %.3g against the CPU", e)
	} else {
		t.Logf("relative error %.3g against the CPU", e)
	}
}

// TestOpenCLFaultFallback injects each OpenCL fault (issue 6 item 8): the
// backend falls back to the CPU, says why, and gives the CPU's answer.
func TestOpenCLFaultFallback(t *testing.T) {
	requireOpenCL(t)
	in := openclRowsInput()
	want, _ := precondition(t, in) // PreconditionRows: always the CPU
	for _, tc := range []struct {
		fault opencl.Fault
		where string // "start": the factory fails; "run": Precondition fails
		why   string
	}{
		{opencl.FaultNoPlatform, "start", "no platform"},
		{opencl.FaultBuild, "start", "building the kernels"},
		{opencl.FaultAlloc, "run", "Allocation"},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			restore := opencl.InjectFault(tc.fault)
			defer restore()
			p, err := NewPreconditioner(BackendOpenCL)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if tc.where == "start" && (p.Backend() != BackendCPU || !strings.Contains(p.Fallback(), tc.why)) {
				t.Fatalf("backend %q, fallback %q; want cpu because of %q", p.Backend(), p.Fallback(), tc.why)
			}
			if tc.where == "run" && p.Backend() != BackendOpenCL {
				t.Fatalf("backend %q before the run (fallback %q)", p.Backend(), p.Fallback())
			}
			dir := make([]float32, len(want))
			var diag RowDiagnostics
			if err := p.Precondition(in, dir, &diag); err != nil {
				t.Fatal(err)
			}
			if p.Backend() != BackendCPU || !strings.Contains(p.Fallback(), tc.why) {
				t.Fatalf("backend %q, fallback %q after the run", p.Backend(), p.Fallback())
			}
			t.Logf("fallback: %.160s", p.Fallback())
			for i := range want {
				if math.Float32bits(dir[i]) != math.Float32bits(want[i]) {
					t.Fatalf("element %d: %v, CPU %v", i, dir[i], want[i])
				}
			}
		})
	}

	// The optimizer reports a run-time fallback in its layer statistics.
	restore := opencl.InjectFault(opencl.FaultAlloc)
	defer restore()
	cfg := DefaultConfig()
	cfg.Backend = BackendOpenCL
	opt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	l := Linear("fc", 5, 3, NoBias)
	weight := make([]float32, l.WeightLen())
	if err := opt.AddLayer(l, weight, nil); err != nil {
		t.Fatal(err)
	}
	batch := Batch{Grad: []float32{1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 1, 0, 1, 0, 1}, BatchSize: 2,
		Acts: []float32{1, 2, 3, 4, 5, -1, 0, 1, 0, -1}, OutGrads: []float32{0.1, 0.2, 0.3, -0.3, 0.2, -0.1}}
	if err := opt.Step("fc", batch); err != nil {
		t.Fatal(err)
	}
	st, err := opt.Stats("fc")
	if err != nil {
		t.Fatal(err)
	}
	if st.Backend != BackendCPU || !strings.Contains(st.Fallback, "Allocation") {
		t.Errorf("stats: backend %q, fallback %q", st.Backend, st.Fallback)
	}
}

// TestOpenCLAutoChoice: auto takes a GPU when there is one and otherwise
// the CPU backend, never a CPU OpenCL device, and says why.
func TestOpenCLAutoChoice(t *testing.T) {
	t.Setenv(openclDeviceEnv, "")
	t.Setenv(BackendEnv, "")
	p, err := NewPreconditioner(BackendAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	t.Logf("auto: backend %q, fallback %q", p.Backend(), p.Fallback())
	switch p.Backend() {
	case BackendOpenCL:
		if e, ok := p.engine.(*opencl.Engine); !ok || strings.Contains(e.Device().Name(), "(CPU)") {
			t.Errorf("auto chose a CPU OpenCL device")
		}
	case BackendCPU:
		if !strings.Contains(p.Fallback(), "opencl unavailable") {
			t.Errorf("fallback %q does not say why opencl was not used", p.Fallback())
		}
	default:
		t.Errorf("auto chose %q", p.Backend())
	}
}

// TestOpenCLNamedExplicitly: a backend named in code (not only through
// FROG_BACKEND) accepts whatever OpenCL device there is, PoCL included.
func TestOpenCLNamedExplicitly(t *testing.T) {
	requireOpenCL(t)
	t.Setenv(openclDeviceEnv, "")
	t.Setenv(BackendEnv, "")
	p, err := NewPreconditioner(BackendOpenCL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Backend() != BackendOpenCL {
		t.Fatalf("Backend %q named in code gave %q (fallback %q)", BackendOpenCL, p.Backend(), p.Fallback())
	}
}
