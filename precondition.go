package frog

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/frogopt/frog/backend"
	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/internal/buf"
)

// Reduction says how the loss was reduced over the batch; it sets the scale
// of the Fisher estimate (FROG.md step 1).
type Reduction int

const (
	// Mean: the loss is averaged over the batch (the reference default).
	Mean Reduction = iota
	// Sum: the loss is summed over the batch.
	Sum
)

// String names the reduction: "mean" or "sum".
func (r Reduction) String() string {
	switch r {
	case Mean:
		return "mean"
	case Sum:
		return "sum"
	}
	return fmt.Sprintf("Reduction(%d)", int(r))
}

// RowsInput is one layer's row-wise preconditioning problem for
// PreconditionRows.
type RowsInput struct {
	// Layer describes the weight and its input.
	Layer Layer
	// Grad is the effective gradient (after momentum), Rows() x SolveLen():
	// with a joint bias, each row ends with the bias coordinate.
	Grad []float32
	// Acts holds the subsampled layer inputs, Samples x ActLen().
	Acts []float32
	// OutGrads holds the matching output gradients, Samples x OutGradLen().
	OutGrads []float32
	// Samples is r, the number of samples in Acts and OutGrads.
	Samples int
	// BatchSize is B, the full batch the loss was reduced over.
	BatchSize int
	// Reduction is how the loss was reduced.
	Reduction Reduction
	// Damping is tau, relative to the mean diagonal of each row's Fisher.
	Damping float64
	// Iters is the number of CG iterations.
	Iters int
	// DenomEps is the eps of the trace, CG and row-scale denominators
	// (the reference uses 1e-10); it must be positive.
	DenomEps float64
	// Tolerance, when positive, stops a row's CG once its residual is at
	// most Tolerance times the norm of its gradient.
	Tolerance float64
	// ScaleInvariant makes DenomEps relative to the scale of the data.
	//
	// The reference adds an absolute eps = 1e-10 to t_j, so its update is
	// not invariant to the scale of the activations and output gradients:
	// when lam*|u|^2 is tiny (activations or output gradients of order
	// 1e-20), t_j + eps is dominated by eps, the Fisher term F_j/(t_j+eps)
	// vanishes next to tau*I, and the step becomes the normalized
	// (damped) gradient direction. That is what the reference computes, so
	// it is the default. Large scales (1e20) are harmless either way: the
	// traces and products are formed in float64 and on power-of-two
	// normalized patches, so nothing overflows and eps is negligible.
	//
	// With ScaleInvariant, the activations and output gradients are
	// treated as if normalized by exact powers of two a and c that bring
	// their largest magnitudes into [1, 2) (with a joint bias, the constant
	// bias coordinate 1 counts as an activation), which multiplies every
	// F_j and t_j by k = (a*c)^2 and so divides eps by k. It is done
	// exactly, by multiplying the loss scale s of lam = s*y^2 by k; the
	// reported traces are divided by k again and so are in the data's own
	// scale. Apart from eps the update is unchanged, and it no longer
	// depends on the scale of the activations or output gradients beyond
	// float32 rounding.
	ScaleInvariant bool
}

// RowDiagnostics holds per-row facts of a preconditioning.
type RowDiagnostics struct {
	// Trace is t_j = tr(F_j)/D, before eps is added.
	Trace []float64
	// Residual is the norm of row j's last CG residual b_j - Fhat_j z:
	// the last iteration only moves z along its direction (it needs
	// p.Fhat p, one of the two products with the patches, not a new
	// residual), so a row that runs all Iters iterations reports the
	// residual of the iterate before the last (|e_j| with one iteration),
	// and a row that Tolerance stopped earlier the one that stopped it.
	Residual []float64
	// Scale is c_j = 1/sqrt(z_j.e_j + eps), the row normalization.
	Scale []float64
	// Breakdown marks rows whose CG stopped on a non-positive or non-finite
	// curvature p.q; such a row keeps its last finite iterate (or its
	// gradient, at the first iteration).
	Breakdown []bool
}

