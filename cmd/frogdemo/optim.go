package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/frogopt/frog"
)

// Hyper holds one optimizer's hyperparameters by name.
type Hyper map[string]float64

// optimizerNames are the optimizers the demo knows, in table order.
var optimizerNames = []string{"frog", "sgd", "adamw", "kfrog"}

// DefaultHyper returns the defaults of each optimizer: the winners of the
// sweep in SWEEP.md (K-FROG was not swept). Keys:
//
//	batch     minibatch size
//	lr        learning rate (the peak of the step schedule)
//	momentum  momentum mu; nesterov 1 selects Nesterov momentum
//	wd        weight decay (decoupled for FROG's preconditioned layers and
//	          AdamW, coupled L2 for SGD and FROG's plain parameters)
//	ratio     FROG: lr_other_ratio, the classifier and biases take SGD at lr*ratio
//	r         FROG and K-FROG: samples per step for the Fisher (sample_size)
//	iters     FROG and K-FROG: CG iterations
//	damping   FROG: tau; K-FROG: eps
//	beta1, beta2, eps  AdamW
func DefaultHyper(name string) Hyper {
	switch name {
	case "frog":
		// sweep configuration frog#4.2
		return Hyper{"batch": 128, "lr": 0.01, "momentum": 0.9, "nesterov": 0, "wd": 0, "ratio": 1, "r": 16, "iters": 2, "damping": 1e-2}
	case "sgd":
		// sgd#3.1
		return Hyper{"batch": 32, "lr": 0.015, "momentum": 0.9, "nesterov": 1, "wd": 5e-4}
	case "adamw":
		// adamw#4.1
		return Hyper{"batch": 32, "lr": 2e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "wd": 1e-2}
	case "kfrog":
		// not swept: the best of five learning rates in a -quick check (SWEEP.md)
		return Hyper{"batch": 64, "lr": 0.1, "momentum": 0.9, "nesterov": 0, "r": 32, "iters": 2, "damping": 1e-2}
	}
	return nil
}

// String lists the hyperparameters as key=value in key order.
func (h Hyper) String() string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatFloat(h[k], 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

// Clone returns a copy.
func (h Hyper) Clone() Hyper {
	c := Hyper{}
	for k, v := range h {
		c[k] = v
	}
	return c
}

// applyOverrides applies a spec "opt.key=value,opt.key=value" (for
// example "frog.lr=0.05,sgd.batch=256") to the per-optimizer
// hyperparameters; unknown optimizers and keys are errors.
func applyOverrides(hypers map[string]Hyper, spec string) error {
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		key, val, ok := strings.Cut(item, "=")
		if !ok {
			return fmt.Errorf("hyperparameter %q: want opt.key=value", item)
		}
		opt, name, ok := strings.Cut(key, ".")
		if !ok {
			return fmt.Errorf("hyperparameter %q: want opt.key=value", item)
		}
		h, ok := hypers[opt]
		if !ok {
			return fmt.Errorf("hyperparameter %q: unknown optimizer %q (have %v)", item, opt, optimizerNames)
		}
		if _, ok := h[name]; !ok {
			return fmt.Errorf("hyperparameter %q: %s has no %q (has %s)", item, opt, name, h)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return fmt.Errorf("hyperparameter %q: %v", item, err)
		}
		h[name] = v
	}
	return nil
}

// Optimizer updates a model from the gradients of its last backward pass.
type Optimizer interface {
	Step(ws *Workspace) error
	SetLR(lr float64) error
}

// NewOptimizer builds the named optimizer over m's parameters.
func NewOptimizer(name string, h Hyper, m *Model, seed uint64) (Optimizer, error) {
	switch name {
	case "frog":
		return newFROG(h, m, seed)
	case "kfrog":
		return newKFROG(h, m, seed)
	case "sgd":
		return &sgd{params: m.Params(), lr: h["lr"], momentum: h["momentum"], nesterov: h["nesterov"] != 0, wd: h["wd"]}, nil
	case "adamw":
		return &adamw{params: m.Params(), lr: h["lr"], beta1: h["beta1"], beta2: h["beta2"], eps: h["eps"], wd: h["wd"]}, nil
	}
	return nil, fmt.Errorf("unknown optimizer %q (have %v)", name, optimizerNames)
}

// layerStepper is what FROG and K-FROG share.
type layerStepper interface {
	AddLayer(l frog.Layer, weight, bias []float32) error
	AddParam(name string, theta []float32) error
	Step(name string, in frog.Batch) error
	StepParam(name string, grad []float32) error
	SetLR(lr float64) error
}

// preconditioned drives FROG or K-FROG: the convolutions and the hidden
// dense layer are preconditioned, the classifier is a plain parameter.
type preconditioned struct {
	opt    layerStepper
	layers []PrecLayer
	plain  []Param
}

