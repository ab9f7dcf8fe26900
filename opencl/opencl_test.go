//go:build opencl

package opencl

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/frogopt/frog/backend"
	"github.com/frogopt/frog/conv"
	"github.com/jgillich/go-opencl/cl"
)

// The tests run on any OpenCL device, PoCL included (AllowCPU). Without a
// device they skip, unless FROG_BACKEND=opencl says the run is meant to
// test the kernels (CI), where a missing device fails.
var testOpts = Options{AllowCPU: true}

var (
	engineOnce sync.Once
	engineErr  error
)

func testEngine(t *testing.T) *Engine {
	t.Helper()
	engineOnce.Do(func() { _, engineErr = OpenDevice(testOpts) })
	if engineErr != nil {
		if os.Getenv("FROG_BACKEND") == "opencl" {
			t.Fatalf("no OpenCL device: %v", engineErr)
		}
		t.Skipf("no OpenCL device: %v", engineErr)
	}
	e, err := NewEngine(testOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

type layerCase struct {
	name    string
	g       conv.Geometry
	bias    bool
	samples int
	iters   int
	tol     float64
}

func geometryCases() []layerCase {
	return []layerCase{
		{name: "conv3x3_s1p1", g: conv.Geometry{InChannels: 3, OutChannels: 8, InH: 6, InW: 6, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1}, samples: 3, iters: 4},
		{name: "conv3x3_s2p1", g: conv.Geometry{InChannels: 4, OutChannels: 6, InH: 7, InW: 7, KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}, samples: 2, iters: 4},
		{name: "conv1x1_s2", g: conv.Geometry{InChannels: 5, OutChannels: 7, InH: 6, InW: 6, KernelH: 1, KernelW: 1, StrideH: 2, StrideW: 2}, samples: 4, iters: 3},
		{name: "dilated", g: conv.Geometry{InChannels: 2, OutChannels: 5, InH: 9, InW: 8, KernelH: 3, KernelW: 3, PadH: 2, PadW: 2, DilationH: 2, DilationW: 2}, samples: 2, iters: 4},
		{name: "rect_bias", g: conv.Geometry{InChannels: 3, OutChannels: 4, InH: 7, InW: 5, KernelH: 2, KernelW: 3, StrideH: 1, StrideW: 2, PadH: 1}, bias: true, samples: 3, iters: 5},
		{name: "groups", g: conv.Geometry{InChannels: 6, OutChannels: 9, InH: 5, InW: 5, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1, Groups: 3}, samples: 2, iters: 4},
		{name: "depthwise_bias", g: conv.Geometry{InChannels: 4, OutChannels: 4, InH: 6, InW: 6, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1, Groups: 4}, bias: true, samples: 3, iters: 4},
		{name: "conv1x1", g: conv.Geometry{InChannels: 16, OutChannels: 12, InH: 4, InW: 4, KernelH: 1, KernelW: 1}, samples: 5, iters: 4},
		{name: "linear", g: conv.Geometry{InChannels: 40, OutChannels: 10, InH: 1, InW: 1, KernelH: 1, KernelW: 1}, samples: 24, iters: 4},
		{name: "linear_bias_tol", g: conv.Geometry{InChannels: 33, OutChannels: 70, InH: 1, InW: 1, KernelH: 1, KernelW: 1}, bias: true, samples: 17, iters: 6, tol: 1e-2},
		{name: "wide", g: conv.Geometry{InChannels: 24, OutChannels: 40, InH: 8, InW: 8, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1}, samples: 4, iters: 4},
	}
}

// newJob makes a random job for c (a zero output-gradient channel and a
// zero gradient row included, the FROG.md edge cases).
func newJob(c layerCase, seed uint64, scale float32) *backend.Job {
	rng := rand.New(rand.NewPCG(seed, 7))
	g := c.g.Normalized()
	job := &backend.Job{
		Geometry: g, JointBias: c.bias, Samples: c.samples,
		LossScale: 64 * 64 / float64(c.samples), Damping: 1e-3, Iters: c.iters, Tolerance: c.tol, DenomEps: 1e-10,
	}
	fill := func(n int, s float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64()) * s
		}
		return v
	}
	R, d := job.Rows(), job.RowLen()
	job.Acts = fill(c.samples*g.ImageLen(), scale)
	job.OutGrads = fill(c.samples*g.OutputLen(), 1e-3)
	job.Grad = fill(R*d, 1e-2)
	if R > 2 {
		L := g.Locations()
		for s := 0; s < c.samples; s++ {
			clear(job.OutGrads[s*g.OutputLen()+1*L:][:L]) // row 1: no signal
		}
		clear(job.Grad[2*d : 3*d]) // row 2: zero gradient
	}
	job.Dir = make([]float32, R*d)
	job.Trace, job.Residual, job.Scale = make([]float64, R), make([]float64, R), make([]float64, R)
	job.Breakdown = make([]bool, R)
	return job
}

