// Command frogbench times PreconditionRows on the distinct convolutions of
// the CIFAR-10 ResNet-18 (../../../shared/GUIDE.md) and, in the same run,
// measures the machine's float32 FMA peak with an assembly loop, so that
// every figure is also given as a fraction of that peak. The loop is the
// one on the registers of the products' micro-kernel (blas.PeakLoop): on a
// CPU with AVX-512 (unless FROG_ISA=avx2) the 512-bit one, twice the AVX2
// peak where the cores have full-width FMA units; the AVX2 loop's peak is
// then given too. With -backend opencl no peak is measured (the CPU's
// would mean nothing): peak_gflops and the efficiencies are 0, and the
// times include the copies between host and device.
//
//	frogbench [-r 16] [-iters 4] [-layers stem,l1.conv] [-threads 2] [-backend cpu] [-reps 3] [-json]
//
// The total is over the 20 convolutions of the network: each distinct
// shape counts as often as it occurs. GFLOP/s count the nominal 4*N*D*R
// flops of a CG iteration, the reference's work; the solve runs fewer.
// Where it runs on the patches, its products skip the last iteration's
// second product (cg.Curvature): the "work" column (work_gflops and
// work_efficiency in the JSON) counts the flops they do run,
// 4*N*D*R*k - 2*N*D*R. The table marks the layers whose CG runs in the
// points' space (blas.PointsGains), which executes far fewer, and gives
// them no work figure.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/frogopt/frog"
	"github.com/frogopt/frog/asm"
	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/internal/resnet"
)

type layerResult struct {
	Layer      string  `json:"layer"`
	N          int     `json:"n"`
	D          int     `json:"d"`
	Rows       int     `json:"rows"`
	Ms         float64 `json:"ms"`
	GFlops     float64 `json:"gflops"`
	Efficiency float64 `json:"efficiency"`
	// WorkGFlops counts the flops the products run (resnet.Conv.
	// WorkFlops), where CG runs on the patches (every layer on a GPU);
	// WorkEfficiency is that rate over the peak.
	WorkGFlops     float64 `json:"work_gflops,omitempty"`
	WorkEfficiency float64 `json:"work_efficiency,omitempty"`
}

type report struct {
	Backend    string        `json:"backend"`
	Threads    int           `json:"threads"`
	PeakGFlops float64       `json:"peak_gflops"`
	R          int           `json:"r"`
	Iters      int           `json:"iters"`
	Layers     []layerResult `json:"layers"`
	TotalMs    float64       `json:"total_ms"`
	// ISA is the instruction set of the FMA loop that gives PeakGFlops
	// ("avx512", "avx2", or "" without the assembly): that of the cpu
	// backend's micro-kernel.
	ISA string `json:"isa"`
	// Fallback says why the backend asked for did not start (Backend is
	// then the one that ran).
	Fallback string `json:"fallback,omitempty"`
	// PeakAVX2GFlops is the AVX2 loop's peak when PeakGFlops is another's.
	PeakAVX2GFlops float64 `json:"peak_avx2_gflops,omitempty"`
	// PeakBeforeGFlops and PeakAfterGFlops are the two measurements of
	// the peak, before and after the layers; PeakGFlops is the higher.
	// They show how far the machine's speed moved during the run.
	PeakBeforeGFlops float64 `json:"peak_before_gflops,omitempty"`
	PeakAfterGFlops  float64 `json:"peak_after_gflops,omitempty"`
}

func main() {
	r := flag.Int("r", 16, "samples per layer for the Fisher (r)")
	iters := flag.Int("iters", 4, "CG iterations (k)")
	layers := flag.String("layers", "", "comma-separated layer names (default all)")
	threads := flag.Int("threads", runtime.GOMAXPROCS(0), "GOMAXPROCS: cores to use")
	backendName := flag.String("backend", frog.BackendCPU, "backend: "+strings.Join(frog.Backends(), ", "))
	reps := flag.Int("reps", 3, "timed runs per layer after one warm-up; the fastest counts")
	asJSON := flag.Bool("json", false, "print one JSON object instead of the table")
	flag.Parse()
	if err := run(*r, *iters, *layers, *threads, *backendName, *reps, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "frogbench:", err)
		os.Exit(1)
	}
}

