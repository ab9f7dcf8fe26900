// Package asm holds the AVX2+FMA assembly kernels behind package blas: a
// register-blocked float32 GEMM micro-kernel (a 6x16 tile of C held in
// twelve YMM registers) and its AVX-512 twin for CPUs that have it (an 8x32
// tile in sixteen ZMM registers, the same sums in the same order; each
// adds its tile to C or, told to overwrite, writes it without reading C;
// Kernel8x32Tiles runs the latter on a strip of tiles in one call, its
// operands possibly runs of a larger matrix that it jumps between),
// the vector kernels the conjugate-gradient updates need (a dot product of
// float32 vectors accumulated in float64, axpy, the fused direction update
// y = x + beta*y, and two fused passes of the row update: p.q with p.p,
// and r += a*q + b*p with the new |r|^2), and loops of independent FMAs
// that measure the machine's arithmetic peak on either register width.
//
// Every routine has a Go declaration, an _amd64.s body, and a pure-Go twin
// built under !amd64 || noasm whose doc comment shows the loop the assembly
// computes. Enabled reports whether the assembly is compiled in; the caller
// must also check the CPU (golang.org/x/sys/cpu: AVX2 and FMA, and
// AVX-512F for Kernel8x32, Kernel8x32Tiles and FMALoop512) before using
// it, which package blas does once at init. The routines check no
// lengths: the caller guarantees every element they touch exists.
package asm

// The flops of one round of FMALoop (twelve 8-wide FMAs) and of
// FMALoop512 (twelve 16-wide FMAs).
const (
	FMALoopFlops    = 12 * 8 * 2
	FMALoop512Flops = 12 * 16 * 2
)
