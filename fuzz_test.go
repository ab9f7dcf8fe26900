package frog

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

// Fuzz targets. Run one at a time, e.g.
//
//	go test -run='^$' -fuzz=FuzzPreconditionRows -fuzztime=10s .
//	go test -run='^$' -fuzz=FuzzStep -fuzztime=10s .
//	go test -run='^$' -fuzz=FuzzCheckpoint -fuzztime=10s .
//
// Seed corpora are in testdata/fuzz/<target>/ and in the f.Add calls.

// fuzzBytes hands out the fuzzer's bytes, zeros once they run out.
type fuzzBytes struct{ b []byte }

func (f *fuzzBytes) next() byte {
	if len(f.b) == 0 {
		return 0
	}
	v := f.b[0]
	f.b = f.b[1:]
	return v
}

// small maps a byte into [lo, lo+n).
func (f *fuzzBytes) small(lo, n int) int { return lo + int(f.next())%n }

// fuzzLayer builds a small layer, sometimes an invalid one (zero or
// negative sizes, groups that do not divide, a kernel larger than the
// padded input, an unknown bias mode).
func fuzzLayer(name string, fb *fuzzBytes) Layer {
	l := Layer{Name: name,
		InChannels: fb.small(-1, 6), OutChannels: fb.small(-1, 6),
		InH: fb.small(0, 7), InW: fb.small(0, 7),
		Kernel:   [2]int{fb.small(0, 4), fb.small(0, 4)},
		Stride:   [2]int{fb.small(0, 3), fb.small(0, 3)},
		Padding:  [2]int{fb.small(-1, 3), fb.small(-1, 3)},
		Dilation: [2]int{fb.small(0, 3), fb.small(0, 3)},
		Groups:   fb.small(0, 3),
		Bias:     BiasMode(fb.small(-1, 4) % 4),
	}
	return l
}

// fuzzFloats makes n values from the bytes: a signed mantissa and an
// exponent over the whole float32 range, with NaN and Inf now and then.
func fuzzFloats(fb *fuzzBytes, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		m, e := int8(fb.next()), int8(fb.next())
		switch {
		case e == 127:
			v[i] = float32(math.NaN())
		case e == -128:
			v[i] = float32(math.Inf(int(m%2)*2 - 1))
		default:
			// Most exponents near zero, some at the extremes of float32.
			exp := int(e)
			if exp > 100 || exp < -100 {
				exp = exp * 3 / 2
			} else {
				exp /= 8
			}
			v[i] = float32(math.Ldexp(float64(m)/16, exp))
		}
	}
	return v
}

// lengthJitter sometimes makes a length wrong; once the bytes run out
// (next gives 0) the length is kept.
func lengthJitter(fb *fuzzBytes, n int) int {
	switch fb.next() % 16 {
	case 1:
		return max(n-1, 0)
	case 2:
		return n + 1
	}
	return n
}

// rowsCase is one input of FuzzPreconditionRows.
type rowsCase struct {
	shape, values         []byte
	samples, batch, iters int
	tau                   float64
	scaleInv              bool
}

var rowsSeeds = []rowsCase{
	{[]byte{2, 3, 4, 4, 3, 3, 1, 1, 2, 2, 1, 1, 1, 1}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, 2, 8, 4, 1e-4, false},
	{[]byte{4, 4, 6, 6, 2, 3, 2, 1, 1, 1, 2, 1, 2, 3}, []byte{200, 100, 3, 120, 7, 0x80, 250, 130}, 3, 3, 1, 0.0, true},
	{[]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, []byte{}, 1, 1, 0, -1.0, false},
}

func FuzzPreconditionRows(f *testing.F) {
	for _, c := range rowsSeeds {
		f.Add(c.shape, c.values, c.samples, c.batch, c.iters, c.tau, c.scaleInv)
	}
	f.Fuzz(func(t *testing.T, shape, values []byte, samples, batch, iters int, tau float64, scaleInv bool) {
		checkRowsCase(t, rowsCase{shape, values, samples, batch, iters, tau, scaleInv})
	})
}

