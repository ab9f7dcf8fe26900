package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"
)

// Schedule is the step-wise learning rate: the peak rate, multiplied by
// Factor at each fraction of the run in Drops.
type Schedule struct {
	Drops  []float64 `json:"drops"`
	Factor float64   `json:"factor"`
}

// At returns the rate multiplier at step of total.
func (s Schedule) At(step, total int) float64 {
	f := 1.0
	for _, d := range s.Drops {
		if float64(step) >= d*float64(total) {
			f *= s.Factor
		}
	}
	return f
}

// Point is one evaluation.
type Point struct {
	Step  int     `json:"step"`
	Epoch float64 `json:"epoch"`
	// Time is the training wall-clock time in seconds, evaluations excluded.
	Time float64 `json:"time_s"`
	// CPUTime is the process CPU time of training in seconds (all cores
	// together), evaluations excluded: less sensitive than Time to other
	// work on a shared machine.
	CPUTime   float64 `json:"cpu_time_s"`
	LR        float64 `json:"lr"`
	TrainLoss float64 `json:"train_loss"` // mean minibatch loss since the last evaluation
	TestLoss  float64 `json:"test_loss"`
	TestAcc   float64 `json:"test_acc"` // percent
}

// Run is the record of training one optimizer from one seed.
type Run struct {
	Optimizer string  `json:"optimizer"`
	Seed      uint64  `json:"seed"`
	Hyper     Hyper   `json:"hyper"`
	Steps     int     `json:"steps"`
	Epochs    float64 `json:"epochs"`
	Diverged  bool    `json:"diverged"`
	Points    []Point `json:"points"`
}

// Final is the last evaluation, or the zero Point.
func (r *Run) Final() Point {
	if len(r.Points) == 0 {
		return Point{}
	}
	return r.Points[len(r.Points)-1]
}

// Reach returns the first evaluation at or above acc percent.
func (r *Run) Reach(acc float64) (Point, bool) {
	for _, p := range r.Points {
		if p.TestAcc >= acc {
			return p, true
		}
	}
	return Point{}, false
}

// Trainer holds what every run shares: the data, the schedule, the
// evaluation cadence and the progress report.
type Trainer struct {
	Train, Test   *Dataset
	Epochs        float64
	EvalsPerEpoch float64
	Schedule      Schedule
	Arch          Arch
	Log           io.Writer
	Progress      *Progress

	evalWS *Workspace
}

const evalBatch = 500

// StepsFor is the number of steps of a run with the given batch size.
func (t *Trainer) StepsFor(batch int) int {
	perEpoch := t.Train.Len() / batch
	return max(1, int(math.Round(t.Epochs*float64(perEpoch))))
}

// dataOrder returns the source of a run's permutations of the training
// set, one per epoch: it depends on the seed alone.
func dataOrder(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x0dde)) }

