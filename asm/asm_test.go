package asm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// guard is the value written around every buffer: any write outside the
// routine's range shows up as a changed NaN (compared by bits).
var guard = float32(math.NaN())

const guardLen = 7

// guarded returns a buffer of n random values inside guard regions, and
// the view the routine sees.
func guarded(rng *rand.Rand, n int) (all, view []float32) {
	all = make([]float32, n+2*guardLen)
	for i := range all {
		all[i] = guard
	}
	view = all[guardLen : guardLen+n]
	for i := range view {
		view[i] = rng.Float32()*2 - 1
	}
	return all, view
}

func checkGuards(t *testing.T, name string, all []float32, n int) {
	t.Helper()
	for i := 0; i < guardLen; i++ {
		if math.Float32bits(all[i]) != math.Float32bits(guard) {
			t.Errorf("%s: front guard %d overwritten: %v", name, i, all[i])
		}
		j := guardLen + n + i
		if math.Float32bits(all[j]) != math.Float32bits(guard) {
			t.Errorf("%s: back guard %d overwritten: %v", name, i, all[j])
		}
	}
}

func close32(got, want, scale float64, k int) bool {
	tol := 1e-6 * float64(k+1) * scale
	return math.Abs(got-want) <= tol
}

func TestKernel6x16(t *testing.T) {
	for _, rows := range []int{6, 4} {
		testKernel(t, rows)
	}
}

// testKernel checks Kernel6x16 or Kernel4x16 (rows 6 or 4) against the
// reference loop, with A in place or transposed, guards around every
// buffer, accumulating into C or overwriting a tile of NaNs.
func testKernel(t *testing.T, rows int) {
	for _, overwrite := range []bool{false, true} {
		testKernelMode(t, rows, overwrite)
	}
}

func testKernelMode(t *testing.T, rows int, overwrite bool) {
	rng := rand.New(rand.NewPCG(1, uint64(rows)))
	for _, k := range []int{0, 1, 2, 3, 4, 5, 7, 16, 33, 100} {
		for _, trans := range []bool{false, true} {
			for _, pad := range []int{0, 1, 5} {
				for _, alpha := range []float32{1, -0.5} {
					// A is 6 x k, stored with extra pad columns, in place or transposed.
					var rsa, csa, alen int
					if trans {
						rsa, csa = 1, rows+pad
						alen = (k-1)*csa + rows
					} else {
						rsa, csa = k+pad, 1
						alen = (rows-1)*rsa + k
					}
					if k == 0 {
						alen = 1
					}
					ldb := 16 + pad
					blen := max((k-1)*ldb+16, 1)
					ldc := 16 + 2*pad
					clen := (rows-1)*ldc + 16
					aAll, a := guarded(rng, alen)
					bAll, b := guarded(rng, blen)
					cAll, c := guarded(rng, clen)
					if overwrite {
						nanTile(c, ldc, 16)
					}
					want := append([]float32(nil), c...)
					kernelRowsx16Ref(rows, k, alpha, a, rsa, csa, b, ldb, want, ldc, overwrite)
					name := fmt.Sprintf("Kernel6x16 overwrite=%v", overwrite)
					if rows == 4 {
						name = fmt.Sprintf("Kernel4x16 overwrite=%v", overwrite)
						Kernel4x16(k, alpha, a, rsa, csa, b, ldb, c, ldc, overwrite)
					} else {
						Kernel6x16(k, alpha, a, rsa, csa, b, ldb, c, ldc, overwrite)
					}
					checkGuards(t, name, aAll, alen)
					checkGuards(t, name, bAll, blen)
					checkGuards(t, name, cAll, clen)
					for i := range c {
						inTile := i%ldc < 16
						if !inTile {
							if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%s k=%d trans=%v pad=%d: c[%d] outside the tile changed", name, k, trans, pad, i)
							}
							continue
						}
						if !close32(float64(c[i]), float64(want[i]), 1, k) {
							t.Fatalf("%s k=%d trans=%v pad=%d alpha=%v: c[%d] = %v, want %v", name, k, trans, pad, alpha, i, c[i], want[i])
						}
					}
				}
			}
		}
	}
}

// nanTile sets the first cols values of every row of c (stride ldc) to
// NaN: a kernel that overwrites its tile must not read them.
func nanTile(c []float32, ldc, cols int) {
	for i := range c {
		if i%ldc < cols {
			c[i] = float32(math.NaN())
		}
	}
}