// checkRowsCase runs PreconditionRows on a fuzzed input: an error exactly
// for an invalid or non-finite input, otherwise a finite direction and
// diagnostics of the right size. It reports whether the call succeeded.
func checkRowsCase(t testing.TB, c rowsCase) bool {
	t.Helper()
	sb, vb := &fuzzBytes{c.shape}, &fuzzBytes{c.values}
	l := fuzzLayer("fuzz", sb)
	samples, batch, iters, tau := c.samples%6, c.batch%10, c.iters%6, c.tau
	valid := l.Validate() == nil && samples > 0 && batch >= samples && iters > 0 && tau >= 0 && !math.IsInf(tau, 0)
	var in RowsInput
	in.Layer, in.Samples, in.BatchSize, in.Iters, in.Damping, in.DenomEps = l, samples, batch, iters, tau, 1e-10
	in.ScaleInvariant = c.scaleInv
	var dir []float32
	if l.Validate() == nil && samples > 0 {
		n := l.Rows() * l.SolveLen()
		in.Grad = fuzzFloats(vb, lengthJitter(sb, n))
		in.Acts = fuzzFloats(vb, lengthJitter(sb, samples*l.ActLen()))
		in.OutGrads = fuzzFloats(vb, lengthJitter(sb, samples*l.OutGradLen()))
		dir = make([]float32, lengthJitter(sb, n))
		valid = valid && len(in.Grad) == n && len(dir) == n &&
			len(in.Acts) == samples*l.ActLen() && len(in.OutGrads) == samples*l.OutGradLen()
	}
	finite := allFinite(in.Grad) && allFinite(in.Acts) && allFinite(in.OutGrads)
	diag, err := PreconditionRows(in, dir)
	switch {
	case err != nil && valid && finite:
		t.Fatalf("valid finite input: %v", err)
	case err == nil && !(valid && finite):
		t.Fatalf("no error for invalid input (valid %v, finite %v)", valid, finite)
	case err != nil:
		var le *LayerError
		if !errors.As(err, &le) {
			t.Fatalf("error %v is not a *LayerError", err)
		}
		if valid && !finite && !errors.Is(err, ErrNonFinite) {
			t.Fatalf("non-finite input: %v does not wrap ErrNonFinite", err)
		}
		return false
	}
	if !allFinite(dir) {
		t.Fatalf("direction not finite: %v", dir)
	}
	if len(diag.Trace) != l.Rows() || len(diag.Breakdown) != l.Rows() {
		t.Fatal("diagnostics of the wrong size")
	}
	for j := range diag.Trace {
		if !(diag.Trace[j] >= 0) || math.IsInf(diag.Trace[j], 0) {
			t.Fatalf("trace %d = %v", j, diag.Trace[j])
		}
	}
	return true
}

// stepCase is one input of FuzzStep.
type stepCase struct {
	shape, values     []byte
	kfrog             bool
	lr, mu, tau       float64
	sampleSize, batch int
	flags             uint8
}

var stepSeeds = []stepCase{
	{[]byte{2, 3, 4, 4, 3, 3, 1, 1, 2, 2, 1, 1, 1, 1}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, false, 0.01, 0.9, 1e-4, 4, 5, 3},
	{[]byte{4, 4, 6, 6, 2, 3, 2, 1, 1, 1, 2, 1, 2, 3}, []byte{200, 100, 3, 120, 7, 0x80, 250, 130}, true, 0.1, 0.5, 0.0, 2, 7, 0},
	{[]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2}, []byte{5, 5}, false, 1e30, 0.0, 1e-6, 1, 1, 255},
}

