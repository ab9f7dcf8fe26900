//go:build opencl

package opencl

import (
	"errors"
	"fmt"

	"github.com/frogopt/frog/conv"
)

// DeviceJob is one layer's row-wise preconditioning with its tensors
// already on the device: PreconditionDevice reads and writes these buffers
// in place and copies no tensor to or from the host. Tensor layouts are
// those of backend.Job; offsets count float32 elements.
type DeviceJob struct {
	// Geometry is the layer's convolution (a linear layer is a 1x1
	// convolution of 1x1 inputs); zero strides, dilations and groups mean 1.
	Geometry conv.Geometry
	// JointBias appends a constant 1 to every patch: rows are [w_j, b_j].
	JointBias bool

	// Batch is the number of samples Acts and OutGrads hold.
	Batch int
	// SampleIndex is the subsample, indices into the batch without
	// repeats; nil means all Batch samples. Only these samples are read
	// (im2col runs over the subsample on the device).
	SampleIndex []int
	// Acts holds the layer inputs, Batch x Cin x H x W.
	Acts Buffer
	// OutGrads holds the output gradients, Batch x Cout x OutH x OutW.
	OutGrads Buffer
	// Grad holds the effective gradient, Cout x RowLen.
	Grad Buffer
	// Dir receives the direction c_j z_j, Cout x RowLen. It must not
	// overlap the other tensors.
	Dir Buffer

	// LossScale is s in lam = s*y^2: B*B/r for a mean-reduced loss, 1/r for
	// a sum (r the subsample's size).
	LossScale float64
	// Damping is tau, Iters the number of CG iterations, Tolerance an
	// optional early stop per row, DenomEps the eps of the denominators.
	Damping   float64
	Iters     int
	Tolerance float64
	DenomEps  float64

	// Trace, Residual, Scale and Breakdown, when not nil, receive the
	// per-row diagnostics (Cout values each; a small copy to the host).
	Trace, Residual, Scale []float64
	Breakdown              []bool
	// Async returns as soon as everything is enqueued on Engine.Queue(),
	// without waiting; it needs the diagnostics to be nil. Work the caller
	// enqueues on that queue afterwards sees the direction; other queues
	// must wait for the queue (clFinish, or a marker event).
	Async bool
}

// PreconditionDevice runs a DeviceJob on the engine's queue. The buffers
// must belong to the engine's context and stay unchanged until it returns
// (or, with Async, until the queue has finished); the caller's own writes
// to them must be complete (finished on its queue) before the call.
func (e *Engine) PreconditionDevice(job *DeviceJob) error {
	if e.queue == nil {
		return errors.New("opencl: engine is closed")
	}
	g := job.Geometry.Normalized()
	if err := g.Validate(); err != nil {
		return fmt.Errorf("opencl: device job: %w", err)
	}
	p := problem{
		g: g, bias: job.JointBias, acts: job.Acts, outGrads: job.OutGrads, grad: job.Grad, dir: job.Dir,
		lossScale: job.LossScale, damping: job.Damping, tolerance: job.Tolerance,
		denomEps: job.DenomEps, iters: job.Iters,
	}
	samples := job.Batch
	if job.SampleIndex != nil {
		samples = len(job.SampleIndex)
	}
	p.samples = samples
	if err := e.checkDeviceJob(job, &p); err != nil {
		return err
	}
	if err := p.checkSize(); err != nil {
		return err
	}
	if err := e.setSamples(job.SampleIndex, samples); err != nil {
		return err
	}
	if err := e.run(&p); err != nil {
		return err
	}
	if job.Async {
		return nil
	}
	if job.Trace != nil || job.Residual != nil || job.Scale != nil || job.Breakdown != nil {
		// readRows ends with a blocking read, which on the in-order
		// queue also waits for everything before it.
		return e.readRows(g.OutChannels, job.Trace, job.Residual, job.Scale, job.Breakdown, nil)
	}
	if err := e.queue.Finish(); err != nil {
		return fmt.Errorf("opencl: waiting for the queue: %w", err)
	}
	return nil
}

func (e *Engine) checkDeviceJob(job *DeviceJob, p *problem) error {
	g := p.g
	R, d := g.OutChannels, p.rowLen()
	switch {
	case job.Batch <= 0:
		return fmt.Errorf("opencl: device job: batch must be positive, got %d", job.Batch)
	case p.samples <= 0:
		return errors.New("opencl: device job: empty subsample")
	case job.Iters < 0:
		return fmt.Errorf("opencl: device job: negative iterations %d", job.Iters)
	case !(job.DenomEps > 0):
		return fmt.Errorf("opencl: device job: denom_eps must be positive, got %v", job.DenomEps)
	case job.Async && (job.Trace != nil || job.Residual != nil || job.Scale != nil || job.Breakdown != nil):
		return errors.New("opencl: device job: Async needs the diagnostics to be nil")
	}
	for _, s := range []struct {
		what string
		diag int
	}{{"trace", len(job.Trace)}, {"residual", len(job.Residual)}, {"scale", len(job.Scale)}, {"breakdown", len(job.Breakdown)}} {
		if s.diag != 0 && s.diag != R {
			return fmt.Errorf("opencl: device job: %s has %d values, want %d", s.what, s.diag, R)
		}
	}
	for _, b := range []struct {
		what string
		buf  Buffer
		n    int
	}{
		{"activations", job.Acts, job.Batch * g.ImageLen()},
		{"output gradients", job.OutGrads, job.Batch * g.OutputLen()},
		{"gradient", job.Grad, R * d},
		{"direction", job.Dir, R * d},
	} {
		if b.buf.Mem == nil {
			return fmt.Errorf("opencl: device job: no %s buffer", b.what)
		}
		if b.buf.Offset < 0 || 4*(b.buf.Offset+b.n) > bufferBytes(b.buf.Mem) {
			return fmt.Errorf("opencl: device job: %s: %d values at offset %d do not fit a buffer of %d bytes",
				b.what, b.n, b.buf.Offset, bufferBytes(b.buf.Mem))
		}
	}
	if bufferHandle(job.Dir.Mem) == bufferHandle(job.Grad.Mem) || bufferHandle(job.Dir.Mem) == bufferHandle(job.Acts.Mem) ||
		bufferHandle(job.Dir.Mem) == bufferHandle(job.OutGrads.Mem) {
		return errors.New("opencl: device job: the direction must have a buffer of its own")
	}
	// The indices are checked last, once the buffers bound Batch.
	return e.checkSampleIndex(job.SampleIndex, job.Batch)
}

// checkSampleIndex rejects indices out of [0, batch) or repeated.
func (e *Engine) checkSampleIndex(idx []int, batch int) error {
	if i := e.seen.FirstInvalid(idx, batch); i >= 0 {
		return fmt.Errorf("opencl: device job: sample index %d out of range or repeated (batch %d)", idx[i], batch)
	}
	return nil
}
