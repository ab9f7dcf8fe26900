package blas

import (
	"github.com/frogopt/frog/asm"
	"github.com/frogopt/frog/internal/buf"
)

// FisherCurvatures writes, for every row j of f.P,
//
//	pq[j] = Alpha * sum_n Weights[j][n] * ((P X^T)[j][n])^2,
//
// which is p_j.(Q_j) for f's product without its Damping term: the
// curvature CG's last iteration needs (cg.Curvature). It costs the first
// of the product's two products with X and a pass over its result; Q is
// not touched. It uses k's Fisher kernels, as FuseFisher, and reports
// whether they took the shape; otherwise it does nothing and the caller
// computes the curvatures itself.
//
// Like the product's, the sums depend on the shape and the kernels only:
// the points are cut into pieces fixed by the shape, each summed in
// float32 a block at a time and in float64 across its blocks, and the
// pieces are added in order.
func FisherCurvatures(k Kernels, f *FisherProduct, pq []float64) bool {
	ff, ok := k.(fisherFuser)
	return ok && ff.fisherCurvatures(f, pq)
}

// curvaturePiece is how many points of the first product's T^T a piece of
// the pass over it sums (pointCurvatures).
const curvaturePiece = 256

// growSums makes room for the partial sums of pieces pieces, cleared.
func (w *fisherWork) growSums(pieces int) {
	r := len(w.curv)
	w.sums = buf.Grow(w.sums, pieces*r)
	w.sq = buf.Grow(w.sq, pieces*r)
	clear(w.sums)
}

// addSums writes the curvatures: Alpha times the pieces' partial sums,
// added in the order of the pieces.
func (w *fisherWork) addSums(pieces int) {
	f, pq := w.f, w.curv
	r := len(pq)
	clear(pq)
	for c := 0; c < pieces; c++ {
		for j, v := range w.sums[c*r : (c+1)*r] {
			pq[j] += v
		}
	}
	for j := range pq {
		pq[j] *= float64(f.Alpha)
	}
}

// weighSquares adds to piece c's partial sums, for every row j, the
// weighted squares of the nb points from n0 of a first product S (points
// x rows, row stride lds): sum_i Weights[j][n0+i] * S[i][j]^2, from the
// weights' transposed copy when there is one, all ones when there are
// none. It squares S in place. The block's sums run in float32, one chain
// a row in the order of the points, and are then added in float64.
func (w *fisherWork) weighSquares(c int, s []float32, lds int, weightsT []float32, n0, nb int) {
	f := w.f
	r, n := f.Rows, f.Points
	sq, sums := w.sq[c*r:(c+1)*r], w.sums[c*r:(c+1)*r]
	clear(sq)
	for i := 0; i < nb; i++ {
		si := s[i*lds : i*lds+r]
		switch {
		case weightsT != nil:
			asm.Hadamard(si, si)
			asm.MulAdd(weightsT[(n0+i)*r:(n0+i+1)*r], si, sq)
		case f.Weights != nil:
			for j, v := range si {
				sq[j] += f.Weights[j*n+n0+i] * (v * v)
			}
		default:
			asm.MulAdd(si, si, sq)
		}
	}
	for j, v := range sq {
		sums[j] += float64(v)
	}
}

// curvaturePieces sums the weighted squares of the first product T^T
// (Points x Rows, row stride sStride) of the two products, a piece of
// curvaturePiece points at a time, split across the cores by pieces.
type curvaturePieces struct {
	w        *fisherWork
	weightsT []float32
}

func (t *curvaturePieces) RunPart(part, parts int) {
	w := t.w
	f := w.f
	n, ld := f.Points, sStride(f.Rows)
	pieces := (n + curvaturePiece - 1) / curvaturePiece
	for c := pieces * part / parts; c < pieces*(part+1)/parts; c++ {
		n0 := c * curvaturePiece
		w.weighSquares(c, w.t[n0*ld:], ld, t.weightsT, n0, min(curvaturePiece, n-n0))
	}
}

// pointCurvatures writes the curvatures of w.f from the first product T^T
// of the two products (in w.t, unscaled), weightsT the weights transposed
// or nil (no weights).
func (w *fisherWork) pointCurvatures(weightsT []float32) {
	f := w.f
	pieces := (f.Points + curvaturePiece - 1) / curvaturePiece
	w.growSums(pieces)
	t := &w.pieces
	*t = curvaturePieces{w: w, weightsT: weightsT}
	Parallel(t, min(pieces, max(1, f.Points*f.Rows>>15)))
	*t = curvaturePieces{}
	w.addSums(pieces)
}

// curvatureRows writes the curvatures of a part's rows from the first
// product T (Rows x Points, row stride ld) of the two products that read
// P in place: row j's weighted squares, one dot product a row.
type curvatureRows struct {
	w  *fisherWork
	ld int
}

func (t *curvatureRows) RunPart(part, parts int) {
	w := t.w
	f := w.f
	r, n := f.Rows, f.Points
	for j := r * part / parts; j < r*(part+1)/parts; j++ {
		tj := w.t[j*t.ld : j*t.ld+n]
		if f.Weights == nil {
			w.curv[j] = float64(f.Alpha) * asm.Dot(tj, tj)
			continue
		}
		asm.Hadamard(tj, tj)
		w.curv[j] = float64(f.Alpha) * asm.Dot(f.Weights[j*n:(j+1)*n], tj)
	}
}

// rowCurvatures writes the curvatures of w.f from the first product T
// (Rows x Points, row stride ld, unscaled) of the two products that read
// P in place.
func (w *fisherWork) rowCurvatures(ld int) {
	t := &w.rows
	*t = curvatureRows{w: w, ld: ld}
	Parallel(t, max(1, w.f.Points*w.f.Rows>>15))
	*t = curvatureRows{}
}
