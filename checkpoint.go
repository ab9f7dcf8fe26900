package frog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
)

// Checkpoints.
//
// MarshalBinary writes an optimizer's state, and UnmarshalBinary restores
// it into an optimizer with the same registrations, so that training
// resumed from a checkpoint is bit for bit the training that never
// stopped. The state is everything a step reads that earlier steps wrote:
// per layer the momentum of the weight and the bias, the step count (which
// is also the position in the tau schedule and K-FROG's bias correction),
// the skip count, the random generator, and K-FROG's moving average of the
// output-gradient diagonal; per plain parameter its momentum and counts;
// and the learning rate, which SetLR may have changed.
//
// Not in a checkpoint: the weights, biases and plain parameters themselves
// (they are the caller's slices, saved with the model), the configuration
// other than the learning rate (the caller passes the same Config to New),
// and the statistics of the last step (Stats reports zero diagnostics and
// no samples until the next step).
//
// The format, little-endian throughout:
//
//	magic    "FROGCKPT"
//	version  uint16 (1)
//	kind     uint8 (1 FROG, 2 K-FROG)
//	lr       float64
//	count    uint32, then count entries in registration order:
//	  kind   uint8 (1 layer, 2 plain parameter)
//	  name   uint32 length, bytes
//	  layer: 13 x int64 geometry (Cin, Cout, H, W, kh, kw, sh, sw, ph, pw,
//	         dh, dw, groups) with defaults filled in, int64 bias mode,
//	         int64 steps, int64 skipped, uint32 length + generator state
//	         (math/rand/v2 PCG MarshalBinary), uint32 length + float32
//	         momentum, uint32 length + float32 bias momentum, uint32
//	         length + float64 y-average (K-FROG; empty for FROG)
//	  param: uint32 length of the parameter, int64 steps, int64 skipped,
//	         uint32 length + float32 momentum
//	crc      uint32 IEEE CRC-32 of every byte before it
//
// UnmarshalBinary checks the whole checkpoint (checksum, structure, and
// that its entries are exactly the optimizer's registrations, with the same
// names, kinds and shapes) before it changes anything; on error the
// optimizer is as it was.

const (
	checkpointMagic   = "FROGCKPT"
	checkpointVersion = 1

	ckptFROG  = 1
	ckptKFROG = 2

	ckptLayer = 1
	ckptParam = 2
)

// ErrCheckpoint is wrapped by the errors of UnmarshalBinary.
var ErrCheckpoint = errors.New("bad checkpoint")

// ckptEntry is one decoded entry.
type ckptEntry struct {
	kind      uint8
	name      string
	geometry  [14]int64 // the geometry and the bias mode
	length    int       // parameter length
	steps     int64
	skipped   int64
	rng       []byte
	mom, momB []float32
	ybuf      []float64
}

type checkpoint struct {
	optimizer uint8
	lr        float64
	entries   []ckptEntry
}

func layerGeometry(l Layer) [14]int64 {
	g := l.Geometry()
	return [14]int64{
		int64(g.InChannels), int64(g.OutChannels), int64(g.InH), int64(g.InW),
		int64(g.KernelH), int64(g.KernelW), int64(g.StrideH), int64(g.StrideW),
		int64(g.PadH), int64(g.PadW), int64(g.DilationH), int64(g.DilationW),
		int64(g.Groups), int64(l.Bias),
	}
}

// layerEntry captures a layer's state; the caller holds its lock.
func layerEntry(b *layerBase, ybuf []float64) (ckptEntry, error) {
	rng, err := b.pcg.MarshalBinary()
	if err != nil {
		return ckptEntry{}, err
	}
	return ckptEntry{
		kind: ckptLayer, name: b.layer.Name, geometry: layerGeometry(b.layer),
		steps: b.steps, skipped: b.skipped, rng: rng,
		mom: b.mom, momB: b.momB, ybuf: ybuf,
	}, nil
}

func paramEntry(name string, p *param) ckptEntry {
	return ckptEntry{kind: ckptParam, name: name, length: len(p.theta), steps: p.steps, skipped: p.skipped, mom: p.mom}
}

