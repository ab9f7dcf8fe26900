package frog

import (
	"errors"
	"math"
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

// lengthJitter sometimes makes a length wrong.
func lengthJitter(fb *fuzzBytes, n int) int {
	switch fb.next() % 16 {
	case 0:
		return max(n-1, 0)
	case 1:
		return n + 1
	}
	return n
}

func FuzzPreconditionRows(f *testing.F) {
	f.Add([]byte{2, 3, 4, 4, 3, 3, 1, 1, 2, 2, 1, 1, 1, 1}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, 2, 8, 4, 1e-4, false)
	f.Add([]byte{4, 4, 6, 6, 2, 3, 2, 1, 1, 1, 2, 1, 2, 3}, []byte{200, 100, 3, 120, 7, 0x80, 250, 130}, 3, 3, 1, 0.0, true)
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, []byte{}, 1, 1, 0, -1.0, false)
	f.Fuzz(func(t *testing.T, shape, values []byte, samples, batch, iters int, tau float64, scaleInv bool) {
		sb, vb := &fuzzBytes{shape}, &fuzzBytes{values}
		l := fuzzLayer("fuzz", sb)
		samples, batch, iters = samples%6, batch%10, iters%6
		valid := l.Validate() == nil && samples > 0 && batch >= samples && iters > 0 && tau >= 0 && !math.IsInf(tau, 0)
		var in RowsInput
		in.Layer, in.Samples, in.BatchSize, in.Iters, in.Damping, in.DenomEps = l, samples, batch, iters, tau, 1e-10
		in.ScaleInvariant = scaleInv
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
		default:
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
		}
	})
}

// FuzzStep takes two steps of FROG or K-FROG on a fuzzed layer, config and
// batch. An error must leave the whole state as it was; a step that succeeds
// leaves finite weights; valid finite input fails only by overflow
// (ErrNonFinite, e.g. a huge learning rate).
func FuzzStep(f *testing.F) {
	f.Add([]byte{2, 3, 4, 4, 3, 3, 1, 1, 2, 2, 1, 1, 1, 1}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, false, 0.01, 0.9, 1e-4, 4, 5, uint8(3))
	f.Add([]byte{4, 4, 6, 6, 2, 3, 2, 1, 1, 1, 2, 1, 2, 3}, []byte{200, 100, 3, 120, 7, 0x80, 250, 130}, true, 0.1, 0.5, 0.0, 2, 7, uint8(0))
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2}, []byte{5, 5}, false, 1e30, 0.0, 1e-6, 1, 1, uint8(255))
	f.Fuzz(func(t *testing.T, shape, values []byte, kfrog bool, lr, mu, tau float64, sampleSize, batch int, flags uint8) {
		sb, vb := &fuzzBytes{shape}, &fuzzBytes{values}
		l := fuzzLayer("fuzz", sb)
		var o optimizerAPI
		var err error
		if kfrog {
			cfg := DefaultKConfig()
			cfg.LR, cfg.Momentum, cfg.SampleSize, cfg.Iters = lr, mu, sampleSize%8, 1+int(flags%4)
			cfg.Nesterov = flags&16 != 0
			cfg.YMomentum = float64(flags%8) / 8
			cfg.YSampleSize = int(flags>>5) % 4
			cfg.SkipNonFinite = flags&128 != 0
			o, err = NewKFROG(cfg)
		} else {
			cfg := DefaultConfig()
			cfg.LR, cfg.Momentum, cfg.Damping, cfg.SampleSize, cfg.Iters = lr, mu, tau, sampleSize%8, 1+int(flags%4)
			cfg.Nesterov = flags&16 != 0
			cfg.WeightDecay = float64(flags%8) * 0.01
			cfg.ScaleInvariant = flags&32 != 0
			cfg.SkipNonFinite = flags&128 != 0
			cfg.Backend = BackendCPU
			o, err = New(cfg)
		}
		if err != nil {
			return // New's validation is TestBadConfig's; nothing to step
		}
		if l.Validate() != nil {
			if o.AddLayer(l, nil, nil) == nil {
				t.Fatal("invalid layer registered")
			}
			return
		}
		weight := fuzzFloats(vb, l.WeightLen())
		var bias []float32
		if l.Bias != NoBias {
			bias = fuzzFloats(vb, l.Rows())
		}
		if err := o.AddLayer(l, weight, bias); err != nil {
			t.Fatalf("valid layer: %v", err)
		}
		batch = batch % 7
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
			before := stateOf(o)
			wasFinite := allFinite(weight) && allFinite(bias)
			err := o.Step("fuzz", in)
			if err != nil {
				var le *LayerError
				if !errors.As(err, &le) || le.Layer != "fuzz" {
					t.Fatalf("error %v does not name the layer", err)
				}
				if string(stateOf(o)) != string(before) {
					t.Fatalf("failed step changed the state: %v", err)
				}
				finite := allFinite(in.Grad) && allFinite(in.BiasGrad) && allFinite(in.Acts) && allFinite(in.OutGrads) &&
					allFinite(weight) && allFinite(bias)
				if finite && errors.Is(err, ErrNonFinite) && !strings.Contains(err.Error(), "would make") &&
					!strings.Contains(err.Error(), "overflows") {
					t.Fatalf("finite input, non-finite error: %v", err)
				}
				continue
			}
			if wasFinite && (!allFinite(weight) || !allFinite(bias)) {
				t.Fatalf("step succeeded with non-finite weights")
			}
		}
	})
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
