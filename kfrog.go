package frog

import (
	"fmt"
	"math"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/cg"
	"github.com/frogopt/frog/fisher"
	"github.com/frogopt/frog/internal/buf"
)

// KConfig holds K-FROG's hyperparameters; DefaultKConfig returns the
// reference defaults (FROG.md, K-FROG section).
type KConfig struct {
	// LR is the learning rate [lr].
	LR float64
	// Momentum and Nesterov as for FROG [momentum, nesterov].
	Momentum float64
	Nesterov bool
	// YMomentum is beta of the bias-corrected moving average of the output
	// gradient diagonal [y_momentum]; 0 disables it.
	YMomentum float64
	// SampleSize is r_x, the samples for X [sample_size]; 0 or at least the
	// batch size means the whole batch.
	SampleSize int
	// YSampleSize, when positive and below the batch size, draws an
	// independent subsample for Y [y_sample_size]; otherwise Y is the whole
	// batch.
	YSampleSize int
	// Iters is the number of CG iterations [num_iters].
	Iters int
	// Reduction is how the loss was reduced over the batch [batch_averaged].
	Reduction Reduction
	// Eps damps the CG system and the square root [eps].
	Eps float64
	// Seed seeds the layers' subsampling generators.
	Seed uint64
	// SkipNonFinite skips a layer's step on NaN or Inf input instead of
	// returning an error.
	SkipNonFinite bool
}

// kfrogCGEps is the fixed denominator guard of K-FROG's CG (FROG.md,
// K-FROG step 4), independent of the eps hyperparameter.
const kfrogCGEps = 1e-10

// DefaultKConfig returns the reference defaults: lr 1e-3, momentum 0, no
// Nesterov, y_momentum 0, sample_size 256, 4 CG iterations, a mean-reduced
// loss, no y_sample_size and eps 1e-6.
func DefaultKConfig() KConfig {
	return KConfig{LR: 1e-3, SampleSize: 256, Iters: 4, Reduction: Mean, Eps: 1e-6}
}

// Validate reports the first invalid hyperparameter.
func (c KConfig) Validate() error {
	for _, h := range []struct {
		name      string
		v         float64
		allowZero bool
	}{{"lr", c.LR, true}, {"momentum", c.Momentum, true}, {"y_momentum", c.YMomentum, true}, {"eps", c.Eps, false}} {
		if err := checkHyper(h.name, h.v, h.allowZero); err != nil {
			return err
		}
	}
	switch {
	case c.YMomentum >= 1:
		return fmt.Errorf("frog: y_momentum must be below 1, got %v", c.YMomentum)
	case c.Iters <= 0:
		return fmt.Errorf("frog: num_iters must be positive, got %d", c.Iters)
	case c.SampleSize < 0 || c.YSampleSize < 0:
		return fmt.Errorf("frog: sample sizes must not be negative, got %d and %d", c.SampleSize, c.YSampleSize)
	case c.Nesterov && c.Momentum == 0:
		return fmt.Errorf("frog: Nesterov momentum needs a positive momentum")
	case c.Reduction != Mean && c.Reduction != Sum:
		return fmt.Errorf("frog: unknown reduction %d", int(c.Reduction))
	}
	return nil
}

// KFROG is the legacy Kronecker variant of FROG, on the CPU. Steps of
// different layers may run concurrently.
type KFROG struct {
	registry[*kLayer]
	cfg KConfig
}

type kLayer struct {
	layerBase
	ybuf, ybufNew []float64 // EMA of the output-gradient diagonal
	ydiag         []float64
	ySamples      []int
	yPerm         []int
	patches       []float32
	actDiag       []float64 // groups x SolveLen(): diag(X^T X)/b
	dirScale      []float64 // SolveLen(): a group's shift*sqrt(diag)
	solution      []float32 // P2, Rows() x SolveLen()
	rhs           []float32 // P1, then the direction
	residual      []float64
	// a step's statistics, swapped with the three above when it commits
	actDiagNew, residualNew []float64
	solutionNew             []float32
	effBias                 []float32 // effective bias gradient
	op                      fisher.Operator
	solver                  cg.Solver
}

