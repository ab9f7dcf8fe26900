package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// windowPoints returns the points of w as stored rows (im2col), Len =
// Channels*KernelH*KernelW values a point in the order (c, i, j).
func windowPoints(w *PixelWindows) []float32 {
	n, d := w.Samples*w.Height*w.Width, w.Channels*w.KernelH*w.KernelW
	x := make([]float32, n*d)
	for p := 0; p < n; p++ {
		s, y, xx := p/(w.Height*w.Width), p/w.Width%w.Height, p%w.Width
		for c := 0; c < w.Channels; c++ {
			for i := 0; i < w.KernelH; i++ {
				for j := 0; j < w.KernelW; j++ {
					py, px := y+i-w.KernelH/2, xx+j-w.KernelW/2
					if py < 0 || py >= w.Height || px < 0 || px >= w.Width {
						continue
					}
					x[p*d+(c*w.KernelH+i)*w.KernelW+j] = w.Pixels[((s*w.Height+py)*w.Width+px)*w.Channels+c]
				}
			}
		}
	}
	return x
}

// The Gram matrix from the pixels: within rounding of the patches' one in
// float64, the padding of its rows untouched; on the assembly kernels
// exactly symmetric and the same bits on every kernel set and core count;
// and windows that do not describe the points are ignored.
func TestPixelGram(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	kernels := []Kernels{pureGo{}}
	if hasAVX2 {
		kernels = append(kernels, avx2{})
	}
	for _, s := range []PixelWindows{
		{Samples: 2, Height: 5, Width: 7, Channels: 3, KernelH: 3, KernelW: 3},
		{Samples: 16, Height: 4, Width: 4, Channels: 24, KernelH: 3, KernelW: 3},
		{Samples: 1, Height: 8, Width: 8, Channels: 5, KernelH: 1, KernelW: 1},
		{Samples: 2, Height: 6, Width: 3, Channels: 4, KernelH: 5, KernelW: 3},
		{Samples: 3, Height: 9, Width: 9, Channels: 2, KernelH: 3, KernelW: 1},
		{Samples: 1, Height: 2, Width: 2, Channels: 7, KernelH: 5, KernelW: 5},
	} {
		w := s
		n, d := w.Samples*w.Height*w.Width, w.Channels*w.KernelH*w.KernelW
		w.Pixels = randSlice(rng, n*w.Channels)
		x := windowPoints(&w)
		ld := PointsStride(n)
		var asmBits []float32
		for _, k := range kernels {
			for _, set := range setsFor(k) {
				for _, procs := range []int{1, 3} {
					name := fmt.Sprintf("%+v %s/%s GOMAXPROCS=%d", s, k.Name(), set.name, procs)
					f := FisherProduct{Rows: 1, Len: d, Points: n, X: x, Windows: &w}
					f.gram = make([]float32, n*ld)
					for i := range f.gram {
						f.gram[i] = nan32
					}
					prev := runtime.GOMAXPROCS(procs)
					withKernels(set, func() { f.formGram(k) })
					runtime.GOMAXPROCS(prev)
					for r := 0; r < n; r++ {
						for c := 0; c < ld; c++ {
							v := f.gram[r*ld+c]
							if c >= n {
								if !math.IsNaN(float64(v)) {
									t.Fatalf("%s: G's padding at (%d, %d) = %v", name, r, c, v)
								}
								continue
							}
							var want, scale float64
							for i := 0; i < d; i++ {
								a, b := float64(x[r*d+i]), float64(x[c*d+i])
								want += a * b
								scale += math.Abs(a * b)
							}
							if math.Abs(float64(v)-want) > 1e-6*(scale+1e-30) {
								t.Fatalf("%s: G[%d][%d] = %v, want %v", name, r, c, v, want)
							}
							if _, ok := k.(avx2); ok && math.Float32bits(v) != math.Float32bits(f.gram[c*ld+r]) {
								t.Fatalf("%s: G[%d][%d] = %v but G[%d][%d] = %v", name, r, c, v, c, r, f.gram[c*ld+r])
							}
						}
					}
					if _, ok := k.(avx2); ok {
						if asmBits == nil {
							asmBits = append([]float32(nil), f.gram...)
						} else {
							for i := range asmBits {
								if math.Float32bits(asmBits[i]) != math.Float32bits(f.gram[i]) && i%ld < n {
									t.Fatalf("%s: G differs from the first kernel set's at (%d, %d)", name, i/ld, i%ld)
								}
							}
						}
					}
				}
			}
			// Windows that do not describe the points: the patches'
			// Gram matrix, bit for bit.
			bad := w
			bad.Height++
			withF := FisherProduct{Rows: 1, Len: d, Points: n, X: x, Windows: &bad}
			plain := FisherProduct{Rows: 1, Len: d, Points: n, X: x}
			withF.gram, plain.gram = make([]float32, n*ld), make([]float32, n*ld)
			withF.formGram(k)
			plain.formGram(k)
			for i := range plain.gram {
				if math.Float32bits(withF.gram[i]) != math.Float32bits(plain.gram[i]) {
					t.Fatalf("%+v %s: windows of another shape changed G at (%d, %d)", s, k.Name(), i/ld, i%ld)
				}
			}
		}
	}
}