func run(r, iters int, layerList string, threads int, backendName string, reps int, asJSON bool) error {
	if threads < 1 || r < 1 || iters < 0 || reps < 1 {
		return fmt.Errorf("-threads, -r and -reps must be positive, -iters non-negative")
	}
	runtime.GOMAXPROCS(threads)
	convs := resnet.Convs
	if layerList != "" {
		convs = nil
		for name := range strings.SplitSeq(layerList, ",") {
			i := slices.IndexFunc(resnet.Convs, func(c resnet.Conv) bool { return c.Name == strings.TrimSpace(name) })
			if i < 0 {
				return fmt.Errorf("unknown layer %q", name)
			}
			convs = append(convs, resnet.Convs[i])
		}
	}
	p, err := frog.NewPreconditioner(backendName)
	if err != nil {
		return err
	}
	defer p.Close()
	if p.Fallback() != "" {
		fmt.Fprintf(os.Stderr, "frogbench: running on %s: %s\n", p.Backend(), p.Fallback())
	}
	rep := report{Backend: p.Backend(), Fallback: p.Fallback(), Threads: threads, R: r, Iters: iters}
	// The peak is measured before and after the layers and the higher
	// figure kept: on a shared machine a single measurement can fall in a
	// burst of someone else's load. It is the CPU's: on another device
	// (opencl) there is none to compare with, and the report gives 0.
	onCPU := p.Backend() == frog.BackendCPU || p.Backend() == frog.BackendPureGo
	loop, flops := blas.PeakLoop()
	if onCPU {
		rep.ISA = blas.MicroKernel()
		rep.PeakBeforeGFlops = fmaPeak(threads, loop, flops)
		rep.PeakGFlops = rep.PeakBeforeGFlops
	}
	for _, c := range convs {
		in, dir := c.Input(r, iters)
		diag := frog.RowDiagnostics{}
		if err := p.Precondition(in, dir, &diag); err != nil {
			return err
		}
		best := time.Duration(1 << 62)
		for i := 0; i < reps; i++ {
			start := time.Now()
			if err := p.Precondition(in, dir, &diag); err != nil {
				return err
			}
			best = min(best, time.Since(start))
		}
		ms := best.Seconds() * 1e3
		res := layerResult{
			Layer: c.Name, N: c.Points(r), D: c.RowLen(), Rows: c.Out,
			Ms: ms, GFlops: c.Flops(r, iters) / best.Seconds() / 1e9,
		}
		// The points' space is the CPU backends' (a GPU runs every layer
		// on the patches).
		if !onCPU || !blas.PointsGains(c.Out, c.RowLen(), c.Points(r), iters) {
			res.WorkGFlops = c.WorkFlops(r, iters) / best.Seconds() / 1e9
		}
		rep.Layers = append(rep.Layers, res)
		rep.TotalMs += ms * float64(c.Count)
	}
	if onCPU {
		rep.PeakAfterGFlops = fmaPeak(threads, loop, flops)
		rep.PeakGFlops = max(rep.PeakGFlops, rep.PeakAfterGFlops)
		if rep.ISA == "avx512" {
			rep.PeakAVX2GFlops = fmaPeak(threads, asm.FMALoop, asm.FMALoopFlops)
		}
		for i := range rep.Layers {
			l := &rep.Layers[i]
			l.Efficiency = l.GFlops / rep.PeakGFlops
			l.WorkEfficiency = l.WorkGFlops / rep.PeakGFlops
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		return enc.Encode(rep)
	}
	isa := rep.ISA
	if isa == "" {
		isa = "pure Go"
	}
	if onCPU {
		fmt.Printf("backend %s, %d threads, r = %d, k = %d, FMA peak %.1f GFLOP/s (%s loop, measured now: %.1f before the layers, %.1f after)\n",
			rep.Backend, threads, r, iters, rep.PeakGFlops, isa, rep.PeakBeforeGFlops, rep.PeakAfterGFlops)
	} else {
		fmt.Printf("backend %s, r = %d, k = %d (times include the copies to and from the device; no peak measured)\n",
			rep.Backend, r, iters)
	}
	if rep.PeakAVX2GFlops != 0 {
		fmt.Printf("AVX2 loop peak %.1f GFLOP/s (the products run %.2fx wider)\n", rep.PeakAVX2GFlops, rep.PeakGFlops/rep.PeakAVX2GFlops)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "layer\tN\tD\tR\tms\tGFLOP/s\t% peak\twork %\t")
	marked := false
	for _, l := range rep.Layers {
		eff, work := "-", "-"
		if onCPU {
			eff = fmt.Sprintf("%.1f", 100*l.Efficiency)
			if l.WorkGFlops == 0 {
				eff, marked = eff+"*", true
			} else {
				work = fmt.Sprintf("%.1f", 100*l.WorkEfficiency)
			}
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%.2f\t%.1f\t%s\t%s\t\n", l.Layer, l.N, l.D, l.Rows, l.Ms, l.GFlops, eff, work)
	}
	w.Flush()
	fmt.Println("GFLOP/s and % peak count the nominal 4*N*D*R flops of every CG iteration; work % the products' own")
	fmt.Println("(4*N*D*R*k - 2*N*D*R: the last iteration runs the first product alone)")
	if marked {
		fmt.Println("* CG in the points' space (blas.PointsGains): far fewer flops than the nominal")
	}
	total := "20 convolutions"
	if layerList != "" {
		total = "the listed layers, each times its count in the network"
	}
	fmt.Printf("total over %s: %.1f ms\n", total, rep.TotalMs)
	return nil
}

// fmaPeak runs an FMA loop (flops a round) on threads goroutines at once
// and returns their combined rate, the best of five rounds.
func fmaPeak(threads int, loop func(int) float32, flops int) float64 {
	const rounds = 1 << 19 // 100 Mflop a goroutine
	best := 0.0
	for i := 0; i < 5; i++ {
		var wg sync.WaitGroup
		start := time.Now()
		for t := 0; t < threads; t++ {
			wg.Go(func() { loop(rounds) })
		}
		wg.Wait()
		best = max(best, float64(threads*rounds*flops)/time.Since(start).Seconds()/1e9)
	}
	return best
}