// NewKFROG returns a K-FROG optimizer.
func NewKFROG(cfg KConfig) (*KFROG, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &KFROG{registry: newRegistry[*kLayer](), cfg: cfg}, nil
}

// SetLR changes the learning rate for the following steps.
func (o *KFROG) SetLR(lr float64) error { return o.setLR(&o.cfg.LR, lr) }

// AddLayer registers a preconditioned layer; see Optimizer.AddLayer. A
// PlainBias bias takes the plain step theta -= lr*e.
func (o *KFROG) AddLayer(l Layer, weight, bias []float32) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.checkNewName(l.Name); err != nil {
		return err
	}
	kl := &kLayer{}
	if err := kl.init(l, weight, bias, o.cfg.Seed, len(o.order)); err != nil {
		return err
	}
	r, sd := l.Rows(), l.SolveLen()
	kl.eff = make([]float32, l.WeightLen())
	kl.ybuf = make([]float64, r)
	kl.ybufNew = make([]float64, r)
	kl.ydiag = make([]float64, r)
	kl.actDiag = make([]float64, l.Geometry().Groups*sd)
	kl.actDiagNew = make([]float64, l.Geometry().Groups*sd)
	kl.dirScale = make([]float64, sd)
	kl.solution = make([]float32, r*sd)
	kl.solutionNew = make([]float32, r*sd)
	kl.rhs = make([]float32, r*sd)
	kl.residual = make([]float64, r)
	kl.residualNew = make([]float64, r)
	o.addLayer(l.Name, kl)
	return nil
}

// KStats describes a K-FROG layer's last step.
type KStats struct {
	Steps, Skipped int64
	// ActDiag is diag(X^T X)/b per group, Groups x SolveLen().
	ActDiag []float64
	// Solution is the CG solution P2 before the scaling by sqrt(ActDiag).
	Solution []float32
	// Residual is the final CG residual norm of each row.
	Residual []float64
}

// Stats returns a copy of a layer's statistics.
func (o *KFROG) Stats(name string) (KStats, error) {
	o.mu.RLock()
	kl, err := o.layer(name)
	o.mu.RUnlock()
	if err != nil {
		return KStats{}, err
	}
	kl.mu.Lock()
	defer kl.mu.Unlock()
	return KStats{
		Steps: kl.steps, Skipped: kl.skipped,
		ActDiag:  append([]float64(nil), kl.actDiag...),
		Solution: append([]float32(nil), kl.solution...),
		Residual: append([]float64(nil), kl.residual...),
	}, nil
}

// Step takes one K-FROG step for a layer. On error the weights, the bias
// and all optimizer state are left as they were; non-finite input (or a
// result that would not be finite) is handled as in Optimizer.Step.
func (o *KFROG) Step(name string, in Batch) error {
	o.mu.RLock()
	kl, err := o.layer(name)
	cfg := o.cfg
	o.mu.RUnlock()
	if err != nil {
		return err
	}
	kl.mu.Lock()
	defer kl.mu.Unlock()
	if err := kl.checkBatch(&in); err != nil {
		return kl.layer.errorf("%w", err)
	}
	return kl.transact(cfg.SkipNonFinite,
		func() error { return kl.propose(cfg, &in) },
		func() { kl.commitK(cfg) })
}

// propose computes a step into scratch, leaving the committed state alone
// except for the random generator, which the caller restores on error.
func (kl *kLayer) propose(cfg KConfig, in *Batch) error {
	idx, err := kl.begin(in, cfg.SampleSize)
	if err != nil {
		return err
	}
	yIdx := in.YSamples
	if yIdx == nil && cfg.YSampleSize > 0 && cfg.YSampleSize < in.BatchSize {
		yIdx = kl.drawY(cfg.YSampleSize, in.BatchSize)
	}
	if err := kl.precondition(cfg, in, idx, yIdx); err != nil {
		return err
	}
	kl.proposeUpdate(cfg, in)
	return kl.checkProposals(cfg.Momentum != 0)
}

// drawY draws K-FROG's independent Y subsample after the X draw.
func (kl *kLayer) drawY(r, batch int) []int {
	if cap(kl.yPerm) < batch {
		kl.yPerm = make([]int, batch)
		kl.ySamples = make([]int, batch)
	}
	return drawDistinct(kl.rng, kl.yPerm[:batch], kl.ySamples[:r])
}

