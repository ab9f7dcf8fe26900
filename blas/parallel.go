package blas

import (
	"runtime"
	"sync"
	"time"
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
	for {
		j, ok := receive(h.jobs)
		if !ok {
			return
		}
		if j.u != nil {
			j.u.RunPart(j.part, j.parts)
		} else {
			j.t.run(j.part, j.parts, &h.ws)
		}
		h.done <- struct{}{}
	}
}

// spinTime bounds how long a helper waiting for its next part, or a
// caller waiting for the helpers, keeps polling (yielding the core to any
// other goroutine between polls) before it blocks. The phases of a step
// follow each other within microseconds, and the two halves of a product
// finish up to a few hundred microseconds apart on these shared cores;
// a thread that blocked took 100-350 microseconds to run again here, and
// the waking shuffles the threads over the cores, so that the next phase
// starts unevenly too. Polling for a millisecond keeps a step's threads
// awake throughout (against 0.1 ms before, in alternating frogbench runs
// the 20 convolutions took 1.8 % less time, l3.conv_s2 2.9 %, the 1x1
// shortcuts 2-12 %); it costs up to a millisecond of polling on each
// core once the library falls idle.
const spinTime = time.Millisecond

// receive takes the next value from c, polling a while before blocking;
// ok is false once c is closed.
func receive[T any](c <-chan T) (v T, ok bool) {
	start := time.Now()
	for {
		select {
		case v, ok = <-c:
			return v, ok
		default:
		}
		if time.Since(start) > spinTime {
			break
		}
		runtime.Gosched()
	}
	v, ok = <-c
	return v, ok
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

// helpers is a stack of the helpers no task is using. A caller takes what
// it can without waiting, so that concurrent callers share GOMAXPROCS cores
// instead of oversubscribing them; the last helper returned is the next
// taken, so the same few (with warm caches and buffers) do the work, and a
// helper is started only when none is idle.
var helpers struct {
	sync.Mutex
	idle    []*helper
	started int
}

// maxHelpers bounds the helper pool; GOMAXPROCS may change at run time.
const maxHelpers = 64

// takeHelper returns an idle helper, starting one if none is idle and the
// pool has room, or nil.
func takeHelper() *helper {
	helpers.Lock()
	defer helpers.Unlock()
	if n := len(helpers.idle); n > 0 {
		h := helpers.idle[n-1]
		helpers.idle = helpers.idle[:n-1]
		return h
	}
	if helpers.started == maxHelpers {
		return nil
	}
	if helpers.idle == nil {
		helpers.idle = make([]*helper, 0, maxHelpers)
	}
	helpers.started++
	h := &helper{jobs: make(chan job, 1), done: make(chan struct{}, 1)}
	go h.loop()
	return h
}

func returnHelper(h *helper) {
	helpers.Lock()
	helpers.idle = append(helpers.idle, h)
	helpers.Unlock()
}

// freeList keeps values for reuse without allocating: get returns a kept
// one or a new one, put keeps one unless the list is full.
type freeList[T any] chan *T

func (f freeList[T]) get() *T {
	select {
	case v := <-f:
		return v
	default:
		return new(T)
	}
}

func (f freeList[T]) put(v *T) {
	select {
	case f <- v:
	default:
	}
}

// spare holds the workspaces of the calling goroutines.
var spare = make(freeList[workspace], maxHelpers)

// parallel runs t in at most maxParts parts, on the calling goroutine and
// on up to GOMAXPROCS-1 idle helpers. It returns when every part is done.
func parallel(t task, maxParts int) { dispatch(t, nil, maxParts) }

func dispatch(t task, u Task, maxParts int) {
	want := min(runtime.GOMAXPROCS(0), maxParts, maxHelpers+1)
	var taken [maxHelpers]*helper
	n := 0
	for n+1 < want {
		h := takeHelper()
		if h == nil {
			break
		}
		taken[n] = h
		n++
	}
	parts := n + 1
	for i := 0; i < n; i++ {
		taken[i].jobs <- job{t, u, i + 1, parts}
	}
	if u != nil {
		u.RunPart(0, parts)
	} else {
		ws := spare.get()
		t.run(0, parts, ws)
		spare.put(ws)
	}
	for i := 0; i < n; i++ {
		receive(taken[i].done)
		returnHelper(taken[i])
	}
}
