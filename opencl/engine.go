//go:build opencl

package opencl

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/frogopt/frog/backend"
	"github.com/frogopt/frog/conv"
	"github.com/jgillich/go-opencl/cl"
)

// Sections of the per-row float64 state (kernels.cl S_*) and flags (F_*).
const (
	rowRho = iota
	rowEps
	rowRho0
	rowScaleIn
	rowTrace
	rowResid
	rowScale
	rowSections
)

const (
	flagDone = iota
	flagBroke
	flagSections
)

// Engine runs backend.Jobs on an OpenCL device. It keeps its device
// buffers between calls and grows them to the largest job seen, so that
// steady-state steps allocate nothing. Like every backend.Engine it is used
// by one goroutine at a time; engines on one Device run concurrently.
type Engine struct {
	dev   *Device
	queue *cl.CommandQueue

	actMax, im2col, norms, weights, pxt, tx, cgInit, cgUpdate, cgFinish *cl.Kernel
	// the products with the device's small tiles (nil without them)
	pxtSmall, txSmall *cl.Kernel

	// device buffers, reused across steps
	acts, outGrads, grad, dir                     devBuffer // host jobs' staging
	sidx, maxbits, patches, pnorms, lhat, product devBuffer
	p, res, partials, rows, flags                 devBuffer

	// host staging for results
	rowsHost  []float64
	flagsHost []int32
	sidxHost  []int32
	// identityLen is how many indices 0, 1, ... e.sidx holds.
	identityLen int

	// minSplit, when positive, forces at least this many partial sums in
	// the second product (tests use it to cover split-K on small devices).
	minSplit int
	// forceTiles, for tests, overrides the choice of tiles for both
	// products: tilesAuto (by size), tilesMain or tilesSmall (when the
	// device has small tiles), so that every case can run both on any
	// device, whatever its number of compute units.
	forceTiles int
	// usedSmall records which products of the last run took the small
	// tiles, for tests.
	usedSmall [2]bool
}

// Values of Engine.forceTiles.
const (
	tilesAuto = iota
	tilesMain
	tilesSmall
)

type devBuffer struct {
	mem   *cl.MemObject
	bytes int
}

// Buffer names a device buffer of float32 values and the element at which
// a tensor starts in it.
type Buffer struct {
	Mem    *cl.MemObject
	Offset int
}

// NewEngine opens the device for opts (see OpenDevice) and makes an engine
// on it.
func NewEngine(opts Options) (*Engine, error) {
	d, err := OpenDevice(opts)
	if err != nil {
		return nil, err
	}
	return d.NewEngine()
}

// NewEngine makes an engine with its own command queue on d.
func (d *Device) NewEngine() (*Engine, error) {
	q, err := d.ctx.CreateCommandQueue(d.dev, 0)
	if err != nil {
		return nil, fmt.Errorf("opencl: %s: creating a command queue: %w", d.name, err)
	}
	e := &Engine{dev: d, queue: q}
	for _, k := range []struct {
		dst  **cl.Kernel
		name string
	}{
		{&e.actMax, "act_maxabs"}, {&e.im2col, "im2col"}, {&e.norms, "patch_norms"},
		{&e.weights, "row_weights"}, {&e.pxt, "fisher_pxt"}, {&e.tx, "fisher_tx"},
		{&e.cgInit, "cg_init"}, {&e.cgUpdate, "cg_update"}, {&e.cgFinish, "cg_finish"},
	} {
		if *k.dst, err = d.program.CreateKernel(k.name); err != nil {
			e.Close()
			return nil, fmt.Errorf("opencl: %s: kernel %s: %w", d.name, k.name, err)
		}
	}
	if d.small != nil {
		if e.pxtSmall, err = d.small.CreateKernel("fisher_pxt"); err == nil {
			e.txSmall, err = d.small.CreateKernel("fisher_tx")
		}
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("opencl: %s: small-tile kernels: %w", d.name, err)
		}
	}
	return e, nil
}

// Name returns "opencl".
func (*Engine) Name() string { return "opencl" }

// Device returns the engine's device.
func (e *Engine) Device() *Device { return e.dev }

