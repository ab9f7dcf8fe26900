//go:build opencl

package opencl

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/jgillich/go-opencl/cl"
)

//go:embed kernels.cl
var kernelSource string

// Tiles are the blocking of the two products of the Fisher operator: a
// work-group computes a TM x TN tile, TK deep per step through local
// memory, and a work-item a WM x WN block in registers. RL is the
// work-group size of the per-row kernels (a power of two).
type Tiles struct {
	TM, TN, TK, WM, WN int
	RL                 int
}

// String writes the tiles as FROG_OPENCL_TILES takes them: TM,TN,TK,WM,WN.
func (t Tiles) String() string {
	return fmt.Sprintf("%d,%d,%d,%d,%d", t.TM, t.TN, t.TK, t.WM, t.WN)
}

func (t Tiles) threads() int { return (t.TM / t.WM) * (t.TN / t.WN) }

// localBytes is the local memory one product work-group uses.
func (t Tiles) localBytes() int { return 4 * t.TK * (t.TM + 1 + t.TN + 1) }

func (t Tiles) check(maxGroup int, localMem int64) error {
	switch {
	case t.TM <= 0 || t.TN <= 0 || t.TK <= 0 || t.WM <= 0 || t.WN <= 0:
		return fmt.Errorf("tiles %v: sizes must be positive", t)
	case t.TM%t.WM != 0 || t.TN%t.WN != 0:
		return fmt.Errorf("tiles %v: WM must divide TM and WN divide TN", t)
	case t.threads() > maxGroup:
		return fmt.Errorf("tiles %v: %d work-items exceed the device's %d", t, t.threads(), maxGroup)
	case int64(t.localBytes()) > localMem:
		return fmt.Errorf("tiles %v: %d bytes of local memory exceed the device's %d", t, t.localBytes(), localMem)
	case t.RL <= 0 || t.RL&(t.RL-1) != 0 || t.RL > maxGroup:
		return fmt.Errorf("row work-group size %d must be a power of two up to %d", t.RL, maxGroup)
	}
	return nil
}

// DefaultTiles returns the blocking for a device: for a GPU, 64 x 128
// tiles 16 deep with 8 x 8 per work-item (128 work-items, 12.5 KiB of local
// memory: a 64-row tile fits the 64-row layers of ResNet-18, and several
// work-groups share an NVIDIA SM's 48 KiB); for a CPU device, small tiles.
// Both shrink when the device allows fewer work-items.
func DefaultTiles(gpu bool, maxGroup int) Tiles {
	t := Tiles{TM: 32, TN: 32, TK: 16, WM: 4, WN: 4, RL: 64}
	if gpu {
		t = Tiles{TM: 64, TN: 128, TK: 16, WM: 8, WN: 8, RL: 128}
	}
	for t.threads() > maxGroup && t.WN < t.TN {
		t.WN *= 2
	}
	for t.RL > maxGroup {
		t.RL /= 2
	}
	return t
}

// ParseTiles reads "TM,TN,TK,WM,WN" or "TM,TN,TK,WM,WN,RL".
func ParseTiles(s string) (Tiles, error) {
	f := strings.Split(s, ",")
	if len(f) != 5 && len(f) != 6 {
		return Tiles{}, fmt.Errorf("tiles %q: want TM,TN,TK,WM,WN[,RL]", s)
	}
	v := make([]int, 6)
	v[5] = 128
	for i, x := range f {
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil {
			return Tiles{}, fmt.Errorf("tiles %q: %v", s, err)
		}
		v[i] = n
	}
	return Tiles{TM: v[0], TN: v[1], TK: v[2], WM: v[3], WN: v[4], RL: v[5]}, nil
}

// TilesEnv is the environment variable that overrides the tiles.
const TilesEnv = "FROG_OPENCL_TILES"

// Options choose the device and its settings.
type Options struct {
	// AllowCPU accepts a CPU OpenCL device (such as PoCL) when no GPU or
	// accelerator is found. It is off by default: on such a machine the
	// native CPU backend is faster.
	AllowCPU bool
	// Tiles overrides the blocking; nil means FROG_OPENCL_TILES, else
	// DefaultTiles.
	Tiles *Tiles
}

// Device is an OpenCL device with its context and built kernels. It is
// safe for concurrent use; every Engine on it has its own command queue.
type Device struct {
	ctx     *cl.Context
	dev     *cl.Device
	gpu     bool
	name    string
	units   int
	maxWG   int
	maxMem  int64
	tiles   Tiles
	program *cl.Program
	// small, when not nil, holds the products built with smallTiles, for
	// layers whose products have too few tiles of the main size to fill
	// the device (the 512-row, 1024-point products of ResNet-18's last
	// stage make 64 work-groups of 64 x 128 for 132 SMs).
	small      *cl.Program
	smallTiles Tiles
}

