package frog

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/frogopt/frog/internal/buf"
	"github.com/frogopt/frog/internal/indices"
)

// Batch is what a layer's step needs from one training batch.
type Batch struct {
	// Grad is the weight gradient of the full batch, WeightLen() values.
	Grad []float32
	// BiasGrad is the bias gradient, Rows() values; only for layers with a bias.
	BiasGrad []float32
	// Acts holds the layer inputs of the full batch, BatchSize x ActLen().
	Acts []float32
	// OutGrads holds the output gradients of the loss as reduced,
	// BatchSize x OutGradLen().
	OutGrads []float32
	// BatchSize is B.
	BatchSize int
	// Samples optionally gives the subsample for the Fisher: distinct
	// indices in [0, BatchSize). When nil the optimizer draws it with the
	// layer's own random generator.
	Samples []int
	// YSamples optionally gives K-FROG's independent subsample of the
	// output gradients. FROG rejects it.
	YSamples []int
}

// layerBase is the state every optimizer keeps for a preconditioned layer.
type layerBase struct {
	mu     sync.Mutex
	layer  Layer
	weight []float32 // the caller's weights, updated in place
	bias   []float32 // the caller's bias, or nil
	mom    []float32 // momentum of the weight, zero before the first step
	momB   []float32 // momentum of the bias
	steps  int64
	pcg    rand.PCG
	rng    *rand.Rand
	perm   []int
	// seen is checkIndices' memory.
	seen indices.Marks
	// gathered subsample
	acts, outGrads []float32
	samples        []int
	lastSamples    []int
	lastSamplesNew []int // the samples of a step not yet committed
	// scratch for state that is committed only on success: the new
	// momentum, the effective gradient, and the new weights and bias, which
	// are checked to be finite before they replace the caller's
	newMom, newMomB, eff []float32
	newW, newB           []float32
	skipped              int64
}

// checkParams reports a NaN or Inf in the caller's current weights or
// bias: a step would carry it on (weight decay multiplies it), so it is
// refused like a non-finite input.
func (b *layerBase) checkParams() error {
	if i := firstNonFinite(b.weight); i >= 0 {
		return fmt.Errorf("weight[%d] = %v: %w", i, b.weight[i], ErrNonFinite)
	}
	if i := firstNonFinite(b.bias); i >= 0 {
		return fmt.Errorf("bias[%d] = %v: %w", i, b.bias[i], ErrNonFinite)
	}
	return nil
}

// checkProposal reports a NaN or Inf in the proposed new weights, bias or
// momentum (an overflow of finite inputs, e.g. a huge learning rate).
func checkProposal(vs ...named) error {
	for _, v := range vs {
		if k := firstNonFinite(v.s); k >= 0 {
			return fmt.Errorf("the step would make %s[%d] %v (overflow; is the learning rate too large?): %w", v.what, k, v.s[k], ErrNonFinite)
		}
	}
	return nil
}

// checkProposals reports a non-finite proposed weight or bias, and, when
// the step uses momentum, a non-finite proposed momentum.
func (b *layerBase) checkProposals(withMomentum bool) error {
	if err := checkProposal(named{"weight", b.newW}, named{"bias", b.newB}); err != nil {
		return err
	}
	if withMomentum {
		return checkProposal(named{"momentum", b.newMom}, named{"bias momentum", b.newMomB})
	}
	return nil
}

// begin starts a step's proposal: it checks the batch and the weights for
// NaN and Inf and returns the Fisher subsample (the given indices, or a
// draw of sampleSize).
func (b *layerBase) begin(in *Batch, sampleSize int) ([]int, error) {
	if err := checkBatchFinite(in); err != nil {
		return nil, err
	}
	if err := b.checkParams(); err != nil {
		return nil, err
	}
	if in.Samples != nil {
		return in.Samples, nil
	}
	return b.draw(sampleSize, in.BatchSize), nil
}