// Run trains a copy of init with the named optimizer. The data order
// depends on the seed only, so every optimizer sees the same samples in the
// same order (in batches of its own size).
func (t *Trainer) Run(name string, h Hyper, init *Model, seed uint64, label string) (*Run, error) {
	batch := int(h["batch"])
	if batch <= 0 || batch > t.Train.Len() {
		return nil, fmt.Errorf("%s: batch %d does not fit a training set of %d", name, batch, t.Train.Len())
	}
	model := init.Clone()
	opt, err := NewOptimizer(name, h, model, seed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ws := NewWorkspace(model, batch, true)
	if t.evalWS == nil {
		t.evalWS = NewWorkspace(model, evalBatch, false)
	}
	n, pix := t.Train.Len(), imageSide*imageSide
	perEpoch := n / batch
	total := t.StepsFor(batch)
	// Evaluations at evenly spaced steps, the last one at the end.
	evals := max(1, int(math.Round(t.EvalsPerEpoch*float64(total)/float64(perEpoch))))
	evalAt := func(k int) int { return int(math.Round(float64(k) * float64(total) / float64(evals))) }
	nextEval := 1
	order := dataOrder(seed)
	var perm []int
	labels := make([]uint8, batch)
	run := &Run{Optimizer: name, Seed: seed, Hyper: h, Steps: total, Epochs: float64(total) / float64(perEpoch)}

	var trained, cpu time.Duration
	var lossSum float64
	var lossCount int
	for step := 0; step < total; step++ {
		start, cpuStart := time.Now(), processCPUTime()
		if step%perEpoch == 0 {
			perm = order.Perm(n)
		}
		lr := h["lr"] * t.Schedule.At(step, total)
		if err := opt.SetLR(lr); err != nil {
			return nil, err
		}
		first := (step % perEpoch) * batch
		for i, idx := range perm[first : first+batch] {
			copy(ws.x[i*pix:(i+1)*pix], t.Train.Images[idx*pix:(idx+1)*pix])
			labels[i] = t.Train.Labels[idx]
		}
		model.Forward(ws, batch)
		loss, _ := Loss(ws, labels, true)
		model.Backward(ws)
		if err := opt.Step(ws); err != nil {
			return nil, fmt.Errorf("%s step %d: %w", name, step, err)
		}
		trained += time.Since(start)
		cpu += processCPUTime() - cpuStart
		lossSum += loss
		lossCount++
		diverged := math.IsNaN(loss) || math.IsInf(loss, 0) || loss > 1e3
		if step+1 < evalAt(nextEval) && !diverged {
			continue
		}
		for evalAt(nextEval) <= step+1 {
			nextEval++
		}
		testLoss, acc := t.Evaluate(model)
		p := Point{Step: step + 1, Epoch: float64(step+1) / float64(perEpoch), Time: trained.Seconds(), CPUTime: cpu.Seconds(),
			LR: lr, TrainLoss: lossSum / float64(lossCount), TestLoss: testLoss, TestAcc: acc}
		lossSum, lossCount = 0, 0
		if diverged {
			run.Diverged = true
			p.TrainLoss, p.TestLoss = math.MaxFloat32, math.MaxFloat32
		}
		run.Points = append(run.Points, p)
		t.Progress.Done(label, step+1, total, batch, p)
		if diverged {
			t.Progress.Skip((total - step - 1) * batch)
			fmt.Fprintf(t.Log, "%s diverged at step %d (loss %v); stopping this run\n", label, step+1, loss)
			break
		}
	}
	return run, nil
}

// Evaluate returns the mean test loss and the test accuracy in percent.
func (t *Trainer) Evaluate(m *Model) (loss float64, acc float64) {
	ws, pix := t.evalWS, imageSide*imageSide
	correct := 0
	for lo := 0; lo < t.Test.Len(); lo += evalBatch {
		b := min(evalBatch, t.Test.Len()-lo)
		copy(ws.x, t.Test.Images[lo*pix:(lo+b)*pix])
		m.Forward(ws, b)
		l, c := Loss(ws, t.Test.Labels[lo:lo+b], false)
		loss += l * float64(b)
		correct += c
	}
	n := float64(t.Test.Len())
	return loss / n, 100 * float64(correct) / n
}

// Progress prints a line per evaluation with the elapsed time and an
// estimate of the time left for the whole command, from the training
// samples processed so far (runs with different batch sizes take
// different numbers of steps for the same work).
type Progress struct {
	Out          io.Writer
	TotalSamples int
	start        time.Time
	done         int
	lastDone     map[string]int
}

// NewProgress starts the clock for a command that trains on totalSamples
// samples (steps times batch size, summed over the runs).
func NewProgress(out io.Writer, totalSamples int) *Progress {
	return &Progress{Out: out, TotalSamples: totalSamples, start: time.Now(), lastDone: map[string]int{}}
}

// Done records that run label has finished step of its total steps of
// batch samples each, at p.
func (pr *Progress) Done(label string, step, total, batch int, p Point) {
	pr.done += step*batch - pr.lastDone[label]
	pr.lastDone[label] = step * batch
	elapsed := time.Since(pr.start)
	eta := time.Duration(float64(elapsed) / float64(pr.done) * float64(pr.TotalSamples-pr.done))
	fmt.Fprintf(pr.Out, "%-14s epoch %5.2f  step %5d/%d  lr %-8.3g train loss %.4f  test loss %.4f  acc %6.2f%%  train time %6.1fs | elapsed %s  ETA %s\n",
		label, p.Epoch, step, total, p.LR, p.TrainLoss, p.TestLoss, p.TestAcc, p.Time, roundDur(elapsed), roundDur(eta))
}

// Skip removes the samples of a run that stopped early from the estimate.
func (pr *Progress) Skip(samples int) { pr.TotalSamples -= samples }

func roundDur(d time.Duration) time.Duration { return d.Round(time.Second) }