func cloneOutputs(j *backend.Job) *backend.Job {
	c := *j
	c.Dir = make([]float32, len(j.Dir))
	c.Trace, c.Residual, c.Scale = make([]float64, len(j.Trace)), make([]float64, len(j.Trace)), make([]float64, len(j.Trace))
	c.Breakdown = make([]bool, len(j.Trace))
	return &c
}

func relL2(got, want []float64) float64 {
	var num, den float64
	for i := range want {
		d := got[i] - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func f64(s []float32) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = float64(v)
	}
	return out
}

// compare checks the device's outputs against the CPU engine's.
func compare(t *testing.T, got, want *backend.Job, tol float64) {
	t.Helper()
	for _, v := range got.Dir {
		if v != v || math.IsInf(float64(v), 0) {
			t.Fatalf("direction not finite")
		}
	}
	errDir := relL2(f64(got.Dir), f64(want.Dir))
	errTrace := relL2(got.Trace, want.Trace)
	errScale := relL2(got.Scale, want.Scale)
	errRes := relL2(got.Residual, want.Residual)
	t.Logf("relative L2: direction %.2g, trace %.2g, scale %.2g, residual %.2g", errDir, errTrace, errScale, errRes)
	if !(errDir <= tol) || !(errTrace <= 1e-12) || !(errScale <= tol) {
		t.Errorf("device differs from the CPU beyond %g", tol)
	}
	// The residuals track |b_j - A_j z_j| to float32 rounding of b_j: a
	// row that has converged (the operator near tau*I, say) has a residual
	// that is all rounding, which the two engines' sums round differently.
	d := want.RowLen()
	for j, r := range want.Residual {
		var nb float64
		for _, v := range want.Grad[j*d : (j+1)*d] {
			nb += float64(v) * float64(v)
		}
		if diff := math.Abs(got.Residual[j] - r); !(diff <= 10*tol*r+1e-6*math.Sqrt(nb)) {
			t.Errorf("row %d: residual %v, CPU %v (|b| %v)", j, got.Residual[j], r, math.Sqrt(nb))
		}
	}
	for j := range want.Breakdown {
		if got.Breakdown[j] != want.Breakdown[j] {
			t.Errorf("row %d: breakdown %v, CPU %v", j, got.Breakdown[j], want.Breakdown[j])
		}
	}
}

// caseTol is the allowed relative error: float32 rounding, except that
// with an early-stop tolerance a row near the threshold may stop one
// iteration apart on the two engines.
func caseTol(c layerCase) float64 {
	if c.tol > 0 {
		return 1e-4
	}
	return 1e-5
}

// TestMatchesCPU runs every case with the blocking chosen by shape and
// then with each of the device's blockings forced, so that every blocking
// of both products runs on any device (the choice by shape alone depends
// on the number of compute units and can leave some unused).
func TestMatchesCPU(t *testing.T) {
	e := testEngine(t)
	var tiles []string
	for _, v := range e.dev.variants {
		tiles = append(tiles, v.tiles.String())
	}
	t.Logf("device %s, tiles %s", e.Device().Name(), strings.Join(tiles, "; "))
	ran := make([][2]bool, len(e.dev.variants)) // [variant][product]
	defer func() {
		for v, r := range ran {
			if r != [2]bool{true, true} {
				t.Errorf("tiles %v did not run for both products: %v", e.dev.variants[v].tiles, r)
			}
		}
	}()
	for force := -1; force < len(e.dev.variants); force++ {
		mode := "auto"
		if force >= 0 {
			mode = e.dev.variants[force].tiles.String()
		}
		for i, c := range geometryCases() {
			t.Run(mode+"/"+c.name, func(t *testing.T) {
				e.forceVariant = force
				defer func() { e.forceVariant = -1 }()
				want := newJob(c, uint64(i), 1)
				var cpu backend.CPU
				if err := cpu.Precondition(want); err != nil {
					t.Fatal(err)
				}
				got := cloneOutputs(want)
				if err := e.Precondition(got); err != nil {
					t.Fatal(err)
				}
				for k, u := range e.used {
					if force >= 0 && u.variant != force {
						t.Errorf("product %d: forced tiles %d, ran %d", k, force, u.variant)
					}
					ran[u.variant][k] = true
				}
				compare(t, got, want, caseTol(c))
			})
		}
	}
}