// Breakdowns counts the rows marked in Breakdown.
func (d RowDiagnostics) Breakdowns() int {
	n := 0
	for _, b := range d.Breakdown {
		if b {
			n++
		}
	}
	return n
}

func newRowDiagnostics(rows int) RowDiagnostics {
	f := make([]float64, 3*rows)
	return RowDiagnostics{Trace: f[:rows], Residual: f[rows : 2*rows], Scale: f[2*rows:], Breakdown: make([]bool, rows)}
}

// PreconditionRows solves every row's damped, trace-normalized Fisher
// system by batched CG and writes the normalized directions c_j z_j into
// dir (Rows() x SolveLen() values). It never forms a D x D matrix. The
// update FROG applies is W_j -= lr * dir_j.
//
// It runs on a fresh CPU Preconditioner; code that calls it repeatedly
// should keep a Preconditioner, which reuses its workspace.
func PreconditionRows(in RowsInput, dir []float32) (RowDiagnostics, error) {
	var p Preconditioner
	if err := p.init(BackendCPU); err != nil {
		return RowDiagnostics{}, err
	}
	var diag RowDiagnostics // sized by Precondition once the layer is validated
	if err := p.Precondition(in, dir, &diag); err != nil {
		return RowDiagnostics{}, err
	}
	return diag, nil
}

// Preconditioner runs PreconditionRows on a chosen backend and keeps its
// workspace (and, for a GPU, its device buffers) between calls, so that
// steady-state calls do not allocate. It is not safe for concurrent use;
// use one per goroutine.
type Preconditioner struct {
	engine   backend.Engine
	fallback string
	job      backend.Job
	tops     dataTops
}

// dataTops is what one pass over the inputs learned of their magnitudes
// (blas.MaxAbsBits: NaN and Inf sort above every finite value), so that
// the checks, the tiny-data handling, the engine's patch scale and CG's
// row scales share it instead of reading the data again.
type dataTops struct {
	// acts and outs are MaxAbsBits of the activations and of the output
	// gradients, when actsKnown and outsKnown.
	acts, outs           uint32
	actsKnown, outsKnown bool
	// rows[j] is MaxAbsBits of row j of the gradient.
	rows []uint32
	scan rowTops
}

// rowTops is scanRows split across the cores by rows.
type rowTops struct {
	grad []float32
	d    int
	tops []uint32
}

func (t *rowTops) RunPart(part, parts int) {
	rows := len(t.tops)
	for j := rows * part / parts; j < rows*(part+1)/parts; j++ {
		t.tops[j] = blas.MaxAbsBits(t.grad[j*t.d : (j+1)*t.d])
	}
}

// scanSolve records what solve needs of in's magnitudes, for inputs no
// check has scanned: the gradient's rows, the activations when a scale is
// drawn from them, the output gradients with ScaleInvariant.
func (t *dataTops) scanSolve(in *RowsInput) {
	t.scanRows(in.Grad, in.Layer.SolveLen())
	t.actsKnown = in.ScaleInvariant || in.Layer.Bias != JointBias
	if t.actsKnown {
		t.acts = blas.MaxAbsBits(in.Acts)
	}
	t.outsKnown = in.ScaleInvariant
	if t.outsKnown {
		t.outs = blas.MaxAbsBits(in.OutGrads)
	}
}

// rowsFinite reports whether every row scanRows saw is finite (NaN and
// Inf have the largest MaxAbsBits).
func (t *dataTops) rowsFinite() bool {
	for _, top := range t.rows {
		if top >= 0x7f800000 {
			return false
		}
	}
	return true
}

// scanRows sets t.rows from grad's rows of length d, in one pass split
// across the cores by rows.
func (t *dataTops) scanRows(grad []float32, d int) {
	rows := len(grad) / d
	t.rows = buf.Grow(t.rows, rows)
	t.scan = rowTops{grad: grad, d: d, tops: t.rows}
	blas.Parallel(&t.scan, min(rows, len(grad)>>16))
	t.scan = rowTops{}
}