// vectorCases yields every length up to 70 (all remainders of the 32-,
// 16-, 8- and 4-wide loops) and a few long ones, at offsets 0..3.
func vectorCases(yield func(n, off int) bool) {
	lengths := []int{}
	for n := 0; n <= 70; n++ {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 127, 128, 129, 1000, 4099)
	for _, n := range lengths {
		for off := 0; off < 4; off++ {
			if !yield(n, off) {
				return
			}
		}
	}
}

// checkElementwise runs f on guarded vectors x (n values xOff into
// their buffer) and y (yOff in), after prep (when not nil) has set special
// values, and compares y with what ref computes from the same x and y:
// bit for bit when exact, else to float32 rounding.
func checkElementwise(t *testing.T, rng *rand.Rand, name string, n, xOff, yOff int, exact bool, prep, ref, f func(x, y []float32)) {
	t.Helper()
	xAll, x := guarded(rng, n+xOff)
	yAll, y := guarded(rng, n+yOff)
	x, y = x[xOff:], y[yOff:]
	if prep != nil {
		prep(x, y)
	}
	want := append([]float32(nil), y...)
	ref(x, want)
	f(x, y)
	checkGuards(t, name+" x", xAll, n+xOff)
	checkGuards(t, name+" y", yAll, n+yOff)
	for i := range y {
		same := math.Float32bits(y[i]) == math.Float32bits(want[i])
		if !exact {
			same = close32(float64(y[i]), float64(want[i]), 2, 1)
		}
		if !same {
			t.Fatalf("%s n=%d off=%d/%d: y[%d] = %v, want %v", name, n, xOff, yOff, i, y[i], want[i])
		}
	}
}

// nanInMiddle puts a NaN in the middle of x (when it has three values).
func nanInMiddle(x, _ []float32) {
	if len(x) > 2 {
		x[len(x)/2] = float32(math.NaN())
	}
}

func TestDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n, off := range vectorCases {
		xAll, x := guarded(rng, n+off)
		yAll, y := guarded(rng, n+off)
		x, y = x[off:], y[off:]
		got := Dot(x, y)
		want := dotRef(x, y)
		checkGuards(t, "Dot x", xAll, n+off)
		checkGuards(t, "Dot y", yAll, n+off)
		// Both sum exact float64 products; only the order of the additions differs.
		if math.Abs(got-want) > 1e-13*float64(n+1) {
			t.Errorf("Dot n=%d off=%d: %v, want %v", n, off, got, want)
		}
	}
}

func TestDotFloat64Range(t *testing.T) {
	// Products beyond float32's range must not overflow.
	x := []float32{3e38, 3e38, 1e-30, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}
	got := Dot(x, x)
	want := dotRef(x, x)
	if math.IsInf(got, 0) || math.Abs(got-want) > 1e-12*want {
		t.Errorf("Dot = %v, want %v", got, want)
	}
}

func TestAxpyXpby(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n, off := range vectorCases {
		for _, s := range []float32{0, 1, -0.75} {
			checkElementwise(t, rng, fmt.Sprintf("Axpy alpha=%v", s), n, off, off, false, nil,
				func(x, y []float32) { axpyRef(s, x, y) }, func(x, y []float32) { Axpy(s, x, y) })
			checkElementwise(t, rng, fmt.Sprintf("Xpby beta=%v", s), n, off, off, false, nil,
				func(x, y []float32) { xpbyRef(x, s, y) }, func(x, y []float32) { Xpby(x, s, y) })
		}
	}
}

// FMALoop runs its n rounds: its sum is 12*n*2^-10, exactly.
func TestFMALoop(t *testing.T) {
	for _, n := range []int{0, 1, 1000, 1 << 19} {
		if got, want := FMALoop(n), float32(12*n)*0x1p-10; got != want {
			t.Errorf("FMALoop(%d) = %v, want %v", n, got, want)
		}
	}
}

