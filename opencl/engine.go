//go:build opencl

package opencl

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/frogopt/frog/backend"
	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/conv"
	"github.com/frogopt/frog/internal/indices"
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
// buffers (and its pinned staging memory) between calls and grows them to
// the largest job seen, so that steady-state steps allocate no device
// memory. Small host allocations remain, some for every kernel launch
// (about 200 in a call with 6 CG iterations), from the OpenCL binding (its
// slices, values escaping through cgo) and setArgs' boxed arguments. Like
// every backend.Engine it is used by one goroutine at a time; engines on
// one Device run concurrently.
type Engine struct {
	dev   *Device
	queue *cl.CommandQueue

	actMax, im2col, trace, weights, pxtReduce *cl.Kernel
	cgInit, cgUpdate, cgLast, cgFinish        *cl.Kernel
	// the products with each of the device's blockings (Device.variants)
	pxt, tx []*cl.Kernel

	// device buffers, reused across steps
	acts, outGrads, grad, dir                    devBuffer // host jobs' staging
	sidx, maxbits, patches, pnorms, traces, lhat devBuffer
	product, p, res, q, partials, rows, flags    devBuffer
	pinned                                       pinnedBuffer
	// rowsPinned receives the per-row diagnostics
	rowsPinned pinnedBuffer

	sidxHost []int32
	// copier is the task of parallelCopy
	copier copyTask
	// seen is checkSampleIndex's memory
	seen indices.Marks
	// identityLen is how many indices 0, 1, ... e.sidx holds.
	identityLen int

	// minSplit, when positive, forces this many partial sums in both
	// products (tests use it to cover split-K on small shapes).
	minSplit int
	// forceVariant, for tests and tuning, makes both products take
	// Device.variants[forceVariant]; -1 (the default) chooses by shape,
	// so that every blocking can run on any device.
	forceVariant int
	// used records the plan of the last run, for tests.
	used [2]productPlan
	// prof, when not nil, collects the device time of every kernel
	// (the queue then has profiling on).
	prof *profile
}

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
	return d.newEngine(q, nil)
}