// NewPreconditioner returns a Preconditioner on the named backend (see
// Backends; "" means the FROG_BACKEND environment variable, else auto).
// A backend that cannot start falls back to the CPU; Fallback says why.
func NewPreconditioner(backendName string) (*Preconditioner, error) {
	p := &Preconditioner{}
	if err := p.init(backendName); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Preconditioner) init(backendName string) error {
	name, err := resolveBackend(backendName)
	if err != nil {
		return err
	}
	p.engine, p.fallback = newEngine(name)
	return nil
}

// Backend names the engine in use.
func (p *Preconditioner) Backend() string { return p.engine.Name() }

// Fallback says why the engine is not the backend asked for ("" when it is).
func (p *Preconditioner) Fallback() string { return p.fallback }

// Close releases the engine's resources.
func (p *Preconditioner) Close() error {
	closeEngine(p.engine)
	return nil
}

// Precondition is PreconditionRows writing its diagnostics into diag,
// whose slices are reused when they have Rows() elements.
//
// dir must not overlap Grad, Acts or OutGrads. On error dir and diag hold
// unspecified values.
func (p *Preconditioner) Precondition(in RowsInput, dir []float32, diag *RowDiagnostics) error {
	l := in.Layer
	if err := l.Validate(); err != nil {
		return err
	}
	if diag == nil {
		return l.errorf("diagnostics: nil *RowDiagnostics")
	}
	if err := checkRowsInput(in, dir); err != nil {
		return l.errorf("%w", err)
	}
	if err := p.tops.scanInputs(in); err != nil {
		return l.errorf("%w", err)
	}
	if len(diag.Trace) != l.Rows() || len(diag.Residual) != l.Rows() || len(diag.Scale) != l.Rows() || len(diag.Breakdown) != l.Rows() {
		*diag = newRowDiagnostics(l.Rows())
	}
	return p.solve(&in, dir, diag, false)
}

// solve runs a validated problem on the engine: diag has Rows() entries.
// When owned is set, in.Acts and in.Grad are the caller's scratch and may
// be rescaled in place; otherwise the rare inputs that need it are copied.
// Errors are not yet wrapped with the layer's name.
//
// p.tops holds in's magnitudes, from scanInputs (Precondition's checks)
// or scanSolve.
func (p *Preconditioner) solve(in *RowsInput, dir []float32, diag *RowDiagnostics, owned bool) error {
	l := in.Layer
	tops := &p.tops
	// The activations' normalizer serves both scales.
	actsNorm := 1.0
	if tops.actsKnown {
		actsNorm = blas.NormalizerOfBits(tops.acts)
	}
	dataScale := 1.0
	if in.ScaleInvariant {
		dataScale = scaleOf(actsNorm, blas.NormalizerOfBits(tops.outs), l.Bias == JointBias)
	}
	acts, actScale := in.Acts, 1.0 // see tinyScale
	if l.Bias != JointBias {
		if actScale = tinyScale(actsNorm); actScale != 1 {
			if !owned {
				acts = append([]float32(nil), acts...)
			}
			blas.ScaleTo64(actScale, acts, acts) // exact: a power of two
		}
	}
	grad := in.Grad
	if hasTinyRows(tops.rows) {
		if !owned {
			grad = append([]float32(nil), grad...)
		}
		flushTinyRowsOf(grad, tops.rows, l.SolveLen())
	}
	// The engine need not find the largest activation again, unless
	// they were rescaled.
	actsTop, actsKnown := tops.acts, tops.actsKnown && actScale == 1
	// The job lives in the Preconditioner: through the Engine interface a
	// local one would escape to the heap on every call.
	p.job = backend.Job{
		Geometry:  l.Geometry(),
		JointBias: l.Bias == JointBias,
		Samples:   in.Samples,
		Acts:      acts,
		OutGrads:  in.OutGrads,
		Grad:      grad,

		ActsMaxBits: actsTop, ActsMaxKnown: actsKnown, GradRowMaxBits: tops.rows,
		LossScale: lossScale(in.Reduction, in.BatchSize, in.Samples) * dataScale / (actScale * actScale),
		Damping:   in.Damping,
		Iters:     in.Iters,
		Tolerance: in.Tolerance,
		DenomEps:  in.DenomEps,
		Dir:       dir,
		Trace:     diag.Trace, Residual: diag.Residual, Scale: diag.Scale, Breakdown: diag.Breakdown,
	}
	err := runEngine(&p.engine, &p.fallback, &p.job)
	p.job = backend.Job{} // keep no reference to the caller's slices
	if err != nil {
		return err
	}
	unscaleTraces(diag.Trace, dataScale)
	if i := firstNonFinite(dir); i >= 0 {
		return fmt.Errorf("the preconditioned direction is not finite at %d: %w", i, ErrNonFinite)
	}
	return nil
}

