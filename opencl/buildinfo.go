//go:build opencl

package opencl

// #cgo linux pkg-config: OpenCL
// #cgo darwin LDFLAGS: -framework OpenCL
// #ifndef CL_TARGET_OPENCL_VERSION
// #define CL_TARGET_OPENCL_VERSION 120
// #endif
// #include <stdlib.h>
// #if defined(__APPLE__)
// #include <OpenCL/cl.h>
// #else
// #include <CL/cl.h>
// #endif
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/jgillich/go-opencl/cl"
)

// BuildLogEnv, when set, makes every program build print the compiler's
// log to stderr (on NVIDIA built with -cl-nv-verbose, which reports each
// kernel's registers, spills and local memory); when its value is a
// directory, the program's binary (PTX on NVIDIA) is also written there.
// For tuning only.
const BuildLogEnv = "FROG_OPENCL_BUILDLOG"

// The binding keeps the raw handles as the first field of its program
// and device objects (see memMirror).
type programMirror struct{ handle C.cl_program }

type deviceMirror struct{ handle C.cl_device_id }

// vendorOptions returns the extra build options for dev: on NVIDIA,
// -cl-nv-verbose with BuildLogEnv. (The driver offers no working register
// cap as a build option: the H200's 580.159.04 rejects
// "-cl-nv-maxrregcount N" and ignores "-cl-nv-maxrregcount=N".)
func vendorOptions(dev *cl.Device) string {
	if !strings.Contains(strings.ToUpper(dev.Vendor()), "NVIDIA") {
		return ""
	}
	if os.Getenv(BuildLogEnv) != "" {
		return " -cl-nv-verbose"
	}
	return ""
}

// reportBuild prints the build log of prog and, when BuildLogEnv names a
// directory, writes its binary there as name.bin.
func reportBuild(prog *cl.Program, dev *cl.Device, name string) {
	env := os.Getenv(BuildLogEnv)
	if env == "" {
		return
	}
	p := (*programMirror)(unsafe.Pointer(prog)).handle
	d := (*deviceMirror)(unsafe.Pointer(dev)).handle
	var n C.size_t
	if C.clGetProgramBuildInfo(p, d, C.CL_PROGRAM_BUILD_LOG, 0, nil, &n) == C.CL_SUCCESS && n > 0 {
		buf := make([]byte, n)
		if C.clGetProgramBuildInfo(p, d, C.CL_PROGRAM_BUILD_LOG, n, unsafe.Pointer(&buf[0]), nil) == C.CL_SUCCESS {
			log := strings.TrimSpace(strings.ReplaceAll(string(buf), "\x00", ""))
			fmt.Fprintf(os.Stderr, "== build log %s\n%s\n", name, log)
		}
	}
	if st, err := os.Stat(env); err != nil || !st.IsDir() {
		return
	}
	bin := programBinary(p)
	if bin == nil {
		return
	}
	file := filepath.Join(env, strings.NewReplacer(",", "_", " ", "").Replace(name)+".bin")
	if err := os.WriteFile(file, bin, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "writing %s: %v\n", file, err)
	}
}

// programBinary returns the binary of a program built for one device (PTX
// text on NVIDIA), or nil.
func programBinary(p C.cl_program) []byte {
	var ndev C.cl_uint
	if C.clGetProgramInfo(p, C.CL_PROGRAM_NUM_DEVICES, C.size_t(unsafe.Sizeof(ndev)), unsafe.Pointer(&ndev), nil) != C.CL_SUCCESS || ndev != 1 {
		return nil
	}
	var size C.size_t
	if C.clGetProgramInfo(p, C.CL_PROGRAM_BINARY_SIZES, C.size_t(unsafe.Sizeof(size)), unsafe.Pointer(&size), nil) != C.CL_SUCCESS || size == 0 {
		return nil
	}
	bin := C.malloc(size)
	defer C.free(bin)
	ptrs := C.malloc(C.size_t(unsafe.Sizeof(uintptr(0))))
	defer C.free(ptrs)
	*(*unsafe.Pointer)(ptrs) = bin
	if C.clGetProgramInfo(p, C.CL_PROGRAM_BINARIES, C.size_t(unsafe.Sizeof(uintptr(0))), ptrs, nil) != C.CL_SUCCESS {
		return nil
	}
	return C.GoBytes(bin, C.int(size))
}