// newEngine makes an engine on queue q; prof, when not nil, must come
// with a queue that has profiling on.
func (d *Device) newEngine(q *cl.CommandQueue, prof *profile) (*Engine, error) {
	e := &Engine{dev: d, queue: q, forceVariant: -1, prof: prof}
	var err error
	for _, k := range []struct {
		dst  **cl.Kernel
		name string
	}{
		{&e.actMax, "act_maxabs"}, {&e.im2col, "im2col"},
		{&e.trace, "row_trace"}, {&e.weights, "row_weights"}, {&e.pxtReduce, "pxt_reduce"},
		{&e.cgInit, "cg_init"}, {&e.cgUpdate, "cg_update"}, {&e.cgLast, "cg_last"}, {&e.cgFinish, "cg_finish"},
	} {
		if *k.dst, err = d.variants[0].program.CreateKernel(k.name); err != nil {
			e.Close()
			return nil, fmt.Errorf("opencl: %s: kernel %s: %w", d.name, k.name, err)
		}
	}
	for _, v := range d.variants {
		var pxt, tx *cl.Kernel
		if pxt, err = v.program.CreateKernel("fisher_pxt"); err == nil {
			e.pxt = append(e.pxt, pxt)
			if tx, err = v.program.CreateKernel("fisher_tx"); err == nil {
				e.tx = append(e.tx, tx)
			}
		}
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("opencl: %s: kernels of tiles %v: %w", d.name, v.tiles, err)
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
	e.pinned.release(e.queue)
	e.rowsPinned.release(e.queue)
	for _, b := range []*devBuffer{&e.acts, &e.outGrads, &e.grad, &e.dir, &e.sidx, &e.maxbits,
		&e.patches, &e.pnorms, &e.traces, &e.lhat, &e.product, &e.p, &e.res, &e.q, &e.partials,
		&e.rows, &e.flags} {
		if b.mem != nil {
			b.mem.Release()
		}
		*b = devBuffer{}
	}
	e.identityLen = 0
	for _, k := range []**cl.Kernel{&e.actMax, &e.im2col, &e.trace, &e.weights, &e.pxtReduce,
		&e.cgInit, &e.cgUpdate, &e.cgLast, &e.cgFinish} {
		if *k != nil {
			(*k).Release()
			*k = nil
		}
	}
	for _, k := range append(e.pxt, e.tx...) {
		k.Release()
	}
	e.pxt, e.tx = nil, nil
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
	m, err := e.newBuffer(cl.MemReadWrite, bytes, "")
	if err != nil {
		return err
	}
	*b = devBuffer{mem: m, bytes: bytes}
	return nil
}

// newBuffer allocates bytes of device memory with flags, or says why it
// cannot (what names the memory in the error, "" for plain buffers).
func (e *Engine) newBuffer(flags cl.MemFlag, bytes int, what string) (*cl.MemObject, error) {
	if err := injected(FaultAlloc); err != nil {
		return nil, err
	}
	if int64(bytes) > e.dev.maxMem {
		return nil, fmt.Errorf("opencl: a buffer of %d bytes exceeds the device's largest allocation (%d)", bytes, e.dev.maxMem)
	}
	m, err := e.dev.ctx.CreateEmptyBuffer(flags, bytes)
	if err != nil {
		return nil, fmt.Errorf("opencl: allocating %d bytes%s: %w", bytes, what, err)
	}
	return m, nil
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
// the per-row diagnostics. The tensors go through one pinned staging
// buffer: several goroutines copy a tensor into it while the device
// fetches the previous one, which is several times faster than copying
// from Go's pageable memory.
func (e *Engine) Precondition(job *backend.Job) (err error) {
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
	if err := e.pinned.ensure(e, len(job.Acts)+len(job.OutGrads)+len(job.Grad)); err != nil {
		return err
	}
	// The staging buffer must not be rewritten while a copy from it may
	// still run: the normal path ends with blocking reads; an error
	// waits here.
	defer func() {
		if err != nil {
			_ = e.queue.Finish()
		}
	}()
	off := 0
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
		if up.b == &e.dir || len(up.host) == 0 {
			continue
		}
		stage := e.pinned.host[off : off+len(up.host)]
		e.parallelCopy(stage, up.host)
		ev, err := e.queue.EnqueueWriteBuffer(up.b.mem, false, 0, 4*len(stage), unsafe.Pointer(&stage[0]), nil)
		release(ev)
		if err == nil {
			err = e.queue.Flush()
		}
		if err != nil {
			return fmt.Errorf("opencl: copying to the device: %w", err)
		}
		off += len(up.host)
	}
	if err := e.setSamples(nil, job.Samples); err != nil {
		return err
	}
	if err := e.run(&p); err != nil {
		return err
	}
	return e.readRows(job.Rows(), job.Trace, job.Residual, job.Scale, job.Breakdown, job.Dir)
}

// pinnedBuffer is host memory the device can read at full speed: a buffer
// allocated with CL_MEM_ALLOC_HOST_PTR and kept mapped for the engine's
// life.
type pinnedBuffer struct {
	mem    *cl.MemObject
	mapped *cl.MappedMemObject
	host   []float32
}

func (b *pinnedBuffer) ensure(e *Engine, n int) error {
	if len(b.host) >= n {
		return nil
	}
	b.release(e.queue)
	n = max(n, 1024)
	m, err := e.newBuffer(cl.MemReadWrite|cl.MemAllocHostPtr, 4*n, " of staging memory")
	if err != nil {
		return err
	}
	mapped, ev, err := e.queue.EnqueueMapBuffer(m, true, cl.MapFlagWrite|cl.MapFlagRead, 0, 4*n, nil)
	release(ev)
	if err != nil {
		m.Release()
		return fmt.Errorf("opencl: mapping %d bytes of staging memory: %w", 4*n, err)
	}
	b.mem, b.mapped = m, mapped
	b.host = unsafe.Slice((*float32)(mapped.Ptr()), n)
	return nil
}

func (b *pinnedBuffer) release(q *cl.CommandQueue) {
	if b.mem == nil {
		return
	}
	if q != nil {
		_ = q.Finish()
		if ev, err := q.EnqueueUnmapMemObject(b.mem, b.mapped, nil); err == nil {
			release(ev)
			_ = q.Finish()
		}
	}
	b.mem.Release()
	*b = pinnedBuffer{}
}

// copyTask copies src to dst in contiguous parts (Engine.parallelCopy).
type copyTask struct{ dst, src []float32 }

func (c *copyTask) RunPart(part, parts int) {
	n := len(c.src)
	lo, hi := part*n/parts, (part+1)*n/parts
	copy(c.dst[lo:hi], c.src[lo:hi])
}

// parallelCopy copies src to dst in up to 16 parts of at least 256 KiB
// each, on blas.Parallel's helpers: one core cannot move memory as fast
// as the device fetches it. The task is the engine's, so that a copy
// starts no goroutine and allocates nothing.
func (e *Engine) parallelCopy(dst, src []float32) {
	const minPart = 1 << 16
	e.copier = copyTask{dst: dst, src: src}
	blas.Parallel(&e.copier, min(len(src)/minPart, 16))
	e.copier = copyTask{}
}

// readRows copies the per-row diagnostics of R rows into the non-nil
// slices among trace, resid, scale and broke, and the direction into dir
// when it is not empty, and waits for the queue up to them. The
// diagnostics go through pinned memory without a wait of their own.
func (e *Engine) readRows(R int, trace, resid, scale []float64, broke []bool, dir []float32) error {
	want := trace != nil || resid != nil || scale != nil || broke != nil
	var rows []float64
	var flags []int32
	if want {
		// float64 rows then int32 flags, in float32 units
		if err := e.rowsPinned.ensure(e, 2*rowSections*R+flagSections*R); err != nil {
			return err
		}
		h := e.rowsPinned.host
		rows = unsafe.Slice((*float64)(unsafe.Pointer(&h[0])), rowSections*R)
		flags = unsafe.Slice((*int32)(unsafe.Pointer(&h[2*rowSections*R])), flagSections*R)
		ev, err := e.queue.EnqueueReadBuffer(e.rows.mem, false, 0, 8*len(rows), unsafe.Pointer(&rows[0]), nil)
		release(ev)
		if err == nil {
			ev, err = e.queue.EnqueueReadBuffer(e.flags.mem, len(dir) == 0, 0, 4*len(flags), unsafe.Pointer(&flags[0]), nil)
			release(ev)
		}
		if err != nil {
			if len(dir) == 0 {
				_ = e.queue.Finish()
			}
			return fmt.Errorf("opencl: copying the row diagnostics: %w", err)
		}
	}
	if len(dir) > 0 {
		ev, err := e.queue.EnqueueReadBufferFloat32(e.dir.mem, true, 0, dir, nil)
		release(ev)
		if err != nil {
			_ = e.queue.Finish()
			return fmt.Errorf("opencl: copying from the device: %w", err)
		}
	}
	if !want {
		return nil
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
	if err != nil {
		release(ev)
		return fmt.Errorf("opencl: launching %s %v/%v: %w", name, global, local, err)
	}
	if e.prof != nil && ev != nil {
		e.prof.events = append(e.prof.events, namedEvent{name, ev})
		return nil
	}
	release(ev)
	return nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }

// productPlan is how one product of a layer runs: with which blocking
// (an index into Device.variants), split into parts partial sums over
// chunks of chunk points of the contraction.
type productPlan struct {
	variant, parts, chunk int
}

// blockEfficiency is the relative speed of a work-item's WM x WN block in
// the first product (P X^T, both operands staged transposed) and the
// second (T X) of a layer with rows rows per group, as measured on an
// NVIDIA H200 (BenchmarkProfileResNet18): 8 x 4 blocks are the fastest in the
// first, 8 x 8 in 128 x 128 tiles in the second.
func blockEfficiency(t Tiles, second bool, rows int) float64 {
	switch {
	case t.WM == 8 && t.WN == 8:
		if second && t.TM >= 128 {
			return 1
		}
		return 0.85
	case t.WM == 8 && t.WN == 4:
		if second && t.TM*t.TN < 128*64 && rows >= 128 {
			// 64 x 64 tiles reuse their operands half as often as 128 x
			// 128 ones, which tells when the rows fill those.
			return 0.75
		}
		if second {
			return 0.9
		}
		return 1
	}
	// Other blocks: by their ratio of multiply-adds to operands read.
	return float64(t.WM*t.WN) / float64(t.WM+t.WN) / 5
}

// plan chooses the blocking and the split of a product with an M x cols
// output per group (G groups) and a contraction of K (a multiple of
// every TK), by a model of the device: a compute unit runs its share of
// the work-groups, as many at once as fit (about 512 work-items of these
// register-heavy kernels); it is fully busy only with 512 work-items, and
// a blocking's work-items run at its blockEfficiency. Splitting the
// contraction costs a summing pass and a launch. Ties go to the earlier
// blocking and fewer parts.
func (e *Engine) plan(M, cols, K, G int, second bool) productPlan {
	best, bestCost := productPlan{variant: -1}, math.Inf(1)
	units := e.dev.units
	for v, vt := range e.dev.variants {
		if e.forceVariant >= 0 && v != e.forceVariant {
			continue
		}
		t := vt.tiles
		tiles := ceilDiv(M, t.TM) * ceilDiv(cols, t.TN) * G
		maxParts := max(min(K/(8*t.TK), 256), 1)
		minParts := 1
		if e.minSplit > 0 {
			minParts = max(min(e.minSplit, K/t.TK), 1)
			maxParts = minParts
		}
		// What depends on the blocking alone: its occupancy, its
		// efficiency, and the share of its tiles that is output.
		occupancy := max(1, 512/t.threads())
		efficiency := blockEfficiency(t, second, M)
		// Tiles hanging over the output cost a little more than the
		// model says (measured on the 64-row, 32-column stem).
		overhang := 1 + 0.25*(1-float64(M*cols*G)/float64(tiles*t.TM*t.TN))
		lastParts := 0
		for want := minParts; want <= maxParts; want++ {
			chunk := roundUp(ceilDiv(K, want), t.TK)
			parts := ceilDiv(K, chunk)
			if parts == lastParts {
				continue
			}
			lastParts = parts
			if e.minSplit > 1 && parts < 2 && best.variant >= 0 {
				// Forced splitting: a blocking as deep as the whole
				// contraction serves only when no other can split it.
				continue
			}
			wgs := tiles * parts
			perUnit := ceilDiv(wgs, units)
			util := min(1, float64(min(perUnit, occupancy)*t.threads())/512)
			cost := float64(perUnit) * float64(t.TM*t.TN*chunk) / (efficiency * util) * overhang
			if parts > 1 {
				// In the same units (multiply-adds of one compute unit) on
				// an H100-class GPU: a launch about 5 us, and reading and
				// writing the partial sums at about 4.8 TB/s.
				cost += 1.3e6 + 0.21*float64(M*cols*G)*float64(parts+1)
			}
			if e.minSplit > 1 && parts >= 2 && best.parts < 2 {
				bestCost = math.Inf(1) // any split beats no split
			}
			if cost < bestCost {
				best, bestCost = productPlan{variant: v, parts: parts, chunk: chunk}, cost
			}
		}
	}
	return best
}

// run enqueues the whole preconditioning of p; the per-row state is left
// in e.rows and e.flags and the direction in p.dir.
func (e *Engine) run(p *problem) error {
	g := p.g
	G, R, rg := g.Groups, g.OutChannels, g.GroupOutChannels()
	L := g.Locations()
	N := p.samples * L
	d := p.rowLen()
	dp, Np := roundUp(d, kPad), roundUp(N, nPad)
	bias := 0
	if p.bias {
		bias = 1
	}
	pp := e.plan(rg, Np, dp, G, false)
	tp := e.plan(rg, dp, Np, G, true)
	e.used = [2]productPlan{pp, tp}
	rl := e.dev.variants[0].tiles.RL
	// im2col: work-groups of 32 patches, each through all coordinates
	// when there are enough patches, else through kc of them (ks parts).
	kTiles := dp / 32
	ks := min(kTiles, max(1, ceilDiv(4*e.dev.units, Np/32*G)))
	kc := 32 * ceilDiv(kTiles, ks)
	ks = ceilDiv(dp, kc)
	traceParts := max(min(ceilDiv(4*e.dev.units, R), N/(4*rl), 64), 1)
	partials := 0
	if pp.parts > 1 {
		partials = pp.parts * R * Np
	}
	if tp.parts > 1 {
		partials = max(partials, tp.parts*R*dp)
	}
	for _, a := range []struct {
		b     *devBuffer
		bytes int
	}{
		{&e.maxbits, 4 * G}, {&e.patches, 4 * G * Np * dp}, {&e.pnorms, 8 * ks * G * N}, {&e.traces, 8 * R * traceParts},
		{&e.lhat, 4 * R * Np}, {&e.product, 4 * R * Np}, {&e.p, 4 * R * dp}, {&e.res, 4 * R * dp}, {&e.q, 4 * R * dp},
		{&e.partials, 4 * partials}, {&e.rows, 8 * rowSections * R}, {&e.flags, 4 * flagSections * R},
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
			d, bias, e.maxbits.mem, e.patches.mem, N, Np, dp, kc, e.pnorms.mem},
			[]int{32 * ks, Np / 4, G}, []int{32, 8, 1}},
		{e.trace, "row_trace", []any{p.outGrads.Mem, p.outGrads.Offset, e.sidx.mem, g.OutputLen(), L, p.samples, rg,
			e.pnorms.mem, ks, G, traceParts, e.traces.mem},
			[]int{traceParts * rl, R}, []int{rl, 1}},
		{e.weights, "row_weights", []any{p.outGrads.Mem, p.outGrads.Offset, e.sidx.mem, g.OutputLen(), L, p.samples, rg, d,
			e.traces.mem, traceParts, e.maxbits.mem, bias, p.lossScale, p.denomEps, e.rows.mem, R, e.lhat.mem, Np},
			[]int{ceilDiv(Np, 4*rl) * rl, R}, []int{rl, 1}},
		{e.cgInit, "cg_init", []any{p.grad.Mem, p.grad.Offset, p.dir.Mem, p.dir.Offset, e.res.mem, e.p.mem, d, dp, p.denomEps,
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

	// One CG iteration: T = Wt .* (P X^T), Q = T X, then the row update;
	// the last one stops after the first product (cg_last).
	type launch struct {
		k             *cl.Kernel
		name          string
		global, local []int
	}
	var iteration []launch
	pt := e.dev.variants[pp.variant].tiles
	pxtOut := e.product.mem
	if pp.parts > 1 {
		pxtOut = e.partials.mem
	}
	pxt := e.pxt[pp.variant]
	if err := setArgs(pxt, "fisher_pxt", e.p.mem, e.patches.mem, e.lhat.mem, pxtOut, rg, Np, dp, R, pp.parts, pp.chunk, 0); err != nil {
		return err
	}
	iteration = append(iteration, launch{pxt, "fisher_pxt",
		[]int{Np / pt.TN * (pt.TN / pt.WN), ceilDiv(rg, pt.TM) * (pt.TM / pt.WM), G * pp.parts},
		[]int{pt.TN / pt.WN, pt.TM / pt.WM, 1}})
	if pp.parts > 1 {
		n4 := R * Np / 4
		if err := setArgs(e.pxtReduce, "pxt_reduce", e.partials.mem, e.lhat.mem, e.product.mem, pp.parts, n4, 0); err != nil {
			return err
		}
		iteration = append(iteration, launch{e.pxtReduce, "pxt_reduce", []int{roundUp(n4, 64)}, []int{64}})
	}
	tt := e.dev.variants[tp.variant].tiles
	// cg_update adds the partial sums of the second product.
	txOut, qParts := e.q.mem, 1
	if tp.parts > 1 {
		txOut, qParts = e.partials.mem, tp.parts
	}
	tx := e.tx[tp.variant]
	if err := setArgs(tx, "fisher_tx", e.product.mem, e.patches.mem, txOut, rg, Np, dp, R, tp.parts, tp.chunk); err != nil {
		return err
	}
	iteration = append(iteration, launch{tx, "fisher_tx",
		[]int{ceilDiv(dp, tt.TN) * (tt.TN / tt.WN), ceilDiv(rg, tt.TM) * (tt.TM / tt.WM), G * tp.parts},
		[]int{tt.TN / tt.WN, tt.TM / tt.WM, 1}})
	if err := setArgs(e.cgUpdate, "cg_update", txOut, qParts, e.p.mem, e.res.mem, p.dir.Mem, p.dir.Offset, d, dp,
		float32(p.damping), p.tolerance, 0, e.rows.mem, e.flags.mem, R); err != nil {
		return err
	}
	firstProduct := 1 // the launches of the first product
	if pp.parts > 1 {
		firstProduct = 2
	}
	for it := 0; it < p.iters-1; it++ {
		for _, l := range iteration {
			if err := e.launch(l.k, l.name, l.global, l.local); err != nil {
				return err
			}
		}
		if err := e.cgUpdate.SetArgInt32(10, int32(it)); err != nil {
			return fmt.Errorf("opencl: kernel cg_update, argument 10: %w", err)
		}
		if err := e.launch(e.cgUpdate, "cg_update", []int{R * rl}, []int{rl}); err != nil {
			return err
		}
	}
	if p.iters > 0 {
		// The last iteration needs only the rows' curvatures (cg_last):
		// the first product's weighted squares, no second product.
		if err := pxt.SetArgInt32(10, 1); err != nil {
			return fmt.Errorf("opencl: kernel fisher_pxt, argument 10: %w", err)
		}
		if err := e.pxtReduce.SetArgInt32(5, 1); err != nil {
			return fmt.Errorf("opencl: kernel pxt_reduce, argument 5: %w", err)
		}
		for _, l := range iteration[:firstProduct] {
			if err := e.launch(l.k, l.name, l.global, l.local); err != nil {
				return err
			}
		}
		if err := setArgs(e.cgLast, "cg_last", e.product.mem, Np, e.p.mem, e.res.mem, p.dir.Mem, p.dir.Offset, d, dp,
			float32(p.damping), p.iters-1, e.rows.mem, e.flags.mem, R); err != nil {
			return err
		}
		if err := e.launch(e.cgLast, "cg_last", []int{R * rl}, []int{rl}); err != nil {
			return err
		}
	}
	if err := setArgs(e.cgFinish, "cg_finish", p.grad.Mem, p.grad.Offset, p.dir.Mem, p.dir.Offset, d, p.denomEps,
		e.rows.mem, R); err != nil {
		return err
	}
	return e.launch(e.cgFinish, "cg_finish", []int{R * rl}, []int{rl})
}
