package frog

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Properties of the preconditioning that the recorded vectors cannot show.

// rowsInput makes a random problem for l with r samples of a batch of b.
func rowsInput(l Layer, r, b int, seed uint64) RowsInput {
	rng := rand.New(rand.NewPCG(seed, 1))
	return RowsInput{
		Layer:     l,
		Grad:      toF32(randVec(rng, l.Rows()*l.SolveLen(), 0.1)),
		Acts:      toF32(randVec(rng, r*l.ActLen(), 1)),
		OutGrads:  toF32(randVec(rng, r*l.OutGradLen(), 1/float64(b))),
		Samples:   r,
		BatchSize: b,
		Damping:   1e-6,
		Iters:     4,
		DenomEps:  1e-10,
	}
}

func precondition(t *testing.T, in RowsInput) ([]float32, RowDiagnostics) {
	t.Helper()
	dir := make([]float32, in.Layer.Rows()*in.Layer.SolveLen())
	diag, err := PreconditionRows(in, dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, diag
}

func TestLinearIsOneByOneConvolution(t *testing.T) {
	lin := Linear("fc", 9, 5, NoBias)
	conv1 := Layer{Name: "fc", InChannels: 9, OutChannels: 5, InH: 1, InW: 1, Kernel: [2]int{1, 1}}
	in := rowsInput(lin, 6, 32, 3)
	a, da := precondition(t, in)
	in.Layer = conv1
	b, db := precondition(t, in)
	if d := cmp.Diff(a, b); d != "" {
		t.Errorf("direction differs (-linear +conv):\n%s", d)
	}
	if d := cmp.Diff(da, db); d != "" {
		t.Errorf("diagnostics differ (-linear +conv):\n%s", d)
	}
}

// A grouped convolution is its groups run as separate layers.
func TestGroupedConvolutionIsItsGroups(t *testing.T) {
	for _, groups := range []int{2, 4} {
		l := Layer{Name: "g", InChannels: 8, OutChannels: 12, InH: 6, InW: 5, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}, Groups: groups}
		const r = 3
		in := rowsInput(l, r, 16, uint64(groups))
		whole, wholeDiag := precondition(t, in)

		cin, cout := l.InChannels/groups, l.OutChannels/groups
		part := l
		part.InChannels, part.OutChannels, part.Groups = cin, cout, 1
		hw, ohw := l.InH*l.InW, l.Geometry().Locations()
		d := part.RowLen()
		for g := 0; g < groups; g++ {
			sub := in
			sub.Layer = part
			sub.Grad = in.Grad[g*cout*d : (g+1)*cout*d]
			sub.Acts, sub.OutGrads = nil, nil
			for s := 0; s < r; s++ {
				sub.Acts = append(sub.Acts, in.Acts[(s*l.InChannels+g*cin)*hw:(s*l.InChannels+(g+1)*cin)*hw]...)
				sub.OutGrads = append(sub.OutGrads, in.OutGrads[(s*l.OutChannels+g*cout)*ohw:(s*l.OutChannels+(g+1)*cout)*ohw]...)
			}
			dir, diag := precondition(t, sub)
			checkClose(t, g, "group direction", toF64(whole[g*cout*d:(g+1)*cout*d]), toF64(dir), 1e-6)
			checkClose(t, g, "group trace", wholeDiag.Trace[g*cout:(g+1)*cout], diag.Trace, 1e-12)
		}
	}
}

