//go:build !amd64 || noasm

package asm

// Enabled is true when the routines of this package are the assembly ones.
const Enabled = false

// Kernel6x16 is the loop
//
//	for i := 0; i < 6; i++ {
//		for j := 0; j < 16; j++ {
//			var s float32
//			for p := 0; p < k; p++ {
//				s += a[i*rsa+p*csa] * b[p*ldb+j]
//			}
//			c[i*ldc+j] += alpha * s // = with overwrite
//		}
//	}
func Kernel6x16(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb int, c []float32, ldc int, overwrite bool) {
	kernelRowsx16Ref(6, k, alpha, a, rsa, csa, b, ldb, c, ldc, overwrite)
}

// Dot is the loop
//
//	for i := range x {
//		s += float64(x[i]) * float64(y[i])
//	}
func Dot(x, y []float32) float64 {
	return dotRef(x, y)
}

// Axpy is the loop
//
//	for i := range x {
//		y[i] += alpha * x[i]
//	}
func Axpy(alpha float32, x, y []float32) {
	axpyRef(alpha, x, y)
}

// DotPair is the loop
//
//	for i := range x {
//		xy += float64(x[i]) * float64(y[i])
//		xx += float64(x[i]) * float64(x[i])
//	}
func DotPair(x, y []float32) (xy, xx float64) {
	return dotPairRef(x, y)
}

// AxpyPairDot is the loop
//
//	for i := range x {
//		y[i] += a * x[i]
//		y[i] += b * w[i]
//		s += float64(y[i]) * float64(y[i])
//	}
func AxpyPairDot(a float32, x []float32, b float32, w, y []float32) float64 {
	return axpyPairDotRef(a, x, b, w, y)
}

// UpdateZR is the loop
//
//	for i := range p {
//		z[i] += alpha * p[i]
//		r[i] += a * q[i]
//		r[i] += b * p[i]
//		s += float64(r[i]) * float64(r[i])
//	}
func UpdateZR(alpha float32, p []float32, a float32, q []float32, b float32, z, r []float32) float64 {
	return updateZRRef(alpha, p, a, q, b, z, r)
}

// Xpby is the loop
//
//	for i := range x {
//		y[i] = x[i] + beta*y[i]
//	}
func Xpby(x []float32, beta float32, y []float32) {
	xpbyRef(x, beta, y)
}

// FMALoop is the loop
//
//	for ; n > 0; n-- {
//		for r := range acc { // 96 lanes: twelve 8-wide registers
//			acc[r] += 1 * 0x1p-10
//		}
//	}
//
// which in pure Go measures the scalar, not the vector, peak. It returns
// the sum of the registers' first lanes, 12*n*2^-10, as the assembly does.
func FMALoop(n int) float32 {
	var acc [96]float32
	x, y := float32(1), float32(0x1p-10)
	for ; n > 0; n-- {
		for r := range acc {
			acc[r] += x * y
		}
	}
	var s float32
	for r := 0; r < len(acc); r += 8 {
		s += acc[r]
	}
	return s
}

// PackPanel is the loop
//
//	for p := 0; p < k; p++ {
//		for j := 0; j < 16; j++ {
//			dst[p*16+j] = b[p*ldb+j]
//		}
//	}
func PackPanel(k int, b []float32, ldb int, dst []float32) {
	packPanelRef(k, b, ldb, dst)
}

// TransposePanel is the loop
//
//	for j := 0; j < 16; j++ {
//		for p := 0; p < k&^7; p++ {
//			dst[p*ldd+j] = b[j*ldb+p]
//		}
//	}
func TransposePanel(k int, b []float32, ldb int, dst []float32, ldd int) {
	transposePanelRef(k, b, ldb, dst, ldd)
}

// MaxAbsBits is the loop
//
//	for _, v := range x {
//		m = max(m, math.Float32bits(v)&0x7fffffff)
//	}
func MaxAbsBits(x []float32) uint32 {
	return maxAbsBitsRef(x)
}

// MulAdd is the loop
//
//	for i := range x {
//		y[i] += m[i] * x[i]
//	}
//
// rounded twice where the assembly fuses the two: the same values where
// m[i]*x[i] is exact (m[i] 0 or 1, as for a mask).
func MulAdd(m, x, y []float32) {
	mulAddRef(m, x, y)
}

