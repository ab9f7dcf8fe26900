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
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
// "-cl-nv-maxrregcount N" and ignores "-cl-nv-maxrregcount=N"; see
// PTXRegEnv for one that works.)
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

// PTXRegEnv sets ptxRegs (tuning): "N" limits the products to N registers
// per work-item (.maxnreg N), "ctaN" asks for N work-groups per compute
// unit (.minnctapersm N); "0" or empty leaves the compiler's choice.
const PTXRegEnv = "FROG_OPENCL_PTXREG"

// ptxRegs is the default of PTXRegEnv. The NVIDIA driver ignores its
// register-cap build option, so a cap goes into the PTX: the program is
// built from source, its PTX gets the directive in the products' entries
// and is built again from that binary. Off by default: measured on an
// H200 (driver 580.159.04, round 3) the directives take effect (".maxnreg
// 128" and ".minnctapersm 2" bring the 8 x 8 products from 157-191 to 128
// registers, with 24-120 bytes of spills) but every setting was slower
// than the plain build: 20 ResNet-18 convolutions in 22.3-22.6 ms (128),
// 22.1-22.6 (168), 22.6 (cta2) against 21.9-22.1 ms.
const ptxRegs = ""

// ptxDirective returns the directive PTXRegEnv (else ptxRegs) asks for, or
// "" for none.
func ptxDirective() (string, error) {
	v := strings.TrimSpace(os.Getenv(PTXRegEnv))
	if v == "" {
		v = ptxRegs
	}
	if v == "" || v == "0" {
		return "", nil
	}
	if n, ok := strings.CutPrefix(v, "cta"); ok {
		k, err := strconv.Atoi(n)
		if err != nil || k <= 0 {
			return "", fmt.Errorf("%s=%q: want N or ctaN", PTXRegEnv, v)
		}
		return fmt.Sprintf(".minnctapersm %d", k), nil
	}
	k, err := strconv.Atoi(v)
	if err != nil || k < 0 {
		return "", fmt.Errorf("%s=%q: want N or ctaN", PTXRegEnv, v)
	}
	return fmt.Sprintf(".maxnreg %d", k), nil
}

// productEntries are the kernels a PTX directive applies to.
var productEntries = []string{"fisher_pxt", "fisher_tx"}

// patchPTX inserts the line dir into the header of each named entry of a
// PTX module (between its parameter list and its body); ok is false when
// ptx is not PTX or an entry is missing.
func patchPTX(ptx []byte, dir string, entries ...string) (out []byte, ok bool) {
	if !bytes.Contains(ptx, []byte(".target")) {
		return nil, false
	}
	out = append([]byte(nil), ptx...)
	for _, name := range entries {
		at := bytes.Index(out, []byte(".entry "+name+"("))
		if at < 0 {
			return nil, false
		}
		body := bytes.Index(out[at:], []byte("\n{"))
		if body < 0 {
			return nil, false
		}
		body += at
		ins := []byte("\n" + dir)
		out = append(out[:body], append(ins, out[body:]...)...)
	}
	return out, true
}

// rebuildFromBinary takes prog's binary, lets patch change it (patch
// returns false to keep prog as it is) and builds prog again from the
// result with options, in place: prog then holds the new program.
func rebuildFromBinary(ctx *cl.Context, dev *cl.Device, prog *cl.Program, options string, patch func([]byte) ([]byte, bool)) (bool, error) {
	pm := (*programMirror)(unsafe.Pointer(prog))
	d := (*deviceMirror)(unsafe.Pointer(dev)).handle
	bin := programBinary(pm.handle)
	if bin == nil {
		return false, errors.New("no program binary")
	}
	bin, ok := patch(bin)
	if !ok {
		return false, nil
	}
	cbin := C.CBytes(bin)
	defer C.free(cbin)
	size := C.size_t(len(bin))
	var status, cerr C.cl_int
	ptr := (*C.uchar)(cbin)
	np := C.clCreateProgramWithBinary(C.cl_context(ctxHandle(ctx)), 1, &d, &size, &ptr, &status, &cerr)
	if cerr != C.CL_SUCCESS || np == nil {
		return false, fmt.Errorf("clCreateProgramWithBinary: %d (status %d)", int(cerr), int(status))
	}
	copts := C.CString(options)
	defer C.free(unsafe.Pointer(copts))
	if e := C.clBuildProgram(np, 1, &d, copts, nil, nil); e != C.CL_SUCCESS {
		var n C.size_t
		log := ""
		if C.clGetProgramBuildInfo(np, d, C.CL_PROGRAM_BUILD_LOG, 0, nil, &n) == C.CL_SUCCESS && n > 0 {
			buf := make([]byte, n)
			if C.clGetProgramBuildInfo(np, d, C.CL_PROGRAM_BUILD_LOG, n, unsafe.Pointer(&buf[0]), nil) == C.CL_SUCCESS {
				log = strings.TrimSpace(strings.ReplaceAll(string(buf), "\x00", ""))
			}
		}
		C.clReleaseProgram(np)
		return false, fmt.Errorf("building from the binary: %d: %s", int(e), log)
	}
	old := pm.handle
	pm.handle = np
	C.clReleaseProgram(old)
	return true, nil
}
