//go:build opencl

package opencl

import (
	"fmt"
	"sync"
)

// Fault is a failure InjectFault simulates, for tests of the fallback to
// the CPU.
type Fault int

const (
	// FaultNoPlatform makes opening a device fail as on a machine with no
	// OpenCL platform.
	FaultNoPlatform Fault = iota + 1
	// FaultBuild makes the kernels fail to compile (a #error is appended to
	// the source; the program cache is bypassed).
	FaultBuild
	// FaultAlloc makes every device buffer allocation fail as with
	// CL_MEM_OBJECT_ALLOCATION_FAILURE.
	FaultAlloc
)

// String names the fault.
func (f Fault) String() string {
	switch f {
	case FaultNoPlatform:
		return "no platform"
	case FaultBuild:
		return "kernel build"
	case FaultAlloc:
		return "allocation"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

var faults struct {
	mu     sync.Mutex
	active map[Fault]int
}

// InjectFault makes f happen until the returned function is called. It is
// meant for tests; injections nest and are safe for concurrent use.
func InjectFault(f Fault) (restore func()) {
	faults.mu.Lock()
	if faults.active == nil {
		faults.active = map[Fault]int{}
	}
	faults.active[f]++
	faults.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			faults.mu.Lock()
			faults.active[f]--
			faults.mu.Unlock()
		})
	}
}

func faultActive(f Fault) bool {
	faults.mu.Lock()
	defer faults.mu.Unlock()
	return faults.active[f] > 0
}

// injected returns the error of an active fault f, else nil.
func injected(f Fault) error {
	if !faultActive(f) {
		return nil
	}
	switch f {
	case FaultNoPlatform:
		return fmt.Errorf("opencl: no platform: %s (injected)", "cl: Platform Not Found Khr")
	case FaultAlloc:
		return fmt.Errorf("opencl: allocating a device buffer: %s (injected)", "cl: Mem Object Allocation Failure")
	}
	return fmt.Errorf("opencl: %v fault (injected)", f)
}