// Context returns the OpenCL context of the engine's device.
func (e *Engine) Context() *cl.Context { return e.dev.ctx }

// Queue returns the engine's in-order command queue. Commands a caller
// enqueues on it after PreconditionDevice see the direction it wrote.
func (e *Engine) Queue() *cl.CommandQueue { return e.queue }

// Close waits for the engine's commands and releases its buffers, kernels
// and queue (not the device, which the process shares). The engine must
// not be used afterwards.
func (e *Engine) Close() error {
	if e.queue != nil {
		_ = e.queue.Finish()
	}
	for _, b := range []*devBuffer{&e.acts, &e.outGrads, &e.grad, &e.dir, &e.sidx, &e.maxbits,
		&e.patches, &e.pnorms, &e.lhat, &e.product, &e.p, &e.res, &e.partials, &e.rows, &e.flags} {
		if b.mem != nil {
			b.mem.Release()
		}
		*b = devBuffer{}
	}
	e.identityLen = 0
	for _, k := range []**cl.Kernel{&e.actMax, &e.im2col, &e.norms, &e.weights, &e.pxt, &e.tx,
		&e.cgInit, &e.cgUpdate, &e.cgFinish, &e.pxtSmall, &e.txSmall} {
		if *k != nil {
			(*k).Release()
			*k = nil
		}
	}
	if e.queue != nil {
		e.queue.Release()
		e.queue = nil
	}
	return nil
}

// ensure grows b to hold at least bytes.
func (e *Engine) ensure(b *devBuffer, bytes int) error {
	bytes = max(bytes, 8)
	if b.mem != nil && b.bytes >= bytes {
		return nil
	}
	if b.mem != nil {
		b.mem.Release()
		*b = devBuffer{}
	}
	if err := injected(FaultAlloc); err != nil {
		return err
	}
	if int64(bytes) > e.dev.maxMem {
		return fmt.Errorf("opencl: a buffer of %d bytes exceeds the device's largest allocation (%d)", bytes, e.dev.maxMem)
	}
	m, err := e.dev.ctx.CreateEmptyBuffer(cl.MemReadWrite, bytes)
	if err != nil {
		return fmt.Errorf("opencl: allocating %d bytes: %w", bytes, err)
	}
	*b = devBuffer{mem: m, bytes: bytes}
	return nil
}

// problem is one layer's preconditioning with every tensor on the device.
type problem struct {
	g                   conv.Geometry
	bias                bool
	samples             int
	acts, outGrads      Buffer
	grad, dir           Buffer
	lossScale, damping  float64
	tolerance, denomEps float64
	iters               int
}

func (p *problem) rowLen() int {
	if p.bias {
		return p.g.PatchLen() + 1
	}
	return p.g.PatchLen()
}

// checkSize rejects problems whose indices do not fit the kernels' 32-bit
// arithmetic.
func (p *problem) checkSize() error {
	g := p.g
	n := int64(p.samples) * int64(g.Locations())
	d := int64(p.rowLen())
	for _, v := range []int64{n * d * int64(g.Groups), int64(g.OutChannels) * n, int64(g.OutChannels) * d * 64} {
		if v >= math.MaxInt32 {
			return fmt.Errorf("opencl: layer too large for 32-bit indexing (%d values)", v)
		}
	}
	return nil
}

// Precondition runs a host job: it copies the subsample and the gradient
// to the device, runs everything there and reads back the direction and
// the per-row diagnostics.
func (e *Engine) Precondition(job *backend.Job) error {
	if e.queue == nil {
		return errors.New("opencl: engine is closed")
	}
	p := problem{
		g: job.Geometry.Normalized(), bias: job.JointBias, samples: job.Samples,
		lossScale: job.LossScale, damping: job.Damping, tolerance: job.Tolerance,
		denomEps: job.DenomEps, iters: job.Iters,
	}
	if err := p.checkSize(); err != nil {
		return err
	}
	for _, up := range []struct {
		b    *devBuffer
		host []float32
		dst  *Buffer
	}{
		{&e.acts, job.Acts, &p.acts}, {&e.outGrads, job.OutGrads, &p.outGrads},
		{&e.grad, job.Grad, &p.grad}, {&e.dir, job.Dir, &p.dir},
	} {
		if err := e.ensure(up.b, 4*len(up.host)); err != nil {
			return err
		}
		*up.dst = Buffer{Mem: up.b.mem}
		if up.b == &e.dir {
			continue
		}
		if err := e.write(up.b.mem, up.host); err != nil {
			return err
		}
	}
	if err := e.setSamples(nil, job.Samples); err != nil {
		return err
	}
	if err := e.run(&p); err != nil {
		return err
	}
	if err := e.read(e.dir.mem, job.Dir); err != nil {
		return err
	}
	return e.readRows(job.Rows(), job.Trace, job.Residual, job.Scale, job.Breakdown)
}

