package backend

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/conv"
)

// TestUnfoldMatchesIm2col checks the piecewise unfold (im2col a few rows
// at a time, norms, power-of-two scale) against whole-image Im2col, the
// norms of the unscaled patches and a scale from the patches' largest
// magnitude, on every part count.
func TestUnfoldMatchesIm2col(t *testing.T) {
	geoms := []conv.Geometry{
		{InChannels: 3, OutChannels: 4, InH: 7, InW: 5, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1},
		{InChannels: 1000, OutChannels: 2, InH: 4, InW: 4, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1}, // one row a piece
		{InChannels: 6, OutChannels: 4, InH: 9, InW: 8, KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 2},
		{InChannels: 2, OutChannels: 2, InH: 40, InW: 40, KernelH: 1, KernelW: 1}, // many rows a piece
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for gi, g := range geoms {
		g = g.Normalized()
		if err := g.Validate(); err != nil {
			t.Fatal(err)
		}
		const samples = 3
		acts := make([]float32, samples*g.ImageLen())
		for i := range acts {
			acts[i] = float32(rng.NormFloat64() * 1e6)
		}
		L := g.Locations()
		for _, jointBias := range []bool{false, true} {
			d := g.PatchLen()
			if jointBias {
				d++
			}
			for grp := 0; grp < g.Groups; grp++ {
				want := make([]float32, samples*L*d)
				wantNorms := make([]float64, samples*L)
				for s := 0; s < samples; s++ {
					g.Im2col(want[s*L*d:], d, acts[s*g.ImageLen():], grp)
				}
				for i := 0; i < samples*L; i++ {
					row := want[i*d : (i+1)*d]
					if jointBias {
						row[d-1] = 1
					}
					wantNorms[i] = blas.Current().Dot(row, row)
				}
				ps := float32(blas.Normalizer(want))
				blas.ScaleTo(ps, want, want)
				for parts := 1; parts <= samples; parts++ {
					x := make([]float32, len(want))
					for i := range x {
						x[i] = float32(math.NaN())
					}
					norms := make([]float64, samples*L)
					u := unfold{geom: g, group: grp, samples: samples, rowLen: d, jointBias: jointBias,
						acts: acts, patches: x, norms: norms, kernels: blas.Current(), scan: true, bufs: new([maxParts]unfoldBuffers)}
					for p := 0; p < parts; p++ {
						u.RunPart(p, parts)
					}
					got := u.normalizer(parts)
					if float32(got) != ps {
						t.Fatalf("geometry %d, bias %v, group %d, %d parts: scale %v, want %v", gi, jointBias, grp, parts, got, ps)
					}
					u.scan, u.scale, u.bypass = false, float32(got), parts%2 == 0
					for p := 0; p < parts; p++ {
						u.RunPart(p, parts)
					}
					for i := range want {
						if math.Float32bits(x[i]) != math.Float32bits(want[i]) {
							t.Fatalf("geometry %d, bias %v, group %d, %d parts: patch value %d is %v, want %v", gi, jointBias, grp, parts, i, x[i], want[i])
						}
					}
					for i := range wantNorms {
						if norms[i] != wantNorms[i] {
							t.Fatalf("geometry %d, bias %v, group %d, %d parts: norm %d is %v, want %v", gi, jointBias, grp, parts, i, norms[i], wantNorms[i])
						}
					}
				}
			}
		}
	}
}