// FuzzStep takes two steps of FROG or K-FROG on a fuzzed layer, config and
// batch. An error must leave the whole state as it was; a step that succeeds
// leaves finite weights; valid finite input fails only by overflow
// (ErrNonFinite, e.g. a huge learning rate).
func FuzzStep(f *testing.F) {
	for _, c := range stepSeeds {
		f.Add(c.shape, c.values, c.kfrog, c.lr, c.mu, c.tau, c.sampleSize, c.batch, c.flags)
	}
	f.Fuzz(func(t *testing.T, shape, values []byte, kfrog bool, lr, mu, tau float64, sampleSize, batch int, flags uint8) {
		checkStepCase(t, stepCase{shape, values, kfrog, lr, mu, tau, sampleSize, batch, flags})
	})
}

// validIndices is checkIndices' rule: no indices, or a non-empty list of
// at most batch distinct indices in [0, batch).
func validIndices(idx []int, batch int) bool {
	if idx == nil {
		return true
	}
	if len(idx) == 0 || len(idx) > batch {
		return false
	}
	for i, v := range idx {
		if v < 0 || v >= batch || slices.Contains(idx[:i], v) {
			return false
		}
	}
	return true
}

// overflowError reports whether err is the ErrNonFinite of finite inputs
// whose step overflows (a huge learning rate or momentum).
func overflowError(err error) bool {
	return errors.Is(err, ErrNonFinite) &&
		(strings.Contains(err.Error(), "would make") || strings.Contains(err.Error(), "overflows"))
}

// checkStepCase runs FuzzStep's two steps. A step fails exactly when its
// batch is invalid or not finite (or the weights are not), or when valid
// finite input overflows; with SkipNonFinite a non-finite failure is a
// counted skip instead. It returns how many steps succeeded, not skipped.
func checkStepCase(t testing.TB, c stepCase) int {
	t.Helper()
	sb, vb := &fuzzBytes{c.shape}, &fuzzBytes{c.values}
	l := fuzzLayer("fuzz", sb)
	var o optimizerAPI
	var err error
	flags := c.flags
	skip := flags&128 != 0
	if c.kfrog {
		cfg := DefaultKConfig()
		cfg.LR, cfg.Momentum, cfg.SampleSize, cfg.Iters = c.lr, c.mu, c.sampleSize%8, 1+int(flags%4)
		cfg.Nesterov = flags&16 != 0
		cfg.YMomentum = float64(flags%8) / 8
		cfg.YSampleSize = int(flags>>5) % 4
		cfg.SkipNonFinite = skip
		o, err = NewKFROG(cfg)
	} else {
		cfg := DefaultConfig()
		cfg.LR, cfg.Momentum, cfg.Damping, cfg.SampleSize, cfg.Iters = c.lr, c.mu, c.tau, c.sampleSize%8, 1+int(flags%4)
		cfg.Nesterov = flags&16 != 0
		cfg.WeightDecay = float64(flags%8) * 0.01
		cfg.ScaleInvariant = flags&32 != 0
		cfg.SkipNonFinite = skip
		cfg.Backend = BackendCPU
		o, err = New(cfg)
	}
	if err != nil {
		return 0 // New's validation is TestBadConfig's; nothing to step
	}
	if l.Validate() != nil {
		if o.AddLayer(l, nil, nil) == nil {
			t.Fatal("invalid layer registered")
		}
		return 0
	}
	weight := fuzzFloats(vb, l.WeightLen())
	var bias []float32
	if l.Bias != NoBias {
		bias = fuzzFloats(vb, l.Rows())
	}
	if err := o.AddLayer(l, weight, bias); err != nil {
		t.Fatalf("valid layer: %v", err)
	}
	batch := c.batch % 7
	succeeded := 0
	for step := 0; step < 2; step++ {
		in := Batch{BatchSize: batch, Grad: fuzzFloats(vb, lengthJitter(sb, l.WeightLen()))}
		if l.Bias != NoBias {
			in.BiasGrad = fuzzFloats(vb, lengthJitter(sb, l.Rows()))
		}
		nb := max(batch, 0)
		in.Acts = fuzzFloats(vb, lengthJitter(sb, nb*l.ActLen()))
		in.OutGrads = fuzzFloats(vb, lengthJitter(sb, nb*l.OutGradLen()))
		if s := sb.next(); s%4 == 0 && nb > 0 {
			for k := 0; k < 1+int(s/4)%nb; k++ {
				in.Samples = append(in.Samples, int(sb.next())%(nb+1))
			}
		}
		valid := batch > 0 && len(in.Grad) == l.WeightLen() &&
			(l.Bias == NoBias || len(in.BiasGrad) == l.Rows()) &&
			len(in.Acts) == batch*l.ActLen() && len(in.OutGrads) == batch*l.OutGradLen() &&
			validIndices(in.Samples, batch)
		finite := allFinite(in.Grad) && allFinite(in.BiasGrad) && allFinite(in.Acts) && allFinite(in.OutGrads) &&
			allFinite(weight) && allFinite(bias)
		wasFinite := allFinite(weight) && allFinite(bias)
		before := stateOf(o)
		skippedBefore := baseOf(o, "fuzz").skipped
		err := o.Step("fuzz", in)
		if err != nil {
			var le *LayerError
			if !errors.As(err, &le) || le.Layer != "fuzz" {
				t.Fatalf("error %v does not name the layer", err)
			}
			if string(stateOf(o)) != string(before) {
				t.Fatalf("failed step changed the state: %v", err)
			}
			switch {
			case finite && errors.Is(err, ErrNonFinite) && !overflowError(err):
				t.Fatalf("finite input, non-finite error: %v", err)
			case valid && finite && !overflowError(err):
				t.Fatalf("valid finite input: %v", err)
			case valid && !finite && !errors.Is(err, ErrNonFinite):
				t.Fatalf("non-finite input: %v does not wrap ErrNonFinite", err)
			case !valid && errors.Is(err, ErrNonFinite):
				t.Fatalf("invalid input: %v wraps ErrNonFinite", err)
			case skip && errors.Is(err, ErrNonFinite):
				t.Fatalf("SkipNonFinite returned %v", err)
			}
			continue
		}
		if wasFinite && (!allFinite(weight) || !allFinite(bias)) {
			t.Fatalf("step succeeded with non-finite weights")
		}
		if !valid || !(finite || skip) {
			t.Fatalf("no error for invalid input (valid %v, finite %v)", valid, finite)
		}
		switch skipped := baseOf(o, "fuzz").skipped - skippedBefore; {
		case skipped == 1:
			continue // a non-finite input or an overflow, skipped
		case skipped != 0 || !finite:
			t.Fatalf("non-finite input: %d steps skipped, want 1", skipped)
		}
		succeeded++
	}
	return succeeded
}