func (e *Engine) write(m *cl.MemObject, host []float32) error {
	if len(host) == 0 {
		return nil
	}
	ev, err := e.queue.EnqueueWriteBufferFloat32(m, true, 0, host, nil)
	release(ev)
	if err != nil {
		return fmt.Errorf("opencl: copying to the device: %w", err)
	}
	return nil
}

func (e *Engine) read(m *cl.MemObject, host []float32) error {
	if len(host) == 0 {
		return nil
	}
	ev, err := e.queue.EnqueueReadBufferFloat32(m, true, 0, host, nil)
	release(ev)
	if err != nil {
		return fmt.Errorf("opencl: copying from the device: %w", err)
	}
	return nil
}

// readRows copies the per-row diagnostics of R rows into the non-nil
// slices among trace, resid, scale and broke.
func (e *Engine) readRows(R int, trace, resid, scale []float64, broke []bool) error {
	if trace == nil && resid == nil && scale == nil && broke == nil {
		return nil
	}
	if cap(e.rowsHost) < rowSections*R {
		e.rowsHost = make([]float64, rowSections*R)
		e.flagsHost = make([]int32, flagSections*R)
	}
	rows, flags := e.rowsHost[:rowSections*R], e.flagsHost[:flagSections*R]
	ev, err := e.queue.EnqueueReadBuffer(e.rows.mem, true, 0, 8*len(rows), unsafe.Pointer(&rows[0]), nil)
	release(ev)
	if err == nil {
		ev, err = e.queue.EnqueueReadBuffer(e.flags.mem, true, 0, 4*len(flags), unsafe.Pointer(&flags[0]), nil)
		release(ev)
	}
	if err != nil {
		return fmt.Errorf("opencl: copying the row diagnostics: %w", err)
	}
	copy(trace, rows[rowTrace*R:][:R])
	copy(resid, rows[rowResid*R:][:R])
	copy(scale, rows[rowScale*R:][:R])
	for j := range broke {
		broke[j] = flags[flagBroke*R+j] != 0
	}
	return nil
}

// setSamples uploads the subsample's indices (nil: 0..samples-1, uploaded
// only when the buffer does not already hold them).
func (e *Engine) setSamples(idx []int, samples int) error {
	if idx == nil && e.identityLen >= samples {
		return nil
	}
	e.sidxHost = e.sidxHost[:0]
	for i := 0; i < samples; i++ {
		v := int32(i)
		if idx != nil {
			v = int32(idx[i])
		}
		e.sidxHost = append(e.sidxHost, v)
	}
	e.identityLen = 0
	if err := e.ensure(&e.sidx, 4*samples); err != nil {
		return err
	}
	ev, err := e.queue.EnqueueWriteBuffer(e.sidx.mem, true, 0, 4*samples, unsafe.Pointer(&e.sidxHost[0]), nil)
	release(ev)
	if err != nil {
		return fmt.Errorf("opencl: copying the sample indices: %w", err)
	}
	if idx == nil {
		e.identityLen = samples
	}
	return nil
}

func release(ev *cl.Event) {
	if ev != nil {
		ev.Release()
	}
}

// setArgs sets a kernel's arguments: ints go as int32, float64 as double.
func setArgs(k *cl.Kernel, name string, args ...any) error {
	for i, a := range args {
		var err error
		switch v := a.(type) {
		case int:
			err = k.SetArgInt32(i, int32(v))
		case float64:
			err = k.SetArgUnsafe(i, 8, unsafe.Pointer(&v))
		case float32:
			err = k.SetArgFloat32(i, v)
		case *cl.MemObject:
			err = k.SetArgBuffer(i, v)
		default:
			err = fmt.Errorf("unsupported type %T", a)
		}
		if err != nil {
			return fmt.Errorf("opencl: kernel %s, argument %d: %w", name, i, err)
		}
	}
	return nil
}