// Hadamard is the loop
//
//	for i := range x {
//		y[i] *= x[i]
//	}
func Hadamard(x, y []float32) {
	hadamardRef(x, y)
}

// ScaleTo is the loop
//
//	for i := range x {
//		y[i] = alpha * x[i]
//	}
func ScaleTo(alpha float32, x, y []float32) {
	scaleToRef(alpha, x, y)
}

// ScaleTo64 is the loop
//
//	for i := range x {
//		y[i] = float32(float64(x[i]) * alpha)
//	}
func ScaleTo64(alpha float64, x, y []float32) {
	scaleTo64Ref(alpha, x, y)
}

// SquaresTo64 is the loop
//
//	for i := range x {
//		y[i] = float32(float64(x[i]) * float64(x[i]) * alpha)
//	}
func SquaresTo64(alpha float64, x, y []float32) {
	squaresTo64Ref(alpha, x, y)
}

// SquaresDot4 is the loop
//
//	for r := 0; r < 4; r++ {
//		for i := 0; i < len(w)&^3; i++ {
//			v := float64(y[r*ldy+i])
//			acc[4*r+i%4] += v * v * w[i]
//		}
//	}
func SquaresDot4(acc *[16]float64, y []float32, ldy int, w []float64) {
	squaresDot4Ref(acc, y, ldy, w)
}

// Patch3x3 is the loop
//
//	for c := 0; c < channels; c++ {
//		for i := 0; i < 3; i++ {
//			for j := 0; j < 3; j++ {
//				row[9*c+3*i+j] = src[c*plane+i*line+j]
//			}
//		}
//	}
func Patch3x3(row, src []float32, channels, plane, line int) {
	patch3x3Ref(row, src, channels, plane, line)
}

// ScaleToNT is the loop of ScaleTo (stores through the cache here)
//
//	for i := range x {
//		y[i] = alpha * x[i]
//	}
func ScaleToNT(alpha float32, x, y []float32) {
	scaleToRef(alpha, x, y)
}

// PrefetchRows is a hint only: here it does nothing.
func PrefetchRows(a []float32, rows, ld, cols int) {}

// Kernel4x16 is the loop
//
//	for i := 0; i < 4; i++ {
//		for j := 0; j < 16; j++ {
//			var s float32
//			for p := 0; p < k; p++ {
//				s += a[i*rsa+p*csa] * b[p*ldb+j]
//			}
//			c[i*ldc+j] += alpha * s // = with overwrite
//		}
//	}
func Kernel4x16(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb int, c []float32, ldc int, overwrite bool) {
	kernelRowsx16Ref(4, k, alpha, a, rsa, csa, b, ldb, c, ldc, overwrite)
}

// Kernel8x32 is the loop
//
//	for i := 0; i < 8; i++ {
//		for j := 0; j < 32; j++ {
//			var s float32
//			for p := 0; p < k; p++ {
//				off := p*ldb + j
//				if j >= 16 {
//					off += boff - 16
//				}
//				s += a[i*rsa+p*csa] * b[off]
//			}
//			c[i*ldc+j] += alpha * s // = with overwrite
//		}
//	}
func Kernel8x32(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, boff int, c []float32, ldc int, overwrite bool) {
	kernel8x32Ref(k, alpha, a, rsa, csa, b, ldb, boff, c, ldc, overwrite)
}

// Kernel8x32Tiles is Kernel8x32 on tiles tiles in turn, A and B in
// segments of kseg steps (kseg <= 0 means k), ajump and bjump apart.
func Kernel8x32Tiles(tiles, k int, alpha float32, a []float32, rsa, csa, astep int, b []float32, ldb, boff, bstep int, c []float32, ldc, cstep int, overwrite bool, kseg, ajump, bjump int) {
	kernel8x32TilesRef(tiles, k, alpha, a, rsa, csa, astep, b, ldb, boff, bstep, c, ldc, cstep, overwrite, kseg, ajump, bjump)
}

// FMALoop512 is FMALoop: without the assembly there is no wider peak.
func FMALoop512(n int) float32 { return FMALoop(n) }
