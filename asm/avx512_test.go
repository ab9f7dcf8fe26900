package asm

import (
	"math"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"
)

// hasAVX512 is whether Kernel8x32 and FMALoop512 may run on this CPU: the
// pure-Go twins run anywhere, the assembly needs AVX-512F.
var hasAVX512 = !Enabled || cpu.X86.HasAVX512F

// TestKernel8x32 checks the AVX-512 kernel against the reference loop,
// with A in place or transposed, the two halves of B together or apart,
// and guards around every buffer; and that its sums are the bits of
// Kernel6x16 on the same values (the two kernels must be interchangeable).
func TestKernel8x32(t *testing.T) {
	if !hasAVX512 {
		t.Log("no AVX-512F on this CPU: Kernel8x32 is not used here")
		return
	}
	for _, overwrite := range []bool{false, true} {
		testKernel8x32(t, overwrite)
	}
}

func testKernel8x32(t *testing.T, overwrite bool) {
	rng := rand.New(rand.NewPCG(3, 8))
	for _, k := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 33, 100, 257} {
		for _, trans := range []bool{false, true} {
			for _, pad := range []int{0, 1, 5} {
				for _, apart := range []bool{false, true} {
					alpha := float32(1)
					if pad == 1 {
						alpha = -0.5
					}
					var rsa, csa, alen int
					if trans {
						rsa, csa = 1, 8+pad
						alen = (k-1)*csa + 8
					} else {
						rsa, csa = k+pad, 1
						alen = 7*rsa + k
					}
					if k == 0 {
						alen = 1
					}
					// B: rows of 32 together (boff 16), or two panels
					// of k x 16 values each (boff = the panel size).
					ldb, boff := 32+pad, 16
					blen := max((k-1)*ldb+32, 1)
					if apart {
						ldb, boff = 16, k*16+pad
						blen = max(boff+(k-1)*ldb+16, 1)
					}
					ldc := 32 + 2*pad
					clen := 7*ldc + 32
					aAll, a := guarded(rng, alen)
					bAll, b := guarded(rng, blen)
					cAll, c := guarded(rng, clen)
					if overwrite {
						nanTile(c, ldc, 32)
					}
					want := append([]float32(nil), c...)
					kernel8x32Ref(k, alpha, a, rsa, csa, b, ldb, boff, want, ldc, overwrite)
					// The same tile through the 6x16 kernel: rows 0-5 and
					// 6-7 (as 4 rows from row 4), each half of B.
					same := append([]float32(nil), c...)
					if k > 0 {
						for half, off := range []int{0, boff} {
							Kernel6x16(k, alpha, a, rsa, csa, b[off:], ldb, same[16*half:], ldc, overwrite)
							tmp := append([]float32(nil), c...)
							Kernel4x16(k, alpha, a[4*rsa:], rsa, csa, b[off:], ldb, tmp[4*ldc+16*half:], ldc, overwrite)
							for i := 6; i < 8; i++ {
								copy(same[i*ldc+16*half:][:16], tmp[i*ldc+16*half:][:16])
							}
						}
					}
					Kernel8x32(k, alpha, a, rsa, csa, b, ldb, boff, c, ldc, overwrite)
					name := "Kernel8x32"
					checkGuards(t, name, aAll, alen)
					checkGuards(t, name, bAll, blen)
					checkGuards(t, name, cAll, clen)
					for i := range c {
						if i%ldc >= 32 {
							if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
								t.Fatalf("k=%d trans=%v pad=%d apart=%v overwrite=%v: c[%d] outside the tile changed", k, trans, pad, apart, overwrite, i)
							}
							continue
						}
						if !close32(float64(c[i]), float64(want[i]), 1, k) {
							t.Fatalf("k=%d trans=%v pad=%d apart=%v overwrite=%v: c[%d] = %v, want %v", k, trans, pad, apart, overwrite, i, c[i], want[i])
						}
						if Enabled && k > 0 && math.Float32bits(c[i]) != math.Float32bits(same[i]) {
							t.Fatalf("k=%d trans=%v pad=%d apart=%v overwrite=%v: c[%d] = %v, Kernel6x16 gives %v", k, trans, pad, apart, overwrite, i, c[i], same[i])
						}
					}
				}
			}
		}
	}
}

// FMALoop512 runs its n rounds: its sum is 12*n*2^-10, exactly.
func TestFMALoop512(t *testing.T) {
	if !hasAVX512 {
		return
	}
	for _, n := range []int{0, 1, 1000, 1 << 19} {
		if got, want := FMALoop512(n), float32(12*n)*0x1p-10; got != want {
			t.Errorf("FMALoop512(%d) = %v, want %v", n, got, want)
		}
	}
}

