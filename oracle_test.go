package frog

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// An independent float64 model of FROG.md that forms every row's Fisher
// matrix explicitly. It is slow and simple on purpose: it checks the
// options the recorded vectors in shared/ do not exercise (Nesterov, a
// sum-reduced loss, dilation, groups, joint bias, no subsampling, other tau
// and iteration counts, K-FROG with a Y subsample and y-momentum), and it
// writes cases in the reference schema so that the harness itself is
// exercised on them.

// directPatches unfolds samples idx of acts for group grp straight from the
// convolution definition: row (n, oy, ox), column (c, i, j).
func directPatches(l Layer, acts []float64, idx []int, grp int, joint bool) [][]float64 {
	g := l.Geometry()
	cg := g.InChannels / g.Groups
	var rows [][]float64
	for _, n := range idx {
		for oy := 0; oy < g.OutH(); oy++ {
			for ox := 0; ox < g.OutW(); ox++ {
				var u []float64
				for c := 0; c < cg; c++ {
					for i := 0; i < g.KernelH; i++ {
						for j := 0; j < g.KernelW; j++ {
							y := oy*g.StrideH - g.PadH + i*g.DilationH
							x := ox*g.StrideW - g.PadW + j*g.DilationW
							v := 0.0
							if y >= 0 && y < g.InH && x >= 0 && x < g.InW {
								v = acts[((n*g.InChannels+grp*cg+c)*g.InH+y)*g.InW+x]
							}
							u = append(u, v)
						}
					}
				}
				if joint {
					u = append(u, 1)
				}
				rows = append(rows, u)
			}
		}
	}
	return rows
}

type oracleOpts struct {
	lr, ratio, mu, wd, tau, eps float64
	nesterov                    bool
	sum                         bool
	iters                       int
}

// oracleCG runs FROG.md step 5 in float64 for one row with matrix A.
func oracleCG(a [][]float64, e []float64, iters int, eps float64) []float64 {
	d := len(e)
	z := make([]float64, d)
	res := append([]float64(nil), e...)
	p := append([]float64(nil), e...)
	dot := func(x, y []float64) float64 {
		s := 0.0
		for i := range x {
			s += x[i] * y[i]
		}
		return s
	}
	rho := dot(res, res)
	for it := 0; it < iters; it++ {
		q := make([]float64, d)
		for i := range q {
			q[i] = dot(a[i], p)
		}
		alpha := rho / (dot(p, q) + eps)
		for i := range z {
			z[i] += alpha * p[i]
			res[i] -= alpha * q[i]
		}
		rhoNew := dot(res, res)
		beta := rhoNew / (rho + eps)
		for i := range p {
			p[i] = res[i] + beta*p[i]
		}
		rho = rhoNew
	}
	return z
}

// oracleFROG is one FROG step on float64 state. It returns the new weight,
// bias, momentum buffers, and the traces and z of every row.
type oracleState struct {
	w, b, mw, mb []float64
}

// oracleMomentum is FROG.md step 4: the momentum buffer m takes
// m = mu*m + g in place and the effective gradient is m, or g + mu*m with
// Nesterov; without momentum (mu = 0) it is g and m is untouched.
func oracleMomentum(m, g []float64, mu float64, nesterov bool) []float64 {
	out := make([]float64, len(g))
	for i := range g {
		if mu == 0 {
			out[i] = g[i]
			continue
		}
		m[i] = mu*m[i] + g[i]
		if nesterov {
			out[i] = g[i] + mu*m[i]
		} else {
			out[i] = m[i]
		}
	}
	return out
}

