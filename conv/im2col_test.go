package conv

import (
	"math"
	"math/rand/v2"
	"testing"
)

// patchValue is the convolution definition of coordinate (c, i, j) of the
// patch at output (oy, ox) for group grp: the input under the dilated,
// strided kernel tap, or 0 in the padding.
func patchValue(g Geometry, img []float32, grp, oy, ox, c, i, j int) float32 {
	y := oy*g.StrideH - g.PadH + i*g.DilationH
	x := ox*g.StrideW - g.PadW + j*g.DilationW
	if y < 0 || y >= g.InH || x < 0 || x >= g.InW {
		return 0
	}
	ch := grp*g.GroupInChannels() + c
	return img[(ch*g.InH+y)*g.InW+x]
}

// im2colGeometries are the geometries the unfolding tests run over:
// strides, padding, dilations, rectangular windows, groups, 1x1 windows,
// and windows wholly inside the image (the fast paths).
var im2colGeometries = []Geometry{
	{InChannels: 3, OutChannels: 4, InH: 5, InW: 5, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1},
	{InChannels: 2, OutChannels: 2, InH: 7, InW: 6, KernelH: 3, KernelW: 1, StrideH: 2, PadH: 1},
	{InChannels: 4, OutChannels: 6, InH: 9, InW: 8, KernelH: 2, KernelW: 3, StrideH: 2, StrideW: 3, PadH: 2, PadW: 1, DilationH: 2, DilationW: 3, Groups: 2},
	{InChannels: 3, OutChannels: 3, InH: 4, InW: 4, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1, Groups: 3},
	{InChannels: 8, OutChannels: 4, InH: 6, InW: 6, KernelH: 1, KernelW: 1, StrideH: 2, StrideW: 2},
	{InChannels: 5, OutChannels: 2, InH: 1, InW: 1, KernelH: 1, KernelW: 1},
	// Windows wholly inside the image take a fast path: 3x3 runs,
	// 1x1 gathers, and the general loop (dilated, other widths).
	{InChannels: 3, OutChannels: 2, InH: 9, InW: 7, KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
	{InChannels: 2, OutChannels: 2, InH: 6, InW: 7, KernelH: 3, KernelW: 3},
	{InChannels: 4, OutChannels: 2, InH: 9, InW: 9, KernelH: 3, KernelW: 3, DilationH: 2, DilationW: 2, PadH: 1, PadW: 2, Groups: 2},
	{InChannels: 6, OutChannels: 3, InH: 5, InW: 4, KernelH: 1, KernelW: 1, StrideH: 2, Groups: 3},
	{InChannels: 2, OutChannels: 2, InH: 8, InW: 9, KernelH: 2, KernelW: 5, PadW: 1},
}

// randomImage returns g normalized, checked, and a random image for it.
func randomImage(t *testing.T, rng *rand.Rand, gi int, g Geometry) (Geometry, []float32) {
	t.Helper()
	g = g.Normalized()
	if err := g.Validate(); err != nil {
		t.Fatalf("geometry %d: %v", gi, err)
	}
	img := make([]float32, g.ImageLen())
	for i := range img {
		img[i] = float32(rng.NormFloat64())
	}
	return g, img
}

func TestIm2colMatchesDefinition(t *testing.T) {
	geoms := im2colGeometries
	rng := rand.New(rand.NewPCG(1, 2))
	for gi, g := range geoms {
		g, img := randomImage(t, rng, gi, g)
		d := g.PatchLen()
		for _, extra := range []int{0, 1} {
			ld := d + extra
			for grp := 0; grp < g.Groups; grp++ {
				dst := make([]float32, g.Locations()*ld)
				for i := range dst {
					dst[i] = float32(math.NaN()) // every patch entry must be written
				}
				g.Im2col(dst, ld, img, grp)
				// The same patches from the padded image.
				pg := g.Padded()
				padded := make([]float32, pg.ImageLen()+1)
				for i := range padded {
					padded[i] = float32(math.NaN())
				}
				g.PadImage(padded, img, grp)
				if !math.IsNaN(float64(padded[pg.ImageLen()])) {
					t.Fatalf("geometry %d: PadImage wrote past its image", gi)
				}
				if pg.Locations() != g.Locations() || pg.PatchLen() != d {
					t.Fatalf("geometry %d: padded geometry has %d locations of %d, want %d of %d", gi, pg.Locations(), pg.PatchLen(), g.Locations(), d)
				}
				fromPadded := make([]float32, len(dst))
				for i := range fromPadded {
					fromPadded[i] = float32(math.NaN())
				}
				pg.Im2col(fromPadded, ld, padded, 0)
				for oy := 0; oy < g.OutH(); oy++ {
					for ox := 0; ox < g.OutW(); ox++ {
						row := dst[(oy*g.OutW()+ox)*ld:]
						k := 0
						for c := 0; c < g.GroupInChannels(); c++ {
							for i := 0; i < g.KernelH; i++ {
								for j := 0; j < g.KernelW; j++ {
									if want := patchValue(g, img, grp, oy, ox, c, i, j); row[k] != want {
										t.Fatalf("geometry %d group %d patch (%d,%d) coord %d: got %v want %v", gi, grp, oy, ox, k, row[k], want)
									}
									k++
								}
							}
						}
						for k, v := range row[:d] {
							if fromPadded[(oy*g.OutW()+ox)*ld+k] != v {
								t.Fatalf("geometry %d group %d patch (%d,%d) coord %d: %v from the padded image, %v from the image", gi, grp, oy, ox, k, fromPadded[(oy*g.OutW()+ox)*ld+k], v)
							}
						}
						if extra == 1 && !math.IsNaN(float64(fromPadded[(oy*g.OutW()+ox)*ld+d])) {
							t.Fatalf("geometry %d: Im2col of the padded image wrote past the patch", gi)
						}
						if extra == 1 && !math.IsNaN(float64(row[d])) {
							t.Fatalf("geometry %d: Im2col wrote past the patch into the caller's column", gi)
						}
					}
				}
			}
		}
	}
}

func TestGeometryOutputSizeAndErrors(t *testing.T) {
	g := Geometry{InChannels: 1, OutChannels: 1, InH: 32, InW: 32, KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}.Normalized()
	if g.OutH() != 16 || g.OutW() != 16 {
		t.Errorf("3x3 stride 2 pad 1 on 32x32: got %dx%d, want 16x16", g.OutH(), g.OutW())
	}
	bad := []Geometry{
		{InChannels: 0, OutChannels: 1, InH: 1, InW: 1, KernelH: 1, KernelW: 1},
		{InChannels: 3, OutChannels: 4, InH: 4, InW: 4, KernelH: 1, KernelW: 1, Groups: 2},
		{InChannels: 1, OutChannels: 1, InH: 2, InW: 2, KernelH: 3, KernelW: 3},
		{InChannels: 1, OutChannels: 1, InH: 2, InW: 2, KernelH: 1, KernelW: 1, PadH: -1},
	}
	for i, b := range bad {
		if err := b.Normalized().Validate(); err == nil {
			t.Errorf("geometry %d: no error for %+v", i, b)
		}
	}
}

func TestSquaredNorms(t *testing.T) {
	x := []float32{3, 4, 99, 1e30, 1e30, 99}
	norms := make([]float64, 2)
	SquaredNorms(norms, x, 2, 2, 3)
	big := float64(float32(1e30))
	if norms[0] != 25 || norms[1] != 2*big*big {
		t.Errorf("got %v, want [25 2e60] (float64 accumulation, stride skipped)", norms)
	}
}

// BenchmarkIm2col unfolds one sample of the l1.conv shape (64 channels,
// 32x32, 3x3, padding 1): straight from the image, and from the image
// padded first (PadImage included).
func BenchmarkIm2col(b *testing.B) {
	g := Geometry{InChannels: 64, OutChannels: 64, InH: 32, InW: 32, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1}.Normalized()
	img := make([]float32, g.ImageLen())
	dst := make([]float32, g.Locations()*g.PatchLen())
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(int64(4 * len(dst)))
		for b.Loop() {
			g.Im2col(dst, g.PatchLen(), img, 0)
		}
	})
	b.Run("padded", func(b *testing.B) {
		pg := g.Padded()
		padded := make([]float32, pg.ImageLen())
		b.SetBytes(int64(4 * len(dst)))
		for b.Loop() {
			g.PadImage(padded, img, 0)
			pg.Im2col(dst, g.PatchLen(), padded, 0)
		}
	})
}
