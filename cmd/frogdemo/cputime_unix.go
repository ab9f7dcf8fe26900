//go:build unix

package main

import (
	"syscall"
	"time"
)

// processCPUTime is the user and system CPU time this process has used, all
// threads together. On a machine shared with other work it measures the
// work of a run better than the wall clock does, which also counts the
// time the run waited for a core.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
