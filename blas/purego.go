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
	rowTiles, colTiles := (m+pureTileRows-1)/pureTileRows, (n+pureTileCols-1)/pureTileCols
	if rowTiles*colTiles == 1 {
		g.impl.Sgemm(transpose(transA), transpose(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	// gonum splits a product of four or more 64x64 blocks of C across
	// goroutines it starts, and allocates doing so. Cut C into tiles of
	// three blocks instead (each runs serially in gonum, with the whole
	// inner dimension) and spread them over the helpers: no allocation,
	// and the same bits whatever the number of cores.
	t := freePureTasks.get()
	*t = pureGemmTask{
		impl: g.impl, transA: transA, transB: transB, m: m, n: n, k: k,
		alpha: alpha, beta: beta, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
		colTiles: colTiles,
	}
	tiles := rowTiles * colTiles
	parts := 1
	if 2*m*n*k >= serialFlops {
		parts = tiles
	}
	Parallel(t, parts)
	*t = pureGemmTask{}
	freePureTasks.put(t)
}

// Tiles of C for the portable Gemm: three of gonum's 64x64 blocks, fewer
// than the four from which it goes parallel.
const pureTileRows, pureTileCols = 64, 192

// pureGemmTask is a portable product cut into tiles of C.
type pureGemmTask struct {
	impl           gonum.Implementation
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
	colTiles       int
}

func (t *pureGemmTask) RunPart(part, parts int) {
	tiles := (t.m + pureTileRows - 1) / pureTileRows * t.colTiles
	for tile := tiles * part / parts; tile < tiles*(part+1)/parts; tile++ {
		i0, j0 := tile/t.colTiles*pureTileRows, tile%t.colTiles*pureTileCols
		mi, nj := min(pureTileRows, t.m-i0), min(pureTileCols, t.n-j0)
		// Row i of op(A) starts at a[i*lda] as stored, at a[i] transposed;
		// column j of op(B) at b[j] as stored, at b[j*ldb] transposed.
		var a, b []float32
		if t.transA {
			a = t.a[i0:]
		} else {
			a = t.a[i0*t.lda:]
		}
		if t.transB {
			b = t.b[j0*t.ldb:]
		} else {
			b = t.b[j0:]
		}
		t.impl.Sgemm(transpose(t.transA), transpose(t.transB), mi, nj, t.k, t.alpha, a, t.lda, b, t.ldb, t.beta, t.c[i0*t.ldc+j0:], t.ldc)
	}
}

var freePureTasks = make(freeList[pureGemmTask], maxHelpers)

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
