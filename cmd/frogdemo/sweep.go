package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
)

// sweepRounds is the hyperparameter sweep of SWEEP.md: in each round the
// same number of configurations for every optimizer, each a set of
// overrides on top of the defaults. Every entry names all the keys the
// sweep varies, so that the grid means the same whatever the defaults are.
// Round 1 spans the usual ranges; rounds 2 and 3 extend the winners of the
// rounds before past the edge of the grid they stood at.
var sweepRounds = []map[string][]string{
	{
		"frog": {
			"lr=0.01,momentum=0.9,r=32,iters=4,damping=1e-3,batch=128",
			"lr=0.02,momentum=0.9,r=32,iters=4,damping=1e-2,batch=128",
			"lr=0.05,momentum=0,r=32,iters=4,damping=1e-3,batch=128",
			"lr=0.01,momentum=0.9,r=16,iters=2,damping=1e-3,batch=128",
			"lr=0.02,momentum=0.9,r=32,iters=4,damping=1e-2,batch=256",
		},
		"sgd": {
			"lr=0.02,momentum=0.9,batch=128",
			"lr=0.05,momentum=0.9,batch=128",
			"lr=0.1,momentum=0.9,batch=128",
			"lr=0.1,momentum=0.9,batch=256",
			"lr=0.2,momentum=0.9,batch=256",
		},
		"adamw": {
			"lr=1e-3,batch=128",
			"lr=2e-3,batch=128",
			"lr=4e-3,batch=128",
			"lr=2e-3,batch=256",
			"lr=4e-3,batch=256",
		},
		"kfrog": {
			"lr=0.01,momentum=0.9,r=64,iters=4,damping=1e-3,batch=128",
			"lr=0.03,momentum=0.9,r=64,iters=4,damping=1e-3,batch=128",
			"lr=0.1,momentum=0.9,r=64,iters=4,damping=1e-3,batch=128",
			"lr=0.03,momentum=0.9,r=32,iters=2,damping=1e-2,batch=128",
			"lr=0.03,momentum=0.9,r=64,iters=4,damping=1e-2,batch=256",
		},
	},
	{
		"frog": {
			"lr=0.04,momentum=0.9,r=32,iters=4,damping=1e-2,batch=128",
			"lr=0.02,momentum=0.9,r=16,iters=2,damping=1e-2,batch=128",
			"lr=0.02,momentum=0.9,r=32,iters=4,damping=1e-1,batch=128",
		},
		"sgd": {
			"lr=0.03,momentum=0.9,batch=128",
			"lr=0.07,momentum=0.9,batch=128",
			"lr=0.03,momentum=0.9,batch=64",
		},
		"adamw": {
			"lr=6e-3,batch=128",
			"lr=8e-3,batch=128",
			"lr=3e-3,batch=64",
		},
		"kfrog": {
			"lr=0.03,momentum=0.9,r=64,iters=4,damping=1e-1,batch=128",
			"lr=0.01,momentum=0.9,r=32,iters=2,damping=1e-2,batch=128",
			"lr=0.05,momentum=0.9,r=64,iters=4,damping=1e-2,batch=128",
		},
	},
	{
		"frog": {
			"lr=0.02,momentum=0.9,r=16,iters=2,damping=1e-2,batch=64",
			"lr=0.02,momentum=0.9,r=32,iters=4,damping=1e-1,batch=64",
		},
		"sgd": {
			"lr=0.015,momentum=0.9,batch=32",
			"lr=0.05,momentum=0.9,batch=64",
		},
		"adamw": {
			"lr=2e-3,batch=32",
			"lr=5e-3,batch=64",
		},
		"kfrog": {
			"lr=0.01,momentum=0.9,r=32,iters=2,damping=1e-2,batch=64",
			"lr=0.03,momentum=0.9,r=32,iters=2,damping=1e-2,batch=64",
		},
	},
	{
		// At the full budget of a default run (-train 60000 -test 10000
		// -epochs 3), beside the winners of rounds 1 to 3.
		"frog": {
			"lr=0.01,momentum=0.9,r=16,iters=2,damping=1e-2,batch=64",
			"lr=0.01,momentum=0.9,r=16,iters=2,damping=1e-2,batch=128",
		},
		"sgd": {
			"lr=0.03,momentum=0.9,batch=32",
			"lr=0.03,momentum=0.9,batch=64",
		},
		"adamw": {
			"lr=2e-3,batch=32",
			"lr=2e-3,batch=64",
		},
	},
}

// sweepConfig is one configuration of the sweep.
type sweepConfig struct {
	label, spec string
}

// sweepGrid lists an optimizer's configurations of round (0: every round).
func sweepGrid(name string, round int) []sweepConfig {
	var out []sweepConfig
	for r, grid := range sweepRounds {
		if round != 0 && round != r+1 {
			continue
		}
		for i, spec := range grid[name] {
			out = append(out, sweepConfig{fmt.Sprintf("%s#%d.%d", name, r+1, i+1), spec})
		}
	}
	return out
}

