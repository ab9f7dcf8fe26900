package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeIDX writes a gzipped IDX file of unsigned bytes.
func writeIDX(t *testing.T, path string, dims []int, data []byte) {
	t.Helper()
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	z.Write([]byte{0, 0, 8, byte(len(dims))})
	for _, d := range dims {
		binary.Write(z, binary.BigEndian, uint32(d))
	}
	z.Write(data)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeMNIST writes a small learnable data set in the MNIST file layout: the
// label is drawn as a bright bar at a row that depends on it.
func fakeMNIST(t *testing.T, train, test int) string {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(9, 9))
	for i, n := range []int{train, test} {
		images := make([]byte, n*imageSide*imageSide)
		labels := make([]byte, n)
		for s := range labels {
			labels[s] = byte(rng.IntN(classes))
			img := images[s*imageSide*imageSide:]
			for x := 4; x < 24; x++ {
				img[(2+2*int(labels[s]))*imageSide+x] = 255
			}
			for p := 0; p < 20; p++ {
				img[rng.IntN(imageSide*imageSide)] = byte(rng.IntN(256))
			}
		}
		writeIDX(t, filepath.Join(dir, mnistFiles[2*i]), []int{n, imageSide, imageSide}, images)
		writeIDX(t, filepath.Join(dir, mnistFiles[2*i+1]), []int{n}, labels)
	}
	return dir
}