// scaleOf is k = (a*c)^2 of RowsInput.ScaleInvariant: a and c are the
// powers of two that bring the largest magnitudes of the activations and
// of the output gradients into [1, 2). With a joint bias the patches hold a
// constant 1 too, so a is at most 1. A power of two times the loss scale
// is exact in float64: k lies in [2^-508, 2^596] for finite float32 data.
// actsNorm and outsNorm are blas.Normalizer of the activations and of
// the output gradients.
func scaleOf(actsNorm, outsNorm float64, jointBias bool) float64 {
	a, c := actsNorm, outsNorm
	if jointBias {
		a = min(a, 1)
	}
	return (a * c) * (a * c)
}

// Tiny data. The engine and CG bring data to unit scale with power-of-two
// factors that they store as float32; for data whose largest magnitude is
// below 2^-127 that factor overflows. So the root package handles those
// cases itself:
//
//   - activations that are all below 2^-100 in magnitude are scaled up by
//     the exact power of two a (tinyScale) and the loss scale by 1/a^2,
//     which leaves every F_j and t_j as they were, bit for bit (not needed
//     with a joint bias, whose constant 1 bounds the patches from below);
//   - a row of the (effective) gradient whose values are all subnormal
//     (below 2^-126) is taken as zero. Its exact direction c_j z_j is of
//     order 1e-27 or less (c_j <= 1/sqrt(eps)), far below any float32 step
//     on weights of ordinary size.

// tinyScale is the power of two that brings the largest magnitude of the
// activations into [1, 2) when that magnitude is below 2^-100, else 1;
// actsNorm is blas.Normalizer of the activations.
func tinyScale(actsNorm float64) float64 {
	if actsNorm > 0x1p100 {
		return actsNorm
	}
	return 1
}

// tinyRow reports a row, given its MaxAbsBits, that is not zero but has
// no value above the smallest normal float32 2^-126 (bits 0x00800000).
func tinyRow(top uint32) bool { return top != 0 && top <= 0x00800000 }

func hasTinyRows(tops []uint32) bool { return slices.ContainsFunc(tops, tinyRow) }

// flushTinyRows clears the tiny rows of s, rows of d values.
func flushTinyRows(s []float32, d int) {
	for j := 0; j+d <= len(s); j += d {
		if tinyRow(blas.MaxAbsBits(s[j : j+d])) {
			clear(s[j : j+d])
		}
	}
}

// flushTinyRowsOf is flushTinyRows given the rows' MaxAbsBits, tops, which
// it keeps up to date.
func flushTinyRowsOf(s []float32, tops []uint32, d int) {
	for j, top := range tops {
		if tinyRow(top) {
			clear(s[j*d : (j+1)*d])
			tops[j] = 0
		}
	}
}

// unscaleTraces divides the traces by the data scale k (exactly: k is a
// power of two and the traces are far from the float64 limits).
func unscaleTraces(trace []float64, k float64) {
	if k == 1 {
		return
	}
	for j := range trace {
		trace[j] /= k
	}
}

