package backend

import (
	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/conv"
	"github.com/frogopt/frog/fisher"
)

// maxParts bounds how many parts the per-step passes split into.
const maxParts = 64

// unfold is the once-a-step pass over one channel group: im2col, the
// squared patch norms (for the traces) and the largest patch magnitude
// (for the power-of-two scale), one sample range per part, each sample's
// patches handled while they are in cache.
type unfold struct {
	geom      conv.Geometry
	group     int
	samples   int
	rowLen    int
	jointBias bool
	acts      []float32
	patches   []float32
	norms     []float64
	kernels   blas.Kernels
	// maxBits[part] is the largest |value| bit pattern its part saw; the
	// bit patterns of non-negative floats order as the floats do, and NaN
	// and Inf sort above every finite value.
	maxBits [maxParts]uint32
}

func (u *unfold) RunPart(part, parts int) {
	g, d := u.geom, u.rowLen
	L := g.Locations()
	s0, s1 := u.samples*part/parts, u.samples*(part+1)/parts
	var top uint32
	for s := s0; s < s1; s++ {
		x := u.patches[s*L*d : (s+1)*L*d]
		g.Im2col(x, d, u.acts[s*g.ImageLen():], u.group)
		for l := 0; l < L; l++ {
			row := x[l*d : (l+1)*d]
			if u.jointBias {
				row[d-1] = 1
			}
			u.norms[s*L+l] = u.kernels.Dot(row, row)
			top = max(top, blas.MaxAbsBits(row))
		}
	}
	u.maxBits[part] = top
}

// normalizer is pow2.Normalizer of all the patches: 2^-e bringing the
// largest magnitude into [1, 2), or 1 when all are zero or one is not
// finite.
func (u *unfold) normalizer(parts int) float64 {
	var top uint32
	for _, b := range u.maxBits[:parts] {
		top = max(top, b)
	}
	return blas.NormalizerOfBits(top)
}

// scaleRows multiplies the patches by a power of two, in parts.
type scaleRows struct {
	x     []float32
	scale float32
}

func (s *scaleRows) RunPart(part, parts int) {
	n := len(s.x)
	x := s.x[n*part/parts : n*(part+1)/parts]
	blas.ScaleTo(s.scale, x, x)
}

// fillWeights runs fisher.RowWeights.FillRows on ranges of rows, in parts.
type fillWeights struct {
	rw         fisher.RowWeights
	weights    []float32
	trace      []float64
	norms      []float64
	lossScale  float64
	d          int
	eps, scale float64
}

func (f *fillWeights) RunPart(part, parts int) {
	rows := f.rw.Rows
	f.rw.FillRows(rows*part/parts, rows*(part+1)/parts, f.weights, f.trace, f.norms, f.lossScale, f.d, f.eps, f.scale)
}
