package frog

import (
	"fmt"
	"math"
	"sync"
)

// Config holds FROG's hyperparameters. DefaultConfig returns the reference
// defaults (FROG.md); the reference names are given in brackets.
type Config struct {
	// LR is the learning rate [lr].
	LR float64
	// LROtherRatio scales the learning rate of parameters that are not
	// preconditioned [lr_other_ratio].
	LROtherRatio float64
	// Momentum is mu [momentum]; Nesterov selects Nesterov momentum [nesterov].
	Momentum float64
	Nesterov bool
	// WeightDecay is decoupled for preconditioned weights and coupled L2
	// for the others [weight_decay].
	WeightDecay float64
	// SampleSize is r, the samples drawn per layer and step for the Fisher
	// [sample_size]; 0 (the reference's None) or at least the batch size
	// means the whole batch.
	SampleSize int
	// Iters is k, the number of CG iterations [num_iters].
	Iters int
	// Damping is tau [tau]. With DampingSteps > 0 it is the start of a
	// geometric schedule to DampingFinal over DampingSteps steps of each
	// layer: tau(t) = Damping*(DampingFinal/Damping)^min(t/DampingSteps, 1).
	Damping      float64
	DampingFinal float64
	DampingSteps int
	// Reduction is how the loss was reduced over the batch [batch_averaged].
	Reduction Reduction
	// DenomEps is eps of the trace, CG and row-scale denominators [denom_eps].
	DenomEps float64
	// Tolerance, when positive, stops a row's CG early once its relative
	// residual is below it (the reference always runs Iters iterations).
	Tolerance float64
	// Seed seeds every layer's subsampling generator (each layer has its
	// own stream, so layers may step concurrently and deterministically).
	Seed uint64
	// SkipNonFinite makes a step whose inputs hold NaN or Inf, or whose
	// result would (an overflow), skip the layer (counted in
	// LayerStats.Skipped, nothing else changes) instead of returning an
	// error wrapping ErrNonFinite.
	SkipNonFinite bool
	// ScaleInvariant makes DenomEps relative to the scale of each layer
	// step's data instead of absolute; see RowsInput.ScaleInvariant. The
	// default (false) is the reference's absolute eps.
	ScaleInvariant bool
	// Backend selects the compute backend ("auto", "cpu", "purego",
	// "opencl"); empty means the FROG_BACKEND environment variable, else auto.
	Backend string
}

// DefaultConfig returns the reference defaults: lr 1e-3, lr_other_ratio
// 0.25, momentum 0, no Nesterov, no weight decay, sample_size 24, 4 CG
// iterations, tau 1e-6, a mean-reduced loss and denom_eps 1e-10.
func DefaultConfig() Config {
	return Config{
		LR:           1e-3,
		LROtherRatio: 0.25,
		SampleSize:   24,
		Iters:        4,
		Damping:      1e-6,
		Reduction:    Mean,
		DenomEps:     1e-10,
	}
}

// Validate reports the first invalid hyperparameter.
func (c Config) Validate() error {
	for _, h := range []struct {
		name      string
		v         float64
		allowZero bool
	}{
		{"lr", c.LR, true}, {"lr_other_ratio", c.LROtherRatio, true},
		{"momentum", c.Momentum, true}, {"weight_decay", c.WeightDecay, true},
		{"tau", c.Damping, true}, {"denom_eps", c.DenomEps, false},
		{"CG tolerance", c.Tolerance, true},
	} {
		if err := checkHyper(h.name, h.v, h.allowZero); err != nil {
			return err
		}
	}
	switch {
	case c.Iters <= 0:
		return fmt.Errorf("frog: num_iters must be positive, got %d", c.Iters)
	case c.SampleSize < 0:
		return fmt.Errorf("frog: sample_size must not be negative, got %d", c.SampleSize)
	case c.Nesterov && c.Momentum == 0:
		return fmt.Errorf("frog: Nesterov momentum needs a positive momentum")
	case c.Reduction != Mean && c.Reduction != Sum:
		return fmt.Errorf("frog: unknown reduction %d", int(c.Reduction))
	case c.DampingSteps < 0:
		return fmt.Errorf("frog: tau schedule steps must not be negative, got %d", c.DampingSteps)
	}
	if c.DampingSteps > 0 {
		if err := checkHyper("final tau", c.DampingFinal, false); err != nil {
			return err
		}
		if err := checkHyper("tau (schedule start)", c.Damping, false); err != nil {
			return err
		}
	}
	if _, err := resolveBackend(c.Backend); err != nil {
		return err
	}
	return nil
}

// dampingAt is the tau of a layer's step t (counted from 0).
func (c Config) dampingAt(t int64) float64 {
	if c.DampingSteps <= 0 {
		return c.Damping
	}
	f := math.Min(float64(t)/float64(c.DampingSteps), 1)
	return c.Damping * math.Pow(c.DampingFinal/c.Damping, f)
}

// Optimizer is FROG: it keeps each registered layer's state and updates
// the caller's weights in place. Steps of different layers may run
// concurrently; steps of one layer are serialized.
type Optimizer struct {
	registry[*frogLayer]
	cfg     Config
	backend string
}