func (c *checkpoint) encode() []byte {
	var buf []byte
	le := binary.LittleEndian
	u32 := func(v uint32) { buf = le.AppendUint32(buf, v) }
	i64 := func(v int64) { buf = le.AppendUint64(buf, uint64(v)) }
	f32s := func(s []float32) {
		u32(uint32(len(s)))
		for _, v := range s {
			buf = le.AppendUint32(buf, math.Float32bits(v))
		}
	}
	buf = append(buf, checkpointMagic...)
	buf = le.AppendUint16(buf, checkpointVersion)
	buf = append(buf, c.optimizer)
	buf = le.AppendUint64(buf, math.Float64bits(c.lr))
	u32(uint32(len(c.entries)))
	for i := range c.entries {
		e := &c.entries[i]
		buf = append(buf, e.kind)
		u32(uint32(len(e.name)))
		buf = append(buf, e.name...)
		switch e.kind {
		case ckptLayer:
			for _, v := range e.geometry {
				i64(v)
			}
			i64(e.steps)
			i64(e.skipped)
			u32(uint32(len(e.rng)))
			buf = append(buf, e.rng...)
			f32s(e.mom)
			f32s(e.momB)
			u32(uint32(len(e.ybuf)))
			for _, v := range e.ybuf {
				buf = le.AppendUint64(buf, math.Float64bits(v))
			}
		case ckptParam:
			u32(uint32(e.length))
			i64(e.steps)
			i64(e.skipped)
			f32s(e.mom)
		}
	}
	return le.AppendUint32(buf, crc32.ChecksumIEEE(buf))
}

// ckptReader reads a checkpoint's fields, remembering the first error.
type ckptReader struct {
	data []byte
	err  error
}

func (r *ckptReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("frog: %w: "+format, append([]any{ErrCheckpoint}, args...)...)
	}
}

func (r *ckptReader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.data) {
		r.fail("truncated")
		return nil
	}
	b := r.data[:n:n]
	r.data = r.data[n:]
	return b
}

