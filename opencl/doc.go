// Package opencl runs FROG's row-wise preconditioning (FROG.md steps 1-3, 5
// and 6) on an OpenCL device: im2col over the subsample, the traces and
// Lhat weights, the two products of the Fisher operator as tiled GEMMs, and
// the whole batched CG loop of a layer, enqueued with no host round trip
// per iteration. Its Engine implements backend.Engine; the root package
// registers it as the "opencl" backend when built with the opencl tag.
//
// Everything but this file needs the build tag opencl, cgo and an OpenCL
// ICD loader (libOpenCL, found through pkg-config). Without the tag the
// package is empty and the library builds with no cgo and no OpenCL.
//
// # Devices
//
// A GPU (or accelerator) with cl_khr_fp64 is preferred: the per-row CG
// scalars, the traces and every reduction are float64, as on the CPU.
// A CPU OpenCL device (PoCL) is used only when Options.AllowCPU is set;
// the root package sets it when the opencl backend is named (Config.Backend,
// NewPreconditioner or FROG_BACKEND=opencl) or FROG_OPENCL_DEVICE=any, so
// that the automatic choice never prefers PoCL
// to the native CPU path while CI can still test the kernels on it.
//
// # Numerics
//
// The kernels follow backend.CPU operation for operation: patches are
// scaled by a power of two, weights carry the inverse square, every row of
// the CG is scaled by its own power of two, traces, dots and CG scalars
// are float64, and the rows are normalized by c_j = 1/sqrt(|z_j.e_j+eps|).
// Only the float32 summation order of the two products differs, so results
// agree with the CPU to float32 rounding. One documented difference: the
// patch scale of a group comes from the largest magnitude of the group's
// input channels over the subsample (a bound on every patch entry, known
// before im2col so that im2col writes scaled patches in one pass), not
// from the patches themselves. Any power of two gives the same float32
// results while nothing overflows or underflows, so the two agree except
// when pixels that no patch reads are some 2^100 times larger than the
// pixels patches read.
//
// # Tiles
//
// The patch matrix is stored with its rows padded to a multiple of 32
// coordinates and its points to a multiple of 128, with zeros, so that the
// two products load aligned float4s and need no bounds checks along the
// contraction. Each product is a tiled GEMM: a work-group computes a
// TM x TN tile through two local-memory slabs TK deep (the next slab's
// loads are in flight while the current one is multiplied), a work-item a
// WM x WN block in registers. The program is built for a few blockings
// (see DefaultTiles); for every layer each product takes the blocking
// and the number of split-K partial sums that a model of the device
// (Engine.plan) finds fastest, the partial sums then added in a fixed
// order (those of the first product by a separate kernel, those of the
// second by the CG update as it reads them), so that results do not
// depend on scheduling. The set may be overridden with Options.Tiles or
// FROG_OPENCL_TILES ("TM,TN,TK,WM,WN[,RL]", several separated by ";"),
// which gpucheck.sh and BenchmarkProfileResNet18 use to tune on a GPU. A built
// program is cached per device and blocking for the life of the process.
// For tuning, FROG_OPENCL_BUILDLOG prints each build's log (on NVIDIA with
// -cl-nv-verbose: registers and spills per kernel) and, when it names a
// directory, writes the program binary (PTX) there.
//
// im2col takes 32 patches at a time through local memory, so that it
// reads neighbouring pixels and writes whole patch rows, and writes the
// patches' norms on the way (their parts, when a layer with few patches
// spreads the coordinates over several work-groups).
//
// Host jobs (Engine.Precondition) copy their tensors through pinned
// staging memory, several goroutines filling it while the device fetches
// the previous tensor.
//
// # Device-resident use
//
// A training stack whose tensors live on the device passes cl buffers in a
// DeviceJob to Engine.PreconditionDevice: activations and output gradients
// of the whole batch with the subsample's indices, the gradient, and the
// buffer that receives the direction. No tensor is copied to or from the
// host. The buffers must belong to the engine's context: make the engine
// on the stack's own context with NewDeviceFromContext, or allocate the
// buffers in Engine.Context().
//
// # Faults
//
// NewEngine fails (and the root package falls back to the CPU, keeping
// the reason) when there is no platform or suitable device or the kernels
// do not build; Precondition fails when an allocation or an enqueue fails.
// InjectFault simulates each of these for tests.
package opencl