// TestSplitAndReuse runs jobs of growing and shrinking sizes on one engine
// (buffers are reused and regrown) with split-K forced on.
func TestSplitAndReuse(t *testing.T) {
	e := testEngine(t)
	e.minSplit = 3
	cases := geometryCases()
	for _, i := range []int{10, 0, 9, 5, 10} {
		want := newJob(cases[i], uint64(100+i), 1)
		var cpu backend.CPU
		if err := cpu.Precondition(want); err != nil {
			t.Fatal(err)
		}
		got := cloneOutputs(want)
		if err := e.Precondition(got); err != nil {
			t.Fatalf("%s: %v", cases[i].name, err)
		}
		if e.used[0].parts < 2 || e.used[1].parts < 2 {
			t.Errorf("%s: split-K not used: %+v", cases[i].name, e.used)
		}
		compare(t, got, want, caseTol(cases[i]))
	}
}

// TestExtremeScales: activations scaled by 1e-20 and 1e20 stay finite and
// match the CPU, through the power-of-two patch scale (issue 6 item 3).
// (The update itself is not scale-free at 1e-20: the trace then falls
// below denom_eps, on the CPU too.)
func TestExtremeScales(t *testing.T) {
	e := testEngine(t)
	c := geometryCases()[3]
	for _, s := range []float32{1e-20, 1e20, 1e-30, 1e30} {
		job := newJob(c, 5, s)
		if err := e.Precondition(job); err != nil {
			t.Fatal(err)
		}
		var cpu backend.CPU
		want := cloneOutputs(job)
		if err := cpu.Precondition(want); err != nil {
			t.Fatal(err)
		}
		compare(t, job, want, 1e-5)
	}
}

// TestDeterministic: the same job twice gives the same bits.
func TestDeterministic(t *testing.T) {
	e := testEngine(t)
	c := geometryCases()[10]
	a := newJob(c, 9, 1)
	b := cloneOutputs(a)
	if err := e.Precondition(a); err != nil {
		t.Fatal(err)
	}
	if err := e.Precondition(b); err != nil {
		t.Fatal(err)
	}
	for i := range a.Dir {
		if math.Float32bits(a.Dir[i]) != math.Float32bits(b.Dir[i]) {
			t.Fatalf("element %d: %v then %v", i, a.Dir[i], b.Dir[i])
		}
	}
}

