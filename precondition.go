package frog

import (
	"errors"
	"fmt"
	"math"

	"github.com/frogopt/frog/backend"
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
}

// RowDiagnostics holds per-row facts of a preconditioning.
type RowDiagnostics struct {
	// Trace is t_j = tr(F_j)/D, before eps is added.
	Trace []float64
	// Residual is the norm of the final CG residual of row j.
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
// It runs on the CPU engine of the current blas kernels; the Optimizer
// picks other backends.
func PreconditionRows(in RowsInput, dir []float32) (RowDiagnostics, error) {
	l := in.Layer
	if err := l.Validate(); err != nil {
		return RowDiagnostics{}, err
	}
	if err := checkRowsInput(in, dir); err != nil {
		return RowDiagnostics{}, l.errorf("%v", err)
	}
	diag := newRowDiagnostics(l.Rows())
	job := backend.Job{
		Geometry:  l.Geometry(),
		JointBias: l.Bias == JointBias,
		Samples:   in.Samples,
		Acts:      in.Acts,
		OutGrads:  in.OutGrads,
		Grad:      in.Grad,
		LossScale: lossScale(in.Reduction, in.BatchSize, in.Samples),
		Damping:   in.Damping,
		Iters:     in.Iters,
		Tolerance: in.Tolerance,
		DenomEps:  in.DenomEps,
		Dir:       dir,
		Trace:     diag.Trace, Residual: diag.Residual, Scale: diag.Scale, Breakdown: diag.Breakdown,
	}
	var cpu backend.CPU
	if err := cpu.Precondition(&job); err != nil {
		return RowDiagnostics{}, l.errorf("%v", err)
	}
	if !allFinite(dir) {
		return RowDiagnostics{}, l.errorf("the preconditioned direction is not finite")
	}
	return diag, nil
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
	if err := checkLen("activations", in.Acts, in.Samples*l.ActLen()); err != nil {
		return err
	}
	if err := checkLen("output gradients", in.OutGrads, in.Samples*l.OutGradLen()); err != nil {
		return err
	}
	return checkFinite(map[string][]float32{"gradient": in.Grad, "activations": in.Acts, "output gradients": in.OutGrads})
}

func checkLen(what string, s []float32, want int) error {
	if len(s) != want {
		return fmt.Errorf("%s: have %d values, want %d", what, len(s), want)
	}
	return nil
}

// ErrNonFinite is wrapped by the errors for NaN or Inf inputs.
var ErrNonFinite = errors.New("not finite")

func checkFinite(named map[string][]float32) error {
	for _, what := range []string{"gradient", "bias gradient", "activations", "output gradients"} {
		if s, ok := named[what]; ok {
			if i := firstNonFinite(s); i >= 0 {
				return fmt.Errorf("%s[%d] = %v: %w", what, i, s[i], ErrNonFinite)
			}
		}
	}
	return nil
}

func firstNonFinite(s []float32) int {
	for i, v := range s {
		if v-v != 0 { // NaN or Inf
			return i
		}
	}
	return -1
}

func allFinite(s []float32) bool { return firstNonFinite(s) < 0 }
