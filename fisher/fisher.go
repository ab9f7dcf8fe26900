package fisher

import (
	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/internal/buf"
)

// Operator applies Q = (Weights .* (P X^T)) X + Damping*P to blocks of Rows
// directions of length Len. Patches holds the Points x Len matrix X
// (row stride Len). Weights holds the Rows x Points matrix Lhat; when it
// is nil every entry is Uniform (K-FROG's X^T X / b).
type Operator struct {
	Rows, Len, Points int
	Patches           []float32
	// Image, when not nil, gives the rows of X as windows of images
	// instead of Patches (which may then be nil): the kernels of package
	// blas read them there where they can (blas.ReadsImage); others read
	// a copy of all the rows, made at each Apply.
	Image *blas.ImageRows
	// Windows, when not nil, describes Patches as windows of images:
	// a solve in the points' space then forms their Gram matrix from the
	// pixels' (blas.PixelWindows).
	Windows *blas.PixelWindows
	Weights []float32
	Uniform float32
	Damping float32
	// Kernels runs the products; nil means blas.Current().
	Kernels blas.Kernels

	prod      []float32 // Rows x Points: P X^T, then scaled in place
	fromImage []float32 // the rows of Image, for kernels that cannot read it
	fused     blas.FisherProduct
}

// PackPatches tells the operator that Patches and Weights hold this
// step's values and will not change until the next call: kernels that read
// them in another layout (patches as packed panels, weights transposed)
// copy them here once instead of once per Apply. After changing the
// contents of Patches or Weights in place, call PackPatches again: a copy
// is used while the slice starts at the same element and the shape is
// unchanged. It reports whether the kernels made a copy.
func (o *Operator) PackPatches() bool {
	k := o.kernels()
	f := &o.fused
	f.Rows, f.Len, f.Points = o.Rows, o.Len, o.Points
	f.X, f.Weights, f.Image = o.patches(), o.Weights, o.Image
	return f.PackPoints(k)
}

// patches returns Patches, or nil when the rows come from Image.
func (o *Operator) patches() []float32 {
	if o.Image != nil {
		return nil
	}
	return o.Patches[:o.Points*o.Len]
}

func (o *Operator) kernels() blas.Kernels {
	if o.Kernels == nil {
		return blas.Current()
	}
	return o.Kernels
}

// product sets the operator's blas.FisherProduct to apply it to p, into q.
func (o *Operator) product(q, p []float32) *blas.FisherProduct {
	r, d := o.Rows, o.Len
	f := o.setProduct()
	f.P, f.Q = p[:r*d], q[:r*d]
	return f
}

// setProduct sets the operator's blas.FisherProduct but for P and Q.
func (o *Operator) setProduct() *blas.FisherProduct {
	alpha := float32(1)
	if o.Weights == nil {
		alpha = o.Uniform
	}
	f := &o.fused
	f.Rows, f.Len, f.Points = o.Rows, o.Len, o.Points
	f.X, f.Weights, f.Image, f.Windows = o.patches(), o.Weights, o.Image, o.Windows
	f.Alpha, f.Damping = alpha, o.Damping
	return f
}

// Apply writes Q = Fhat P into q. p and q hold Rows x Len values.
func (o *Operator) Apply(q, p []float32) {
	r, d, n := o.Rows, o.Len, o.Points
	k := o.kernels()
	// One pass over X when the kernels can: each block of patches goes
	// through both products while it is in cache.
	f := o.product(q, p)
	alpha := f.Alpha
	if blas.FuseFisher(k, f) {
		return
	}
	x, prod := o.firstProduct(k, p)
	if o.Weights != nil {
		w := o.Weights[:r*n]
		for i, v := range w {
			prod[i] *= v
		}
	}
	// Q = tau*P + alpha*(prod X).
	copy(q[:r*d], p[:r*d])
	k.Gemm(false, false, r, d, n, alpha, prod, n, x, d, o.Damping, q, d)
}

// firstProduct returns the rows of X (Patches, or a copy of Image's) and
// P X^T, Rows x Points, for kernels without a Fisher kernel of their own.
func (o *Operator) firstProduct(k blas.Kernels, p []float32) (x, prod []float32) {
	r, d, n := o.Rows, o.Len, o.Points
	x = o.Patches
	if o.Image != nil {
		o.fromImage = buf.Grow(o.fromImage, n*d)
		x = o.fromImage
		o.Image.Rows(x, d, 0, n)
	}
	o.prod = buf.Grow(o.prod, r*n)
	// P X^T: (R x D) times (N x D)^T.
	k.Gemm(false, true, r, n, d, 1, p, d, x, d, 0, o.prod, n)
	return x, o.prod
}

// Curvatures writes pq[j] = p_j.(Fhat_j p_j - Damping*p_j), the weighted
// squares of row j of P X^T, for every row (cg.Curvature): the first of
// Apply's two products alone. p holds Rows x Len values.
func (o *Operator) Curvatures(pq []float64, p []float32) {
	r, d, n := o.Rows, o.Len, o.Points
	k := o.kernels()
	f := o.setProduct()
	f.P, f.Q = p[:r*d], nil
	if blas.FisherCurvatures(k, f, pq) {
		return
	}
	_, prod := o.firstProduct(k, p)
	for j := 0; j < r; j++ {
		row := prod[j*n : (j+1)*n]
		var sum float64
		if o.Weights == nil {
			for _, v := range row {
				sum += float64(v) * float64(v)
			}
			pq[j] = float64(f.Alpha) * sum
			continue
		}
		for i, w := range o.Weights[j*n : (j+1)*n] {
			sum += float64(w) * float64(row[i]) * float64(row[i])
		}
		pq[j] = sum
	}
}