func BenchmarkFMALoop(b *testing.B) {
	const rounds = 1 << 16
	for b.Loop() {
		FMALoop(rounds)
	}
	b.ReportMetric(float64(rounds)*FMALoopFlops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkKernel6x16(b *testing.B) {
	const k = 256
	a := make([]float32, 6*k)
	bm := make([]float32, 16*k)
	c := make([]float32, 6*16)
	for b.Loop() {
		Kernel6x16(k, 1, a, 1, 6, bm, 16, c, 16, false)
	}
	b.ReportMetric(float64(k)*192*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func TestPanels(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, k := range []int{0, 1, 7, 8, 9, 15, 16, 17, 40, 263} {
		for _, pad := range []int{0, 3} {
			// PackPanel: k rows of 16, ldb apart.
			ldb := 16 + pad
			blen := max((k-1)*ldb+16, 0)
			bAll, b := guarded(rng, blen)
			dAll, dst := guarded(rng, k*16)
			want := append([]float32(nil), dst...)
			packPanelRef(k, b, ldb, want)
			PackPanel(k, b, ldb, dst)
			checkGuards(t, "PackPanel b", bAll, blen)
			checkGuards(t, "PackPanel dst", dAll, k*16)
			for i := range dst {
				if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
					t.Fatalf("PackPanel k=%d pad=%d: dst[%d] = %v, want %v", k, pad, i, dst[i], want[i])
				}
			}

			// TransposePanel: 16 rows of k, ldb apart, into rows of 16
			// (a panel) or farther apart, the gaps untouched.
			ldb = k + pad
			blen = max(15*ldb+k, 0)
			bAll, b = guarded(rng, blen)
			for _, ldd := range []int{16, 16 + 3*pad, 40} {
				dlen := max(k*ldd, 0)
				dAll, dst = guarded(rng, dlen)
				want = append(want[:0], dst...)
				transposePanelRef(k, b, ldb, want, ldd)
				TransposePanel(k, b, ldb, dst, ldd)
				checkGuards(t, "TransposePanel b", bAll, blen)
				checkGuards(t, "TransposePanel dst", dAll, dlen)
				for i := range dst {
					if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
						t.Fatalf("TransposePanel k=%d pad=%d ldd=%d: dst[%d] = %v, want %v", k, pad, ldd, i, dst[i], want[i])
					}
				}
			}
		}
	}
}

func TestMaxAbsBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), -float32(math.NaN()), 3e38, -3e38, 1e-45}
	for n, off := range vectorCases {
		for trial := 0; trial < 4; trial++ {
			all, x := guarded(rng, n+off)
			x = x[off:]
			if trial > 0 && n > 0 {
				// A special value somewhere: first, last or in the middle.
				pos := []int{0, n - 1, n / 2}[trial-1]
				x[pos] = specials[rng.IntN(len(specials))]
			}
			if got, want := MaxAbsBits(x), maxAbsBitsRef(x); got != want {
				t.Fatalf("MaxAbsBits n=%d off=%d trial %d: %#x, want %#x", n, off, trial, got, want)
			}
			checkGuards(t, "MaxAbsBits x", all, n+off)
		}
	}
	if MaxAbsBits(nil) != 0 {
		t.Fatal("MaxAbsBits(nil) != 0")
	}
}

func TestHadamard(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for n, off := range vectorCases {
		checkElementwise(t, rng, "Hadamard", n, off, off, true, func(x, y []float32) {
			if n > 2 {
				x[n/2] = float32(math.Inf(1)) // Inf times a finite value stays as IEEE says
				y[n-1] = float32(math.NaN())
			}
		}, hadamardRef, Hadamard)
	}
}

// MulAdd against the loop: within rounding for any m (the loop rounds
// the product, the assembly fuses it), exactly for a mask of zeros and
// ones; the mask's own guards stay as they were.
func TestMulAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(39, 40))
	for n, off := range vectorCases {
		for _, mask := range []bool{false, true} {
			mAll, m := guarded(rng, n+off)
			m = m[off:]
			if mask {
				for i := range m {
					m[i] = float32(rng.IntN(2))
				}
			}
			checkElementwise(t, rng, fmt.Sprintf("MulAdd mask=%v", mask), n, off, (off+1)%4, mask, nil,
				func(x, y []float32) { mulAddRef(m, x, y) }, func(x, y []float32) { MulAdd(m, x, y) })
			checkGuards(t, "MulAdd m", mAll, n+off)
		}
	}
}

func TestScaleTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for n, off := range vectorCases {
		for _, alpha := range []float32{0, 1, -0.375, 1e30} {
			checkElementwise(t, rng, fmt.Sprintf("ScaleTo alpha=%v", alpha), n, off, off, true, nanInMiddle,
				func(x, y []float32) { scaleToRef(alpha, x, y) }, func(x, y []float32) { ScaleTo(alpha, x, y) })
		}
	}
}

// ScaleTo64 and SquaresTo64 (one loop) against theirs, bit for bit.
func TestScaleTo64(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	for _, c := range []struct {
		name   string
		ref, f func(alpha float64, x, y []float32)
	}{{"ScaleTo64", scaleTo64Ref, ScaleTo64}, {"SquaresTo64", squaresTo64Ref, SquaresTo64}} {
		for n, off := range vectorCases {
			for _, alpha := range []float64{0, 1, -0.375, 1.0 / 3, 1e30, 0x1p-140} {
				checkElementwise(t, rng, fmt.Sprintf("%s alpha=%v", c.name, alpha), n, off, off, true, nanInMiddle,
					func(x, y []float32) { c.ref(alpha, x, y) }, func(x, y []float32) { c.f(alpha, x, y) })
			}
		}
	}
}

