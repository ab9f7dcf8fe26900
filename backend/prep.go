package backend

import (
	"math"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/conv"
	"github.com/frogopt/frog/fisher"
	"github.com/frogopt/frog/internal/buf"
)

// maxParts bounds how many parts the per-step passes split into.
const maxParts = 64

// unfold is the once-a-step pass over one channel group: im2col, the
// squared patch norms (for the traces) and the power-of-two scale, one
// sample range per part. The scale comes first, from the activations
// (scanActs): then each piece of a few patch rows is unfolded, its norms
// taken and scaled while it is in cache, and the patches are written
// once instead of written, read back and rewritten by a separate pass.
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
	// scale is the power of two the patches are multiplied by.
	scale float32
	// bufs[part] is the part's scratch memory.
	bufs *[maxParts]unfoldBuffers
	// bypass stores the patches past the cache: they are too many to be
	// found there again when the products next read them.
	bypass bool
	// scan selects the first pass: the largest magnitude of the group's
	// activations, into maxBits.
	scan bool
	// maxBits[part] is the largest |value| bit pattern its part saw; the
	// bit patterns of non-negative floats order as the floats do, and NaN
	// and Inf sort above every finite value.
	maxBits [maxParts]uint32
}

// unfoldBuffers is one part's scratch memory for unfold.
type unfoldBuffers struct {
	// piece is a piece of patch rows, unfolded in cache and then stored
	// into patches.
	piece []float32
	// padded is one sample's image of the group, padded (for a geometry
	// with padding): its patches need no bounds tests, which would
	// otherwise cost most of the unfolding at the borders.
	padded []float32
}

// bypassBytes is the size of patches from which unfold stores them past
// the cache: twice a core's L2 cache. Smaller ones stay there for the
// packing and the first product that follow. Larger ones would have to
// stay in the last-level cache to be found again, and on the shared
// machine this was tuned on they were not: with 32 MiB here instead,
// l2.conv_s2 (9.4 MB of patches) and l2.conv (18.9 MB) ran 2-3 % slower
// in frogbench (median of 4 alternating runs each), l4.* the same.
const bypassBytes = 2 << 20

// unfoldFloats is the size of the pieces of patch rows that unfold
// handles at a time: they stay in the L1 cache.
const unfoldFloats = 8 << 10

func (u *unfold) RunPart(part, parts int) {
	g, d := u.geom, u.rowLen
	L := g.Locations()
	s0, s1 := u.samples*part/parts, u.samples*(part+1)/parts
	if u.scan {
		// Every patch value is an activation of the group, a zero of the
		// padding or the bias's 1; the activations may hold more (a
		// strided 1x1 window skips some), which gives the same or a
		// larger power of two, and any power of two gives the same
		// operator.
		cg, hw := g.GroupInChannels(), g.InH*g.InW
		var top uint32
		for s := s0; s < s1; s++ {
			img := u.acts[s*g.ImageLen()+u.group*cg*hw:][:cg*hw]
			top = max(top, blas.MaxAbsBits(img))
		}
		u.maxBits[part] = top
		return
	}
	bufs := &u.bufs[part]
	rows := max(1, unfoldFloats/d)
	bufs.piece = buf.Grow(bufs.piece, rows*d)
	pg, padded := g, g.PadH > 0 || g.PadW > 0
	if padded {
		pg = g.Padded()
		bufs.padded = buf.Grow(bufs.padded, pg.ImageLen())
	}
	for s := s0; s < s1; s++ {
		x := u.patches[s*L*d : (s+1)*L*d]
		img, group := u.acts[s*g.ImageLen():], u.group
		if padded {
			g.PadImage(bufs.padded, img, group)
			img, group = bufs.padded, 0
		}
		for l0 := 0; l0 < L; l0 += rows {
			l1 := min(l0+rows, L)
			piece := bufs.piece[:(l1-l0)*d]
			pg.Im2colRange(piece, d, img, group, l0, l1)
			for l := l0; l < l1; l++ {
				row := piece[(l-l0)*d : (l-l0+1)*d]
				if u.jointBias {
					row[d-1] = 1
				}
				u.norms[s*L+l] = u.kernels.Dot(row, row)
			}
			if u.bypass {
				blas.ScaleToNT(u.scale, piece, x[l0*d:l1*d])
			} else {
				blas.ScaleTo(u.scale, piece, x[l0*d:l1*d])
			}
		}
	}
}

// normalizer is blas.Normalizer of all the patches' values after the scan
// pass (see RunPart): 2^-e bringing the largest magnitude into [1, 2), or
// 1 when all are zero or one is not finite.
func (u *unfold) normalizer(parts int) float64 {
	var top uint32
	for _, b := range u.maxBits[:parts] {
		top = max(top, b)
	}
	return u.normalizerOf(top)
}

// normalizerOf is normalizer for activations whose largest MaxAbsBits is
// top, found by the scan pass or by the caller: a joint bias adds its
// constant 1 to the patches' values.
func (u *unfold) normalizerOf(top uint32) float64 {
	if u.jointBias {
		top = max(top, math.Float32bits(1))
	}
	return blas.NormalizerOfBits(top)
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