type frogLayer struct {
	layerBase
	pre Preconditioner // the layer's engine and why it is that one
	dir []float32
	// diag holds the last committed step's diagnostics; diagNew receives a
	// step's, and the two swap when the step commits.
	diag, diagNew RowDiagnostics
	// joint-bias scratch: the effective weight and bias gradients before
	// they are interleaved into rows [w_j, b_j]
	effW, effB []float32
}

// param is a parameter that is not preconditioned (BatchNorm, a skipped
// classifier): momentum SGD at lr*LROtherRatio.
type param struct {
	mu               sync.Mutex
	theta            []float32
	mom              []float32
	newTheta, newMom []float32 // scratch, committed on success
	steps, skipped   int64
}

// New returns a FROG optimizer with the given configuration.
func New(cfg Config) (*Optimizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	name, _ := resolveBackend(cfg.Backend)
	return &Optimizer{registry: newRegistry[*frogLayer](), cfg: cfg, backend: name}, nil
}

// Config returns the optimizer's current configuration.
func (o *Optimizer) Config() Config {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.cfg
}

// SetLR changes the learning rate for the following steps (schedules).
func (o *Optimizer) SetLR(lr float64) error { return o.setLR(&o.cfg.LR, lr) }

// AddLayer registers a preconditioned layer. weight (WeightLen() values)
// and bias (Rows() values, nil without a bias) are the caller's slices;
// Step updates them in place.
func (o *Optimizer) AddLayer(l Layer, weight, bias []float32) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.checkNewName(l.Name); err != nil {
		return err
	}
	fl := &frogLayer{}
	if err := fl.init(l, weight, bias, o.cfg.Seed, len(o.order)); err != nil {
		return err
	}
	if err := fl.pre.init(o.backend); err != nil {
		return err
	}
	n := l.Rows() * l.SolveLen()
	if l.Bias == JointBias {
		fl.effW = make([]float32, l.WeightLen())
		fl.effB = make([]float32, l.Rows())
	}
	fl.eff = make([]float32, n)
	fl.dir = make([]float32, n)
	fl.diag = newRowDiagnostics(l.Rows())
	fl.diagNew = newRowDiagnostics(l.Rows())
	o.addLayer(l.Name, fl)
	return nil
}

// AddParam registers a parameter that is not preconditioned (a BatchNorm
// scale, a final classifier): it takes momentum SGD at lr*LROtherRatio
// with coupled L2 weight decay (FROG.md item 8).
func (o *Optimizer) AddParam(name string, theta []float32) error {
	return o.addParam(name, theta)
}

// StepParam updates a parameter registered with AddParam from its gradient.
func (o *Optimizer) StepParam(name string, grad []float32) error {
	o.mu.RLock()
	p, err := o.param(name)
	cfg := o.cfg
	o.mu.RUnlock()
	if err != nil {
		return err
	}
	return p.step(grad, cfg.LR*cfg.LROtherRatio, cfg.Momentum, cfg.WeightDecay, cfg.Nesterov, cfg.SkipNonFinite, name)
}