func (p *preconditioned) register(m *Model) error {
	p.layers, p.plain = m.Preconditioned(), m.Plain()
	for _, l := range p.layers {
		if err := p.opt.AddLayer(l.Layer, l.Weight, l.Bias); err != nil {
			return err
		}
	}
	for _, q := range p.plain {
		if err := p.opt.AddParam(q.Name, q.W); err != nil {
			return err
		}
	}
	return nil
}

// Step steps every layer concurrently (the library allows it, and the
// small layers leave cores idle otherwise), then the plain parameters.
func (p *preconditioned) Step(ws *Workspace) error {
	errs := make([]error, len(p.layers))
	var wg sync.WaitGroup
	for i, l := range p.layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.opt.Step(l.Layer.Name, l.Batch(ws))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, q := range p.plain {
		if err := p.opt.StepParam(q.Name, q.G); err != nil {
			return err
		}
	}
	return nil
}

func (p *preconditioned) SetLR(lr float64) error { return p.opt.SetLR(lr) }

func newFROG(h Hyper, m *Model, seed uint64) (Optimizer, error) {
	cfg := frog.DefaultConfig()
	cfg.LR = h["lr"]
	cfg.LROtherRatio = h["ratio"]
	cfg.Momentum = h["momentum"]
	cfg.Nesterov = h["nesterov"] != 0
	cfg.WeightDecay = h["wd"]
	cfg.SampleSize = int(h["r"])
	cfg.Iters = int(h["iters"])
	cfg.Damping = h["damping"]
	cfg.Seed = seed
	opt, err := frog.New(cfg)
	if err != nil {
		return nil, err
	}
	p := &preconditioned{opt: opt}
	return p, p.register(m)
}

func newKFROG(h Hyper, m *Model, seed uint64) (Optimizer, error) {
	cfg := frog.DefaultKConfig()
	cfg.LR = h["lr"]
	cfg.Momentum = h["momentum"]
	cfg.Nesterov = h["nesterov"] != 0
	cfg.SampleSize = int(h["r"])
	cfg.Iters = int(h["iters"])
	cfg.Eps = h["damping"]
	cfg.Seed = seed
	opt, err := frog.NewKFROG(cfg)
	if err != nil {
		return nil, err
	}
	p := &preconditioned{opt: opt}
	return p, p.register(m)
}

// sgd is PyTorch's SGD: momentum, optional Nesterov, coupled L2 decay.
type sgd struct {
	params   []Param
	mom      [][]float32
	lr       float64
	momentum float64
	nesterov bool
	wd       float64
}

func (s *sgd) SetLR(lr float64) error { s.lr = lr; return nil }

func (s *sgd) Step(*Workspace) error {
	if s.mom == nil {
		for _, p := range s.params {
			s.mom = append(s.mom, make([]float32, len(p.W)))
		}
	}
	lr, mu, wd := float32(s.lr), float32(s.momentum), float32(s.wd)
	for i, p := range s.params {
		m := s.mom[i]
		for j, g := range p.G {
			g += wd * p.W[j]
			m[j] = mu*m[j] + g
			d := m[j]
			if s.nesterov {
				d = g + mu*m[j]
			}
			p.W[j] -= lr * d
		}
	}
	return nil
}

// adamw is Adam with decoupled weight decay (Loshchilov and Hutter), as
// PyTorch's AdamW.
type adamw struct {
	params                []Param
	m, v                  [][]float32
	lr, beta1, beta2, eps float64
	wd                    float64
	t                     int
}

func (a *adamw) SetLR(lr float64) error { a.lr = lr; return nil }

func (a *adamw) Step(*Workspace) error {
	if a.m == nil {
		for _, p := range a.params {
			a.m = append(a.m, make([]float32, len(p.W)))
			a.v = append(a.v, make([]float32, len(p.W)))
		}
	}
	a.t++
	c1 := 1 - math.Pow(a.beta1, float64(a.t))
	c2 := 1 - math.Pow(a.beta2, float64(a.t))
	step := float32(a.lr / c1)
	sqrtC2 := float32(math.Sqrt(c2))
	decay := float32(1 - a.lr*a.wd)
	b1, b2, eps := float32(a.beta1), float32(a.beta2), float32(a.eps)
	for i, p := range a.params {
		m, v := a.m[i], a.v[i]
		for j, g := range p.G {
			m[j] = b1*m[j] + (1-b1)*g
			v[j] = b2*v[j] + (1-b2)*g*g
			denom := float32(math.Sqrt(float64(v[j])))/sqrtC2 + eps
			p.W[j] = decay*p.W[j] - step*m[j]/denom
		}
	}
	return nil
}

// parseOptimizers checks a comma-separated list of optimizer names and
// returns them in order.
func parseOptimizers(list string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(optimizerNames, name) {
			return nil, fmt.Errorf("unknown optimizer %q (have %v)", name, optimizerNames)
		}
		if slices.Contains(out, name) {
			return nil, fmt.Errorf("optimizer %q listed twice", name)
		}
		out = append(out, name)
	}
	if len(out) == 0 {
		return nil, errors.New("no optimizer given")
	}
	return out, nil
}