func (e *Engine) launch(k *cl.Kernel, name string, global, local []int) error {
	ev, err := e.queue.EnqueueNDRangeKernel(k, nil, global, local, nil)
	release(ev)
	if err != nil {
		return fmt.Errorf("opencl: launching %s %v/%v: %w", name, global, local, err)
	}
	return nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// split chooses the number of partial sums of the second product, whose
// output (rg x d per group) can be too small to fill the device while its
// contraction (N points) is long: enough work-groups for about four per
// compute unit, each over at least 16 steps of TK points.
func (e *Engine) split(t Tiles, rg, d, groups, n int) (parts, chunk int) {
	tiles := ceilDiv(d, t.TN) * ceilDiv(rg, t.TM) * groups
	parts = max(ceilDiv(4*e.dev.units, tiles), e.minSplit, 1)
	parts = min(parts, max(n/(16*t.TK), 1), 64)
	if e.minSplit > 0 {
		parts = max(min(e.minSplit, n), 1)
	}
	chunk = ceilDiv(ceilDiv(n, parts), t.TK) * t.TK
	return ceilDiv(n, chunk), chunk
}

// run enqueues the whole preconditioning of p; the per-row state is left
// in e.rows and e.flags and the direction in p.dir.
func (e *Engine) run(p *problem) error {
	g := p.g
	t := e.dev.tiles
	G, R, rg := g.Groups, g.OutChannels, g.GroupOutChannels()
	L := g.Locations()
	N := p.samples * L
	d := p.rowLen()
	bias := 0
	if p.bias {
		bias = 1
	}
	// Each product takes the small tiles when the main ones would leave
	// compute units idle (fewer than two work-groups per unit, after
	// splitting the second product's contraction).
	pickSmall := func(autoSmall bool) bool {
		switch e.forceTiles {
		case tilesMain:
			return false
		case tilesSmall:
			return true
		}
		return autoSmall
	}
	pxtK, pxtT := e.pxt, t
	if e.pxtSmall != nil && pickSmall(ceilDiv(N, t.TN)*ceilDiv(rg, t.TM)*G < 2*e.dev.units) {
		pxtK, pxtT = e.pxtSmall, e.dev.smallTiles
	}
	txK, txT := e.tx, t
	parts, chunk := e.split(t, rg, d, G, N)
	if e.txSmall != nil && pickSmall(ceilDiv(d, t.TN)*ceilDiv(rg, t.TM)*G*parts < 2*e.dev.units) {
		txK, txT = e.txSmall, e.dev.smallTiles
		parts, chunk = e.split(txT, rg, d, G, N)
	}
	e.usedSmall = [2]bool{pxtK == e.pxtSmall, txK == e.txSmall}
	for _, a := range []struct {
		b     *devBuffer
		bytes int
	}{
		{&e.maxbits, 4 * G}, {&e.patches, 4 * G * N * d}, {&e.pnorms, 8 * G * N},
		{&e.lhat, 4 * R * N}, {&e.product, 4 * R * N}, {&e.p, 4 * R * d}, {&e.res, 4 * R * d},
		{&e.partials, 4 * parts * R * d}, {&e.rows, 8 * rowSections * R}, {&e.flags, 4 * flagSections * R},
	} {
		if err := e.ensure(a.b, a.bytes); err != nil {
			return err
		}
	}
	var zero uint32
	ev, err := e.queue.EnqueueFillBuffer(e.maxbits.mem, unsafe.Pointer(&zero), 4, 0, 4*G, nil)
	release(ev)
	if err != nil {
		return fmt.Errorf("opencl: clearing the patch scales: %w", err)
	}

	rl := t.RL
	groupLen := g.GroupInChannels() * g.InH * g.InW
	total := p.samples * groupLen
	spread := min(ceilDiv(total, rl), 4*e.dev.units) * rl
	steps := []struct {
		k             *cl.Kernel
		name          string
		args          []any
		global, local []int
	}{
		{e.actMax, "act_maxabs", []any{p.acts.Mem, p.acts.Offset, e.sidx.mem, p.samples, g.ImageLen(), groupLen, e.maxbits.mem},
			[]int{spread, G}, []int{rl, 1}},
		{e.im2col, "im2col", []any{p.acts.Mem, p.acts.Offset, e.sidx.mem, g.ImageLen(), g.InH, g.InW, g.GroupInChannels(),
			g.KernelH, g.KernelW, g.StrideH, g.StrideW, g.PadH, g.PadW, g.DilationH, g.DilationW, g.OutH(), g.OutW(),
			d, bias, e.maxbits.mem, e.patches.mem, N},
			[]int{ceilDiv(N*d, 256) * 256, G}, nil},
		{e.norms, "patch_norms", []any{e.patches.mem, N, d, e.maxbits.mem, bias, e.pnorms.mem},
			[]int{ceilDiv(N, 64) * 64, G}, nil},
		{e.weights, "row_weights", []any{p.outGrads.Mem, p.outGrads.Offset, e.sidx.mem, g.OutputLen(), L, p.samples, rg, d,
			e.pnorms.mem, e.maxbits.mem, bias, p.lossScale, p.denomEps, e.rows.mem, R, e.lhat.mem},
			[]int{R * rl}, []int{rl}},
		{e.cgInit, "cg_init", []any{p.grad.Mem, p.grad.Offset, p.dir.Mem, p.dir.Offset, e.res.mem, e.p.mem, d, p.denomEps,
			e.rows.mem, e.flags.mem, R},
			[]int{R * rl}, []int{rl}},
	}
	for _, s := range steps {
		if err := setArgs(s.k, s.name, s.args...); err != nil {
			return err
		}
		if err := e.launch(s.k, s.name, s.global, s.local); err != nil {
			return err
		}
	}

	if err := setArgs(pxtK, "fisher_pxt", e.p.mem, e.patches.mem, e.lhat.mem, e.product.mem, rg, N, d); err != nil {
		return err
	}
	if err := setArgs(txK, "fisher_tx", e.product.mem, e.patches.mem, e.partials.mem, rg, N, d, R, parts, chunk); err != nil {
		return err
	}
	if err := setArgs(e.cgUpdate, "cg_update", e.partials.mem, parts, e.p.mem, e.res.mem, p.dir.Mem, p.dir.Offset, d,
		float32(p.damping), p.tolerance, 0, e.rows.mem, e.flags.mem, R); err != nil {
		return err
	}
	pxtGlobal := []int{ceilDiv(N, pxtT.TN) * (pxtT.TN / pxtT.WN), ceilDiv(rg, pxtT.TM) * (pxtT.TM / pxtT.WM), G}
	pxtLocal := []int{pxtT.TN / pxtT.WN, pxtT.TM / pxtT.WM, 1}
	txGlobal := []int{ceilDiv(d, txT.TN) * (txT.TN / txT.WN), ceilDiv(rg, txT.TM) * (txT.TM / txT.WM), G * parts}
	txLocal := []int{txT.TN / txT.WN, txT.TM / txT.WM, 1}
	for it := 0; it < p.iters; it++ {
		if err := e.launch(pxtK, "fisher_pxt", pxtGlobal, pxtLocal); err != nil {
			return err
		}
		if err := e.launch(txK, "fisher_tx", txGlobal, txLocal); err != nil {
			return err
		}
		if err := e.cgUpdate.SetArgInt32(9, int32(it)); err != nil {
			return fmt.Errorf("opencl: kernel cg_update, argument 9: %w", err)
		}
		if err := e.launch(e.cgUpdate, "cg_update", []int{R * rl}, []int{rl}); err != nil {
			return err
		}
	}
	if err := setArgs(e.cgFinish, "cg_finish", p.grad.Mem, p.grad.Offset, p.dir.Mem, p.dir.Offset, d, p.denomEps,
		e.rows.mem, R); err != nil {
		return err
	}
	return e.launch(e.cgFinish, "cg_finish", []int{R * rl}, []int{rl})
}
