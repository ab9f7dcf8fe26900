package asm

import "math"

// The reference loops below are built everywhere: they are the pure-Go
// twins' bodies under !amd64 || noasm, and what the tests compare the
// assembly against.

// kernelRowsx16Ref is the micro-kernel for a tile of rows <= 6 rows.
func kernelRowsx16Ref(rows, k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb int, c []float32, ldc int, overwrite bool) {
	var acc [6 * 16]float32
	for p := 0; p < k; p++ {
		brow := b[p*ldb : p*ldb+16]
		for i := 0; i < rows; i++ {
			av := a[i*rsa+p*csa]
			row := acc[i*16 : i*16+16]
			for j, bv := range brow {
				row[j] += av * bv
			}
		}
	}
	storeTileRef(acc[:rows*16], 16, alpha, c, ldc, overwrite)
}

// storeTileRef adds alpha times the tile acc (rows of cols values) to C,
// or with overwrite writes it over C: the micro-kernels' last step.
func storeTileRef(acc []float32, cols int, alpha float32, c []float32, ldc int, overwrite bool) {
	for i := 0; i < len(acc)/cols; i++ {
		crow := c[i*ldc : i*ldc+cols]
		for j := range crow {
			if overwrite {
				crow[j] = alpha * acc[i*cols+j]
			} else {
				crow[j] += alpha * acc[i*cols+j]
			}
		}
	}
}

func dotRef(x, y []float32) float64 {
	y = y[:len(x)]
	var s float64
	for i, v := range x {
		s += float64(v) * float64(y[i])
	}
	return s
}

func dotPairRef(x, y []float32) (xy, xx float64) {
	y = y[:len(x)]
	for i, v := range x {
		xy += float64(v) * float64(y[i])
		xx += float64(v) * float64(v)
	}
	return xy, xx
}

func axpyPairDotRef(a float32, x []float32, b float32, w, y []float32) float64 {
	w, y = w[:len(x)], y[:len(x)]
	var s float64
	for i, v := range x {
		y[i] += a * v
		y[i] += b * w[i]
		s += float64(y[i]) * float64(y[i])
	}
	return s
}

func updateZRRef(alpha float32, p []float32, a float32, q []float32, b float32, z, r []float32) float64 {
	axpyRef(alpha, p, z)
	return axpyPairDotRef(a, q, b, p, r)
}

func axpyRef(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

func xpbyRef(x []float32, beta float32, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] = v + beta*y[i]
	}
}

func packPanelRef(k int, b []float32, ldb int, dst []float32) {
	for p := 0; p < k; p++ {
		copy(dst[p*16:p*16+16], b[p*ldb:p*ldb+16])
	}
}

func transposePanelRef(k int, b []float32, ldb int, dst []float32, ldd int) {
	k &^= 7
	for j := 0; j < 16; j++ {
		row := b[j*ldb : j*ldb+k]
		for p, v := range row {
			dst[p*ldd+j] = v
		}
	}
}

func maxAbsBitsRef(x []float32) uint32 {
	var m uint32
	for _, v := range x {
		m = max(m, math.Float32bits(v)&0x7fffffff)
	}
	return m
}

func hadamardRef(x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] *= v
	}
}

func patch3x3Ref(row, src []float32, channels, plane, line int) {
	for c := 0; c < channels; c++ {
		r := row[9*c : 9*c+9]
		for i := 0; i < 3; i++ {
			s := src[c*plane+i*line:][:3]
			r[3*i], r[3*i+1], r[3*i+2] = s[0], s[1], s[2]
		}
	}
}

func scaleTo64Ref(alpha float64, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] = float32(float64(v) * alpha)
	}
}

func squaresTo64Ref(alpha float64, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] = float32(float64(v) * float64(v) * alpha)
	}
}

func squaresDot4Ref(acc *[16]float64, y []float32, ldy int, w []float64) {
	n := len(w) &^ 3
	if n == 0 {
		return
	}
	_ = y[:3*ldy+n]
	for r := 0; r < 4; r++ {
		for i := 0; i < n; i++ {
			v := float64(y[r*ldy+i])
			acc[4*r+i%4] += v * v * w[i]
		}
	}
}

func mulAddRef(m, x, y []float32) {
	m, y = m[:len(x)], y[:len(x)]
	for i, v := range x {
		y[i] += m[i] * v
	}
}

func scaleToRef(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] = alpha * v
	}
}

// kernel8x32Ref is the AVX-512 micro-kernel: two 16-wide halves of B boff
// values apart.
func kernel8x32Ref(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, boff int, c []float32, ldc int, overwrite bool) {
	kernel8x32TilesRef(1, k, alpha, a, rsa, csa, 0, b, ldb, boff, 0, c, ldc, 0, overwrite, 0, 0, 0)
}

// kernel8x32TilesRef is kernel8x32Ref on tiles tiles astep, bstep and
// cstep apart, element (i, p) of A at i*rsa + p*csa + (p/kseg)*ajump and
// row p of B at p*ldb + (p/kseg)*bjump (kseg <= 0 means k).
func kernel8x32TilesRef(tiles, k int, alpha float32, a []float32, rsa, csa, astep int, b []float32, ldb, boff, bstep int, c []float32, ldc, cstep int, overwrite bool, kseg, ajump, bjump int) {
	if kseg <= 0 {
		kseg = max(k, 1)
	}
	for t := 0; t < tiles; t++ {
		var acc [8 * 32]float32
		for p := 0; p < k; p++ {
			arow := t*astep + p*csa + p/kseg*ajump
			brow := t*bstep + p*ldb + p/kseg*bjump
			for i := 0; i < 8; i++ {
				av := a[i*rsa+arow]
				row := acc[i*32 : i*32+32]
				for j := range row {
					off := brow + j
					if j >= 16 {
						off += boff - 16
					}
					row[j] += av * b[off]
				}
			}
		}
		storeTileRef(acc[:], 32, alpha, c[t*cstep:], ldc, overwrite)
	}
}
