package blas

import (
	gblas "gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// pureGo is the portable implementation: gonum's Sgemm for products and
// plain loops for the vector kernels.
type pureGo struct{ impl gonum.Implementation }

func init() {
	fallback = pureGo{}
	register(fallback, false)
}

func (pureGo) Name() string { return "purego" }

func (g pureGo) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		// gonum requires lda, ldb >= 1 even when nothing is read.
		scale(beta, m, n, c, ldc)
		return
	}
	g.impl.Sgemm(transpose(transA), transpose(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Dot is the loop
//
//	for i := range x { s += float64(x[i]) * float64(y[i]) }
func (pureGo) Dot(x, y []float32) float64 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += float64(x[i]) * float64(y[i])
		s1 += float64(x[i+1]) * float64(y[i+1])
		s2 += float64(x[i+2]) * float64(y[i+2])
		s3 += float64(x[i+3]) * float64(y[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i]) * float64(y[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// Axpy is the loop
//
//	for i := range x { y[i] += alpha * x[i] }
func (pureGo) Axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

func transpose(t bool) gblas.Transpose {
	if t {
		return gblas.Trans
	}
	return gblas.NoTrans
}

// scale computes C = beta*C, with beta == 0 clearing C (BLAS semantics:
// NaN in C does not survive a zero beta).
func scale(beta float32, m, n int, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}
