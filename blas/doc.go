// Package blas is the one place the numerics of this module call for dense
// float32 products: the general matrix product used by the Fisher operator,
// and the dot and axpy kernels used by the conjugate-gradient updates.
//
// Matrices are row-major. Every routine dispatches through a Kernels value
// chosen once at start-up; Use switches it at run time (the optimizer's
// backend option and the FROG_BACKEND environment variable end up here).
// The portable implementation delegates GEMM to gonum's pure-Go BLAS, which
// splits large products across GOMAXPROCS goroutines.
package blas