func oracleFROGStep(l Layer, o oracleOpts, st *oracleState, acts, outg, grad, bgrad []float64, batch int, idx []int) (trace []float64, zs [][]float64) {
	g := l.Geometry()
	joint := l.Bias == JointBias
	rows, d := l.Rows(), l.RowLen()
	sd := l.SolveLen()
	L := g.Locations()
	r := len(idx)
	s := float64(batch) * float64(batch) / float64(r)
	if o.sum {
		s = 1 / float64(r)
	}
	ew := oracleMomentum(st.mw, grad, o.mu, o.nesterov)
	var eb []float64
	if joint {
		eb = oracleMomentum(st.mb, bgrad, o.mu, o.nesterov)
	}
	trace = make([]float64, rows)
	zs = make([][]float64, rows)
	dirs := make([][]float64, rows)
	rg := g.OutChannels / g.Groups
	for grp := 0; grp < g.Groups; grp++ {
		x := directPatches(l, acts, idx, grp, joint)
		for j := grp * rg; j < (grp+1)*rg; j++ {
			f := make([][]float64, sd)
			for i := range f {
				f[i] = make([]float64, sd)
			}
			for k, n := range idx {
				for loc := 0; loc < L; loc++ {
					y := outg[(n*g.OutChannels+j)*L+loc]
					lam := s * y * y
					u := x[k*L+loc]
					for a := range u {
						for b := range u {
							f[a][b] += lam * u[a] * u[b]
						}
					}
				}
			}
			t := 0.0
			for a := range f {
				t += f[a][a]
			}
			t /= float64(sd)
			trace[j] = t
			for a := range f {
				for b := range f {
					f[a][b] /= t + o.eps
				}
				f[a][a] += o.tau
			}
			e := append([]float64(nil), ew[j*d:(j+1)*d]...)
			if joint {
				e = append(e, eb[j])
			}
			z := oracleCG(f, e, o.iters, o.eps)
			ze := 0.0
			for i := range z {
				ze += z[i] * e[i]
			}
			c := 1 / math.Sqrt(ze+o.eps)
			dir := make([]float64, sd)
			for i := range z {
				dir[i] = c * z[i]
			}
			zs[j], dirs[j] = z, dir
		}
	}
	decay := 1 - o.lr*o.wd
	for j := 0; j < rows; j++ {
		for i := 0; i < d; i++ {
			st.w[j*d+i] = decay*st.w[j*d+i] - o.lr*dirs[j][i]
		}
		if joint {
			st.b[j] = decay*st.b[j] - o.lr*dirs[j][d]
		}
	}
	if l.Bias == PlainBias {
		lr := o.lr * o.ratio
		for j := range st.b {
			gr, th := bgrad[j], st.b[j]
			var dd float64
			switch {
			case o.mu == 0:
				dd = gr + o.wd*th
			case o.nesterov:
				st.mb[j] = o.mu*st.mb[j] + gr
				dd = gr + o.mu*st.mb[j] + o.wd*th
			default:
				st.mb[j] = o.mu*st.mb[j] + gr + o.wd*th
				dd = st.mb[j]
			}
			st.b[j] = th - lr*dd
		}
	}
	return trace, zs
}

func randVec(rng *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64() * scale
	}
	return v
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// roundF64 rounds v to float32 precision, so that the oracle starts from
// exactly the values the float32 optimizer sees.
func roundF64(v []float64) []float64 {
	for i := range v {
		v[i] = float64(float32(v[i]))
	}
	return v
}

type oracleCase struct {
	name   string
	layer  Layer
	opts   oracleOpts
	batch  int
	sample int // 0: whole batch
	steps  int
}

