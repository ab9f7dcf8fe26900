//go:build opencl

package frog

import (
	"os"
	"strings"

	"github.com/frogopt/frog/backend"
	"github.com/frogopt/frog/opencl"
)

// openclDeviceEnv chooses which OpenCL devices the opencl backend accepts:
// "gpu" (GPUs and accelerators only), "any" or "cpu" (a CPU device such as
// PoCL too, when no GPU is found). Unset, a CPU device is accepted only when
// the opencl backend is named explicitly (Config.Backend, NewPreconditioner
// or FROG_BACKEND=opencl): the automatic choice never prefers PoCL to the
// native CPU path, which is faster, while CI can still test the kernels on
// PoCL.
const openclDeviceEnv = "FROG_OPENCL_DEVICE"

func init() {
	// First in the automatic order: built with the tag, a GPU wins.
	registerEngine(BackendOpenCL, newOpenCLEngine)
}

// newOpenCLEngine makes a layer's engine on the process's OpenCL device;
// its error (no platform, no usable device, kernels that do not build)
// makes newEngine fall back to the CPU with the reason.
func newOpenCLEngine(explicit bool) (backend.Engine, error) {
	e, err := opencl.NewEngine(opencl.Options{AllowCPU: openclAllowCPU(explicit)})
	if err != nil {
		return nil, err
	}
	return e, nil
}

func openclAllowCPU(explicit bool) bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv(openclDeviceEnv))) {
	case "any", "cpu":
		return true
	case "gpu":
		return false
	}
	return explicit
}
