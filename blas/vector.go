package blas

import (
	"math"

	"github.com/frogopt/frog/asm"
)

// xpbyer is implemented by kernels with a fused y = x + beta*y.
type xpbyer interface {
	Xpby(x []float32, beta float32, y []float32)
}

// Xpby computes y[i] = x[i] + beta*y[i] over len(x) elements with k's
// fused kernel when it has one (the CG direction update p = r + beta*p).
func Xpby(k Kernels, x []float32, beta float32, y []float32) {
	if f, ok := k.(xpbyer); ok {
		f.Xpby(x, beta, y)
		return
	}
	y = y[:len(x)]
	for i, v := range x {
		y[i] = v + beta*y[i]
	}
}

// pairer is implemented by kernels with fused passes for the CG update.
type pairer interface {
	DotPair(x, y []float32) (xy, xx float64)
	AxpyPairDot(a float32, x []float32, b float32, w, y []float32) float64
	UpdateZR(alpha float32, p []float32, a float32, q []float32, b float32, z, r []float32) float64
}

// DotPair returns k.Dot(x, y) and k.Dot(x, x), in one pass over x and y
// with k's fused kernel when it has one.
func DotPair(k Kernels, x, y []float32) (xy, xx float64) {
	if f, ok := k.(pairer); ok {
		return f.DotPair(x, y)
	}
	return k.Dot(x, y), k.Dot(x, x)
}

// AxpyPairDot computes k.Axpy(a, x, y), then k.Axpy(b, w, y), and returns
// k.Dot(y, y) of the new y: in one pass over the three vectors with k's
// fused kernel when it has one.
func AxpyPairDot(k Kernels, a float32, x []float32, b float32, w, y []float32) float64 {
	if f, ok := k.(pairer); ok {
		return f.AxpyPairDot(a, x, b, w, y)
	}
	k.Axpy(a, x, y)
	k.Axpy(b, w, y)
	return k.Dot(y, y)
}

// UpdateZR computes k.Axpy(alpha, p, z) and AxpyPairDot(k, a, q, b, p, r),
// and returns what the latter returns: CG's z += alpha*p and r -=
// alpha*(q + shift*p) with |r|^2. With k's fused kernel it is one pass
// over the four vectors, which streams z and r from memory together
// instead of in two passes.
func UpdateZR(k Kernels, alpha float32, p []float32, a float32, q []float32, b float32, z, r []float32) float64 {
	if f, ok := k.(pairer); ok {
		return f.UpdateZR(alpha, p, a, q, b, z, r)
	}
	k.Axpy(alpha, p, z)
	return AxpyPairDot(k, a, q, b, p, r)
}

// MaxAbsBits returns the largest bit pattern of |x[i]| (sign bit
// cleared): the patterns order as the magnitudes do, with Inf and NaN
// above every finite value. The result is exact, the same on every
// kernel set. A long x is scanned on every core, in pieces of at least
// maxAbsPiece values: a maximum is the same in any order.
func MaxAbsBits(x []float32) uint32 {
	if len(x) < 2*maxAbsPiece {
		return maxAbsBits(x)
	}
	t := freeMaxAbs.get()
	t.x = x
	Parallel(t, len(x)/maxAbsPiece)
	m := uint32(0)
	for _, v := range t.tops {
		m = max(m, v)
	}
	*t = maxAbsTask{}
	freeMaxAbs.put(t)
	return m
}

// maxAbsPiece is the fewest values a part of MaxAbsBits scans (256 KiB):
// below that, handing work to a helper costs more than it saves.
const maxAbsPiece = 1 << 16

// maxAbsTask is MaxAbsBits split across the cores: part p writes the
// maximum of its piece to tops[p]; the entries of parts that do not run
// stay 0 (Parallel runs at most maxHelpers+1 parts).
type maxAbsTask struct {
	x    []float32
	tops [maxHelpers + 1]uint32
}

var freeMaxAbs = make(freeList[maxAbsTask], maxHelpers)

func (t *maxAbsTask) RunPart(part, parts int) {
	n := len(t.x)
	t.tops[part] = maxAbsBits(t.x[n*part/parts : n*(part+1)/parts])
}

