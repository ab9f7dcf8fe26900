package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Thresholds are the test accuracies (percent) the table reports.
var Thresholds = []float64{97, 98, 98.5, 99}

// median of xs, +Inf entries included (a run that never reached a
// threshold counts as slower than any that did).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Clock picks the time of a measurement: the wall clock (Point.Time) or
// the process CPU time (Point.CPUTime).
type Clock struct {
	Name string
	Of   func(Point) float64
}

var (
	WallClock = Clock{"wall-clock", func(p Point) float64 { return p.Time }}
	CPUClock  = Clock{"CPU", func(p Point) float64 { return p.CPUTime }}
)

// Summary is one optimizer's row of the table, medians over seeds.
type Summary struct {
	Optimizer string `json:"optimizer"`
	Clock     string `json:"clock"`
	Seeds     int    `json:"seeds"`
	// TimeTo and EpochsTo hold, per threshold, the median seconds and
	// epochs to reach it; null when the median run did not reach it.
	TimeTo   []*float64 `json:"time_to_s"`
	EpochsTo []*float64 `json:"epochs_to"`
	// ReachedBy counts the seeds that reached each threshold.
	ReachedBy   []int   `json:"reached_by"`
	FinalAcc    float64 `json:"final_acc"`
	TotalTime   float64 `json:"total_time_s"`
	SecPerEpoch float64 `json:"s_per_epoch"`
}

// Summarize builds the table rows in the order of names, with times from
// the given clock.
func Summarize(names []string, runs []*Run, clock Clock) []Summary {
	var out []Summary
	for _, name := range names {
		var mine []*Run
		for _, r := range runs {
			if r.Optimizer == name {
				mine = append(mine, r)
			}
		}
		if len(mine) == 0 {
			continue
		}
		s := Summary{Optimizer: name, Clock: clock.Name, Seeds: len(mine)}
		var finals, totals, perEpoch []float64
		for _, r := range mine {
			f := r.Final()
			finals = append(finals, f.TestAcc)
			totals = append(totals, clock.Of(f))
			if f.Epoch > 0 {
				perEpoch = append(perEpoch, clock.Of(f)/f.Epoch)
			}
		}
		s.FinalAcc, s.TotalTime, s.SecPerEpoch = median(finals), median(totals), median(perEpoch)
		for _, thr := range Thresholds {
			var times, epochs []float64
			reached := 0
			for _, r := range mine {
				if p, ok := r.Reach(thr); ok {
					times, epochs = append(times, clock.Of(p)), append(epochs, p.Epoch)
					reached++
				} else {
					times, epochs = append(times, math.Inf(1)), append(epochs, math.Inf(1))
				}
			}
			s.ReachedBy = append(s.ReachedBy, reached)
			s.TimeTo = append(s.TimeTo, finite(median(times)))
			s.EpochsTo = append(s.EpochsTo, finite(median(epochs)))
		}
		out = append(out, s)
	}
	return out
}

func finite(v float64) *float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return nil
	}
	return &v
}

// WriteTable prints the time (and epochs) to each threshold, the final
// accuracy and the training time, as a Markdown table.
func WriteTable(w io.Writer, rows []Summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	head := []string{"optimizer"}
	for _, thr := range Thresholds {
		head = append(head, fmt.Sprintf("%g %%", thr))
	}
	head = append(head, "final acc", "train time", "s/epoch")
	fmt.Fprintln(tw, "| "+strings.Join(head, "\t| ")+"\t|")
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
	}
	fmt.Fprintln(tw, "|"+strings.Join(sep, "\t|")+"\t|")
	for _, s := range rows {
		cells := []string{s.Optimizer}
		for i := range Thresholds {
			cell := "-"
			if s.TimeTo[i] != nil {
				cell = fmt.Sprintf("%.1fs (%.2f ep)", *s.TimeTo[i], *s.EpochsTo[i])
			}
			if s.Seeds > 1 {
				cell += fmt.Sprintf(" [%d/%d]", s.ReachedBy[i], s.Seeds)
			}
			cells = append(cells, cell)
		}
		cells = append(cells, fmt.Sprintf("%.2f %%", s.FinalAcc), fmt.Sprintf("%.1fs", s.TotalTime), fmt.Sprintf("%.1f", s.SecPerEpoch))
		fmt.Fprintln(tw, "| "+strings.Join(cells, "\t| ")+"\t|")
	}
	tw.Flush()
}

// Results is the JSON file: the command's settings and every measurement.
type Results struct {
	Command    string           `json:"command"`
	Device     string           `json:"device"`
	Train      int              `json:"train_samples"`
	Test       int              `json:"test_samples"`
	Epochs     float64          `json:"epochs"`
	Schedule   Schedule         `json:"schedule"`
	Arch       Arch             `json:"arch"`
	Thresholds []float64        `json:"thresholds"`
	Hyper      map[string]Hyper `json:"hyper"`
	Summary    []Summary        `json:"summary"`
	SummaryCPU []Summary        `json:"summary_cpu,omitempty"`
	Runs       []*Run           `json:"runs"`
	// Procs is GOMAXPROCS: the CPU times add up this many cores.
	Procs int `json:"gomaxprocs,omitempty"`
}