// TestDeviceJob passes device buffers holding a whole batch, with the
// subsample as indices, and checks the direction left on the device.
func TestDeviceJob(t *testing.T) {
	e := testEngine(t)
	c := geometryCases()[5]
	g := c.g.Normalized()
	batch := 5
	idx := []int{3, 0, 4}
	c.samples = batch
	full := newJob(c, 11, 1)
	// The host job for the CPU: the subsample, in index order.
	want := cloneOutputs(full)
	want.Samples = len(idx)
	want.LossScale = float64(batch*batch) / float64(len(idx))
	want.Acts, want.OutGrads = nil, nil
	for _, s := range idx {
		want.Acts = append(want.Acts, full.Acts[s*g.ImageLen():(s+1)*g.ImageLen()]...)
		want.OutGrads = append(want.OutGrads, full.OutGrads[s*g.OutputLen():(s+1)*g.OutputLen()]...)
	}
	var cpu backend.CPU
	if err := cpu.Precondition(want); err != nil {
		t.Fatal(err)
	}

	ctx := e.Context()
	// One buffer holds activations after 3 leading values, another the
	// output gradients and the gradient, a third the direction.
	acts, err := ctx.CreateEmptyBuffer(cl.MemReadWrite, 4*(3+len(full.Acts)))
	if err != nil {
		t.Fatal(err)
	}
	defer acts.Release()
	mixed, err := ctx.CreateEmptyBuffer(cl.MemReadWrite, 4*(len(full.OutGrads)+len(full.Grad)))
	if err != nil {
		t.Fatal(err)
	}
	defer mixed.Release()
	dir, err := ctx.CreateEmptyBuffer(cl.MemReadWrite, 4*len(full.Dir))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Release()
	q := e.Queue()
	for _, w := range []struct {
		off  int
		host []float32
		mem  *cl.MemObject
	}{{3, full.Acts, acts}, {0, full.OutGrads, mixed}, {len(full.OutGrads), full.Grad, mixed}} {
		ev, err := q.EnqueueWriteBufferFloat32(w.mem, true, 4*w.off, w.host, nil)
		if err != nil {
			t.Fatal(err)
		}
		ev.Release()
	}
	job := &DeviceJob{
		Geometry: c.g, JointBias: c.bias, Batch: batch, SampleIndex: idx,
		Acts: Buffer{acts, 3}, OutGrads: Buffer{mixed, 0}, Grad: Buffer{mixed, len(full.OutGrads)}, Dir: Buffer{dir, 0},
		LossScale: want.LossScale, Damping: want.Damping, Iters: want.Iters, DenomEps: want.DenomEps,
		Trace: make([]float64, g.OutChannels), Scale: make([]float64, g.OutChannels),
		Residual: make([]float64, g.OutChannels), Breakdown: make([]bool, g.OutChannels),
	}
	if err := e.PreconditionDevice(job); err != nil {
		t.Fatal(err)
	}
	got := cloneOutputs(want)
	ev, err := q.EnqueueReadBufferFloat32(dir, true, 0, got.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev.Release()
	got.Trace, got.Scale, got.Residual, got.Breakdown = job.Trace, job.Scale, job.Residual, job.Breakdown
	compare(t, got, want, 1e-5)

	// Async, no diagnostics, over a direction filled with NaN: once the
	// queue has finished it holds the synchronous run's bits. Then bad
	// jobs are refused.
	nan := math.Float32bits(float32(math.NaN()))
	ev, err = q.EnqueueFillBuffer(dir, unsafe.Pointer(&nan), 4, 0, 4*len(full.Dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev.Release()
	job.Async, job.Trace, job.Scale, job.Residual, job.Breakdown = true, nil, nil, nil, nil
	if err := e.PreconditionDevice(job); err != nil {
		t.Fatal(err)
	}
	if err := q.Finish(); err != nil {
		t.Fatal(err)
	}
	async := make([]float32, len(got.Dir))
	ev, err = q.EnqueueReadBufferFloat32(dir, true, 0, async, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev.Release()
	for i := range async {
		if math.Float32bits(async[i]) != math.Float32bits(got.Dir[i]) {
			t.Fatalf("Async: direction[%d] = %v, synchronously %v", i, async[i], got.Dir[i])
		}
	}
	bad := *job
	for _, idx := range [][]int{{0, 0}, {4, 1, 3, 1}, {2, 5}, {-1}} {
		bad.SampleIndex = idx
		if err := e.PreconditionDevice(&bad); err == nil || !strings.Contains(err.Error(), "repeated") {
			t.Errorf("indices %v: %v", idx, err)
		}
	}
	// The rejected indices leave nothing marked: the job runs again.
	if err := e.PreconditionDevice(job); err != nil {
		t.Fatal(err)
	}
	if err := q.Finish(); err != nil {
		t.Fatal(err)
	}
	bad = *job
	bad.Grad.Offset = len(full.OutGrads) + 1
	if err := e.PreconditionDevice(&bad); err == nil || !strings.Contains(err.Error(), "do not fit") {
		t.Errorf("short buffer: %v", err)
	}
	bad = *job
	bad.Dir = bad.Grad
	if err := e.PreconditionDevice(&bad); err == nil {
		t.Errorf("direction aliasing the gradient accepted")
	}
}

// TestFaults: each injected fault gives an error, never a crash, and the
// device works again once the fault is gone.
func TestFaults(t *testing.T) {
	e := testEngine(t)
	job := newJob(geometryCases()[0], 3, 1)

	restore := InjectFault(FaultNoPlatform)
	if _, err := NewEngine(testOpts); err == nil || !strings.Contains(err.Error(), "no platform") {
		t.Errorf("no platform: %v", err)
	}
	restore()

	restore = InjectFault(FaultBuild)
	if _, err := NewEngine(testOpts); err == nil || !strings.Contains(err.Error(), "building the kernels") {
		t.Errorf("build: %v", err)
	} else {
		t.Logf("build fault: %.120s", err)
	}
	restore()

	fresh, err := NewEngine(testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	restore = InjectFault(FaultAlloc)
	if err := fresh.Precondition(cloneOutputs(job)); err == nil || !strings.Contains(err.Error(), "Allocation") {
		t.Errorf("alloc: %v", err)
	}
	restore()
	if err := fresh.Precondition(cloneOutputs(job)); err != nil {
		t.Errorf("after the faults: %v", err)
	}

	// A buffer beyond the device's largest allocation is refused.
	limited := *e.dev
	limited.maxMem = 1024
	e.dev = &limited
	if err := e.Precondition(cloneOutputs(job)); err == nil || !strings.Contains(err.Error(), "largest allocation") {
		t.Errorf("allocation limit: %v", err)
	}
}

// TestConcurrentEngines runs engines of one device from several goroutines
// at once (layers stepping in parallel, issue 6 item 5).
func TestConcurrentEngines(t *testing.T) {
	testEngine(t)
	cases := geometryCases()
	const workers = 3
	var wg sync.WaitGroup
	// Each goroutine sends one error at most, so that none blocks.
	errs := make(chan string, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			e, err := NewEngine(testOpts)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer e.Close()
			for k := 0; k < 3; k++ {
				c := cases[(w*3+k)%len(cases)]
				want := newJob(c, uint64(w*10+k), 1)
				var cpu backend.CPU
				if err := cpu.Precondition(want); err != nil {
					errs <- err.Error()
					return
				}
				got := cloneOutputs(want)
				if err := e.Precondition(got); err != nil {
					errs <- err.Error()
					return
				}
				if d := relL2(f64(got.Dir), f64(want.Dir)); !(d <= caseTol(c)) {
					errs <- fmt.Sprintf("%s: relative error %.2g", c.name, d)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Error(s)
	}
}

// TestPlan checks Engine.plan's choices for the ResNet-18 shapes at r = 64
// on a model of a 132-unit GPU with the GPU blockings (no device needed):
// every plan is valid, and it logs them; over a coarse sweep of shapes
// every GPU blocking is chosen for some.
func TestPlan(t *testing.T) {
	d := &Device{units: 132}
	for _, ts := range defaultVariants(true, 1024) {
		d.variants = append(d.variants, variant{tiles: ts})
	}
	e := &Engine{dev: d, forceVariant: -1}
	for _, s := range resnetShapes {
		g := s.geometry().Normalized()
		N := 64 * g.Locations()
		dp, Np := roundUp(g.PatchLen(), kPad), roundUp(N, nPad)
		pp := e.plan(g.OutChannels, Np, dp, 1, false)
		tp := e.plan(g.OutChannels, dp, Np, 1, true)
		for _, c := range []struct {
			p productPlan
			K int
		}{{pp, dp}, {tp, Np}} {
			if c.p.variant < 0 || c.p.parts < 1 || (c.p.parts-1)*c.p.chunk >= c.K || c.p.parts*c.p.chunk < c.K {
				t.Errorf("%s: bad plan %+v for a contraction of %d", s.name, c.p, c.K)
			}
		}
		t.Logf("%-10s pxt %v x%d, tx %v x%d", s.name, d.variants[pp.variant].tiles, pp.parts,
			d.variants[tp.variant].tiles, tp.parts)
	}
	// Every GPU blocking is the best for some shapes: one that never is
	// only costs a program build.
	used := make([]bool, len(d.variants))
	for _, units := range []int{28, 132} {
		d.units = units
		for _, M := range []int{16, 64, 128, 192, 256, 512, 1024} {
			for _, cols := range []int{32, 128, 512, 2048, 8192, 32768} {
				for _, K := range []int{128, 1152, 4608} {
					for _, G := range []int{1, 32} {
						if cols%nPad == 0 {
							used[e.plan(M, cols, K, G, false).variant] = true
						}
						used[e.plan(M, cols, K, G, true).variant] = true
					}
				}
			}
		}
	}
	for v, u := range used {
		if !u {
			t.Errorf("tiles %v are never chosen", d.variants[v].tiles)
		}
	}
	d.units = 132
	// Forced splitting of a contraction as short as the deepest slab
	// takes a blocking that can split it.
	e.minSplit = 3
	if p := e.plan(8, nPad, kPad, 1, false); p.parts < 2 {
		t.Errorf("minSplit 3, contraction %d: plan %+v", kPad, p)
	}
}

// TestProfiledEngine: an engine whose queue records kernel times (the
// per-kernel profile of BenchmarkProfileResNet18) gives the bits of a
// plain engine, and its profile holds every kernel of the run with the
// products once per CG iteration and positive times.
func TestProfiledEngine(t *testing.T) {
	plain := testEngine(t)
	d := plain.Device()
	e, err := d.newProfiledEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := geometryCases()[10]
	job := newJob(c, 3, 1)
	want := cloneOutputs(job)
	if err := plain.Precondition(want); err != nil {
		t.Fatal(err)
	}
	dj, free, err := deviceCopy(e, job)
	if err != nil {
		t.Fatal(err)
	}
	defer free()
	if err := e.PreconditionDevice(dj); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(job.Dir))
	ev, err := e.Queue().EnqueueReadBufferFloat32(dj.Dir.Mem, true, dj.Dir.Offset*4, got, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev.Release()
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want.Dir[i]) {
			t.Fatalf("direction[%d] = %v with profiling, %v without", i, got[i], want.Dir[i])
		}
	}
	if err := e.prof.collect(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"fisher_pxt", "fisher_tx", "cg_update", "cg_last", "im2col"} {
		if e.prof.count[k] == 0 || e.prof.total[k] <= 0 {
			t.Errorf("%s: %d launches, %v recorded", k, e.prof.count[k], e.prof.total[k])
		}
	}
	// The last iteration runs the first product alone (cg_last).
	if tx, pxt, last := e.prof.count["fisher_tx"], e.prof.count["fisher_pxt"], e.prof.count["cg_last"]; tx != c.iters-1 || pxt != c.iters || last != 1 {
		t.Errorf("fisher_tx ran %d times, fisher_pxt %d, cg_last %d for %d CG iterations", tx, pxt, last, c.iters)
	}
	t.Log(e.prof.String(1))
}

// TestParallelCopy: the parts of a host copy cover it exactly, for sizes
// around the part boundaries, and a copy allocates nothing.
func TestParallelCopy(t *testing.T) {
	var e Engine
	src := make([]float32, 16<<16+37)
	for i := range src {
		src[i] = float32(i + 1)
	}
	dst := make([]float32, len(src))
	for _, n := range []int{0, 1, 1<<16 - 1, 2 << 16, 2<<16 + 1, 5<<16 + 3, len(src)} {
		clear(dst)
		e.parallelCopy(dst[:n], src[:n])
		for i := range dst {
			want := float32(0)
			if i < n {
				want = src[i]
			}
			if dst[i] != want {
				t.Fatalf("n = %d: dst[%d] = %v, want %v", n, i, dst[i], want)
			}
		}
	}
	if a := testing.AllocsPerRun(10, func() { e.parallelCopy(dst, src) }); a != 0 {
		t.Errorf("parallelCopy allocates %v times per call", a)
	}
}

// TestProfileCollectError: events whose times cannot be read (from a queue
// without profiling) give an error and no times, and collect still takes
// every event (releasing each).
func TestProfileCollectError(t *testing.T) {
	d := testEngine(t).Device()
	q, err := d.ctx.CreateCommandQueue(d.dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	e, err := d.newEngine(q, &profile{total: map[string]time.Duration{}, count: map[string]int{}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Precondition(newJob(geometryCases()[0], 3, 1)); err != nil {
		t.Fatal(err)
	}
	n := len(e.prof.events)
	if err := e.prof.collect(); err == nil {
		t.Skipf("the device reports times without profiling (%d events)", n)
	}
	if len(e.prof.events) != 0 || n < 2 {
		t.Errorf("%d of %d events left", len(e.prof.events), n)
	}
	if len(e.prof.total) != 0 {
		t.Errorf("unreadable events recorded times: %v", e.prof.total)
	}
}