// TestFuzzSeedsSucceed runs the fuzz targets' own seeds outside the fuzzer
// and requires that some seed of each reaches the success branch, so that
// plain go test checks a successful call and not only rejections.
func TestFuzzSeedsSucceed(t *testing.T) {
	rows := 0
	for _, c := range rowsSeeds {
		if checkRowsCase(t, c) {
			rows++
		}
	}
	steps := 0
	for _, c := range stepSeeds {
		steps += checkStepCase(t, c)
	}
	if rows == 0 || steps == 0 {
		t.Fatalf("seeds that succeed: %d of PreconditionRows, %d steps of Step", rows, steps)
	}
}

// FuzzCheckpoint feeds arbitrary bytes (and mutations of a real
// checkpoint) to UnmarshalBinary: no panic, and an error changes nothing.
func FuzzCheckpoint(f *testing.F) {
	w := newRBWorld(1)
	o, _ := New(rbConfig())
	w.register(f, o)
	rbTrain(f, o, rbData(3, 1))
	ck, _ := o.MarshalBinary()
	f.Add(ck)
	f.Add(ck[:len(ck)/2])
	f.Add([]byte(checkpointMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, _ := New(rbConfig())
		newRBWorld(2).register(t, o)
		before := stateOf(o)
		if err := o.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("error %v does not wrap ErrCheckpoint", err)
			}
			if string(stateOf(o)) != string(before) {
				t.Fatal("a rejected checkpoint changed the state")
			}
		}
	})
}