// Name describes the device, e.g. "NVIDIA H100 80GB HBM3 (GPU)".
func (d *Device) Name() string { return d.name }

// Tiles returns the blocking the device's program was built with.
func (d *Device) Tiles() Tiles { return d.tiles }

// Context is the OpenCL context of the device: buffers passed in a
// DeviceJob must belong to it.
func (d *Device) Context() *cl.Context { return d.ctx }

// CL returns the underlying device.
func (d *Device) CL() *cl.Device { return d.dev }

var shared struct {
	mu       sync.Mutex
	devices  map[string]*Device // by AllowCPU and tile override
	programs map[string]*cl.Program
}

// OpenDevice returns the process's device for opts, opening it (and
// building the kernels) on first use: a GPU or accelerator with
// cl_khr_fp64, else, when opts.AllowCPU, a CPU device.
func OpenDevice(opts Options) (*Device, error) {
	if err := injected(FaultNoPlatform); err != nil {
		return nil, err
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	key := fmt.Sprintf("%v|%s", opts.AllowCPU, os.Getenv(TilesEnv))
	if opts.Tiles != nil {
		key = fmt.Sprintf("%v|%v,%d", opts.AllowCPU, *opts.Tiles, opts.Tiles.RL)
	}
	if d := shared.devices[key]; d != nil && !faultActive(FaultBuild) {
		return d, nil
	}
	dev, err := pickDevice(opts.AllowCPU)
	if err != nil {
		return nil, err
	}
	ctx, err := cl.CreateContext([]*cl.Device{dev})
	if err != nil {
		return nil, fmt.Errorf("opencl: creating a context: %w", err)
	}
	d, err := newDevice(ctx, dev, opts)
	if err != nil {
		ctx.Release()
		return nil, err
	}
	if shared.devices == nil {
		shared.devices = map[string]*Device{}
	}
	shared.devices[key] = d
	return d, nil
}

// NewDeviceFromContext builds the kernels for dev in a context the caller
// made (a training stack's own), so that its buffers can be passed in
// DeviceJobs. The caller keeps ownership of ctx.
func NewDeviceFromContext(ctx *cl.Context, dev *cl.Device, opts Options) (*Device, error) {
	if ctx == nil || dev == nil {
		return nil, errors.New("opencl: nil context or device")
	}
	if err := injected(FaultNoPlatform); err != nil {
		return nil, err
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if err := usable(dev); err != nil {
		return nil, err
	}
	return newDevice(ctx, dev, opts)
}

// newDevice queries dev, chooses the tiles and builds the program; the
// caller holds shared.mu.
func newDevice(ctx *cl.Context, dev *cl.Device, opts Options) (d *Device, err error) {
	defer func() {
		// The binding panics when a device query fails; report it instead.
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("opencl: querying the device: %v", r)
		}
	}()
	d = &Device{
		ctx: ctx, dev: dev,
		gpu:    dev.Type()&(cl.DeviceTypeGPU|cl.DeviceTypeAccelerator) != 0,
		units:  max(dev.MaxComputeUnits(), 1),
		maxWG:  dev.MaxWorkGroupSize(),
		maxMem: dev.MaxMemAllocSize(),
	}
	d.name = fmt.Sprintf("%s (%s)", strings.TrimSpace(dev.Name()), dev.Type())
	d.tiles = DefaultTiles(d.gpu, d.maxWG)
	if opts.Tiles != nil {
		d.tiles = *opts.Tiles
	} else if s := os.Getenv(TilesEnv); s != "" {
		if d.tiles, err = ParseTiles(s); err != nil {
			return nil, fmt.Errorf("opencl: %s: %w", TilesEnv, err)
		}
	}
	if err := d.tiles.check(d.maxWG, dev.LocalMemSize()); err != nil {
		return nil, fmt.Errorf("opencl: %s: %w", d.name, err)
	}
	if d.program, err = buildProgram(ctx, dev, d.tiles); err != nil {
		return nil, fmt.Errorf("opencl: %s: %w", d.name, err)
	}
	if opts.Tiles == nil && os.Getenv(TilesEnv) == "" {
		// A second build with tiles a quarter the size; tuning with
		// FROG_OPENCL_TILES measures one size alone.
		st := d.tiles
		st.TM, st.TN, st.WM, st.WN = max(st.TM/2, 1), max(st.TN/2, 1), max(st.WM/2, 1), max(st.WN/2, 1)
		if st.check(d.maxWG, dev.LocalMemSize()) == nil {
			if d.small, err = buildProgram(ctx, dev, st); err != nil {
				return nil, fmt.Errorf("opencl: %s: %w", d.name, err)
			}
			d.smallTiles = st
		}
	}
	return d, nil
}

// pickDevice finds a GPU or accelerator with float64 support, else, when
// allowCPU, a CPU device with it.
func pickDevice(allowCPU bool) (dev *cl.Device, err error) {
	defer func() {
		if r := recover(); r != nil {
			dev, err = nil, fmt.Errorf("opencl: querying devices: %v", r)
		}
	}()
	platforms, err := cl.GetPlatforms()
	if err != nil || len(platforms) == 0 {
		if err == nil {
			err = errors.New("none installed")
		}
		return nil, fmt.Errorf("opencl: no platform: %w", err)
	}
	var cpu *cl.Device
	var seen []string
	for _, p := range platforms {
		devs, err := p.GetDevices(cl.DeviceTypeAll)
		if err != nil {
			continue
		}
		for _, dv := range devs {
			desc := fmt.Sprintf("%s (%s)", strings.TrimSpace(dv.Name()), dv.Type())
			if err := usable(dv); err != nil {
				seen = append(seen, fmt.Sprintf("%s: %v", desc, err))
				continue
			}
			seen = append(seen, desc)
			if dv.Type()&(cl.DeviceTypeGPU|cl.DeviceTypeAccelerator) != 0 {
				return dv, nil
			}
			if cpu == nil && dv.Type()&cl.DeviceTypeCPU != 0 {
				cpu = dv
			}
		}
	}
	if cpu != nil && allowCPU {
		return cpu, nil
	}
	if len(seen) == 0 {
		return nil, errors.New("opencl: no device")
	}
	hint := ""
	if cpu != nil {
		hint = " (a CPU device is used only when the opencl backend is named or FROG_OPENCL_DEVICE=any)"
	}
	return nil, fmt.Errorf("opencl: no usable GPU among [%s]%s", strings.Join(seen, "; "), hint)
}

// usable reports why a device cannot run the kernels.
func usable(dv *cl.Device) error {
	switch {
	case !dv.Available():
		return errors.New("not available")
	case !dv.CompilerAvailable():
		return errors.New("no compiler")
	case !strings.Contains(dv.Extensions(), "cl_khr_fp64"):
		return errors.New("no cl_khr_fp64 (float64 is needed for the CG scalars)")
	}
	return nil
}

// buildProgram builds the kernels for one device and tile choice, once per
// process; the caller holds shared.mu.
func buildProgram(ctx *cl.Context, dev *cl.Device, t Tiles) (*cl.Program, error) {
	src := kernelSource
	if faultActive(FaultBuild) {
		src += "\n#error injected build fault\n"
	}
	options := fmt.Sprintf("-cl-std=CL1.2 -DTM=%d -DTN=%d -DTK=%d -DWM=%d -DWN=%d -DRL=%d", t.TM, t.TN, t.TK, t.WM, t.WN, t.RL)
	// Programs belong to a context: key by the context's handle.
	key := fmt.Sprintf("%p|%s|%d", ctxHandle(ctx), options, len(src))
	if p := shared.programs[key]; p != nil && !faultActive(FaultBuild) {
		return p, nil
	}
	prog, err := ctx.CreateProgramWithSource([]string{src})
	if err != nil {
		return nil, fmt.Errorf("creating the program: %w", err)
	}
	if err := prog.BuildProgram([]*cl.Device{dev}, options); err != nil {
		prog.Release()
		return nil, fmt.Errorf("building the kernels: %w", err)
	}
	if shared.programs == nil {
		shared.programs = map[string]*cl.Program{}
	}
	if !faultActive(FaultBuild) {
		shared.programs[key] = prog
	}
	return prog, nil
}

// The pinned binding (github.com/jgillich/go-opencl
// v0.0.0-20180608191952-a0efba3e5257) keeps the raw handle as the first
// field of its objects and a buffer's size as the second; these mirrors
// read them (the binding has no accessors) to validate DeviceJob buffers.
type memMirror struct {
	handle unsafe.Pointer
	size   int
}

type ctxMirror struct {
	handle unsafe.Pointer
}

func ctxHandle(c *cl.Context) unsafe.Pointer { return (*ctxMirror)(unsafe.Pointer(c)).handle }

// bufferBytes returns the size a buffer was created with.
func bufferBytes(m *cl.MemObject) int { return (*memMirror)(unsafe.Pointer(m)).size }

func bufferHandle(m *cl.MemObject) unsafe.Pointer { return (*memMirror)(unsafe.Pointer(m)).handle }
