// Package blas is the one place the numerics of this module call for dense
// float32 products: the general matrix product used by the Fisher operator,
// and the dot and axpy kernels used by the conjugate-gradient updates.
//
// Matrices are row-major. Every routine dispatches through a Kernels value
// chosen once at start-up; Use switches it at run time (the optimizer's
// backend option and the FROG_BACKEND environment variable end up here).
// The portable implementation delegates GEMM to gonum's pure-Go BLAS, which
// splits large products across GOMAXPROCS goroutines. On amd64 with AVX2 and
// FMA the default is the assembly of package asm; its products run on the
// AVX-512 micro-kernel where the CPU has AVX-512F, unless the environment
// variable FROG_ISA is "avx2" (MicroKernel reports which).
//
// FisherProduct also serves a CG run wholly in the points' space
// (cg.PointsSpace: StartPoints, WeighRows, TimesGram, Expand) where that
// saves flops (PointsGains; FROG_RECURRENCE=off or always overrides the
// choice).
//
// Results do not depend on the number of cores: products are split by
// their output (rows or columns of C), never by the inner dimension, and
// the fused Fisher product sums its chunks of points, whose number follows
// the shape alone, in a fixed order. The same inputs give the same bits
// with GOMAXPROCS 1 or 64, from run to run. A product split by rows that
// writes C from nothing (and the image products) hands its tile-high
// strips to whichever core is ready, block by block of B, so that a core
// slowed by other load does fewer; a strip starts a block only once its
// previous block is done, so each tile still adds its blocks in order.
package blas