// WriteOutputs writes results.json, loss.svg and accuracy.svg under dir,
// and PNG copies of the plots when png is set.
func WriteOutputs(dir string, res *Results, names []string, png bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if res.Summary != nil {
		if err := writeMarkdown(filepath.Join(dir, "results.md"), res); err != nil {
			return err
		}
	}
	exts := []string{".svg"}
	if png {
		exts = append(exts, ".png")
	}
	for _, ext := range exts {
		if err := plotRuns(filepath.Join(dir, "loss"+ext), res.Runs, names, "MNIST training loss (mean of the minibatches between evaluations)", "training loss", true,
			func(p Point) float64 { return p.TrainLoss }); err != nil {
			return err
		}
		if err := plotRuns(filepath.Join(dir, "accuracy"+ext), res.Runs, names, "MNIST test accuracy", "test accuracy (%)", false,
			func(p Point) float64 { return p.TestAcc }); err != nil {
			return err
		}
	}
	return nil
}

// accuracyFloor is the bottom of the accuracy plot: the interesting part
// of an MNIST accuracy curve lies above it, and points below are left out.
const accuracyFloor = 90

// plotRuns draws one line per run against training wall-clock time, one
// color per optimizer (every seed of an optimizer in its color).
func plotRuns(path string, runs []*Run, names []string, title, ylabel string, logY bool, value func(Point) float64) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "training wall-clock time (s)"
	p.Y.Label.Text = ylabel
	// Loss curves fall and accuracy curves rise: keep the legend where
	// the curves are not.
	p.Legend.Top = logY
	p.X.Min = 0
	p.Add(plotter.NewGrid())
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = ticks125{}
	}
	lo := math.Inf(1)
	for i, name := range names {
		col := plotutil.Color(i)
		first := true
		for _, r := range runs {
			if r.Optimizer != name {
				continue
			}
			var xy plotter.XYs
			for _, pt := range r.Points {
				v := value(pt)
				if r.Diverged && v >= math.MaxFloat32 {
					continue
				}
				if logY && v <= 0 || !logY && v < accuracyFloor {
					continue
				}
				xy = append(xy, plotter.XY{X: pt.Time, Y: v})
				lo = math.Min(lo, v)
			}
			if len(xy) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(xy)
			if err != nil {
				return err
			}
			line.Color, line.Width = col, vg.Points(1.5)
			points.Color, points.Shape, points.Radius = col, draw.CircleGlyph{}, vg.Points(1.5)
			p.Add(line, points)
			if first {
				p.Legend.Add(name, line)
				first = false
			}
		}
	}
	if !logY && !math.IsInf(lo, 1) {
		p.Y.Min = math.Max(lo, accuracyFloor)
		p.Y.Max = 100
		for _, thr := range Thresholds {
			ref, err := plotter.NewLine(plotter.XYs{{X: 0, Y: thr}, {X: maxTime(runs), Y: thr}})
			if err != nil {
				return err
			}
			ref.Color, ref.Dashes = color.Gray{Y: 160}, []vg.Length{vg.Points(3), vg.Points(3)}
			p.Add(ref)
		}
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

func maxTime(runs []*Run) float64 {
	t := 0.0
	for _, r := range runs {
		t = math.Max(t, r.Final().Time)
	}
	return t
}

// writeMarkdown writes the tables, the command and the hyperparameters of
// a comparison, for the documentation.
func writeMarkdown(path string, res *Results) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# frogdemo results\n\nCommand: `%s`\n\n", res.Command)
	fmt.Fprintf(&b, "Machine: %s. MNIST, %d training and %d test images, %g epochs per optimizer, learning rate times %g at %v of each run.\n\n",
		res.Device, res.Train, res.Test, res.Epochs, res.Schedule.Factor, res.Schedule.Drops)
	seeds := 0
	if len(res.Summary) > 0 {
		seeds = res.Summary[0].Seeds
	}
	note := ""
	if seeds > 1 {
		note = fmt.Sprintf(", medians over %d seeds ([k/N]: the seeds that reached it)", seeds)
	}
	fmt.Fprintf(&b, "Training wall-clock time to reach each test accuracy, epochs in brackets%s; evaluations excluded; '-': not reached:\n\n", note)
	WriteTable(&b, res.Summary)
	if res.SummaryCPU != nil {
		fmt.Fprintf(&b, "\nThe same in process CPU time (%s), less sensitive to other load on a shared machine:\n\n", coresTogether(res.Procs))
		WriteTable(&b, res.SummaryCPU)
	}
	fmt.Fprintf(&b, "\nHyperparameters:\n\n")
	for _, s := range res.Summary {
		fmt.Fprintf(&b, "- %s: `%s`\n", s.Optimizer, res.Hyper[s.Optimizer])
	}
	b.WriteString("\n![training loss](loss.svg)\n\n![test accuracy](accuracy.svg)\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// ticks125 marks a logarithmic axis at 1, 2 and 5 times the powers of ten,
// with labels, and at the other integer multiples without.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	if lo <= 0 || hi <= lo {
		return nil
	}
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		dec := math.Pow(10, e)
		for m := 1; m <= 9; m++ {
			v := float64(m) * dec
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', 3, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// coresTogether says over how many cores a process CPU time adds up.
func coresTogether(procs int) string {
	if procs <= 0 {
		return "the cores of GOMAXPROCS together"
	}
	return fmt.Sprintf("the %d cores of GOMAXPROCS together", procs)
}
