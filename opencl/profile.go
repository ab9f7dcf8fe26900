//go:build opencl

package opencl

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jgillich/go-opencl/cl"
)

// profile collects the device time of every kernel an engine launches,
// by name, from the events of a queue with profiling on. Only tests and
// tuning use it.
type profile struct {
	events []namedEvent
	total  map[string]time.Duration
	count  map[string]int
}

type namedEvent struct {
	name string
	ev   *cl.Event
}

// newProfiledEngine makes an engine on d whose queue records the device
// time of each kernel.
func (d *Device) newProfiledEngine() (*Engine, error) {
	q, err := d.ctx.CreateCommandQueue(d.dev, cl.CommandQueueProfilingEnable)
	if err != nil {
		return nil, fmt.Errorf("opencl: %s: creating a profiling command queue: %w", d.name, err)
	}
	return d.newEngine(q, &profile{total: map[string]time.Duration{}, count: map[string]int{}})
}

// collect adds the finished events' times to the totals and releases
// every event; the queue must have finished. It returns the first error
// (an event whose times cannot be read adds nothing).
func (p *profile) collect() error {
	var first error
	for i, ne := range p.events {
		start, err := ne.ev.GetEventProfilingInfo(cl.ProfilingInfoCommandStart)
		var end int64
		if err == nil {
			end, err = ne.ev.GetEventProfilingInfo(cl.ProfilingInfoCommandEnd)
		}
		if err == nil {
			p.total[ne.name] += time.Duration(end - start)
			p.count[ne.name]++
		} else if first == nil {
			first = err
		}
		ne.ev.Release()
		p.events[i] = namedEvent{}
	}
	p.events = p.events[:0]
	return first
}

func (p *profile) reset() {
	clear(p.total)
	clear(p.count)
}

// String lists the kernels by device time, longest first, per run of runs.
func (p *profile) String(runs int) string {
	names := make([]string, 0, len(p.total))
	var sum time.Duration
	for n, t := range p.total {
		names = append(names, n)
		sum += t
	}
	sort.Slice(names, func(i, j int) bool { return p.total[names[i]] > p.total[names[j]] })
	var b strings.Builder
	fmt.Fprintf(&b, "kernels %.3f ms:", float64(sum)/float64(runs)/1e6)
	for _, n := range names {
		fmt.Fprintf(&b, " %s %.3f", n, float64(p.total[n])/float64(runs)/1e6)
	}
	return b.String()
}
