package conv

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The windows of the channel-last padded image are Im2col's patches,
// coordinates permuted by HWCOrder, for every geometry of the Im2col test
// and wide images with many channels (the transposing path); PadImageHWC
// writes nothing past its image.
func TestPadImageHWC(t *testing.T) {
	geoms := append(im2colGeometries[:len(im2colGeometries):len(im2colGeometries)],
		Geometry{InChannels: 64, OutChannels: 8, InH: 6, InW: 70, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1},
		Geometry{InChannels: 40, OutChannels: 8, InH: 5, InW: 13, KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 2},
	)
	rng := rand.New(rand.NewPCG(21, 22))
	for gi, g := range geoms {
		g, img := randomImage(t, rng, gi, g)
		d, cg := g.PatchLen(), g.GroupInChannels()
		perm := make([]int, d)
		g.HWCOrder(perm)
		seen := make([]bool, d)
		for _, k := range perm {
			if k < 0 || k >= d || seen[k] {
				t.Fatalf("geometry %d: HWCOrder %v is not a permutation", gi, perm)
			}
			seen[k] = true
		}
		pw := g.InW + 2*g.PadW
		for grp := 0; grp < g.Groups; grp++ {
			want := make([]float32, g.Locations()*d)
			g.Im2col(want, d, img, grp)
			hwc := make([]float32, g.HWCLen()+1)
			for i := range hwc {
				hwc[i] = float32(math.NaN())
			}
			g.PadImageHWC(hwc, img, grp)
			if !math.IsNaN(float64(hwc[g.HWCLen()])) {
				t.Fatalf("geometry %d: PadImageHWC wrote past its image", gi)
			}
			for l := 0; l < g.Locations(); l++ {
				oy, ox := l/g.OutW(), l%g.OutW()
				for i := 0; i < g.KernelH; i++ {
					for j := 0; j < g.KernelW; j++ {
						for c := 0; c < cg; c++ {
							k := (i*g.KernelW+j)*cg + c
							y, x := oy*g.StrideH+i*g.DilationH, ox*g.StrideW+j*g.DilationW
							got := hwc[(y*pw+x)*cg+c]
							if w := want[l*d+perm[k]]; math.Float32bits(got) != math.Float32bits(w) {
								t.Fatalf("geometry %d group %d location %d coordinate %d: %v, want %v", gi, grp, l, k, got, w)
							}
						}
					}
				}
			}
		}
	}
}