// precondition computes P2 into kl.solutionNew and the direction P2 .* xs
// into kl.rhs, leaving the committed state alone.
func (kl *kLayer) precondition(cfg KConfig, in *Batch, idx, yIdx []int) error {
	l := kl.layer
	g := l.Geometry()
	rows, d, sd := l.Rows(), l.RowLen(), l.SolveLen()
	b := float64(len(idx))

	// Effective gradient rows (bias last in JointBias mode).
	momentum(kl.eff, kl.newMom, kl.mom, in.Grad, cfg.Momentum, cfg.Nesterov)
	var effB []float32
	if l.Bias != NoBias {
		kl.effBias = buf.Grow(kl.effBias, rows)
		effB = kl.effBias
		momentum(effB, kl.newMomB, kl.momB, in.BiasGrad, cfg.Momentum, cfg.Nesterov)
	}
	if err := checkEffective(cfg.Momentum, kl.eff, effB); err != nil {
		return err
	}

	// Output-gradient diagonal over the Y samples.
	L := g.Locations()
	outLen := g.OutputLen()
	clear(kl.ydiag)
	addY := func(n int) {
		for j := 0; j < rows; j++ {
			var s float64
			for _, v := range in.OutGrads[n*outLen+j*L : n*outLen+(j+1)*L] {
				s += float64(v) * float64(v)
			}
			kl.ydiag[j] += s
		}
	}
	if yIdx == nil {
		for n := 0; n < in.BatchSize; n++ {
			addY(n)
		}
	} else {
		for _, n := range yIdx {
			addY(n)
		}
	}
	t := float64(kl.steps + 1)
	for j, v := range kl.ydiag {
		if cfg.Reduction == Sum {
			v /= b
		} else {
			v *= b
		}
		yeff := v
		if cfg.YMomentum > 0 {
			kl.ybufNew[j] = cfg.YMomentum*kl.ybuf[j] + (1-cfg.YMomentum)*v
			yeff = kl.ybufNew[j] / (1 - math.Pow(cfg.YMomentum, t))
		}
		inv := 1 / math.Sqrt(yeff+cfg.Eps)
		row := kl.rhs[j*sd : (j+1)*sd]
		for i, e := range kl.eff[j*d : (j+1)*d] {
			row[i] = float32(float64(e) * inv)
		}
		if l.Bias == JointBias {
			row[d] = float32(float64(effB[j]) * inv)
		}
	}

	flushTinyRows(kl.rhs, sd) // see tinyScale

	// Per group: X, its diagonal, and the CG solve of (X^T X/b + eps I) P2 = P1.
	n := len(idx) * L
	kl.patches = buf.Grow(kl.patches, n*sd)
	x := kl.patches
	rg := g.GroupOutChannels()
	kl.solver.Iters, kl.solver.Eps = cfg.Iters, kfrogCGEps
	for grp := 0; grp < g.Groups; grp++ {
		for s, sample := range idx {
			g.Im2col(x[s*L*sd:], sd, in.Acts[sample*g.ImageLen():], grp)
		}
		if l.Bias == JointBias {
			for i := 0; i < n; i++ {
				x[i*sd+d] = 1
			}
		}
		diag := kl.actDiagNew[grp*sd : (grp+1)*sd]
		columnSquares(diag, x, n, sd)
		for i := range diag {
			diag[i] /= b
		}
		// In float64: float32(ps) would overflow for tiny patches (see
		// tinyScale); for a power of two the bits are the same.
		ps := blas.Normalizer(x)
		if ps != 1 {
			blas.ScaleTo64(ps, x, x)
		}
		// The operator is u*Xn^T Xn + eps*I on the normalized patches Xn,
		// u = 1/(b*ps^2). For activations far from 1 (beyond about 2^+-30)
		// the larger of u and eps leaves the float32 range, so the system is
		// multiplied by the power of two shift that brings it into [1, 2)
		// (the smaller may then underflow: it is negligible next to the
		// larger), and the solution y of the shifted system is P2 =
		// shift*y. Within the range, shift is 1 and the computation is the
		// reference's, bit for bit.
		u := 1 / (b * ps * ps)
		shift := 1.0
		if m := max(u, cfg.Eps); m > 0x1p60 || m < 0x1p-60 {
			_, e := math.Frexp(m)
			shift = math.Ldexp(1, 1-e)
		}
		kl.op.Rows, kl.op.Len, kl.op.Points = rg, sd, n
		kl.op.Patches, kl.op.Weights = x, nil
		kl.op.Uniform = float32(u * shift)
		kl.op.Damping = float32(cfg.Eps * shift)
		r0 := grp * rg
		sol := kl.solutionNew[r0*sd : (r0+rg)*sd]
		res := kl.solver.Solve(&kl.op, kl.rhs[r0*sd:(r0+rg)*sd], sol, rg, sd)
		copy(kl.residualNew[r0:r0+rg], res.Residual)
		// direction = P2 .* sqrt(diag), written over P1 (no longer needed);
		// shift is a power of two, so folding it into the factor leaves
		// the products' rounding as it was.
		for i, v := range diag {
			kl.dirScale[i] = shift * math.Sqrt(v)
		}
		for j := r0; j < r0+rg; j++ {
			p2, dir := kl.solutionNew[j*sd:(j+1)*sd], kl.rhs[j*sd:(j+1)*sd]
			for i, v := range p2 {
				dir[i] = float32(float64(v) * kl.dirScale[i])
			}
			if shift != 1 {
				blas.ScaleTo64(shift, p2, p2)
			}
		}
	}
	if i := firstNonFinite(kl.rhs); i >= 0 {
		return fmt.Errorf("the preconditioned direction is not finite at %d: %w", i, ErrNonFinite)
	}
	return nil
}