func (r *ckptReader) u8() uint8 {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *ckptReader) u32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *ckptReader) u64() uint64 {
	if b := r.bytes(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// count reads a length whose elements take size bytes each, refusing one
// that the remaining data cannot hold (before anything is allocated).
func (r *ckptReader) count(size int) int {
	n := int(r.u32())
	if r.err == nil && n > len(r.data)/size {
		r.fail("truncated (a length of %d)", n)
		return 0
	}
	return n
}

func (r *ckptReader) f32s() []float32 {
	n := r.count(4)
	b := r.bytes(4 * n)
	if b == nil {
		return nil
	}
	s := make([]float32, n)
	for i := range s {
		s[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return s
}

func decodeCheckpoint(data []byte) (*checkpoint, error) {
	const header = len(checkpointMagic) + 2 + 1 + 8 + 4
	if len(data) < header+4 {
		return nil, fmt.Errorf("frog: %w: truncated (%d bytes)", ErrCheckpoint, len(data))
	}
	if string(data[:len(checkpointMagic)]) != checkpointMagic {
		return nil, fmt.Errorf("frog: %w: not a frog checkpoint", ErrCheckpoint)
	}
	body := data[:len(data)-4]
	if want, got := binary.LittleEndian.Uint32(data[len(data)-4:]), crc32.ChecksumIEEE(body); want != got {
		return nil, fmt.Errorf("frog: %w: checksum mismatch (corrupted or truncated)", ErrCheckpoint)
	}
	r := &ckptReader{data: body[len(checkpointMagic):]}
	if v := binary.LittleEndian.Uint16(r.bytes(2)); v != checkpointVersion {
		return nil, fmt.Errorf("frog: %w: version %d, this library reads version %d", ErrCheckpoint, v, checkpointVersion)
	}
	c := &checkpoint{optimizer: r.u8(), lr: math.Float64frombits(r.u64())}
	n := r.count(1 + 4)
	for i := 0; i < n && r.err == nil; i++ {
		var e ckptEntry
		e.kind = r.u8()
		e.name = string(r.bytes(r.count(1)))
		switch e.kind {
		case ckptLayer:
			for k := range e.geometry {
				e.geometry[k] = int64(r.u64())
			}
			e.steps, e.skipped = int64(r.u64()), int64(r.u64())
			e.rng = r.bytes(r.count(1))
			e.mom = r.f32s()
			e.momB = r.f32s()
			m := r.count(8)
			if b := r.bytes(8 * m); b != nil {
				e.ybuf = make([]float64, m)
				for k := range e.ybuf {
					e.ybuf[k] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*k:]))
				}
			}
		case ckptParam:
			e.length = int(r.u32())
			e.steps, e.skipped = int64(r.u64()), int64(r.u64())
			e.mom = r.f32s()
		default:
			r.fail("entry %d: unknown kind %d", i, e.kind)
		}
		c.entries = append(c.entries, e)
	}
	if r.err == nil && len(r.data) != 0 {
		r.fail("%d bytes after the last entry", len(r.data))
	}
	if r.err != nil {
		return nil, r.err
	}
	return c, nil
}

// registration is what a checkpoint entry must match.
type registration struct {
	name  string
	layer *layerBase // nil for a plain parameter
	param *param
	ybuf  []float64 // K-FROG's y-averages, nil for FROG
}

// match checks the checkpoint against the registrations (in order) and
// returns the decoded generator states of the layers.
func (c *checkpoint) match(optimizer uint8, regs []registration) ([]rand.PCG, error) {
	bad := func(format string, args ...any) ([]rand.PCG, error) {
		return nil, fmt.Errorf("frog: %w: "+format, append([]any{ErrCheckpoint}, args...)...)
	}
	if c.optimizer != optimizer {
		return bad("written by optimizer kind %d, restoring into kind %d", c.optimizer, optimizer)
	}
	if err := checkHyper("lr", c.lr, true); err != nil {
		return bad("%v", err)
	}
	if len(c.entries) != len(regs) {
		return bad("%d entries, the optimizer has %d registrations", len(c.entries), len(regs))
	}
	pcgs := make([]rand.PCG, len(regs))
	for i, reg := range regs {
		e := &c.entries[i]
		if e.name != reg.name {
			return bad("entry %d is %q, the optimizer registered %q there", i, e.name, reg.name)
		}
		fail := func(format string, args ...any) ([]rand.PCG, error) {
			return nil, &LayerError{Layer: reg.name, Err: fmt.Errorf("%w: "+format, append([]any{ErrCheckpoint}, args...)...)}
		}
		if e.steps < 0 || e.skipped < 0 {
			return fail("negative step counts %d, %d", e.steps, e.skipped)
		}
		if !allFinite(e.mom) || !allFinite(e.momB) {
			return fail("momentum not finite")
		}
		for _, v := range e.ybuf {
			if !(v >= 0) || math.IsInf(v, 0) {
				return fail("y-average %v is not finite and non-negative", v)
			}
		}
		if reg.layer == nil {
			if e.kind != ckptParam {
				return fail("a layer in the checkpoint, a plain parameter in the optimizer")
			}
			if e.length != len(reg.param.theta) || len(e.mom) != len(reg.param.mom) {
				return fail("parameter of %d values (momentum %d), the optimizer's has %d", e.length, len(e.mom), len(reg.param.theta))
			}
			continue
		}
		b := reg.layer
		if e.kind != ckptLayer {
			return fail("a plain parameter in the checkpoint, a layer in the optimizer")
		}
		if want := layerGeometry(b.layer); e.geometry != want {
			return fail("layer shape %v, the optimizer's is %v", e.geometry, want)
		}
		if len(e.mom) != len(b.mom) || len(e.momB) != len(b.momB) || len(e.ybuf) != len(reg.ybuf) {
			return fail("state lengths %d, %d, %d, want %d, %d, %d", len(e.mom), len(e.momB), len(e.ybuf), len(b.mom), len(b.momB), len(reg.ybuf))
		}
		if err := pcgs[i].UnmarshalBinary(e.rng); err != nil {
			return fail("random generator: %v", err)
		}
	}
	return pcgs, nil
}

// restore copies a matched checkpoint into the registrations; the caller
// holds every lock.
func (c *checkpoint) restore(regs []registration, pcgs []rand.PCG) {
	for i, reg := range regs {
		e := &c.entries[i]
		if reg.layer == nil {
			p := reg.param
			copy(p.mom, e.mom)
			p.steps, p.skipped = e.steps, e.skipped
			continue
		}
		b := reg.layer
		copy(b.mom, e.mom)
		copy(b.momB, e.momB)
		copy(reg.ybuf, e.ybuf)
		b.steps, b.skipped = e.steps, e.skipped
		b.pcg = pcgs[i]
		b.lastSamples = b.lastSamples[:0]
	}
}

// registrations lists the layers and parameters in order; base gives a
// layer's common state and its y-averages.
func (r *registry[L]) registrations(base func(L) (*layerBase, []float64)) []registration {
	regs := make([]registration, len(r.order))
	for i, name := range r.order {
		regs[i].name = name
		if l, ok := r.layers[name]; ok {
			regs[i].layer, regs[i].ybuf = base(l)
		} else {
			regs[i].param = r.params[name]
		}
	}
	return regs
}

// lockAll locks every registration (layers and parameters) in order.
func lockAll(regs []registration) (unlock func()) {
	for _, r := range regs {
		if r.layer != nil {
			r.layer.mu.Lock()
		} else {
			r.param.mu.Lock()
		}
	}
	return func() {
		for _, r := range regs {
			if r.layer != nil {
				r.layer.mu.Unlock()
			} else {
				r.param.mu.Unlock()
			}
		}
	}
}

func snapshot(optimizer uint8, lr float64, regs []registration) ([]byte, error) {
	c := &checkpoint{optimizer: optimizer, lr: lr, entries: make([]ckptEntry, len(regs))}
	for i, reg := range regs {
		if reg.layer == nil {
			c.entries[i] = paramEntry(reg.name, reg.param)
			continue
		}
		e, err := layerEntry(reg.layer, reg.ybuf)
		if err != nil {
			return nil, &LayerError{Layer: reg.name, Err: err}
		}
		c.entries[i] = e
	}
	return c.encode(), nil
}

func frogBase(fl *frogLayer) (*layerBase, []float64) { return &fl.layerBase, nil }
func kfrogBase(kl *kLayer) (*layerBase, []float64)   { return &kl.layerBase, kl.ybuf }

// marshal is MarshalBinary for either optimizer: kind is its tag, lr its
// learning rate (read under the lock).
func (r *registry[L]) marshal(kind uint8, lr *float64, base func(L) (*layerBase, []float64)) ([]byte, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	regs := r.registrations(base)
	defer lockAll(regs)()
	return snapshot(kind, *lr, regs)
}

// unmarshal is UnmarshalBinary for either optimizer: it restores the
// checkpoint and the learning rate, then reset clears what each layer
// recomputes at its next step.
func (r *registry[L]) unmarshal(data []byte, kind uint8, lr *float64, base func(L) (*layerBase, []float64), reset func(L)) error {
	c, err := decodeCheckpoint(data)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	regs := r.registrations(base)
	defer lockAll(regs)()
	pcgs, err := c.match(kind, regs)
	if err != nil {
		return err
	}
	c.restore(regs, pcgs)
	for _, l := range r.layers {
		reset(l)
	}
	*lr = c.lr
	return nil
}

// MarshalBinary writes the optimizer's state as a checkpoint (see the
// format above). It waits for running steps; take it between steps, so
// that every layer is at the same point of training.
func (o *Optimizer) MarshalBinary() ([]byte, error) {
	return o.marshal(ckptFROG, &o.cfg.LR, frogBase)
}

// UnmarshalBinary restores a checkpoint written by MarshalBinary into an
// optimizer with the same registrations (names, kinds and shapes, in the
// same order). It restores the learning rate too. On error, which wraps
// ErrCheckpoint, nothing is changed.
func (o *Optimizer) UnmarshalBinary(data []byte) error {
	return o.unmarshal(data, ckptFROG, &o.cfg.LR, frogBase, func(fl *frogLayer) {
		fl.diag = newRowDiagnostics(fl.layer.Rows())
	})
}

// MarshalBinary writes the optimizer's state as a checkpoint; see
// Optimizer.MarshalBinary.
func (o *KFROG) MarshalBinary() ([]byte, error) {
	return o.marshal(ckptKFROG, &o.cfg.LR, kfrogBase)
}

// UnmarshalBinary restores a checkpoint; see Optimizer.UnmarshalBinary.
func (o *KFROG) UnmarshalBinary(data []byte) error {
	return o.unmarshal(data, ckptKFROG, &o.cfg.LR, kfrogBase, func(kl *kLayer) {
		clear(kl.actDiag)
		clear(kl.solution)
		clear(kl.residual)
	})
}
