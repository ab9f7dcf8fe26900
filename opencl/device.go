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

// localBytes is the local memory one product work-group uses: two slabs
// of TK x (TM+4) and TK x (TN+4).
func (t Tiles) localBytes() int { return 2 * 4 * t.TK * (t.TM + 4 + t.TN + 4) }

// The padding of the patch matrix (kernels.cl KPAD and NPAD): rows are
// padded to a multiple of kPad coordinates and the points to a multiple of
// nPad, so TK must divide kPad and TN divide nPad.
const (
	kPad = 32
	nPad = 128
)

func (t Tiles) check(maxGroup int, localMem int64) error {
	switch {
	case t.TM <= 0 || t.TN <= 0 || t.TK <= 0 || t.WM <= 0 || t.WN <= 0:
		return fmt.Errorf("tiles %v: sizes must be positive", t)
	case t.TM%t.WM != 0 || t.TN%t.WN != 0:
		return fmt.Errorf("tiles %v: WM must divide TM and WN divide TN", t)
	case t.WM%4 != 0 || t.WN%4 != 0 || t.TK%4 != 0:
		return fmt.Errorf("tiles %v: WM, WN and TK must be multiples of 4", t)
	case kPad%t.TK != 0 || nPad%t.TN != 0:
		return fmt.Errorf("tiles %v: TK must divide %d and TN divide %d", t, kPad, nPad)
	case t.threads() > maxGroup:
		return fmt.Errorf("tiles %v: %d work-items exceed the device's %d", t, t.threads(), maxGroup)
	case int64(t.localBytes()) > localMem:
		return fmt.Errorf("tiles %v: %d bytes of local memory exceed the device's %d", t, t.localBytes(), localMem)
	case t.RL <= 0 || t.RL&(t.RL-1) != 0 || t.RL > maxGroup:
		return fmt.Errorf("row work-group size %d must be a power of two up to %d", t.RL, maxGroup)
	}
	return nil
}

// DefaultTiles returns the main blocking for a device: for a GPU, 128 x
// 128 tiles 16 deep with 8 x 8 per work-item (256 work-items, 33 KiB of
// local memory for two slabs); for a CPU device, small tiles. Both shrink
// when the device allows fewer work-items.
func DefaultTiles(gpu bool, maxGroup int) Tiles {
	return defaultVariants(gpu, maxGroup)[0]
}

// defaultVariants are the blockings a device's program is built with;
// each product of each layer takes the one its shape suits (Engine.plan).
// On a GPU (tuned on an H200 with BenchmarkProfileResNet18): 8 x 8 blocks
// per work-item for the second product, 8 x 4 for the first, each in
// 128-row tiles for layers with many rows and in 64-row ones where those
// fit the rows better (layers of up to 64 rows; for the second product,
// rows at most 64 past a multiple of 128, such as 192). Each is Engine.plan's
// choice for some shapes (TestPlan checks it).
func defaultVariants(gpu bool, maxGroup int) []Tiles {
	ts := []Tiles{{TM: 32, TN: 32, TK: 16, WM: 4, WN: 4, RL: 64}, {TM: 16, TN: 16, TK: 16, WM: 4, WN: 4, RL: 64}}
	if gpu {
		ts = []Tiles{
			{TM: 128, TN: 128, TK: 16, WM: 8, WN: 8, RL: 256},
			{TM: 64, TN: 128, TK: 16, WM: 8, WN: 8, RL: 128},
			{TM: 128, TN: 64, TK: 16, WM: 8, WN: 4, RL: 128},
			{TM: 64, TN: 64, TK: 16, WM: 8, WN: 4, RL: 128},
		}
	}
	for i := range ts {
		t := &ts[i]
		for t.threads() > maxGroup && t.WN < t.TN {
			t.WN *= 2
		}
		for t.RL > maxGroup {
			t.RL /= 2
		}
	}
	return ts
}

// parseVariants reads FROG_OPENCL_TILES: one or more ParseTiles values
// separated by ";" (the first one's RL serves all).
func parseVariants(s string) ([]Tiles, error) {
	var ts []Tiles
	for _, f := range strings.Split(s, ";") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		t, err := ParseTiles(f)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("tiles %q: none given", s)
	}
	return ts, nil
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
	// Tiles overrides the blocking with this one alone; nil means
	// FROG_OPENCL_TILES (one or more blockings separated by ";"), else the
	// device's default set (DefaultTiles is its first).
	Tiles *Tiles
}

// Device is an OpenCL device with its context and built kernels. It is
// safe for concurrent use; every Engine on it has its own command queue.
type Device struct {
	ctx    *cl.Context
	dev    *cl.Device
	gpu    bool
	name   string
	units  int
	maxWG  int
	maxMem int64
	// variants are the blockings of the products, each with its program;
	// each product of each layer takes the one that suits its shape
	// (Engine.plan). The per-row kernels come from variants[0]'s program,
	// with its RL, which every program shares.
	variants []variant
}

type variant struct {
	tiles   Tiles
	program *cl.Program
}

// Name describes the device, e.g. "NVIDIA H100 80GB HBM3 (GPU)".
func (d *Device) Name() string { return d.name }

// Tiles returns the device's first blocking (DefaultTiles, unless
// overridden), whose program runs the per-row kernels.
func (d *Device) Tiles() Tiles { return d.variants[0].tiles }

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
	if d.maxWG < 256 {
		return nil, fmt.Errorf("opencl: %s: device allows %d work-items per group; im2col needs 256", d.name, d.maxWG)
	}
	tiles := defaultVariants(d.gpu, d.maxWG)
	if opts.Tiles != nil {
		tiles = []Tiles{*opts.Tiles}
	} else if s := os.Getenv(TilesEnv); s != "" {
		if tiles, err = parseVariants(s); err != nil {
			return nil, fmt.Errorf("opencl: %s: %w", TilesEnv, err)
		}
	}
	for _, t := range tiles {
		// The per-row kernels of every program use the first RL.
		t.RL = tiles[0].RL
		if err := t.check(d.maxWG, dev.LocalMemSize()); err != nil {
			return nil, fmt.Errorf("opencl: %s: %w", d.name, err)
		}
		prog, err := buildProgram(ctx, dev, t)
		if err != nil {
			return nil, fmt.Errorf("opencl: %s: %w", d.name, err)
		}
		d.variants = append(d.variants, variant{tiles: t, program: prog})
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
	plain := options
	options += vendorOptions(dev)
	// Programs belong to a context: key by the context's handle.
	key := fmt.Sprintf("%p|%s|%d", ctxHandle(ctx), options, len(src))
	if p := shared.programs[key]; p != nil && !faultActive(FaultBuild) {
		return p, nil
	}
	prog, err := ctx.CreateProgramWithSource([]string{src})
	if err != nil {
		return nil, fmt.Errorf("creating the program: %w", err)
	}
	err = prog.BuildProgram([]*cl.Device{dev}, options)
	if err != nil && options != plain {
		// A vendor option the driver does not take: build without.
		fmt.Fprintf(os.Stderr, "opencl: building with %q failed, building without: %v\n", options, err)
		prog.Release()
		if prog, err = ctx.CreateProgramWithSource([]string{src}); err != nil {
			return nil, fmt.Errorf("creating the program: %w", err)
		}
		err = prog.BuildProgram([]*cl.Device{dev}, plain)
	}
	if err != nil {
		prog.Release()
		return nil, fmt.Errorf("building the kernels: %w", err)
	}
	reportBuild(prog, dev, fmt.Sprintf("%v,%d", t, t.RL))
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