// sweepResult is one configuration's outcome.
type sweepResult struct {
	Optimizer, Spec string
	Run             *Run
}

// timeTo is the CPU time to reach acc, +Inf when not reached. The sweep
// ranks by CPU time: the machine it ran on was shared, and the wall clock
// counted the waits for a core.
func (s sweepResult) timeTo(acc float64) float64 {
	if p, ok := s.Run.Reach(acc); ok {
		return p.CPUTime
	}
	return math.Inf(1)
}

// runSweep trains every configuration of the grid of each optimizer once
// from the same seed and prints, per optimizer, the configurations ranked
// by time to the highest accuracy reached.
func runSweep(tr *Trainer, names []string, base map[string]Hyper, o *options, stdout io.Writer) error {
	type job struct {
		name string
		c    sweepConfig
		h    Hyper
	}
	var jobs []job
	total := 0
	for _, name := range names {
		for _, c := range sweepGrid(name, o.round) {
			h, err := sweepHyper(base, name, c.spec)
			if err != nil {
				return err
			}
			jobs = append(jobs, job{name, c, h})
			total += tr.StepsFor(int(h["batch"])) * int(h["batch"])
		}
	}
	tr.Progress = NewProgress(stdout, total)
	init := NewModel(tr.Arch, o.seed)
	var all []sweepResult
	var runs []*Run
	for _, j := range jobs {
		r, err := tr.Run(j.name, j.h, init, o.seed, j.c.label)
		if err != nil {
			return err
		}
		all = append(all, sweepResult{j.name, j.c.label + " " + j.c.spec, r})
		runs = append(runs, r)
	}
	fmt.Fprintf(stdout, "\nSweep: %g epochs per configuration, seed %d; training CPU time, wall-clock time in brackets (epochs), to each test accuracy\n", o.epochs, o.seed)
	for _, name := range names {
		var mine []sweepResult
		for _, s := range all {
			if s.Optimizer == name {
				mine = append(mine, s)
			}
		}
		rankSweep(mine)
		fmt.Fprintf(stdout, "\n%s:\n", name)
		writeSweepTable(stdout, mine)
	}
	if o.out == "" {
		return nil
	}
	res := &Results{Command: "frogdemo " + strings.Join(os.Args[1:], " "), Train: tr.Train.Len(), Test: tr.Test.Len(),
		Epochs: o.epochs, Schedule: tr.Schedule, Arch: tr.Arch, Thresholds: Thresholds, Runs: runs}
	return WriteOutputs(filepath.Clean(o.out), res, names, o.png)
}

func sweepHyper(base map[string]Hyper, name, spec string) (Hyper, error) {
	hs := map[string]Hyper{name: base[name].Clone()}
	var parts []string
	for _, kv := range strings.Split(spec, ",") {
		parts = append(parts, name+"."+kv)
	}
	if err := applyOverrides(hs, strings.Join(parts, ",")); err != nil {
		return nil, fmt.Errorf("sweep grid: %w", err)
	}
	return hs[name], nil
}

// rankSweep sorts by the time to the highest threshold the best
// configuration reached, then by the lower thresholds, then by the final
// accuracy.
func rankSweep(rs []sweepResult) {
	sort.SliceStable(rs, func(i, j int) bool {
		for k := len(Thresholds) - 1; k >= 0; k-- {
			ti, tj := rs[i].timeTo(Thresholds[k]), rs[j].timeTo(Thresholds[k])
			if ti != tj {
				return ti < tj
			}
		}
		return rs[i].Run.Final().TestAcc > rs[j].Run.Final().TestAcc
	})
}

func writeSweepTable(w io.Writer, rs []sweepResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	head := []string{"rank", "configuration"}
	for _, thr := range Thresholds {
		head = append(head, fmt.Sprintf("%g %%", thr))
	}
	head = append(head, "final acc", "final train loss", "CPU s/epoch")
	fmt.Fprintln(tw, "| "+strings.Join(head, "\t| ")+"\t|")
	fmt.Fprintln(tw, strings.Repeat("|---\t", len(head))+"|")
	for i, s := range rs {
		cells := []string{fmt.Sprint(i + 1), s.Spec}
		for _, thr := range Thresholds {
			if p, ok := s.Run.Reach(thr); ok {
				cells = append(cells, fmt.Sprintf("%.1fs [%.1fs] (%.2f ep)", p.CPUTime, p.Time, p.Epoch))
			} else {
				cells = append(cells, "-")
			}
		}
		f := s.Run.Final()
		loss := fmt.Sprintf("%.4f", f.TrainLoss)
		if s.Run.Diverged {
			loss = "diverged"
		}
		perEpoch := 0.0
		if f.Epoch > 0 {
			perEpoch = f.CPUTime / f.Epoch
		}
		cells = append(cells, fmt.Sprintf("%.2f %%", f.TestAcc), loss, fmt.Sprintf("%.1f", perEpoch))
		fmt.Fprintln(tw, "| "+strings.Join(cells, "\t| ")+"\t|")
	}
	tw.Flush()
}
