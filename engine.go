package frog

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/frogopt/frog/backend"
	"github.com/frogopt/frog/blas"
)

// Backend names accepted by Config.Backend and the FROG_BACKEND environment
// variable.
const (
	// BackendAuto picks the first available backend: a GPU through OpenCL
	// when the library is built with the opencl tag and a device is found,
	// else the CPU.
	BackendAuto = "auto"
	// BackendCPU runs on the CPU with the fastest kernels the machine has
	// (AVX2+FMA assembly where available).
	BackendCPU = "cpu"
	// BackendPureGo runs on the CPU with the portable pure-Go kernels.
	BackendPureGo = "purego"
	// BackendOpenCL runs on an OpenCL device (build tag opencl).
	BackendOpenCL = "opencl"
)

// BackendEnv is the environment variable that selects a backend when
// Config.Backend is empty.
const BackendEnv = "FROG_BACKEND"

// engineFactory makes the engine of one layer. explicit says the backend
// was named (by the option or the environment) rather than tried by the
// automatic choice, so that it may accept a device auto would pass over.
type engineFactory func(explicit bool) (backend.Engine, error)

var (
	engines = map[string]engineFactory{}
	// autoOrder lists the backends BackendAuto tries, best first; a build
	// with a GPU backend puts its engine in front.
	autoOrder []string
)

func init() {
	registerEngine(BackendPureGo, func(bool) (backend.Engine, error) { return &backend.CPU{Kernels: blas.Portable()}, nil })
	registerEngine(BackendCPU, func(bool) (backend.Engine, error) { return &backend.CPU{}, nil })
}

// registerEngine adds a backend in front of the automatic choice: the
// later registered (this file's init, then a tagged file's) the earlier
// tried.
func registerEngine(name string, f engineFactory) {
	engines[name] = f
	autoOrder = append([]string{name}, autoOrder...)
}

// Backends lists the backend names this build accepts.
func Backends() []string {
	names := []string{BackendAuto}
	for name := range engines {
		names = append(names, name)
	}
	sort.Strings(names[1:])
	return names
}

// resolveBackend turns an option (or, when empty, the environment) into a
// backend name, or an error for an unknown one.
func resolveBackend(option string) (string, error) {
	name := strings.ToLower(strings.TrimSpace(option))
	if name == "" {
		name = strings.ToLower(strings.TrimSpace(os.Getenv(BackendEnv)))
	}
	if name == "" {
		name = BackendAuto
	}
	if name == BackendAuto {
		return name, nil
	}
	if _, ok := engines[name]; !ok {
		if name == BackendOpenCL {
			return "", fmt.Errorf("frog: backend %q needs a build with -tags opencl (have %v)", name, Backends())
		}
		return "", fmt.Errorf("frog: unknown backend %q (have %v)", name, Backends())
	}
	return name, nil
}

// newEngine makes a layer's engine for the resolved name. When that backend
// cannot start (no device, a kernel that does not build), it falls back to
// the CPU and says why in reason.
func newEngine(name string) (eng backend.Engine, reason string) {
	order := []string{name}
	if name == BackendAuto {
		order = autoOrder
	}
	var reasons []string
	for _, n := range order {
		e, err := engines[n](name != BackendAuto)
		if err == nil {
			return e, strings.Join(reasons, "; ")
		}
		reasons = append(reasons, fmt.Sprintf("%s unavailable: %v", n, err))
	}
	e, _ := engines[BackendCPU](false)
	return e, strings.Join(reasons, "; ") + "; using cpu"
}

// runEngine runs job on *eng. When a non-CPU engine fails, it is closed and
// replaced by the CPU engine for good, the reason is kept in *fallback, and
// the job is run again from the same inputs, so a fallback never changes
// the answer beyond rounding.
func runEngine(eng *backend.Engine, fallback *string, job *backend.Job) error {
	err := (*eng).Precondition(job)
	if err == nil {
		return nil
	}
	if _, isCPU := (*eng).(*backend.CPU); isCPU {
		return err
	}
	*fallback = fmt.Sprintf("%s failed (%v); using cpu", (*eng).Name(), err)
	closeEngine(*eng)
	*eng = &backend.CPU{}
	return (*eng).Precondition(job)
}

// closeEngine releases an engine's resources when it holds any.
func closeEngine(e backend.Engine) {
	if c, ok := e.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}
