package blas

import (
	"fmt"
	"sync/atomic"
)

// Kernels is the set of float32 kernels the numerics need. An
// implementation must be safe for concurrent use.
type Kernels interface {
	// Name identifies the implementation, for diagnostics and benchmarks.
	Name() string
	// Gemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices,
	// where op(A) is m x k, op(B) is k x n and C is m x n. transA and
	// transB select the transpose of the stored matrix.
	Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	// Dot returns sum x[i]*y[i] over len(x) elements, accumulated in
	// float64 so that it neither overflows nor loses the small terms where
	// the exact sum is representable.
	Dot(x, y []float32) float64
	// Axpy computes y[i] += alpha*x[i] over len(x) elements.
	Axpy(alpha float32, x, y []float32)
}

var (
	registry = map[string]Kernels{}
	current  atomic.Pointer[Kernels]
	fallback Kernels
)

// register makes k available to Use under its name. The first registered
// implementation that claims preference becomes the default.
func register(k Kernels, preferred bool) {
	registry[k.Name()] = k
	if preferred || current.Load() == nil {
		current.Store(&k)
	}
}

// Current returns the implementation in use.
func Current() Kernels { return *current.Load() }

// Portable returns the pure-Go implementation, available on every machine.
func Portable() Kernels { return fallback }

// Available lists the names that Use accepts on this machine.
func Available() []string {
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	return names
}

// Use selects the implementation named name ("purego", or "avx2" on a
// machine with AVX2 and FMA). It returns an error and changes nothing when
// the name is unknown or the machine lacks the instructions.
func Use(name string) error {
	k, ok := registry[name]
	if !ok {
		return fmt.Errorf("blas: kernels %q are not available on this machine (have %v)", name, Available())
	}
	current.Store(&k)
	return nil
}

// Gemm computes C = alpha*op(A)*op(B) + beta*C with the current kernels.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	Current().Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Dot returns the float64-accumulated dot product of x and y[:len(x)].
func Dot(x, y []float32) float64 { return Current().Dot(x, y) }

// Axpy computes y += alpha*x over len(x) elements.
func Axpy(alpha float32, x, y []float32) { Current().Axpy(alpha, x, y) }