// TestRunWritesOutputs runs the whole command on a small fake data set
// with every optimizer and two seeds and checks the table, the plots and
// the JSON.
func TestRunWritesOutputs(t *testing.T) {
	data, out := fakeMNIST(t, 256, 100), t.TempDir()
	var stdout bytes.Buffer
	args := []string{"-data", data, "-out", out, "-epochs", "2", "-evals", "2", "-seeds", "2", "-kfrog",
		"-hp", "frog.r=16,frog.lr=0.01,kfrog.r=16,kfrog.lr=0.01"}
	if err := run(args, &stdout); err != nil {
		t.Fatalf("run: %v\n%s", err, stdout.String())
	}
	text := stdout.String()
	for _, want := range []string{"| frog ", "| sgd ", "| adamw ", "| kfrog ", "97 %", "99 %", "ETA", "medians over 2 seeds"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if md, err := os.ReadFile(filepath.Join(out, "results.md")); err != nil || !bytes.Contains(md, []byte("| frog ")) {
		t.Errorf("results.md lacks the table (%v)", err)
	}
	for _, f := range []string{"loss.svg", "accuracy.svg"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil || !bytes.Contains(b, []byte("<svg")) {
			t.Errorf("%s: not an SVG (%v)", f, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 8 || len(res.Summary) != 4 || len(res.SummaryCPU) != 4 {
		t.Fatalf("results.json: %d runs, %d summary rows, %d CPU rows; want 8, 4, 4", len(res.Runs), len(res.Summary), len(res.SummaryCPU))
	}
	for _, r := range res.Runs {
		// 256/128 = 2 steps an epoch, two evaluations an epoch, two epochs.
		if len(r.Points) != 4 || r.Diverged {
			t.Errorf("%s seed %d: %d points (diverged %v), want 4", r.Optimizer, r.Seed, len(r.Points), r.Diverged)
		}
		last := 0.0
		for _, p := range r.Points {
			if p.Time < last || math.IsNaN(p.TrainLoss) || p.TestAcc < 0 || p.TestAcc > 100 {
				t.Errorf("%s: bad point %+v", r.Optimizer, p)
			}
			last = p.Time
		}
	}
}

// TestSameStartSameOrder checks that every optimizer starts from the
// weights it is given and sees the training data in the seed's order: with
// lr 0 the weights do not move, so the first evaluation's test loss is that
// of the initial model, the first training loss is that of the seed's first
// batch, and SGD and AdamW report identical losses.
func TestSameStartSameOrder(t *testing.T) {
	train, test, err := LoadMNIST(fakeMNIST(t, 256, 100))
	if err != nil {
		t.Fatal(err)
	}
	// Two steps an epoch and an evaluation after each.
	const batch = 128
	tr := &Trainer{Train: train, Test: test, Epochs: 1, EvalsPerEpoch: 2, Schedule: Schedule{Factor: 1},
		Arch: DefaultArch, Log: &bytes.Buffer{}, Progress: NewProgress(&bytes.Buffer{}, 8*batch)}
	init := NewModel(tr.Arch, 3)
	h := DefaultHyper("sgd")
	h["lr"], h["batch"] = 0, batch
	a, err := tr.Run("sgd", h.Clone(), init, 3, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.Run("adamw", Hyper{"batch": batch, "lr": 0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "wd": 0}, init, 3, "b")
	if err != nil {
		t.Fatal(err)
	}
	if a.Final().TrainLoss != b.Final().TrainLoss || a.Final().TestAcc != b.Final().TestAcc {
		t.Errorf("same weights and order, different results: %+v vs %+v", a.Final(), b.Final())
	}
	if loss, acc := tr.Evaluate(init); a.Points[0].TestLoss != loss || a.Points[0].TestAcc != acc {
		t.Errorf("first evaluation: test loss %v, accuracy %v; the initial model has %v, %v",
			a.Points[0].TestLoss, a.Points[0].TestAcc, loss, acc)
	}
	// The first batch of seed 3, and of seed 4 for contrast.
	firstLoss := func(seed uint64) float64 {
		ws, pix := NewWorkspace(init, batch, false), imageSide*imageSide
		labels := make([]uint8, batch)
		for i, idx := range dataOrder(seed).Perm(train.Len())[:batch] {
			copy(ws.x[i*pix:(i+1)*pix], train.Images[idx*pix:(idx+1)*pix])
			labels[i] = train.Labels[idx]
		}
		init.Forward(ws, batch)
		l, _ := Loss(ws, labels, false)
		return l
	}
	if want := firstLoss(3); a.Points[0].TrainLoss != want || b.Points[0].TrainLoss != want {
		t.Errorf("first training loss %v (sgd), %v (adamw); seed 3's first batch has %v", a.Points[0].TrainLoss, b.Points[0].TrainLoss, want)
	}
	if firstLoss(3) == firstLoss(4) {
		t.Errorf("seeds 3 and 4 give the same first batch loss")
	}
}

// TestDataOrder checks that the order of the training data follows the
// seed: the same from run to run, different between seeds.
func TestDataOrder(t *testing.T) {
	const n = 1000
	a, b, c := dataOrder(1), dataOrder(1), dataOrder(2)
	for epoch := 0; epoch < 2; epoch++ {
		pa, pb, pc := a.Perm(n), b.Perm(n), c.Perm(n)
		if !slices.Equal(pa, pb) {
			t.Errorf("epoch %d: seed 1 gives two orders", epoch)
		}
		if slices.Equal(pa, pc) {
			t.Errorf("epoch %d: seeds 1 and 2 give the same order", epoch)
		}
	}
}

func TestMissingDataIsAClearError(t *testing.T) {
	_, _, err := LoadMNIST(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "train-images-idx3-ubyte.gz") {
		t.Errorf("error %v does not name the missing file", err)
	}
}

func TestOverrides(t *testing.T) {
	hs := map[string]Hyper{"frog": DefaultHyper("frog"), "sgd": DefaultHyper("sgd")}
	if err := applyOverrides(hs, "frog.lr=0.5, sgd.batch=64"); err != nil {
		t.Fatal(err)
	}
	if hs["frog"]["lr"] != 0.5 || hs["sgd"]["batch"] != 64 {
		t.Errorf("overrides not applied: %v %v", hs["frog"], hs["sgd"])
	}
	for _, bad := range []string{"frog.nope=1", "adam.lr=1", "frog.lr", "frog.lr=x"} {
		if err := applyOverrides(hs, bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSummaryMedians(t *testing.T) {
	mk := func(seed uint64, times ...float64) *Run {
		r := &Run{Optimizer: "x", Seed: seed}
		for i, tm := range times {
			r.Points = append(r.Points, Point{Time: tm, CPUTime: 2 * tm, Epoch: float64(i + 1), TestAcc: 96.5 + float64(i)})
		}
		return r
	}
	// Seed 1 reaches 97 % at 1s and 98 and 98.5 % at 2s; seed 2 reaches 97 %
	// at 3s and no more; seed 3 reaches 97 % at 5s and 98 and 98.5 % at 6s.
	runs := []*Run{mk(1, 0.5, 1, 2), mk(2, 2, 3), mk(3, 4, 5, 6)}
	s := Summarize([]string{"x"}, runs, WallClock)[0]
	if *s.TimeTo[0] != 3 || *s.TimeTo[1] != 6 || *s.TimeTo[2] != 6 || s.TimeTo[3] != nil {
		t.Errorf("medians: 97 %% %v, 98 %% %v, 98.5 %% %v, 99 %% %v", *s.TimeTo[0], *s.TimeTo[1], *s.TimeTo[2], s.TimeTo[3])
	}
	if s.ReachedBy[1] != 2 {
		t.Errorf("98 %% reached by %d seeds, want 2", s.ReachedBy[1])
	}
	if c := Summarize([]string{"x"}, runs, CPUClock)[0]; *c.TimeTo[0] != 6 {
		t.Errorf("CPU median to 97 %%: %v, want 6", *c.TimeTo[0])
	}
}

// TestPresets checks what -quick and -sweep fill in, that explicit flags
// win over them, and that the two together are refused.
func TestPresets(t *testing.T) {
	for _, c := range []struct {
		args          []string
		epochs, evals float64
		train, test   int
	}{
		{nil, 3, 6, 0, 0},
		{[]string{"-quick"}, 1, 8, 8192, 2000},
		{[]string{"-sweep"}, 1, 6, 30000, 5000},
		{[]string{"-quick", "-epochs", "2", "-train", "100"}, 2, 8, 100, 2000},
	} {
		o, err := parseFlags(c.args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if o.epochs != c.epochs || o.evals != c.evals || o.trainN != c.train || o.testN != c.test {
			t.Errorf("%v: epochs %g, evals %g, train %d, test %d; want %g, %g, %d, %d",
				c.args, o.epochs, o.evals, o.trainN, o.testN, c.epochs, c.evals, c.train, c.test)
		}
	}
	if _, err := parseFlags([]string{"-quick", "-sweep"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "-quick and -sweep") {
		t.Errorf("-quick -sweep: error %v", err)
	}
}

// TestSweepRuns runs one round of the sweep on fake data and checks that
// every configuration is ranked.
func TestSweepRuns(t *testing.T) {
	var stdout bytes.Buffer
	args := []string{"-data", fakeMNIST(t, 256, 100), "-sweep", "-round", "4", "-opt", "frog,sgd", "-train", "256", "-test", "100"}
	if err := run(args, &stdout); err != nil {
		t.Fatalf("run: %v\n%s", err, stdout.String())
	}
	for _, want := range []string{"frog#4.1 ", "frog#4.2 ", "sgd#4.1 ", "sgd#4.2 ", "| rank "} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
}
