package blas

import (
	"os"

	"github.com/frogopt/frog/asm"
)

// CG's recurrences through the points' space.
//
// Every direction CG applies the Fisher operator to enters it only
// through T = P X^T (Rows x Points): Q = Alpha*(Weights .* T) X. CG's own
// recurrences carry over to T. With U = R X^T the image of the residuals,
//
//	r_j -= a_j*(q_j + tau*p_j)  gives  U_j -= a_j*(Alpha*(S G)_j + tau*T_j)
//	p_j  = r_j + b_j*p_j        gives  T_j  = U_j + b_j*T_j
//
// where S = Weights .* T and G = X X^T, the points' Gram matrix (Points x
// Points, once a step). Where there are fewer points than coordinates
// (ResNet-18's last layers: 256 points of 4608 coordinates), the product
// S G costs Points/Len of the product P X^T it replaces, and an
// iteration after the first runs one product over X instead of two.
// The directions are the same in exact arithmetic; in float32 T drifts
// from P X^T by the rounding of the two recurrences, which CG's own
// residual recurrence already has.

// RecurrenceEnv is the environment variable that overrides the choice of
// PointsGains and RecurrenceGains: "off" never follows the recurrences,
// "always" follows them for every shape and "points" solves every shape
// in the points' space (to test them on small ones). It is read at every
// choice.
const RecurrenceEnv = "FROG_RECURRENCE"

// PointsGains reports whether a CG solve of iters iterations on a Fisher
// product of this shape costs at least a quarter fewer flops run wholly in
// the points' space (cg.PointsSpace: the Gram matrix, R X^T, one product
// with the Gram matrix an iteration and the expansion of z) than applying
// the product at every iteration, with the Gram matrix within 64 MiB;
// RecurrenceEnv overrides it. An empty shape never does. It takes the
// shapes with far fewer points than coordinates, where RecurrenceGains
// would too, and saves more there.
func PointsGains(rows, length, points, iters int) bool {
	if rows <= 0 || length <= 0 || points <= 0 {
		return false
	}
	switch os.Getenv(RecurrenceEnv) {
	case "off", "always":
		return false
	case "points":
		return iters >= 1
	}
	if iters < 1 || points > 4096 {
		return false
	}
	r, d, n, k := float64(rows), float64(length), float64(points), float64(iters)
	direct := k * 4 * r * n * d
	// The Gram matrix counted half, as the assembly kernels compute it
	// (see gram), R X^T, S G at every iteration and the expansion.
	// (A fifth would take l4.sc, 512 rows of 256 points and coordinates,
	// which runs 3 % slower there: its products are small.)
	follow := n*n*d + 4*r*n*d + k*2*r*n*n
	return 4*follow <= 3*direct
}

// RecurrenceGains reports whether a CG solve of iters iterations on a
// Fisher product of this shape costs at least a fifth fewer flops by
// following the recurrences (StartRecurrence, NextRecurrence) than by
// running both products at every iteration, with the Gram matrix within
// 64 MiB; RecurrenceEnv overrides it. An empty shape never does.
func RecurrenceGains(rows, length, points, iters int) bool {
	if rows <= 0 || length <= 0 || points <= 0 {
		return false
	}
	switch os.Getenv(RecurrenceEnv) {
	case "off":
		return false
	case "always":
		return iters >= 2
	}
	if iters < 2 || points > 4096 {
		return false
	}
	r, d, n, k := float64(rows), float64(length), float64(points), float64(iters)
	direct := k * 4 * r * n * d
	// The Gram matrix (counted whole, though the assembly kernels compute
	// only about half of it, see gram), the first iteration's P X^T, a
	// product over X at every iteration and S G at every one after the
	// first.
	follow := 2*n*n*d + 2*r*n*d + k*2*r*n*d + (k-1)*2*r*n*n
	return 5*follow <= 4*direct
}

// recurrence is the state NextRecurrence carries from one iteration to the
// next: rows of ld values (Points and padding, see tPad).
type recurrence struct {
	t, u, s, w []float32 // T, U, S = Weights .* T, and Alpha * S G
	ld         int
	gram       []float32 // G = X X^T, Points x Points
	rows       rowStep
}

// rowStep is stepRows's task: a part's range of rows.
type rowStep struct {
	f           *FisherProduct
	alpha, beta []float64
	shift       float32
	moved       []bool
}

func (t *rowStep) RunPart(part, parts int) {
	r := t.f.Rows
	t.f.advanceRows(r*part/parts, r*(part+1)/parts, t.alpha, t.beta, t.shift, t.moved)
}

