package frog

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

// TestCheckpointResume: training that stops after some steps, saves a
// checkpoint, and resumes in a fresh optimizer (with the caller's saved
// weights) is bit for bit the training that never stopped. The setup
// exercises momentum (Nesterov for FROG), the tau schedule, random
// subsampling, K-FROG's y-average and Y subsample, both bias modes, a plain
// parameter and a learning rate changed by SetLR. (TestSkipNonFinite shows
// that the skip counters are in the checkpoint.)
func TestCheckpointResume(t *testing.T) {
	data := rbData(21, 6)
	for _, kind := range []string{"frog", "kfrog"} {
		t.Run(kind, func(t *testing.T) {
			w := newRBWorld(4)
			o := newOptimizer(t, kind)
			w.register(t, o)
			rbTrain(t, o, data[:3])
			if err := o.SetLR(0.02); err != nil {
				t.Fatal(err)
			}
			ck, err := o.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			saved := newRBWorld(4)
			for _, p := range [][2][]float32{{saved.wConv, w.wConv}, {saved.bConv, w.bConv}, {saved.wLin, w.wLin}, {saved.bLin, w.bLin}, {saved.theta, w.theta}} {
				copy(p[0], p[1])
			}
			rbTrain(t, o, data[3:])

			resumed := newOptimizer(t, kind) // LR 0.05 from its Config: the checkpoint restores 0.02
			saved.register(t, resumed)
			if err := resumed.UnmarshalBinary(ck); err != nil {
				t.Fatal(err)
			}
			rbTrain(t, resumed, data[3:])
			for i, pair := range [][2][]float32{{saved.wConv, w.wConv}, {saved.bConv, w.bConv}, {saved.wLin, w.wLin}, {saved.bLin, w.bLin}, {saved.theta, w.theta}} {
				if !bitsEqual(pair[0], pair[1]) {
					t.Fatalf("tensor %d: resumed training differs from uninterrupted training", i)
				}
			}
			a, _ := o.MarshalBinary()
			b, _ := resumed.MarshalBinary()
			if string(a) != string(b) {
				t.Fatal("the optimizer states differ after resuming")
			}
		})
	}
}

// TestCheckpointDamage: every truncation of a checkpoint, every single bit
// flip, and checkpoints whose registrations do not match give an error
// wrapping ErrCheckpoint and change nothing.
func TestCheckpointDamage(t *testing.T) {
	data := rbData(22, 2)
	for _, kind := range []string{"frog", "kfrog"} {
		t.Run(kind, func(t *testing.T) {
			src := newOptimizer(t, kind)
			newRBWorld(1).register(t, src)
			rbTrain(t, src, data)
			ck, err := src.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			dst := newOptimizer(t, kind)
			newRBWorld(2).register(t, dst)
			rbTrain(t, dst, data[:1])
			before := stateOf(dst)
			check := func(what string, b []byte) {
				t.Helper()
				err := dst.UnmarshalBinary(b)
				if !errors.Is(err, ErrCheckpoint) {
					t.Fatalf("%s: error %v, want ErrCheckpoint", what, err)
				}
				if string(stateOf(dst)) != string(before) {
					t.Fatalf("%s: the state changed", what)
				}
			}
			for n := 0; n < len(ck); n++ {
				check("truncated", ck[:n])
			}
			check("one byte more", append(append([]byte(nil), ck...), 0))
			flipped := append([]byte(nil), ck...)
			for i := range flipped {
				for bit := 0; bit < 8; bit++ {
					flipped[i] ^= 1 << bit
					check("bit flip", flipped)
					flipped[i] ^= 1 << bit
				}
			}

			// Damage behind a valid checksum (a writer's bug, not a disk's):
			// every byte changed, the checksum recomputed. The structure
			// checks must catch what matters and never panic; a change
			// that leaves a valid checkpoint (a momentum value) may load.
			for i := len(checkpointMagic); i < len(ck)-4; i++ {
				for _, x := range []byte{0x01, 0x80, 0xff} {
					b := append([]byte(nil), ck...)
					b[i] ^= x
					binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
					probe := newOptimizer(t, kind)
					newRBWorld(2).register(t, probe)
					pre := stateOf(probe)
					if err := probe.UnmarshalBinary(b); err != nil && string(stateOf(probe)) != string(pre) {
						t.Fatalf("byte %d ^ %#x: error %v and the state changed", i, x, err)
					}
				}
			}

			// Well-formed checkpoints of other registrations.
			mismatch := map[string]func(o optimizerAPI){
				"missing parameter": func(o optimizerAPI) {
					w := newRBWorld(1)
					_ = o.AddLayer(w.conv, w.wConv, w.bConv)
					_ = o.AddLayer(w.lin, w.wLin, w.bLin)
				},
				"other order": func(o optimizerAPI) {
					w := newRBWorld(1)
					_ = o.AddLayer(w.lin, w.wLin, w.bLin)
					_ = o.AddLayer(w.conv, w.wConv, w.bConv)
					_ = o.AddParam("theta", w.theta)
				},
				"other shape": func(o optimizerAPI) {
					w := newRBWorld(1)
					c := w.conv
					c.Padding = [2]int{0, 1}
					_ = o.AddLayer(c, make([]float32, c.WeightLen()), w.bConv)
					_ = o.AddLayer(w.lin, w.wLin, w.bLin)
					_ = o.AddParam("theta", w.theta)
				},
				"other bias mode": func(o optimizerAPI) {
					w := newRBWorld(1)
					l := w.lin
					l.Bias = PlainBias
					_ = o.AddLayer(w.conv, w.wConv, w.bConv)
					_ = o.AddLayer(l, w.wLin, w.bLin)
					_ = o.AddParam("theta", w.theta)
				},
				"parameter length": func(o optimizerAPI) {
					w := newRBWorld(1)
					_ = o.AddLayer(w.conv, w.wConv, w.bConv)
					_ = o.AddLayer(w.lin, w.wLin, w.bLin)
					_ = o.AddParam("theta", w.theta[:4])
				},
				"layer as parameter": func(o optimizerAPI) {
					w := newRBWorld(1)
					_ = o.AddLayer(w.conv, w.wConv, w.bConv)
					_ = o.AddParam("lin", w.wLin)
					_ = o.AddParam("theta", w.theta)
				},
			}
			for name, reg := range mismatch {
				other := newOptimizer(t, kind)
				reg(other)
				b, err := other.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				check(name, b)
			}
			otherKind := "kfrog"
			if kind == "kfrog" {
				otherKind = "frog"
			}
			other := newOptimizer(t, otherKind)
			newRBWorld(1).register(t, other)
			b, _ := other.MarshalBinary()
			check("other optimizer", b)

			// And the intact checkpoint restores.
			if err := dst.UnmarshalBinary(ck); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func ExampleOptimizer_MarshalBinary() {
	cfg := DefaultConfig()
	cfg.Momentum = 0.9
	opt, _ := New(cfg)
	weight := make([]float32, 4*3)
	_ = opt.AddLayer(Linear("fc", 3, 4, NoBias), weight, nil)
	// ... training steps ...
	ck, _ := opt.MarshalBinary() // save ck and weight

	// Later: the same registrations, the saved weights, then the state.
	resumed, _ := New(cfg)
	_ = resumed.AddLayer(Linear("fc", 3, 4, NoBias), weight, nil)
	if err := resumed.UnmarshalBinary(ck); err != nil {
		panic(err)
	}
	// Output:
}