// checkEffective reports an effective gradient (eff, and effB for a
// separate bias) that momentum made overflow. Without momentum the
// effective gradients are the gradients, checked already.
func checkEffective(momentum float64, eff, effB []float32) error {
	if momentum == 0 {
		return nil
	}
	if i := firstNonFinite(eff); i >= 0 {
		return fmt.Errorf("the effective gradient (after momentum) overflows at %d: %w", i, ErrNonFinite)
	}
	if i := firstNonFinite(effB); i >= 0 {
		return fmt.Errorf("the effective bias gradient (after momentum) overflows at %d: %w", i, ErrNonFinite)
	}
	return nil
}

// commitBase applies the common part of a checked proposal: the weights,
// the bias, with momentum the momenta, and the step count.
func (b *layerBase) commitBase(withMomentum bool) {
	if withMomentum {
		copy(b.mom, b.newMom)
		copy(b.momB, b.newMomB) // both empty without a bias
	}
	copy(b.weight, b.newW)
	copy(b.bias, b.newB)
	b.steps++
}

// transact runs one step as a transaction: propose computes it into
// scratch, commit applies it. When propose fails the random generator is
// restored, so nothing has changed; a non-finite failure with
// skipNonFinite is counted as a skipped step instead of an error.
func (b *layerBase) transact(skipNonFinite bool, propose func() error, commit func()) error {
	rngSaved := b.pcg
	if err := propose(); err != nil {
		b.pcg = rngSaved
		if skipNonFinite && errors.Is(err, ErrNonFinite) {
			b.skipped++
			return nil
		}
		return b.layer.errorf("%w", err)
	}
	commit()
	return nil
}

// init validates the registration and sets the layer up; the generator
// stream is chosen by the seed and the registration index.
func (b *layerBase) init(l Layer, weight, bias []float32, seed uint64, index int) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if l.Name == "" {
		return l.errorf("a layer needs a name")
	}
	if err := checkLen("weight", weight, l.WeightLen()); err != nil {
		return l.errorf("%w", err)
	}
	if l.Bias == NoBias && bias != nil {
		return l.errorf("bias given for a layer declared without one")
	}
	if l.Bias != NoBias {
		if err := checkLen("bias", bias, l.Rows()); err != nil {
			return l.errorf("%w", err)
		}
	}
	b.layer, b.weight, b.bias = l, weight, bias
	b.pcg = *rand.NewPCG(seed, uint64(index)+0x9e3779b97f4a7c15)
	b.rng = rand.New(&b.pcg)
	b.mom = make([]float32, l.WeightLen())
	b.newMom = make([]float32, l.WeightLen())
	b.newW = make([]float32, l.WeightLen())
	if bias != nil {
		b.momB = make([]float32, l.Rows())
		b.newMomB = make([]float32, l.Rows())
		b.newB = make([]float32, l.Rows())
	}
	return nil
}

// checkBatch validates a batch against the layer.
func (b *layerBase) checkBatch(in *Batch) error {
	l := b.layer
	if in.BatchSize <= 0 {
		return fmt.Errorf("batch size must be positive, got %d", in.BatchSize)
	}
	if err := checkLen("gradient", in.Grad, l.WeightLen()); err != nil {
		return err
	}
	if l.Bias != NoBias {
		if err := checkLen("bias gradient", in.BiasGrad, l.Rows()); err != nil {
			return err
		}
	} else if in.BiasGrad != nil {
		return fmt.Errorf("bias gradient given for a layer without a bias")
	}
	if err := checkLen("activations", in.Acts, mulLen(in.BatchSize, l.ActLen())); err != nil {
		return err
	}
	if err := checkLen("output gradients", in.OutGrads, mulLen(in.BatchSize, l.OutGradLen())); err != nil {
		return err
	}
	if err := b.checkIndices("sample", in.Samples, in.BatchSize); err != nil {
		return err
	}
	return b.checkIndices("y sample", in.YSamples, in.BatchSize)
}