// proposeUpdate computes the new weights and bias into newW and newB.
func (kl *kLayer) proposeUpdate(cfg KConfig, in *Batch) {
	l := kl.layer
	d, sd := l.RowLen(), l.SolveLen()
	for j := 0; j < l.Rows(); j++ {
		w, nw, dir := kl.weight[j*d:(j+1)*d], kl.newW[j*d:(j+1)*d], kl.rhs[j*sd:(j+1)*sd]
		for i := range w {
			nw[i] = float32(float64(w[i]) - cfg.LR*float64(dir[i]))
		}
		switch l.Bias {
		case JointBias:
			kl.newB[j] = float32(float64(kl.bias[j]) - cfg.LR*float64(dir[d]))
		case PlainBias:
			kl.newB[j] = float32(float64(kl.bias[j]) - cfg.LR*float64(kl.effBias[j]))
		}
	}
}

// commitK applies the step computed by propose.
func (kl *kLayer) commitK(cfg KConfig) {
	kl.commitBase(cfg.Momentum != 0)
	if cfg.YMomentum > 0 {
		copy(kl.ybuf, kl.ybufNew)
	}
	kl.actDiag, kl.actDiagNew = kl.actDiagNew, kl.actDiag
	kl.solution, kl.solutionNew = kl.solutionNew, kl.solution
	kl.residual, kl.residualNew = kl.residualNew, kl.residual
}

// columnSquares writes sum_i x[i][c]^2 for every column c of the n x d
// matrix x, accumulated in float64.
func columnSquares(dst []float64, x []float32, n, d int) {
	clear(dst)
	for i := 0; i < n; i++ {
		for c, v := range x[i*d : (i+1)*d] {
			dst[c] += float64(v) * float64(v)
		}
	}
}

// AddParam registers a parameter that is not preconditioned: it takes the
// plain step theta -= lr*e with K-FROG's momentum.
func (o *KFROG) AddParam(name string, theta []float32) error {
	return o.addParam(name, theta)
}

// StepParam updates a parameter registered with AddParam from its gradient.
func (o *KFROG) StepParam(name string, grad []float32) error {
	o.mu.RLock()
	p, err := o.param(name)
	cfg := o.cfg
	o.mu.RUnlock()
	if err != nil {
		return err
	}
	return p.step(grad, cfg.LR, cfg.Momentum, 0, cfg.Nesterov, cfg.SkipNonFinite, name)
}
