package conv

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestCol2imAdjoint checks <Im2col(x), p> == <x, Col2im(p)> for random x
// and p across strides, paddings, dilations, rectangular kernels and
// groups, and that Col2im accumulates and stays inside its group's
// channels and the row length it was given.
func TestCol2imAdjoint(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    Geometry
	}{
		{"3x3 pad 1", Geometry{InChannels: 2, OutChannels: 3, InH: 5, InW: 6, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1}},
		{"5x5 no pad", Geometry{InChannels: 1, OutChannels: 2, InH: 9, InW: 7, KernelH: 5, KernelW: 5}},
		{"stride 2", Geometry{InChannels: 3, OutChannels: 4, InH: 8, InW: 8, KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}},
		{"rect dilated", Geometry{InChannels: 2, OutChannels: 2, InH: 9, InW: 10, KernelH: 2, KernelW: 3, DilationH: 2, DilationW: 3, PadH: 2, PadW: 1}},
		{"1x1", Geometry{InChannels: 4, OutChannels: 4, InH: 3, InW: 3, KernelH: 1, KernelW: 1}},
		{"groups", Geometry{InChannels: 4, OutChannels: 6, InH: 6, InW: 5, KernelH: 3, KernelW: 3, PadH: 1, PadW: 1, Groups: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.g.Normalized()
			if err := g.Validate(); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			d, locs := g.PatchLen(), g.Locations()
			ld := d + 2 // extra columns must be ignored
			for group := 0; group < g.Groups; group++ {
				img := col2imTestValues(rng, g.ImageLen())
				cols := make([]float32, locs*ld)
				g.Im2col(cols, ld, img, group)
				p := col2imTestValues(rng, locs*ld)
				var lhs float64
				for l := 0; l < locs; l++ {
					for k := 0; k < d; k++ {
						lhs += float64(cols[l*ld+k]) * float64(p[l*ld+k])
					}
				}
				base := col2imTestValues(rng, g.ImageLen())
				acc := append([]float32(nil), base...)
				g.Col2im(acc, p, ld, group)
				var rhs float64
				cg, hw := g.GroupInChannels(), g.InH*g.InW
				for i := range acc {
					delta := float64(acc[i]) - float64(base[i])
					if c := i / hw; c < group*cg || c >= (group+1)*cg {
						if delta != 0 {
							t.Fatalf("group %d: channel %d outside the group changed", group, c)
						}
					}
					rhs += float64(img[i]) * delta
				}
				if math.Abs(lhs-rhs) > 1e-4*(1+math.Abs(lhs)) {
					t.Errorf("group %d: <im2col x, p> = %v, <x, col2im p> = %v", group, lhs, rhs)
				}
			}
		})
	}
}

func col2imTestValues(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}