// Step takes one FROG step for a layer registered with AddLayer: momentum,
// the row-wise preconditioned update with decoupled weight decay, and, in
// PlainBias mode, momentum SGD for the bias. On error the weights, the bias
// and all optimizer state (momentum, the random generator, step counts,
// statistics) are left as they were.
//
// NaN or Inf in the batch or in the current weights, and a step whose
// result would not be finite, give an error wrapping ErrNonFinite, or,
// with Config.SkipNonFinite, skip the step and count it.
//
// Without explicit Samples, SampleSize samples are drawn; a SampleSize of
// at least BatchSize takes the whole batch, as the reference does.
func (o *Optimizer) Step(name string, in Batch) error {
	o.mu.RLock()
	fl, err := o.layer(name)
	cfg := o.cfg
	o.mu.RUnlock()
	if err != nil {
		return err
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	l := fl.layer
	if err := fl.checkBatch(&in); err != nil {
		return l.errorf("%w", err)
	}
	if in.YSamples != nil {
		return l.errorf("FROG takes no separate output-gradient subsample (YSamples is for K-FROG)")
	}
	return fl.transact(cfg.SkipNonFinite,
		func() error { return fl.propose(cfg, &in) },
		func() { fl.commit(cfg) })
}

// propose computes a step into scratch (new momentum, new weights and
// bias, diagNew) without touching the committed state, except that it
// advances the random generator, which the caller restores on error.
func (fl *frogLayer) propose(cfg Config, in *Batch) error {
	l := fl.layer
	idx, err := fl.begin(in, cfg.SampleSize)
	if err != nil {
		return err
	}
	r := len(idx)
	fl.acts = gather(fl.acts, in.Acts, idx, l.ActLen())
	fl.outGrads = gather(fl.outGrads, in.OutGrads, idx, l.OutGradLen())

	fl.effective(cfg, in)
	problem := RowsInput{
		Layer: l, Grad: fl.eff, Acts: fl.acts, OutGrads: fl.outGrads,
		Samples: r, BatchSize: in.BatchSize, Reduction: cfg.Reduction,
		Damping: cfg.dampingAt(fl.steps), Iters: cfg.Iters, DenomEps: cfg.DenomEps,
		Tolerance: cfg.Tolerance, ScaleInvariant: cfg.ScaleInvariant,
	}
	// The scan of the effective gradient's rows tells whether momentum
	// made it overflow; only then is it read again, for the position.
	fl.pre.tops.scanSolve(&problem)
	if !fl.pre.tops.rowsFinite() {
		if err := checkEffective(cfg.Momentum, fl.eff, nil); err != nil {
			return err
		}
	}
	if err := fl.pre.solve(&problem, fl.dir, &fl.diagNew, true); err != nil {
		return err
	}
	fl.proposeUpdate(cfg, in)
	if err := fl.checkProposals(cfg.Momentum != 0); err != nil {
		return err
	}
	fl.lastSamplesNew = append(fl.lastSamplesNew[:0], idx...)
	return nil
}

// effective computes the new momentum (into scratch, committed later) and
// the effective gradient rows the preconditioner solves for: Rows() x
// SolveLen(), with the bias as the last coordinate in JointBias mode.
func (fl *frogLayer) effective(cfg Config, in *Batch) {
	l := fl.layer
	if l.Bias != JointBias {
		momentum(fl.eff, fl.newMom, fl.mom, in.Grad, cfg.Momentum, cfg.Nesterov)
		return
	}
	momentum(fl.effW, fl.newMom, fl.mom, in.Grad, cfg.Momentum, cfg.Nesterov)
	momentum(fl.effB, fl.newMomB, fl.momB, in.BiasGrad, cfg.Momentum, cfg.Nesterov)
	d, sd := l.RowLen(), l.SolveLen()
	for j := 0; j < l.Rows(); j++ {
		copy(fl.eff[j*sd:j*sd+d], fl.effW[j*d:(j+1)*d])
		fl.eff[j*sd+d] = fl.effB[j]
	}
}

// proposeUpdate computes the new weights and bias into newW and newB:
// decoupled weight decay and the row update, and the plain-bias SGD step
// (whose momentum goes to newMomB).
func (fl *frogLayer) proposeUpdate(cfg Config, in *Batch) {
	l := fl.layer
	decay := 1 - cfg.LR*cfg.WeightDecay
	d, sd := l.RowLen(), l.SolveLen()
	for j := 0; j < l.Rows(); j++ {
		w, nw, dir := fl.weight[j*d:(j+1)*d], fl.newW[j*d:(j+1)*d], fl.dir[j*sd:(j+1)*sd]
		for i := range w {
			nw[i] = float32(decay*float64(w[i]) - cfg.LR*float64(dir[i]))
		}
		if l.Bias == JointBias {
			fl.newB[j] = float32(decay*float64(fl.bias[j]) - cfg.LR*float64(dir[d]))
		}
	}
	if l.Bias == PlainBias {
		sgdStep(fl.newB, fl.newMomB, fl.bias, in.BiasGrad, fl.momB, cfg.LR*cfg.LROtherRatio, cfg.Momentum, cfg.WeightDecay, cfg.Nesterov)
	}
}

// commit applies a proposed step: momentum, weights, bias, statistics.
func (fl *frogLayer) commit(cfg Config) {
	fl.commitBase(cfg.Momentum != 0)
	fl.diag, fl.diagNew = fl.diagNew, fl.diag
	fl.lastSamples, fl.lastSamplesNew = fl.lastSamplesNew, fl.lastSamples
}

// LayerStats describes a layer's last step.
type LayerStats struct {
	// Steps counts the steps taken; Skipped those skipped for non-finite input.
	Steps, Skipped int64
	// Backend is the engine that runs the layer; Fallback, when not empty,
	// says why it is not the backend that was asked for.
	Backend, Fallback string
	// Samples are the indices of the last step's Fisher subsample.
	Samples []int
	// Rows holds the last step's per-row diagnostics.
	Rows RowDiagnostics
}

// Stats returns a copy of a preconditioned layer's statistics.
func (o *Optimizer) Stats(name string) (LayerStats, error) {
	o.mu.RLock()
	fl, err := o.layer(name)
	o.mu.RUnlock()
	if err != nil {
		return LayerStats{}, err
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.stats(), nil
}

func (fl *frogLayer) stats() LayerStats {
	d := newRowDiagnostics(fl.layer.Rows())
	copy(d.Trace, fl.diag.Trace)
	copy(d.Residual, fl.diag.Residual)
	copy(d.Scale, fl.diag.Scale)
	copy(d.Breakdown, fl.diag.Breakdown)
	return LayerStats{
		Steps: fl.steps, Skipped: fl.skipped,
		Backend: fl.pre.Backend(), Fallback: fl.pre.Fallback(),
		Samples: append([]int(nil), fl.lastSamples...),
		Rows:    d,
	}
}

// Close releases the resources the layers' engines hold (device memory of
// a GPU backend). The optimizer must not be used afterwards.
func (o *Optimizer) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, fl := range o.layers {
		fl.mu.Lock()
		fl.pre.Close()
		fl.mu.Unlock()
	}
	return nil
}