// checkIndices checks given sample indices: in [0, batch), none repeated.
func (b *layerBase) checkIndices(what string, idx []int, batch int) error {
	if idx == nil {
		return nil
	}
	if len(idx) == 0 {
		return fmt.Errorf("%s indices: empty", what)
	}
	if len(idx) > batch {
		return fmt.Errorf("%s indices: %d of them for a batch of %d", what, len(idx), batch)
	}
	i := b.seen.FirstInvalid(idx, batch)
	switch {
	case i < 0:
		return nil
	case idx[i] < 0 || idx[i] >= batch:
		return fmt.Errorf("%s indices: [%d] = %d is outside the batch [0, %d)", what, i, idx[i], batch)
	default:
		return fmt.Errorf("%s indices: %d is repeated", what, idx[i])
	}
}

// checkBatchFinite reports the first NaN or Inf in the batch.
func checkBatchFinite(in *Batch) error {
	return checkFinite(named{"gradient", in.Grad}, named{"bias gradient", in.BiasGrad},
		named{"activations", in.Acts}, named{"output gradients", in.OutGrads})
}

// draw picks r distinct indices of [0, batch) with the layer's generator
// into b.samples (all of them, in order, when r <= 0 or r >= batch).
func (b *layerBase) draw(r, batch int) []int {
	if cap(b.samples) < batch {
		b.samples = make([]int, batch)
		b.perm = make([]int, batch)
	}
	if r <= 0 || r >= batch {
		s := b.samples[:batch]
		for i := range s {
			s[i] = i
		}
		return s
	}
	return drawDistinct(b.rng, b.perm[:batch], b.samples[:r])
}

// drawDistinct fills dst with len(dst) distinct indices of [0, len(perm))
// by a partial Fisher-Yates shuffle of perm, and returns dst.
func drawDistinct(rng *rand.Rand, perm, dst []int) []int {
	for i := range perm {
		perm[i] = i
	}
	for i := range dst {
		j := i + rng.IntN(len(perm)-i)
		perm[i], perm[j] = perm[j], perm[i]
	}
	copy(dst, perm)
	return dst
}

// gather copies the rows idx of src (each of size width) into dst.
func gather(dst, src []float32, idx []int, width int) []float32 {
	dst = buf.Grow(dst, len(idx)*width)
	for i, n := range idx {
		copy(dst[i*width:(i+1)*width], src[n*width:(n+1)*width])
	}
	return dst
}

// momentum computes the new momentum newMom = mu*mom + g (mom nil: zero)
// and the effective gradient into eff (FROG.md step 4); eff and newMom
// may be written while mom stays as it was. With mu == 0, eff = g.
func momentum(eff, newMom, mom, g []float32, mu float64, nesterov bool) {
	if mu == 0 {
		copy(eff, g)
		return
	}
	for i, gi := range g {
		m := float64(gi)
		if mom != nil {
			m += mu * float64(mom[i])
		}
		newMom[i] = float32(m)
		if nesterov {
			eff[i] = float32(float64(gi) + mu*m)
		} else {
			eff[i] = float32(m)
		}
	}
}

// sgdStep is the momentum-SGD update of parameters that are not
// preconditioned (FROG.md item 8): coupled L2 inside the momentum without
// Nesterov, added to the direction with it. It writes the new parameters
// to newTheta and, with mu != 0, the new momentum to newMom, leaving theta
// and mom as they were (the caller commits after checking them).
func sgdStep(newTheta, newMom, theta, grad, mom []float32, lr, mu, wd float64, nesterov bool) {
	for i, gi := range grad {
		g := float64(gi)
		th := float64(theta[i])
		var d float64
		switch {
		case mu == 0:
			d = g + wd*th
		case nesterov:
			m := mu*float64(mom[i]) + g
			newMom[i] = float32(m)
			d = g + mu*m + wd*th
		default:
			m := mu*float64(mom[i]) + g + wd*th
			newMom[i] = float32(m)
			d = m
		}
		newTheta[i] = float32(th - lr*d)
	}
}

func checkHyper(name string, v float64, allowZero bool) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || (!allowZero && v == 0) {
		if allowZero {
			return fmt.Errorf("frog: %s must be finite and non-negative, got %v", name, v)
		}
		return fmt.Errorf("frog: %s must be finite and positive, got %v", name, v)
	}
	return nil
}

