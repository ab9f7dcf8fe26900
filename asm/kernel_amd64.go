//go:build !noasm

package asm

// Enabled is true when the routines of this package are the assembly ones.
const Enabled = true

// Kernel6x16 computes, for i < 6 and j < 16,
//
//	c[i*ldc+j] += alpha * sum_{p<k} a[i*rsa+p*csa] * b[p*ldb+j]
//
// or, with overwrite, c[i*ldc+j] = alpha * sum: C is then not read, and
// may hold anything.
//
// with the 6x16 sums held in registers across the whole k loop. rsa and csa
// are the element strides of A's rows and columns, so that A may be read in
// place either as stored (rsa = lda, csa = 1) or transposed (rsa = 1,
// csa = lda); B is read as rows of 16 consecutive values, ldb apart.
//
//go:noescape
func Kernel6x16(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb int, c []float32, ldc int, overwrite bool)

// Dot returns sum_i float64(x[i])*float64(y[i]) over len(x) elements.
//
//go:noescape
func Dot(x, y []float32) float64

// Axpy computes y[i] += alpha*x[i] over len(x) elements.
//
//go:noescape
func Axpy(alpha float32, x, y []float32)

// DotPair returns Dot(x, y) and Dot(x, x), with their bits, in one pass.
//
//go:noescape
func DotPair(x, y []float32) (xy, xx float64)

// AxpyPairDot computes y[i] = b*w[i] + (a*x[i] + y[i]) over len(x)
// elements, each with a fused multiply-add (the same values as Axpy(a, x,
// y) then Axpy(b, w, y)), and returns Dot(y, y) of the new y, with its
// bits, in the same pass.
//
//go:noescape
func AxpyPairDot(a float32, x []float32, b float32, w, y []float32) float64

// UpdateZR computes z[i] += alpha*p[i] and r[i] = b*p[i] + (a*q[i] +
// r[i]) over len(p) elements, each with fused multiply-adds (the values
// of Axpy(alpha, p, z) and AxpyPairDot(a, q, b, p, r)), and returns
// Dot(r, r) of the new r, with its bits, in one pass over the four.
//
//go:noescape
func UpdateZR(alpha float32, p []float32, a float32, q []float32, b float32, z, r []float32) float64

// Xpby computes y[i] = x[i] + beta*y[i] over len(x) elements.
//
//go:noescape
func Xpby(x []float32, beta float32, y []float32)

// FMALoop runs n rounds of twelve independent 8-wide float32 FMAs (192
// flops a round) on registers only, to measure the arithmetic peak. Every
// FMA adds 1 * 2^-10; it returns the first lane of the twelve registers'
// sum, 12*n*2^-10, so that a test can tell the rounds ran.
//
//go:noescape
func FMALoop(n int) float32

// PackPanel copies a k x 16 block of rows ldb apart into a contiguous
// panel:
//
//	dst[p*16+j] = b[p*ldb+j]    for p < k, j < 16
//
//go:noescape
func PackPanel(k int, b []float32, ldb int, dst []float32)

// TransposePanel copies the first k&^7 columns of 16 rows ldb apart into
// rows of 16 values ldd apart (a contiguous panel when ldd is 16),
// transposed, eight by eight in registers:
//
//	dst[p*ldd+j] = b[j*ldb+p]    for p < k&^7, j < 16
//
//go:noescape
func TransposePanel(k int, b []float32, ldb int, dst []float32, ldd int)

// MaxAbsBits returns the largest of the bit patterns of |x[i]| (the sign
// bit cleared), 0 for an empty x. They order as the magnitudes do, with
// Inf above every finite value and NaN above Inf.
//
//go:noescape
func MaxAbsBits(x []float32) uint32

// MulAdd computes y[i] += m[i]*x[i] over len(x) elements, each with one
// rounding (a fused multiply-add). m and y hold at least len(x) values.
//
//go:noescape
func MulAdd(m, x, y []float32)

// Hadamard computes y[i] *= x[i] over len(x) elements.
//
//go:noescape
func Hadamard(x, y []float32)

// ScaleTo computes y[i] = alpha*x[i] over len(x) elements.
//
//go:noescape
func ScaleTo(alpha float32, x, y []float32)

// ScaleTo64 computes y[i] = float32(float64(x[i]) * alpha) over len(x)
// elements: the product in float64, rounded once.
//
//go:noescape
func ScaleTo64(alpha float64, x, y []float32)

// SquaresTo64 computes y[i] = float32(float64(x[i]) * float64(x[i]) *
// alpha) over len(x) elements: the square and the product in float64,
// each rounded, then rounded once to float32.
//
//go:noescape
func SquaresTo64(alpha float64, x, y []float32)

// SquaresDot4 adds, for each of four rows r of y (ldy values apart), the
// terms float64(v)*float64(v)*w[i] of v = y[r*ldy+i], i < len(w) rounded
// down to a multiple of four, into acc[4*r+i%4], each in the order of i:
// four chains a row. y must hold 3*ldy + that many values.
//
//go:noescape
func SquaresDot4(acc *[16]float64, y []float32, ldy int, w []float64)

// Patch3x3 writes the 3x3 windows of channels input planes (plane values
// apart, rows line values apart) that start at src[0], src[plane], ...
// into row, nine values a channel:
//
//	row[9*c+3*i+j] = src[c*plane+i*line+j]   (c < channels, i, j < 3)
//
// Every channel but the last reads src[c*plane+2*line+3] too, which
// must lie inside src.
//
//go:noescape
func Patch3x3(row, src []float32, channels, plane, line int)

// ScaleToNT is ScaleTo (the same bits) storing y past the cache: for a
// large output written once and read much later, it saves the reads of
// the lines it overwrites. x and y must not overlap.
//
//go:noescape
func ScaleToNT(alpha float32, x, y []float32)

// PrefetchRows asks the cache for the lines of rows rows of cols values,
// ld apart, starting at a[0], and returns without waiting for them.
//
//go:noescape
func PrefetchRows(a []float32, rows, ld, cols int)

// Kernel4x16 is Kernel6x16 for four rows: for i < 4 and j < 16,
//
//	c[i*ldc+j] += alpha * sum_{p<k} a[i*rsa+p*csa] * b[p*ldb+j]
//
// (= with overwrite).
//
//go:noescape
func Kernel4x16(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb int, c []float32, ldc int, overwrite bool)