// StartRecurrence computes Q = Alpha*(Weights .* (P X^T)) X, Damping
// ignored, on k's kernels, and keeps T = P X^T as the first direction's
// image and, P being CG's first residual too, as the residual's, and the
// Gram matrix of X. f.Image must be nil.
func (f *FisherProduct) StartRecurrence(k Kernels) {
	r, d, n := f.Rows, f.Len, f.Points
	rc := &f.recur
	rc.ld = n + tPad
	size := r * rc.ld
	rc.t, rc.u = grow(rc.t, size), grow(rc.u, size)
	rc.s, rc.w = grow(rc.s, size), grow(rc.w, size)
	rc.gram = grow(rc.gram, n*n)
	f.gram(k)
	f.timesXT(k, r, f.P, d, rc.t, rc.ld)
	for j := 0; j < r; j++ {
		copy(rc.u[j*rc.ld:j*rc.ld+n], rc.t[j*rc.ld:j*rc.ld+n])
	}
	f.stepRows(nil, nil, 0, nil)
	f.timesX(k, rc.s, rc.ld)
}

// NextRecurrence computes the product for the directions CG's update of
// the last product's rows made (cg.Recurrent.ApplyNext): for the rows with
// moved[j], r_j -= alpha[j]*(q_j + shift*p_j) and p_j = r_j + beta[j]*p_j,
// coefficients rounded to float32 as CG rounds them; other rows kept theirs.
// It reads neither P nor the last Q.
func (f *FisherProduct) NextRecurrence(k Kernels, alpha, beta []float64, moved []bool, shift float32) {
	r, n := f.Rows, f.Points
	rc := &f.recur
	k.Gemm(false, false, r, n, n, f.Alpha, rc.s, rc.ld, rc.gram, n, 0, rc.w, rc.ld)
	f.stepRows(alpha, beta, shift, moved)
	f.timesX(k, rc.s, rc.ld)
}

// stepRows advances U and T of the moved rows (all rows keep theirs when
// moved is nil) and writes S = Weights .* T, split across the cores by
// rows.
func (f *FisherProduct) stepRows(alpha, beta []float64, shift float32, moved []bool) {
	rs := &f.recur.rows
	*rs = rowStep{f: f, alpha: alpha, beta: beta, shift: shift, moved: moved}
	Parallel(rs, max(1, f.Rows*f.Points>>14))
	*rs = rowStep{}
}

// advanceRows is stepRows on rows j0..j1.
func (f *FisherProduct) advanceRows(j0, j1 int, alpha, beta []float64, shift float32, moved []bool) {
	n := f.Points
	rc := &f.recur
	for j := j0; j < j1; j++ {
		o := j * rc.ld
		t, s := rc.t[o:o+n], rc.s[o:o+n]
		if moved != nil && moved[j] {
			u, w := rc.u[o:o+n], rc.w[o:o+n]
			a, as, b := float32(alpha[j]), float32(alpha[j]*float64(shift)), float32(beta[j])
			if hasAVX2 {
				// The loop below in vector passes over the row, w (not
				// read again this iteration) holding the products: each
				// product and sum rounded once as there (an FMA by -1
				// or 1 rounds the sum once).
				asm.ScaleTo(a, w, w)
				asm.Axpy(-1, w, u)
				asm.ScaleTo(as, t, w)
				asm.Axpy(-1, w, u)
				asm.ScaleTo(b, t, t)
				asm.Axpy(1, u, t)
			} else {
				for i := range u {
					ui := u[i] - float32(a*w[i])
					ui -= float32(as * t[i])
					u[i] = ui
					t[i] = ui + float32(b*t[i])
				}
			}
		}
		f.weighRow(j, s, t)
	}
}

// weighRow writes s = Weights_j .* t (t itself when Weights is nil).
func (f *FisherProduct) weighRow(j int, s, t []float32) {
	n := f.Points
	switch {
	case f.Weights == nil:
		copy(s, t)
	case hasAVX2:
		copy(s, t)
		asm.Hadamard(f.Weights[j*n:(j+1)*n], s)
	default:
		for i, v := range f.Weights[j*n : (j+1)*n] {
			s[i] = v * t[i]
		}
	}
}