// newParam validates a plain parameter's registration.
func newParam(name string, theta []float32) (*param, error) {
	if len(theta) == 0 {
		return nil, &LayerError{Layer: name, Err: fmt.Errorf("a parameter needs at least one value")}
	}
	n := len(theta)
	return &param{theta: theta, mom: make([]float32, n), newTheta: make([]float32, n), newMom: make([]float32, n)}, nil
}

// step is the momentum-SGD step of a plain parameter; on error nothing changes.
func (p *param) step(grad []float32, lr, mu, wd float64, nesterov, skipNonFinite bool, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := checkLen("gradient", grad, len(p.theta)); err != nil {
		return &LayerError{Layer: name, Err: err}
	}
	err := checkFinite(named{"gradient", grad})
	if err == nil {
		if i := firstNonFinite(p.theta); i >= 0 {
			err = fmt.Errorf("parameter[%d] = %v: %w", i, p.theta[i], ErrNonFinite)
		}
	}
	if err == nil {
		sgdStep(p.newTheta, p.newMom, p.theta, grad, p.mom, lr, mu, wd, nesterov)
		if mu != 0 {
			err = checkProposal(named{"parameter", p.newTheta}, named{"momentum", p.newMom})
		} else {
			err = checkProposal(named{"parameter", p.newTheta})
		}
	}
	if err != nil {
		if skipNonFinite {
			p.skipped++
			return nil
		}
		return &LayerError{Layer: name, Err: err}
	}
	copy(p.theta, p.newTheta)
	if mu != 0 {
		copy(p.mom, p.newMom)
	}
	p.steps++
	return nil
}

// registry holds an optimizer's registrations: its preconditioned layers
// (of type L), its plain parameters, and their order (for checkpoints).
// mu guards them and the optimizer's configuration.
type registry[L any] struct {
	mu     sync.RWMutex
	layers map[string]L
	params map[string]*param
	order  []string
}

func newRegistry[L any]() registry[L] {
	return registry[L]{layers: map[string]L{}, params: map[string]*param{}}
}

// addLayer records a registered layer; the caller holds mu.
func (r *registry[L]) addLayer(name string, l L) {
	r.layers[name] = l
	r.order = append(r.order, name)
}

// setLR stores a new learning rate into *lr (a field of the optimizer's
// configuration, which mu guards).
func (r *registry[L]) setLR(lr *float64, value float64) error {
	if err := checkHyper("lr", value, true); err != nil {
		return err
	}
	r.mu.Lock()
	*lr = value
	r.mu.Unlock()
	return nil
}

// addParam registers a plain parameter under a new name.
func (r *registry[L]) addParam(name string, theta []float32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.checkNewName(name); err != nil {
		return err
	}
	p, err := newParam(name, theta)
	if err != nil {
		return err
	}
	r.params[name] = p
	r.order = append(r.order, name)
	return nil
}

// param looks a plain parameter up; the caller holds mu.
func (r *registry[L]) param(name string) (*param, error) {
	p, ok := r.params[name]
	if !ok {
		return nil, &LayerError{Layer: name, Err: fmt.Errorf("no parameter of this name was registered")}
	}
	return p, nil
}

// checkNewName rejects an empty name or one already registered as a layer
// or a parameter; the caller holds mu.
func (r *registry[L]) checkNewName(name string) error {
	if name == "" {
		return &LayerError{Layer: name, Err: fmt.Errorf("a layer or parameter needs a name")}
	}
	_, isLayer := r.layers[name]
	_, isParam := r.params[name]
	if isLayer || isParam {
		return &LayerError{Layer: name, Err: fmt.Errorf("the name is already registered")}
	}
	return nil
}

// layer looks a preconditioned layer up; the caller holds mu.
func (r *registry[L]) layer(name string) (L, error) {
	l, ok := r.layers[name]
	if !ok {
		return l, &LayerError{Layer: name, Err: fmt.Errorf("no layer of this name was registered")}
	}
	return l, nil
}