func BenchmarkFMALoop512(b *testing.B) {
	if !hasAVX512 {
		b.Skip("no AVX-512F")
	}
	const rounds = 1 << 16
	for b.Loop() {
		FMALoop512(rounds)
	}
	b.ReportMetric(float64(rounds)*FMALoop512Flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkKernel8x32(b *testing.B) {
	if !hasAVX512 {
		b.Skip("no AVX-512F")
	}
	const k = 256
	a := make([]float32, 8*k)
	bm := make([]float32, 32*k)
	c := make([]float32, 8*32)
	for b.Loop() {
		Kernel8x32(k, 1, a, 1, 8, bm, 16, 16*k, c, 32, false)
	}
	b.ReportMetric(float64(k)*512*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// Kernel8x32Tiles gives, tile by tile, the bits of Kernel8x32 on the
// tile's A and B gathered into contiguous matrices: over one to three
// tiles side by side or stacked, A in place or transposed, segments of
// every length with and without jumps of A and B, both layouts of B's
// halves, with guards around every buffer.
func TestKernel8x32Tiles(t *testing.T) {
	if !hasAVX512 {
		t.Log("no AVX-512F on this CPU: Kernel8x32Tiles is not used here")
		return
	}
	rng := rand.New(rand.NewPCG(5, 9))
	type layout struct {
		tiles          int
		transA, apart  bool
		stacked        bool
		ajump, bjump   int
		shareA, shareB bool
	}
	var layouts []layout
	for _, tiles := range []int{1, 2, 3} {
		for _, transA := range []bool{false, true} {
			for _, apart := range []bool{false, true} {
				for _, jumps := range [][2]int{{0, 0}, {5, 0}, {0, 40}, {3, 7}} {
					layouts = append(layouts, layout{tiles: tiles, transA: transA, apart: apart, stacked: tiles == 2,
						ajump: jumps[0], bjump: jumps[1], shareA: tiles == 3 && transA, shareB: tiles == 2 && !apart})
				}
			}
		}
	}
	for _, k := range []int{0, 1, 5, 31, 32, 33, 100} {
		for _, kseg := range []int{0, 1, 4, 7, 32} {
			for _, l := range layouts {
				for _, overwrite := range []bool{false, true} {
					segs := 1
					if kseg > 0 {
						segs = (k + kseg - 1) / kseg
					}
					rsa, csa := k+3, 1
					if l.transA {
						rsa, csa = 1, 11
					}
					alen := 7*rsa + max(k-1, 0)*csa + segs*l.ajump + 1
					ldb, boff := 37, 16
					if l.apart {
						ldb, boff = 16, 16*k+l.bjump*segs+5
					}
					blen := boff + max(k-1, 0)*ldb + segs*l.bjump + 16
					astep, bstep := alen, blen
					if l.shareA {
						astep = 0
					}
					if l.shareB {
						bstep = 0
					}
					ldc, cstep := 32*l.tiles+3, 32
					if l.stacked {
						ldc, cstep = 35, 8*35+2
					}
					alenAll := (l.tiles-1)*astep + alen
					blenAll := (l.tiles-1)*bstep + blen
					clen := (l.tiles-1)*cstep + 7*ldc + 32
					aAll, a := guarded(rng, alenAll)
					bAll, b := guarded(rng, blenAll)
					cAll, c := guarded(rng, clen)
					if overwrite {
						for tt := 0; tt < l.tiles; tt++ {
							nanTile(c[tt*cstep:], ldc, 32)
						}
					}
					want := append([]float32(nil), c...)
					for tt := 0; tt < l.tiles; tt++ {
						// The tile's A and B gathered: A 8 x k in place, B's
						// rows with their halves together.
						ga := make([]float32, max(8*k, 1))
						flat := make([]float32, max(k*32, 1))
						for p := 0; p < k; p++ {
							jump := 0
							if kseg > 0 {
								jump = p / kseg
							}
							for i := 0; i < 8; i++ {
								ga[i*k+p] = a[tt*astep+i*rsa+p*csa+jump*l.ajump]
							}
							row := tt*bstep + p*ldb + jump*l.bjump
							copy(flat[p*32:p*32+16], b[row:row+16])
							copy(flat[p*32+16:p*32+32], b[row+boff:row+boff+16])
						}
						Kernel8x32(k, 0.5, ga, max(k, 1), 1, flat, 32, 16, want[tt*cstep:], ldc, overwrite)
					}
					Kernel8x32Tiles(l.tiles, k, 0.5, a, rsa, csa, astep, b, ldb, boff, bstep, c, ldc, cstep, overwrite, kseg, l.ajump, l.bjump)
					name := "Kernel8x32Tiles"
					checkGuards(t, name, aAll, alenAll)
					checkGuards(t, name, bAll, blenAll)
					checkGuards(t, name, cAll, clen)
					for i := range c {
						if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
							t.Fatalf("k=%d kseg=%d %+v overwrite=%v: c[%d] = %v, Kernel8x32 on the gathered values gives %v", k, kseg, l, overwrite, i, c[i], want[i])
						}
					}
				}
			}
		}
	}
}
