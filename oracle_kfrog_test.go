package frog

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The float64 model of K-FROG (FROG.md, K-FROG section), with X^T X formed
// explicitly, for the options the recorded vector does not cover. The
// learning rate is large enough that the float32 rounding of the stored
// weights stays well below the tolerance on the update.

type kOracleOpts struct {
	lr, mu, beta, eps float64
	nesterov, sum     bool
	iters             int
	xSample, ySample  int // 0: whole batch
}

func TestOracleKFROG(t *testing.T) {
	conv3 := Layer{InChannels: 3, OutChannels: 4, InH: 5, InW: 5, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}}
	base := kOracleOpts{lr: 0.1, mu: 0.9, eps: 1e-6, iters: 4, xSample: 3}
	with := func(f func(*kOracleOpts)) kOracleOpts { o := base; f(&o); return o }
	cases := []struct {
		name  string
		layer Layer
		opts  kOracleOpts
	}{
		{"y_subsample_y_momentum", conv3, with(func(o *kOracleOpts) { o.ySample = 2; o.beta = 0.9 })},
		{"nesterov_sum", conv3, with(func(o *kOracleOpts) { o.nesterov = true; o.sum = true })},
		{"whole_batch", conv3, with(func(o *kOracleOpts) { o.xSample = 0; o.mu = 0 })},
		{"groups_plain_bias", Layer{InChannels: 4, OutChannels: 4, InH: 4, InW: 4, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}, Groups: 2, Bias: PlainBias}, with(func(o *kOracleOpts) { o.beta = 0.5; o.iters = 6 })},
		{"linear", Linear("", 6, 5, NoBias), with(func(o *kOracleOpts) { o.ySample = 4 })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { kOracleRun(t, c.layer, c.opts, c.name) })
	}
}

func kOracleRun(t *testing.T, l Layer, o kOracleOpts, name string) {
	const batch, steps = 6, 3
	rng := rand.New(rand.NewPCG(11, uint64(len(name))))
	l.Name = name
	g := l.Geometry()
	rows, d := l.Rows(), l.RowLen()
	w := roundF64(randVec(rng, l.WeightLen(), 0.3))
	mw := make([]float64, len(w))
	var b, mb []float64
	if l.Bias != NoBias {
		b = roundF64(randVec(rng, rows, 0.3))
		mb = make([]float64, rows)
	}
	ybuf := make([]float64, rows)

	cfg := DefaultKConfig()
	cfg.LR, cfg.Momentum, cfg.Nesterov, cfg.YMomentum, cfg.Eps, cfg.Iters = o.lr, o.mu, o.nesterov, o.beta, o.eps, o.iters
	cfg.SampleSize, cfg.YSampleSize = o.xSample, o.ySample
	if o.sum {
		cfg.Reduction = Sum
	}
	opt, err := NewKFROG(cfg)
	if err != nil {
		t.Fatal(err)
	}
	weight := toF32(w)
	var bias []float32
	if b != nil {
		bias = toF32(b)
	}
	if err := opt.AddLayer(l, weight, bias); err != nil {
		t.Fatal(err)
	}
	pick := func(r int) []int {
		if r == 0 || r >= batch {
			return nil
		}
		return rng.Perm(batch)[:r]
	}
	all := make([]int, batch)
	for i := range all {
		all[i] = i
	}
	for k := 0; k < steps; k++ {
		acts := roundF64(randVec(rng, batch*g.ImageLen(), 1))
		outg := roundF64(randVec(rng, batch*g.OutputLen(), 1/float64(batch)))
		grad := roundF64(randVec(rng, l.WeightLen(), 0.1))
		var bgrad []float64
		if b != nil {
			bgrad = roundF64(randVec(rng, rows, 0.1))
		}
		xIdx, yIdx := pick(o.xSample), pick(o.ySample)
		xs, ys := xIdx, yIdx
		if xs == nil {
			xs = all
		}
		if ys == nil {
			ys = all
		}
		nb := float64(len(xs))

		// Momentum (FROG.md step 4) for weight and bias.
		ew := oracleMomentum(mw, grad, o.mu, o.nesterov)
		var eb []float64
		if b != nil {
			eb = oracleMomentum(mb, bgrad, o.mu, o.nesterov)
		}
		L := g.Locations()
		wantW := append([]float64(nil), w...)
		rg := rows / g.Groups
		for grp := 0; grp < g.Groups; grp++ {
			x := directPatches(l, acts, xs, grp, false)
			a := make([][]float64, d)
			diag := make([]float64, d)
			for i := range a {
				a[i] = make([]float64, d)
				for j := range a[i] {
					for _, u := range x {
						a[i][j] += u[i] * u[j]
					}
					a[i][j] /= nb
				}
				diag[i] = a[i][i]
				a[i][i] += o.eps
			}
			for j := grp * rg; j < (grp+1)*rg; j++ {
				yd := 0.0
				for _, n := range ys {
					for loc := 0; loc < L; loc++ {
						v := outg[(n*rows+j)*L+loc]
						yd += v * v
					}
				}
				if o.sum {
					yd /= nb
				} else {
					yd *= nb
				}
				yeff := yd
				if o.beta > 0 {
					ybuf[j] = o.beta*ybuf[j] + (1-o.beta)*yd
					yeff = ybuf[j] / (1 - math.Pow(o.beta, float64(k+1)))
				}
				p1 := make([]float64, d)
				for i := range p1 {
					p1[i] = ew[j*d+i] / math.Sqrt(yeff+o.eps)
				}
				p2 := oracleCG(a, p1, o.iters, 1e-10)
				for i := range p2 {
					wantW[j*d+i] -= o.lr * p2[i] * math.Sqrt(diag[i])
				}
			}
		}
		var wantB []float64
		if b != nil {
			wantB = make([]float64, rows)
			for j := range b {
				wantB[j] = b[j] - o.lr*eb[j]
			}
		}
		before := append([]float32(nil), weight...)
		biasBefore := append([]float32(nil), bias...)
		in := Batch{Grad: toF32(grad), Acts: toF32(acts), OutGrads: toF32(outg), BatchSize: batch, Samples: xIdx, YSamples: yIdx}
		if xIdx == nil {
			in.Samples = all
		}
		if bgrad != nil {
			in.BiasGrad = toF32(bgrad)
		}
		if err := opt.Step(name, in); err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
		checkClose(t, k, "weight update", diff(weight, before), refDiff(wantW, w), 1e-4)
		if b != nil {
			checkClose(t, k, "bias update", diff(bias, biasBefore), refDiff(wantB, b), 1e-4)
		}
		w = roundF64(toF64(weight))
		if b != nil {
			b = roundF64(toF64(bias))
		}
	}
}
