package blas

import (
	"runtime"
	"sync"
)

// A task is work split into parts that run concurrently; run does part
// `part` of `parts` with a workspace that no other part uses meanwhile.
type task interface {
	run(part, parts int, ws *workspace)
}

// helper is a long-lived goroutine that runs parts of tasks, so that
// splitting a product starts no goroutine and allocates nothing.
type helper struct {
	ws   workspace
	jobs chan job
	done chan struct{}
}

type job struct {
	t           task
	u           Task
	part, parts int
}

func (h *helper) loop() {
	for j := range h.jobs {
		if j.u != nil {
			j.u.RunPart(j.part, j.parts)
		} else {
			j.t.run(j.part, j.parts, &h.ws)
		}
		h.done <- struct{}{}
	}
}

// Task is work that splits into parts which may run concurrently.
type Task interface {
	// RunPart does part `part` of `parts` (0 <= part < parts).
	RunPart(part, parts int)
}

// Parallel runs t in at most maxParts parts, on the calling goroutine and
// on the helpers that are idle, GOMAXPROCS goroutines in all at most (the
// same helpers as Gemm's, so that nested or concurrent calls do not
// oversubscribe the cores). It returns when every part is done, and
// allocates nothing when t is a pointer.
func Parallel(t Task, maxParts int) {
	if maxParts <= 1 || runtime.GOMAXPROCS(0) == 1 {
		t.RunPart(0, 1)
		return
	}
	dispatch(nil, t, maxParts)
}

var (
	helpersOnce sync.Once
	// idle holds the helpers no task is using. A caller takes what it can
	// without waiting, so that concurrent callers share GOMAXPROCS cores
	// instead of oversubscribing them.
	idle chan *helper
)

// spare holds the workspaces of the calling goroutines.
var spare = make(chan *workspace, maxHelpers)

func getWorkspace() *workspace {
	select {
	case ws := <-spare:
		return ws
	default:
		return new(workspace)
	}
}

func putWorkspace(ws *workspace) {
	select {
	case spare <- ws:
	default:
	}
}

// maxHelpers bounds the helper pool; GOMAXPROCS may change at run time.
const maxHelpers = 64

func startHelpers() {
	idle = make(chan *helper, maxHelpers)
	for i := 0; i < maxHelpers; i++ {
		h := &helper{jobs: make(chan job, 1), done: make(chan struct{}, 1)}
		go h.loop()
		idle <- h
	}
}

// parallel runs t in at most maxParts parts, on the calling goroutine and
// on up to GOMAXPROCS-1 idle helpers. It returns when every part is done.
func parallel(t task, maxParts int) { dispatch(t, nil, maxParts) }

func dispatch(t task, u Task, maxParts int) {
	helpersOnce.Do(startHelpers)
	want := min(runtime.GOMAXPROCS(0), maxParts)
	var taken [maxHelpers]*helper
	n := 0
	for n+1 < want {
		select {
		case h := <-idle:
			taken[n] = h
			n++
			continue
		default:
		}
		break
	}
	parts := n + 1
	for i := 0; i < n; i++ {
		taken[i].jobs <- job{t, u, i + 1, parts}
	}
	if u != nil {
		u.RunPart(0, parts)
	} else {
		ws := getWorkspace()
		t.run(0, parts, ws)
		putWorkspace(ws)
	}
	for i := 0; i < n; i++ {
		<-taken[i].done
		idle <- taken[i]
	}
}