// maxAbsBits is MaxAbsBits on one core.
func maxAbsBits(x []float32) uint32 {
	if hasAVX2 {
		return asm.MaxAbsBits(x)
	}
	var m uint32
	for _, v := range x {
		m = max(m, math.Float32bits(v)&0x7fffffff)
	}
	return m
}

// Normalizer returns the power of two 2^-e that brings the largest
// magnitude in x into [1, 2), or 1 when x is all zeros or holds a value
// that is not finite, from one vector pass (MaxAbsBits).
func Normalizer(x []float32) float64 {
	return NormalizerOfBits(MaxAbsBits(x))
}

// NormalizerOfBits is Normalizer given MaxAbsBits of the values.
func NormalizerOfBits(top uint32) float64 {
	if top == 0 || top >= 0x7f800000 {
		return 1
	}
	_, e := math.Frexp(float64(math.Float32frombits(top)))
	return math.Ldexp(1, 1-e)
}

// ScaleTo computes y[i] = alpha*x[i] over len(x) elements (x and y may be
// the same slice). Each product is rounded once, as the plain loop's, so
// the result is the same on every kernel set.
func ScaleTo(alpha float32, x, y []float32) {
	y = y[:len(x)]
	if hasAVX2 {
		asm.ScaleTo(alpha, x, y)
		return
	}
	for i, v := range x {
		y[i] = alpha * v
	}
}

// ScaleTo64 computes y[i] = float32(float64(x[i])*alpha) over len(x)
// elements (x and y may be the same slice): the product in float64,
// rounded once, the same bits on every kernel set.
func ScaleTo64(alpha float64, x, y []float32) {
	y = y[:len(x)]
	if hasAVX2 {
		asm.ScaleTo64(alpha, x, y)
		return
	}
	for i, v := range x {
		y[i] = float32(float64(v) * alpha)
	}
}

// SquaresTo64 computes y[i] = float32(float64(x[i])*float64(x[i])*alpha)
// over len(x) elements: the square and the product in float64, each
// rounded, then rounded once to float32, the same bits on every kernel
// set.
func SquaresTo64(alpha float64, x, y []float32) {
	y = y[:len(x)]
	if hasAVX2 {
		asm.SquaresTo64(alpha, x, y)
		return
	}
	for i, v := range x {
		y[i] = float32(float64(v) * float64(v) * alpha)
	}
}

// AddWeightedSquares adds, for each row r < rows (at most four) of y, ldy
// values apart, the terms v*v*w[i] of v = float64(y[r*ldy+i]), i <
// len(w), into four partial sums acc[4*r] to acc[4*r+3]: term i into
// acc[4*r+i%4] for i below len(w) rounded down to a multiple of four, the
// last terms into acc[4*r], each sum in the order of i. The bits are the
// same on every kernel set; four rows at once run as independent chains
// of additions.
func AddWeightedSquares(acc *[16]float64, rows int, y []float32, ldy int, w []float64) {
	n := len(w)
	whole := n &^ 3
	r0 := 0
	if hasAVX2 && rows == 4 && whole > 0 {
		_ = y[:3*ldy+n]
		asm.SquaresDot4(acc, y, ldy, w)
		r0 = 4
	}
	for r := r0; r < rows; r++ {
		yr := y[r*ldy : r*ldy+n]
		a := acc[4*r : 4*r+4 : 4*r+4]
		for i := 0; i < whole; i += 4 {
			y4, w4 := yr[i:i+4:i+4], w[i:i+4:i+4]
			a[0] += float64(y4[0]) * float64(y4[0]) * w4[0]
			a[1] += float64(y4[1]) * float64(y4[1]) * w4[1]
			a[2] += float64(y4[2]) * float64(y4[2]) * w4[2]
			a[3] += float64(y4[3]) * float64(y4[3]) * w4[3]
		}
	}
	for r := 0; r < rows; r++ {
		for i := whole; i < n; i++ {
			v := float64(y[r*ldy+i])
			acc[4*r] += v * v * w[i]
		}
	}
}

// ScaleToNT is ScaleTo (the same bits) for a large output written once
// and read much later: where the assembly runs, y is stored past the
// cache, which saves reading the lines it overwrites. x and y must not
// overlap.
func ScaleToNT(alpha float32, x, y []float32) {
	y = y[:len(x)]
	if hasAVX2 {
		asm.ScaleToNT(alpha, x, y)
		return
	}
	ScaleTo(alpha, x, y)
}
