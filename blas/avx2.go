package blas

import (
	"os"
	"runtime"

	"golang.org/x/sys/cpu"

	"github.com/frogopt/frog/asm"
)

// avx2 runs products and vector kernels in the assembly of package asm.
// It is registered, and preferred, only when the assembly is compiled in
// (not under the noasm tag) and the CPU has AVX2 and FMA. Its products run
// on the AVX-512 micro-kernel (8 x 32 tiles) when the CPU has AVX-512F,
// unless FROG_ISA=avx2; the two micro-kernels give the same bits.
type avx2 struct{}

// hasAVX2 reports whether the avx2 kernels can run here, and hasAVX512
// whether their products can use the AVX-512 micro-kernel.
var (
	hasAVX2   = asm.Enabled && cpu.X86.HasAVX2 && cpu.X86.HasFMA
	hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F
)

// ISAEnv is the environment variable that, set to "avx2", keeps the
// products on the AVX2 micro-kernel on a CPU with AVX-512 (to compare the
// two, or where AVX-512 lowers the clock).
const ISAEnv = "FROG_ISA"

func init() {
	if hasAVX2 {
		if hasAVX512 && os.Getenv(ISAEnv) != "avx2" {
			isa = avx512Kernels
		}
		register(avx2{}, true)
	}
}

// PeakLoop returns the assembly loop of independent FMAs on the registers
// of the micro-kernel in use (asm.FMALoop512 with AVX-512, else
// asm.FMALoop) and the flops of one of its rounds: the arithmetic peak
// that the products' GFLOP/s compare with.
func PeakLoop() (loop func(rounds int) float32, flopsPerRound int) {
	if MicroKernel() == "avx512" {
		return asm.FMALoop512, asm.FMALoop512Flops
	}
	return asm.FMALoop, asm.FMALoopFlops
}

// MicroKernel names the instruction set of the products' micro-kernel in
// use: "avx512", "avx2", or "" when the assembly is not in use (noasm,
// another architecture, or a CPU without AVX2 and FMA). PeakLoop gives the
// matching measure of the peak.
func MicroKernel() string {
	if !hasAVX2 {
		return ""
	}
	return isa.name
}

func (avx2) Name() string { return "avx2" }

// serialFlops is the size below which a product runs on one goroutine:
// handing work to a helper costs a few microseconds.
const serialFlops = 1 << 21

// Gemm computes C = alpha*op(A)*op(B) + beta*C (row-major). Every transpose
// combination runs on the micro-kernel; op(A) is read in place, op(B) in
// place when it is not transposed and packed when it is.
func (avx2) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	t := gemmTask{
		transA: transA, transB: transB,
		m: m, n: n, k: k,
		alpha: alpha, beta: beta,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
	}
	runGemm(&t)
}

// runGemm runs t, split by rows of C or by columns (whichever has more
// tiles, or by rows with rowsFirst) across the cores when it is big
// enough to gain from it; split by rows, its strips go to the parts
// through stripClaims where claimedSplit says so.
func runGemm(t *gemmTask) {
	rowTiles, colTiles := (t.m+isa.rows-1)/isa.rows, (t.n+isa.cols-1)/isa.cols
	t.byRows = rowTiles >= colTiles || t.rowsFirst
	tiles := colTiles
	if t.byRows {
		tiles = rowTiles
	}
	if 2*t.m*t.n*t.k < serialFlops || tiles < 2 {
		ws := spare.get()
		t.run(0, 1, ws)
		spare.put(ws)
		return
	}
	pt := freeTasks.get()
	*pt = *t
	// The parts the split will most likely get (dispatch takes what
	// helpers are idle): stripClaims gives each a share.
	planned := min(runtime.GOMAXPROCS(0), tiles, maxHelpers+1)
	var c *stripClaims
	if pt.claimedSplit(planned) {
		c = claimsFor(rowTiles, (t.n+ncBlock-1)/ncBlock*t.kBlocks(), planned)
		pt.claims = c
	}
	parallel(pt, tiles)
	if c != nil {
		freeClaims.put(c)
	}
	*pt = gemmTask{}
	freeTasks.put(pt)
}

// Dot returns the float64-accumulated dot product of x and y[:len(x)].
func (avx2) Dot(x, y []float32) float64 {
	y = y[:len(x)]
	return asm.Dot(x, y)
}

// Axpy computes y += alpha*x over len(x) elements.
func (avx2) Axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	asm.Axpy(alpha, x, y)
}

// DotPair returns Dot(x, y) and Dot(x, x) in one pass.
func (avx2) DotPair(x, y []float32) (xy, xx float64) {
	y = y[:len(x)]
	return asm.DotPair(x, y)
}

// AxpyPairDot computes y += a*x, then y += b*w, and returns Dot(y, y) of
// the new y, in one pass.
func (avx2) AxpyPairDot(a float32, x []float32, b float32, w, y []float32) float64 {
	w, y = w[:len(x)], y[:len(x)]
	return asm.AxpyPairDot(a, x, b, w, y)
}

// UpdateZR computes z += alpha*p, then r += a*q and r += b*p, and returns
// Dot(r, r) of the new r, in one pass.
func (avx2) UpdateZR(alpha float32, p []float32, a float32, q []float32, b float32, z, r []float32) float64 {
	q, z, r = q[:len(p)], z[:len(p)], r[:len(p)]
	return asm.UpdateZR(alpha, p, a, q, b, z, r)
}

// Xpby computes y = x + beta*y over len(x) elements.
func (avx2) Xpby(x []float32, beta float32, y []float32) {
	y = y[:len(x)]
	asm.Xpby(x, beta, y)
}

// freeTasks keeps gemmTasks for runGemm: a task handed to the helpers
// escapes, so it is reused rather than allocated per product.
var freeTasks = make(freeList[gemmTask], maxHelpers)