func oracleCases() []oracleCase {
	base := oracleOpts{lr: 0.01, ratio: 1, mu: 0.9, wd: 1e-5, tau: 1e-6, eps: 1e-10, iters: 4}
	with := func(f func(*oracleOpts)) oracleOpts { o := base; f(&o); return o }
	conv3 := Layer{InChannels: 3, OutChannels: 4, InH: 6, InW: 6, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}}
	return []oracleCase{
		{"nesterov", conv3, with(func(o *oracleOpts) { o.nesterov = true }), 6, 3, 3},
		{"sum_reduced", conv3, with(func(o *oracleOpts) { o.sum = true }), 6, 3, 2},
		{"no_momentum_no_subsample", conv3, with(func(o *oracleOpts) { o.mu = 0 }), 4, 0, 2},
		{"dilation_stride", Layer{InChannels: 2, OutChannels: 3, InH: 9, InW: 8, Kernel: [2]int{3, 2}, Stride: [2]int{2, 1}, Padding: [2]int{2, 1}, Dilation: [2]int{2, 3}}, base, 5, 2, 2},
		{"tau_iters", conv3, with(func(o *oracleOpts) { o.tau = 1e-3; o.iters = 7 }), 6, 4, 2},
		// The last iteration runs on the curvatures alone (cg.Curvature):
		// with one iteration it is the only one, with two it follows a
		// whole one.
		{"one_iteration", conv3, with(func(o *oracleOpts) { o.iters = 1 }), 6, 3, 2},
		{"two_iterations", conv3, with(func(o *oracleOpts) { o.iters = 2 }), 6, 3, 2},
		{"groups", Layer{InChannels: 4, OutChannels: 6, InH: 5, InW: 5, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}, Groups: 2}, base, 4, 2, 2},
		{"depthwise", Layer{InChannels: 3, OutChannels: 3, InH: 5, InW: 4, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}, Groups: 3}, base, 4, 3, 2},
		{"joint_bias", Layer{InChannels: 2, OutChannels: 3, InH: 5, InW: 5, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}, Bias: JointBias}, with(func(o *oracleOpts) { o.wd = 1e-2 }), 4, 2, 2},
		{"plain_bias_nesterov", Layer{InChannels: 2, OutChannels: 3, InH: 4, InW: 4, Kernel: [2]int{2, 2}, Bias: PlainBias}, with(func(o *oracleOpts) { o.nesterov = true; o.ratio = 0.25; o.wd = 1e-2 }), 4, 2, 2},
		{"linear", Linear("", 7, 5, NoBias), base, 12, 6, 3},
		{"linear_joint_bias", Linear("", 7, 5, JointBias), base, 12, 6, 2},
	}
}

