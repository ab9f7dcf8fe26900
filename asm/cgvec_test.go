package asm

import (
	"math"
	"math/rand/v2"
	"testing"
)

// DotPair gives the bits of Dot(x, y) and Dot(x, x), leaves both vectors
// and their guards alone, on every length and offset.
func TestDotPair(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for n, off := range vectorCases {
		xAll, x := guarded(rng, n+off)
		yAll, y := guarded(rng, n+3-off)
		x, y = x[off:], y[3-off:]
		xs, ys := append([]float32(nil), x...), append([]float32(nil), y...)
		xy, xx := DotPair(x, y)
		checkGuards(t, "DotPair x", xAll, n+off)
		checkGuards(t, "DotPair y", yAll, n+3-off)
		if math.Float64bits(xy) != math.Float64bits(Dot(x, y)) || math.Float64bits(xx) != math.Float64bits(Dot(x, x)) {
			t.Fatalf("DotPair n=%d off=%d: (%v, %v), want Dot's (%v, %v)", n, off, xy, xx, Dot(x, y), Dot(x, x))
		}
		wxy, wxx := dotPairRef(x, y)
		if math.Abs(xy-wxy) > 1e-13*float64(n+1) || math.Abs(xx-wxx) > 1e-13*float64(n+1) {
			t.Fatalf("DotPair n=%d off=%d: (%v, %v), want (%v, %v)", n, off, xy, xx, wxy, wxx)
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(xs[i]) || math.Float32bits(y[i]) != math.Float32bits(ys[i]) {
				t.Fatalf("DotPair n=%d off=%d changed its input at %d", n, off, i)
			}
		}
	}
	// Squares beyond float32's range do not overflow.
	big := []float32{3e38, -3e38, 1e-30, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}
	if xy, xx := DotPair(big, big); math.IsInf(xy, 0) || xx != Dot(big, big) {
		t.Fatalf("DotPair of large values: (%v, %v), want Dot's %v twice", xy, xx, Dot(big, big))
	}
}

// AxpyPairDot writes what Axpy(a, x, y) then Axpy(b, w, y) write, bit for
// bit, returns Dot of the new y with its bits, and touches nothing else.
func TestAxpyPairDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for n, off := range vectorCases {
		for _, c := range [][2]float32{{-0.75, 0.25}, {1, 0}, {0, -2}} {
			a, b := c[0], c[1]
			xAll, x := guarded(rng, n+off)
			wAll, w := guarded(rng, n+2)
			yAll, y := guarded(rng, n+3-off)
			x, w, y = x[off:], w[2:], y[3-off:]
			xs, ws := append([]float32(nil), x...), append([]float32(nil), w...)
			want := append([]float32(nil), y...)
			Axpy(a, x, want)
			Axpy(b, w, want)
			// The plain loop, to rounding (its products are not fused).
			loop := append([]float32(nil), y...)
			loopDot := axpyPairDotRef(a, x, b, w, loop)
			got := AxpyPairDot(a, x, b, w, y)
			for i := range loop {
				if !close32(float64(y[i]), float64(loop[i]), 4, 1) {
					t.Fatalf("AxpyPairDot n=%d off=%d a=%v b=%v: y[%d] = %v, the loop gives %v", n, off, a, b, i, y[i], loop[i])
				}
			}
			if math.Abs(got-loopDot) > 1e-5*(loopDot+1) {
				t.Fatalf("AxpyPairDot n=%d off=%d: returned %v, the loop gives %v", n, off, got, loopDot)
			}
			checkGuards(t, "AxpyPairDot x", xAll, n+off)
			checkGuards(t, "AxpyPairDot w", wAll, n+2)
			checkGuards(t, "AxpyPairDot y", yAll, n+3-off)
			for i := range y {
				if math.Float32bits(y[i]) != math.Float32bits(want[i]) {
					t.Fatalf("AxpyPairDot n=%d off=%d a=%v b=%v: y[%d] = %v, want %v", n, off, a, b, i, y[i], want[i])
				}
				if math.Float32bits(x[i]) != math.Float32bits(xs[i]) || math.Float32bits(w[i]) != math.Float32bits(ws[i]) {
					t.Fatalf("AxpyPairDot n=%d off=%d changed x or w at %d", n, off, i)
				}
			}
			if math.Float64bits(got) != math.Float64bits(Dot(y, y)) {
				t.Fatalf("AxpyPairDot n=%d off=%d: returned %v, want Dot(y, y) = %v", n, off, got, Dot(y, y))
			}
		}
	}
}

// UpdateZR writes what Axpy(alpha, p, z) and AxpyPairDot(a, q, b, p, r)
// write, bit for bit, returns what the latter returns, and touches
// nothing else.
func TestUpdateZR(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for n, off := range vectorCases {
		for _, c := range [][3]float32{{0.5, -0.75, 0.25}, {1, 1, 0}, {-2, 0, -2}} {
			alpha, a, b := c[0], c[1], c[2]
			pAll, p := guarded(rng, n+off)
			qAll, q := guarded(rng, n+2)
			zAll, z := guarded(rng, n+1)
			rAll, r := guarded(rng, n+3-off)
			p, q, z, r = p[off:], q[2:], z[1:], r[3-off:]
			ps, qs := append([]float32(nil), p...), append([]float32(nil), q...)
			wantZ, wantR := append([]float32(nil), z...), append([]float32(nil), r...)
			Axpy(alpha, p, wantZ)
			want := AxpyPairDot(a, q, b, p, wantR)
			loopZ, loopR := append([]float32(nil), z...), append([]float32(nil), r...)
			loopDot := updateZRRef(alpha, p, a, q, b, loopZ, loopR)
			got := UpdateZR(alpha, p, a, q, b, z, r)
			checkGuards(t, "UpdateZR p", pAll, n+off)
			checkGuards(t, "UpdateZR q", qAll, n+2)
			checkGuards(t, "UpdateZR z", zAll, n+1)
			checkGuards(t, "UpdateZR r", rAll, n+3-off)
			for i := range r {
				if math.Float32bits(z[i]) != math.Float32bits(wantZ[i]) || math.Float32bits(r[i]) != math.Float32bits(wantR[i]) {
					t.Fatalf("UpdateZR n=%d off=%d %v: (z, r)[%d] = (%v, %v), want (%v, %v)", n, off, c, i, z[i], r[i], wantZ[i], wantR[i])
				}
				if !close32(float64(z[i]), float64(loopZ[i]), 4, 1) || !close32(float64(r[i]), float64(loopR[i]), 4, 1) {
					t.Fatalf("UpdateZR n=%d off=%d %v: (z, r)[%d] = (%v, %v), the loop gives (%v, %v)", n, off, c, i, z[i], r[i], loopZ[i], loopR[i])
				}
				if math.Float32bits(p[i]) != math.Float32bits(ps[i]) || math.Float32bits(q[i]) != math.Float32bits(qs[i]) {
					t.Fatalf("UpdateZR n=%d off=%d changed p or q at %d", n, off, i)
				}
			}
			if math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("UpdateZR n=%d off=%d: returned %v, want AxpyPairDot's %v", n, off, got, want)
			}
			if math.Abs(got-loopDot) > 1e-5*(loopDot+1) {
				t.Fatalf("UpdateZR n=%d off=%d: returned %v, the loop gives %v", n, off, got, loopDot)
			}
		}
	}
}