// gram writes G = X X^T (Points x Points) into the recurrence's Gram
// matrix. On the assembly kernels one product computes only the tiles
// that reach the diagonal (gemmTask.upper), nearly half of them, and the
// rest is copied from the mirror image: every element of such a product
// is one chain of FMAs over the coordinates in an order fixed by Len
// alone, and X_i.X_j and X_j.X_i multiply the same pairs, so the copy has
// the bits the whole product would have given. (gonum's dot products,
// under the pure-Go kernels, sum in an order that depends on where the
// rows lie: those run the whole product.)
func (f *FisherProduct) gram(k Kernels) {
	n, d := f.Points, f.Len
	g := f.recur.gram
	if !isAVX2(k) {
		f.timesXT(k, n, f.X, d, g, n)
		return
	}
	t := gemmTask{m: n, n: n, k: d, alpha: 1, a: f.X, lda: d, c: g, ldc: n, upper: true}
	if _, xt := f.packedX(); xt != nil {
		t.packedB, t.panelStride = xt, d*nr
	} else {
		t.transB, t.b, t.ldb = true, f.X, d
	}
	runGemm(&t)
	for i := 0; i < n; i++ {
		row := g[i*n : i*n+upperFrom(i)]
		for j := range row {
			row[j] = g[j*n+i]
		}
	}
}

// timesXT writes C = A X^T (m x Points, row stride ldc) for A m x Len
// (row stride Len), from the packed X^T when PackPoints made one.
func (f *FisherProduct) timesXT(k Kernels, m int, a []float32, lda int, c []float32, ldc int) {
	n, d := f.Points, f.Len
	if _, xt := f.packedX(); xt != nil && isAVX2(k) {
		runGemm(&gemmTask{m: m, n: n, k: d, alpha: 1, a: a, lda: lda, c: c, ldc: ldc, packedB: xt, panelStride: d * nr})
		return
	}
	k.Gemm(false, true, m, n, d, 1, a, lda, f.X, d, 0, c, ldc)
}

// timesX writes Q = Alpha * S X for S Rows x Points (row stride lds).
func (f *FisherProduct) timesX(k Kernels, s []float32, lds int) {
	f.timesXInto(k, f.Alpha, s, lds, f.Q)
}

// timesXInto writes C = alpha * S X (Rows x Len) for S Rows x Points (row
// stride lds), from the packed X when PackPoints made one.
func (f *FisherProduct) timesXInto(k Kernels, alpha float32, s []float32, lds int, c []float32) {
	r, n, d := f.Rows, f.Points, f.Len
	if xp, _ := f.packedX(); xp != nil && isAVX2(k) {
		runGemm(&gemmTask{m: r, n: d, k: n, alpha: alpha, a: s, lda: lds, c: c, ldc: d, packedB: xp, panelStride: n * nr})
		return
	}
	k.Gemm(false, false, r, d, n, alpha, s, lds, f.X, d, 0, c, d)
}

// PointsStride is the row stride of the Rows x Points blocks of a solve in
// the points' space: Points padded (see tPad).
func PointsStride(points int) int { return points + tPad }

// StartPoints writes U = R X^T (Rows x Points, row stride ld) for R Rows
// x Len, and the Gram matrix of X, on k's kernels: the start of a solve
// in the points' space (cg.PointsSpace). f.Image must be nil.
func (f *FisherProduct) StartPoints(k Kernels, u []float32, ld int, r []float32) {
	n := f.Points
	f.recur.gram = grow(f.recur.gram, n*n)
	f.gram(k)
	f.timesXT(k, f.Rows, r, f.Len, u, ld)
}

// WeighRows writes s_j = Alpha * Weights_j .* t_j (Alpha * t_j when
// Weights is nil) for rows j0..j1 of blocks with row stride ld.
func (f *FisherProduct) WeighRows(s, t []float32, ld, j0, j1 int) {
	n := f.Points
	for j := j0; j < j1; j++ {
		sj := s[j*ld : j*ld+n]
		f.weighRow(j, sj, t[j*ld:j*ld+n])
		if f.Alpha != 1 {
			ScaleTo(f.Alpha, sj, sj)
		}
	}
}

// TimesGram writes W = S G (Rows x Points, row stride ld) with the Gram
// matrix StartPoints computed.
func (f *FisherProduct) TimesGram(k Kernels, w, s []float32, ld int) {
	r, n := f.Rows, f.Points
	k.Gemm(false, false, r, n, n, 1, s, ld, f.recur.gram, n, 0, w, ld)
}

// Expand writes Z = C X (Rows x Len) for C Rows x Points (row stride ld).
func (f *FisherProduct) Expand(k Kernels, z, c []float32, ld int) {
	f.timesXInto(k, 1, c, ld, z)
}

func isAVX2(k Kernels) bool {
	_, ok := k.(avx2)
	return ok
}