// oracleRun drives the optimizer and the oracle side by side, checking
// every step when check is set, and returns the run in the reference schema.
func oracleRun(t *testing.T, c oracleCase, check bool) map[string]any {
	rng := rand.New(rand.NewPCG(7, uint64(len(c.name))))
	l := c.layer
	l.Name = c.name
	g := l.Geometry()
	st := &oracleState{
		w:  roundF64(randVec(rng, l.WeightLen(), 0.3)),
		mw: make([]float64, l.WeightLen()),
	}
	if l.Bias != NoBias {
		st.b = roundF64(randVec(rng, l.Rows(), 0.3))
		st.mb = make([]float64, l.Rows())
	}
	cfg := DefaultConfig()
	cfg.LR, cfg.LROtherRatio, cfg.Momentum, cfg.Nesterov = c.opts.lr, c.opts.ratio, c.opts.mu, c.opts.nesterov
	cfg.WeightDecay, cfg.Damping, cfg.DenomEps, cfg.Iters = c.opts.wd, c.opts.tau, c.opts.eps, c.opts.iters
	cfg.SampleSize = c.sample
	if c.opts.sum {
		cfg.Reduction = Sum
	}
	opt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	weight := toF32(st.w)
	var bias []float32
	if st.b != nil {
		bias = toF32(st.b)
	}
	if err := opt.AddLayer(l, weight, bias); err != nil {
		t.Fatal(err)
	}
	var steps []any
	for k := 0; k < c.steps; k++ {
		acts := roundF64(randVec(rng, c.batch*g.ImageLen(), 1))
		outg := roundF64(randVec(rng, c.batch*g.OutputLen(), 1/float64(c.batch)))
		grad := roundF64(randVec(rng, l.WeightLen(), 0.1))
		var bgrad []float64
		if l.Bias != NoBias {
			bgrad = roundF64(randVec(rng, l.Rows(), 0.1))
		}
		var idx []int
		if c.sample > 0 && c.sample < c.batch {
			idx = rng.Perm(c.batch)[:c.sample]
		} else {
			idx = make([]int, c.batch)
			for i := range idx {
				idx[i] = i
			}
		}
		wBefore, bBefore := append([]float64(nil), st.w...), append([]float64(nil), st.b...)
		w32Before, b32Before := append([]float32(nil), weight...), append([]float32(nil), bias...)
		trace, zs := oracleFROGStep(l, c.opts, st, acts, outg, grad, bgrad, c.batch, idx)
		in := Batch{Grad: toF32(grad), Acts: toF32(acts), OutGrads: toF32(outg), BatchSize: c.batch, Samples: idx}
		if bgrad != nil {
			in.BiasGrad = toF32(bgrad)
		}
		if err := opt.Step(l.Name, in); err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
		var zflat []float64
		for _, z := range zs {
			zflat = append(zflat, z...)
		}
		if check {
			stats, _ := opt.Stats(l.Name)
			checkClose(t, k, "weight update", diff(weight, w32Before), refDiff(st.w, wBefore), 1e-4)
			if bias != nil {
				checkClose(t, k, "bias update", diff(bias, b32Before), refDiff(st.b, bBefore), 1e-4)
			}
			checkClose(t, k, "trace", stats.Rows.Trace, trace, 1e-5)
			checkClose(t, k, "z", zFromDirection(opt, l.Name, stats), zflat, 1e-4)
		}
		rec := map[string]any{
			"x": tensor(acts, c.batch, g.InChannels, g.InH, g.InW), "y": tensor(outg, c.batch, g.OutChannels, g.OutH(), g.OutW()),
			"grad":          tensor(grad, l.Rows(), g.InChannels/g.Groups, g.KernelH, g.KernelW),
			"weight_before": tensor(wBefore, l.Rows(), g.InChannels/g.Groups, g.KernelH, g.KernelW),
			"weight_after":  tensor(append([]float64(nil), st.w...), l.Rows(), g.InChannels/g.Groups, g.KernelH, g.KernelW),
			"trace_over_d":  tensor(trace, l.Rows()),
			"cg_solution":   tensor(zflat, len(zflat)),
		}
		if c.sample > 0 && c.sample < c.batch {
			rec["sample_indices"] = idx
		}
		if l.Bias == PlainBias {
			rec["bias_before"], rec["bias_grad"], rec["bias_after"] = tensor(bBefore, l.Rows()), tensor(bgrad, l.Rows()), tensor(append([]float64(nil), st.b...), l.Rows())
		}
		steps = append(steps, rec)
		// Keep the two states identical up to float32 storage.
		copy(st.w, roundF64(toF64(weight)))
		if bias != nil {
			copy(st.b, roundF64(toF64(bias)))
		}
	}
	hyper := map[string]any{
		"lr": c.opts.lr, "lr_other_ratio": c.opts.ratio, "momentum": c.opts.mu, "nesterov": c.opts.nesterov,
		"weight_decay": c.opts.wd, "num_iters": c.opts.iters, "tau": c.opts.tau, "batch_averaged": !c.opts.sum,
		"denom_eps": c.opts.eps, "sample_size": nil,
	}
	if c.sample > 0 {
		hyper["sample_size"] = c.sample
	}
	return map[string]any{
		"name": "oracle_" + c.name, "optimizer": "frog", "hyper": hyper,
		"layer": map[string]any{
			"cin": g.InChannels, "cout": g.OutChannels, "kernel": []int{g.KernelH, g.KernelW},
			"stride": []int{g.StrideH, g.StrideW}, "padding": []int{g.PadH, g.PadW},
			"dilation": []int{g.DilationH, g.DilationW}, "groups": g.Groups, "bias": l.Bias == PlainBias,
			"in_h": g.InH, "in_w": g.InW,
		},
		"batch": c.batch, "tolerance": 1e-4, "steps": steps,
	}
}

func toF64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func tensor(data []float64, shape ...int) map[string]any {
	return map[string]any{"shape": shape, "data": data}
}

// TestOracleFROG checks the optimizer against the explicit float64 model
// on every option.
func TestOracleFROG(t *testing.T) {
	for _, c := range oracleCases() {
		t.Run(c.name, func(t *testing.T) { oracleRun(t, c, true) })
	}
}

// TestReferenceHarnessOnOracleCases writes the oracle's runs in the
// reference schema (null sample sizes, a sum-reduced loss, Nesterov,
// groups) and runs the harness on that directory, so that the harness
// handles cases beyond the ones in shared/.
func TestReferenceHarnessOnOracleCases(t *testing.T) {
	dir := t.TempDir()
	written := 0
	for _, c := range oracleCases() {
		if c.layer.Bias == JointBias {
			continue // the schema's bias is the reference (plain) mode
		}
		written++
		raw, err := json.Marshal(oracleRun(t, c, false))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, c.name+".json"), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("FROG_REFERENCE_DIR", dir)
	cases := loadReferenceCases(t)
	if len(cases) != written || written == 0 {
		t.Fatalf("harness found %d cases, want the %d written", len(cases), written)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) { runFROGReference(t, &c, c.Tolerance) })
	}
}