// A joint bias is the same as an extra input fixed at 1 (for a 1x1
// convolution without padding, every patch then ends with that 1).
func TestJointBiasIsAugmentedInput(t *testing.T) {
	for _, hw := range []int{1, 3} {
		l := Layer{Name: "b", InChannels: 5, OutChannels: 4, InH: hw, InW: hw, Bias: JointBias}
		const r = 4
		in := rowsInput(l, r, 8, uint64(hw))
		joint, jd := precondition(t, in)

		aug := l
		aug.InChannels, aug.Bias = 6, NoBias
		ain := in
		ain.Layer = aug
		ain.Acts = nil
		plane := hw * hw
		for s := 0; s < r; s++ {
			ain.Acts = append(ain.Acts, in.Acts[s*5*plane:(s+1)*5*plane]...)
			for i := 0; i < plane; i++ {
				ain.Acts = append(ain.Acts, 1)
			}
		}
		augDir, ad := precondition(t, ain)
		checkClose(t, hw, "direction", toF64(joint), toF64(augDir), 1e-6)
		checkClose(t, hw, "trace", jd.Trace, ad.Trace, 1e-12)
	}
}

// The step is free of the scale of the gradient, the activations and the
// output gradients (for scales where eps stays negligible).
func TestUpdateIsScaleFree(t *testing.T) {
	l := Layer{Name: "s", InChannels: 3, OutChannels: 5, InH: 6, InW: 6, Kernel: [2]int{3, 3}, Padding: [2]int{1, 1}}
	in := rowsInput(l, 4, 16, 9)
	want, _ := precondition(t, in)
	// scaled's float64 product of two float32 values is exact, so its
	// rounding is the float32 product's.
	for _, c := range []float32{0.05, 7, 1e3} {
		for _, which := range []string{"gradient", "activations", "output gradients"} {
			s := in
			switch which {
			case "gradient":
				s.Grad = scaled(in.Grad, float64(c))
			case "activations":
				s.Acts = scaled(in.Acts, float64(c))
			default:
				s.OutGrads = scaled(in.OutGrads, float64(c))
			}
			got, _ := precondition(t, s)
			checkClose(t, 0, which+" scaled", toF64(got), toF64(want), 1e-5)
		}
	}
}

// The optimizer's own draw is a subsample of distinct indices, different
// from step to step, and the same for the same seed.
func TestSubsampleDraw(t *testing.T) {
	run := func() [][]int {
		cfg := DefaultConfig()
		cfg.SampleSize, cfg.Seed = 4, 42
		opt, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		l := Linear("fc", 3, 2, NoBias)
		w := make([]float32, l.WeightLen())
		if err := opt.AddLayer(l, w, nil); err != nil {
			t.Fatal(err)
		}
		in := rowsInput(l, 10, 10, 1)
		var draws [][]int
		for k := 0; k < 3; k++ {
			if err := opt.Step("fc", Batch{Grad: in.Grad, Acts: in.Acts, OutGrads: in.OutGrads, BatchSize: 10}); err != nil {
				t.Fatal(err)
			}
			st, _ := opt.Stats("fc")
			if err := new(layerBase).checkIndices("drawn", st.Samples, 10); err != nil || len(st.Samples) != 4 {
				t.Fatalf("draw %v: %v", st.Samples, err)
			}
			draws = append(draws, st.Samples)
		}
		return draws
	}
	a, b := run(), run()
	for k := range a {
		for i := range a[k] {
			if a[k][i] != b[k][i] {
				t.Fatalf("same seed, different draws: %v vs %v", a, b)
			}
		}
	}
	same := true
	for i := range a[0] {
		same = same && a[0][i] == a[1][i]
	}
	if same {
		t.Errorf("two steps drew the same subsample %v", a[0])
	}
}

// The damping schedule moves geometrically from tau0 to tau_final.
func TestDampingSchedule(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Damping, cfg.DampingFinal, cfg.DampingSteps = 1e-6, 1e-2, 4
	for _, c := range []struct {
		step int64
		want float64
	}{{0, 1e-6}, {2, 1e-4}, {4, 1e-2}, {9, 1e-2}} {
		if got := cfg.dampingAt(c.step); relErr([]float64{got}, []float64{c.want}) > 1e-12 {
			t.Errorf("tau(%d) = %g, want %g", c.step, got, c.want)
		}
	}
}