// lossScale is s in lam = s*y^2 (FROG.md step 1).
func lossScale(r Reduction, batch, samples int) float64 {
	if r == Sum {
		return 1 / float64(samples)
	}
	return float64(batch) * float64(batch) / float64(samples)
}

func checkRowsInput(in RowsInput, dir []float32) error {
	l := in.Layer
	switch {
	case in.Samples <= 0:
		return fmt.Errorf("samples must be positive, got %d", in.Samples)
	case in.BatchSize < in.Samples:
		return fmt.Errorf("batch size %d is smaller than the %d samples", in.BatchSize, in.Samples)
	case in.Reduction != Mean && in.Reduction != Sum:
		return fmt.Errorf("unknown reduction %d", int(in.Reduction))
	case in.Iters <= 0:
		return fmt.Errorf("CG iterations must be positive, got %d", in.Iters)
	case !(in.Damping >= 0) || math.IsInf(in.Damping, 0):
		return fmt.Errorf("damping tau must be finite and non-negative, got %v", in.Damping)
	case !(in.DenomEps > 0) || math.IsInf(in.DenomEps, 0):
		return fmt.Errorf("denom_eps must be finite and positive, got %v", in.DenomEps)
	case !(in.Tolerance >= 0) || math.IsInf(in.Tolerance, 0):
		return fmt.Errorf("CG tolerance must be finite and non-negative, got %v", in.Tolerance)
	}
	if err := checkLen("gradient", in.Grad, l.Rows()*l.SolveLen()); err != nil {
		return err
	}
	if err := checkLen("direction buffer", dir, l.Rows()*l.SolveLen()); err != nil {
		return err
	}
	if err := checkLen("activations", in.Acts, mulLen(in.Samples, l.ActLen())); err != nil {
		return err
	}
	if err := checkLen("output gradients", in.OutGrads, mulLen(in.Samples, l.OutGradLen())); err != nil {
		return err
	}
	return nil
}

// scanInputs checks that in's gradient, activations and output gradients
// are finite (reporting the first NaN or Inf in that order) and records
// the magnitudes solve needs, one pass over each.
func (t *dataTops) scanInputs(in RowsInput) error {
	t.scanRows(in.Grad, in.Layer.SolveLen())
	if !t.rowsFinite() {
		return checkFinite(named{"gradient", in.Grad})
	}
	t.acts, t.actsKnown = blas.MaxAbsBits(in.Acts), true
	if t.acts >= 0x7f800000 {
		return checkFinite(named{"activations", in.Acts})
	}
	t.outs, t.outsKnown = blas.MaxAbsBits(in.OutGrads), true
	if t.outs >= 0x7f800000 {
		return checkFinite(named{"output gradients", in.OutGrads})
	}
	return nil
}

func checkLen(what string, s []float32, want int) error {
	if want < 0 {
		return fmt.Errorf("%s: have %d values, want more than fit in memory", what, len(s))
	}
	if len(s) != want {
		return fmt.Errorf("%s: have %d values, want %d", what, len(s), want)
	}
	return nil
}

// ErrNonFinite is wrapped by the errors for NaN or Inf inputs.
var ErrNonFinite = errors.New("not finite")

// named is a vector with the name errors give it.
type named struct {
	what string
	s    []float32
}

// checkFinite reports the first NaN or Inf among vs, in their order.
func checkFinite(vs ...named) error {
	for _, v := range vs {
		if i := firstNonFinite(v.s); i >= 0 {
			return fmt.Errorf("%s[%d] = %v: %w", v.what, i, v.s[i], ErrNonFinite)
		}
	}
	return nil
}

// firstNonFinite returns the index of the first NaN or Inf in s, or -1;
// the common all-finite case is one vector pass.
func firstNonFinite(s []float32) int {
	if blas.MaxAbsBits(s) < 0x7f800000 { // below the bits of +Inf
		return -1
	}
	for i, v := range s {
		if v-v != 0 { // NaN or Inf
			return i
		}
	}
	return -1
}

func allFinite(s []float32) bool { return firstNonFinite(s) < 0 }