// Shift returns the damping tau: the operator is (its Fisher part) + tau*I.
func (o *Operator) Shift() float32 { return o.Damping }

// ApplyUnshifted writes the Fisher part alone, Q = Fhat P - tau*P, into q.
func (o *Operator) ApplyUnshifted(q, p []float32) {
	tau := o.Damping
	o.Damping = 0
	o.Apply(q, p)
	o.Damping = tau
}

// PointsSolve reports whether CG should run wholly in the points' space
// (blas.PointsGains), which needs Patches (no Image), with the sizes of
// its blocks. With the methods below it implements cg.PointsSpace, whose
// v_j is Weights_j (Uniform with no Weights).
func (o *Operator) PointsSolve(iters int) (points, ld int, ok bool) {
	if o.Image != nil || !blas.PointsGains(o.Rows, o.Len, o.Points, iters) {
		return 0, 0, false
	}
	return o.Points, blas.PointsStride(o.Points), true
}

// StartPoints writes U = R X^T and computes the Gram matrix of X.
func (o *Operator) StartPoints(u, r []float32) {
	o.setProduct().StartPoints(o.kernels(), u, blas.PointsStride(o.Points), r)
}

// Weigh writes s_j = Weights_j .* t_j (Uniform * t_j) for rows j0..j1.
// Parts of a solve call it at once on different rows: it reads the
// operator's product as StartPoints set it, and changes nothing.
func (o *Operator) Weigh(s, t []float32, j0, j1 int) {
	o.fused.WeighRows(s, t, blas.PointsStride(o.Points), j0, j1)
}

// TimesGram writes W = S G, G the Gram matrix of StartPoints.
func (o *Operator) TimesGram(w, s []float32) {
	o.setProduct().TimesGram(o.kernels(), w, s, blas.PointsStride(o.Points))
}

// Expand writes Z = C X.
func (o *Operator) Expand(z, c []float32) {
	o.setProduct().Expand(o.kernels(), z[:o.Rows*o.Len], c, blas.PointsStride(o.Points))
}

// RowWeights describes where the output gradients of one group's rows lie
// in a subsample: the gradient for row j (0 <= j < Rows), sample n and
// location l is OutGrads[n*SampleStride + (RowOffset+j)*Locations + l].
type RowWeights struct {
	OutGrads     []float32
	SampleStride int
	RowOffset    int
	Rows         int
	Samples      int
	Locations    int
}

// Fill computes, for every row j, the scaled squares lam(j,n,l) =
// lossScale*y(n,j,l)^2, the trace t_j = (1/d) sum lam(j,n,l)*norms(n,l)
// (norms are the squared patch norms in the original scale, d the row
// length) and writes trace[j] = t_j and
//
//	weights[j*N + n*L + l] = lam(j,n,l)/(t_j + eps) * patchScale^-2
//
// where N = Samples*Locations and patchScale is the factor the patches
// were multiplied by, so that the operator built on the scaled patches is
// the operator of the original ones. Everything before the final float32
// store is float64: squares of float32 values neither overflow nor vanish.
func (rw RowWeights) Fill(weights []float32, trace []float64, norms []float64, lossScale float64, d int, eps, patchScale float64) {
	rw.FillRows(0, rw.Rows, weights, trace, norms, lossScale, d, eps, patchScale)
}

// FillRows is Fill for rows j0 <= j < j1 only (weights and trace hold all
// the rows); rows are independent, so ranges may be filled concurrently.
func (rw RowWeights) FillRows(j0, j1 int, weights []float32, trace []float64, norms []float64, lossScale float64, d int, eps, patchScale float64) {
	L, S := rw.Locations, rw.Samples
	n := S * L
	inv := 1 / (patchScale * patchScale)
	for j := j0; j < j1; {
		// Four rows at a time (their sums are independent chains), each
		// over four partial sums: one chain of dependent additions would
		// take the latency of an addition per term.
		rows := min(4, j1-j)
		var acc [16]float64
		for s := 0; s < S; s++ {
			y := rw.OutGrads[s*rw.SampleStride+(rw.RowOffset+j)*L:][:rows*L]
			blas.AddWeightedSquares(&acc, rows, y, L, norms[s*L:(s+1)*L])
		}
		for r := 0; r < rows; r++ {
			a := acc[4*r : 4*r+4]
			t := (a[0] + a[1]) + (a[2] + a[3])
			t *= lossScale / float64(d)
			trace[j+r] = t
			c := lossScale / (t + eps) * inv
			for s := 0; s < S; s++ {
				y := rw.OutGrads[s*rw.SampleStride+(rw.RowOffset+j+r)*L:][:L]
				blas.SquaresTo64(c, y, weights[(j+r)*n+s*L:][:L])
			}
		}
		j += rows
	}
}