// SquaresDot4 gives the reference loop's bits in every lane, reads no
// value of y past its fourth row's last term, and leaves y and w as they
// were.
func TestSquaresDot4(t *testing.T) {
	rng := rand.New(rand.NewPCG(37, 38))
	for n, off := range vectorCases {
		for _, pad := range []int{0, 1, 5} {
			ldy := n + pad
			used := 3*ldy + n&^3
			yAll, y := guarded(rng, used+off)
			y = y[off:]
			if n > 4 {
				y[ldy+n/2] = 1e30 // its square is large, finite in float64
			}
			w := make([]float64, n)
			for i := range w {
				w[i] = rng.Float64()*4 - 1
			}
			var acc, want [16]float64
			for i := range acc {
				acc[i] = rng.NormFloat64()
			}
			want = acc
			yCopy := append([]float32(nil), y...)
			squaresDot4Ref(&want, y, ldy, w)
			SquaresDot4(&acc, y, ldy, w)
			checkGuards(t, "SquaresDot4 y", yAll, used+off)
			for i := range acc {
				if math.Float64bits(acc[i]) != math.Float64bits(want[i]) {
					t.Fatalf("SquaresDot4 n=%d off=%d ldy=%d: acc[%d] = %v, want %v", n, off, ldy, i, acc[i], want[i])
				}
			}
			for i := range y {
				if math.Float32bits(y[i]) != math.Float32bits(yCopy[i]) {
					t.Fatalf("SquaresDot4 n=%d: changed y[%d]", n, i)
				}
			}
		}
	}
}

func TestPatch3x3(t *testing.T) {
	rng := rand.New(rand.NewPCG(29, 30))
	for _, c := range []struct{ channels, h, w, y0, x0 int }{
		{1, 3, 3, 0, 0}, {2, 3, 3, 0, 0}, {3, 5, 4, 1, 1}, {7, 4, 9, 1, 6}, {64, 32, 32, 29, 29}, {5, 8, 8, 0, 3},
	} {
		plane := c.h * c.w
		// src starts at the window's top-left value of the first channel
		// and ends with the last channel's window: nothing after it.
		start := c.y0*c.w + c.x0
		n := (c.channels-1)*plane + 2*c.w + 3
		srcAll, src := guarded(rng, start+n)
		src = src[start:]
		rowAll, row := guarded(rng, 9*c.channels)
		want := make([]float32, 9*c.channels)
		patch3x3Ref(want, src, c.channels, plane, c.w)
		Patch3x3(row, src, c.channels, plane, c.w)
		checkGuards(t, "Patch3x3 src", srcAll, start+n)
		checkGuards(t, "Patch3x3 row", rowAll, 9*c.channels)
		for i := range row {
			if math.Float32bits(row[i]) != math.Float32bits(want[i]) {
				t.Fatalf("Patch3x3 %+v: row[%d] = %v, want %v", c, i, row[i], want[i])
			}
		}
	}
}

func TestScaleToNT(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for n, off := range vectorCases {
		for _, yOff := range []int{0, 1, 3, 7} {
			for _, alpha := range []float32{1, -0.375, 0x1p-20} {
				checkElementwise(t, rng, fmt.Sprintf("ScaleToNT alpha=%v", alpha), n, off, yOff, true,
					func(x, _ []float32) {
						if len(x) > 2 {
							x[len(x)/2] = float32(math.Inf(-1))
						}
					},
					func(x, y []float32) { scaleToRef(alpha, x, y) }, func(x, y []float32) { ScaleToNT(alpha, x, y) })
			}
		}
	}
}

// PrefetchRows changes nothing, whatever the rows, stride and length.
func TestPrefetchRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for _, c := range []struct{ rows, ld, cols int }{{0, 5, 5}, {1, 1, 1}, {6, 576, 192}, {3, 17, 16}, {6, 64, 64}} {
		n := max(0, (c.rows-1)*c.ld+c.cols)
		all, a := guarded(rng, n)
		want := append([]float32(nil), a...)
		PrefetchRows(a, c.rows, c.ld, c.cols)
		checkGuards(t, "PrefetchRows", all, n)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(want[i]) {
				t.Fatalf("PrefetchRows %+v changed a[%d]", c, i)
			}
		}
	}
}
