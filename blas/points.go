package blas

import (
	"os"

	"github.com/frogopt/frog/asm"
	"github.com/frogopt/frog/internal/buf"
)

// CG in the points' space.
//
// The Fisher operator of row j is X^T diag(v_j) X + tau*I, one X (Points x
// Len) for every row. Every vector CG forms lies in the span of b_j and
// the rows of X, and cg.PointsSpace runs it on coefficients over them:
// X p_j follows from the points' Gram matrix G = X X^T (Points x Points,
// once a step), so an iteration is one product S G (Rows x Points x
// Points; the last iteration none), and only z is expanded, by one
// product with X, at the end. Where there are far fewer points than
// coordinates (ResNet-18's l3.conv, 1024 points of 2304 coordinates, and
// its last stage, 256 of 2304 or 4608) that costs a fraction of the two
// products with X (Rows x Points x Len each) that applying the operator
// takes at every iteration. The iterates are the same in exact
// arithmetic; in float32 they differ by rounding.

// RecurrenceEnv is the environment variable that overrides the choice of
// PointsGains: "off" never solves in the points' space, "always" solves
// every shape there (to test it on small ones). It is read at every
// choice.
const RecurrenceEnv = "FROG_RECURRENCE"

// PointsGains reports whether a CG solve of iters iterations on a Fisher
// product of this shape costs at least a quarter fewer flops run wholly in
// the points' space (cg.PointsSpace: the Gram matrix, R X^T, one product
// with the Gram matrix an iteration and the expansion of z) than applying
// the product at every iteration, with the Gram matrix within 64 MiB;
// RecurrenceEnv overrides it. An empty shape never does, nor one whose
// solve takes under 2^22 flops the plain way: there the solve's extra
// phases, a few microseconds each, cost more than the flops saved (a
// dense layer of 33 inputs and 70 outputs on 17 samples, 6 iterations:
// 66-70 us against 51-53 us; one of 512 inputs and 64 outputs on 16
// samples, 4 iterations, 2^23 flops: 76-79 us against 149-151 us).
func PointsGains(rows, length, points, iters int) bool {
	if rows <= 0 || length <= 0 || points <= 0 {
		return false
	}
	switch os.Getenv(RecurrenceEnv) {
	case "off":
		return false
	case "always":
		return iters >= 1
	}
	if iters < 1 || points > 4096 {
		return false
	}
	r, d, n, k := float64(rows), float64(length), float64(points), float64(iters)
	direct := k * 4 * r * n * d
	if direct < 1<<22 {
		return false
	}
	// The Gram matrix counted half, as the assembly kernels compute it
	// (see formGram), R X^T, S G at every iteration and the expansion. (A
	// fifth would take l4.sc, 512 rows of 256 points and coordinates,
	// which ran 3-9 % slower there: its products are small.) From the
	// pixels (PixelWindows) the Gram matrix costs less than this counts:
	// none of ResNet-18's other shapes would pass even so.
	// Both counts are those of k whole iterations, as the threshold was
	// measured on: the last iteration's curvatures now skip the second
	// product on the patches and the product with G in the points' space
	// (cg.Curvature); l3.conv's choice stays right (15.2-15.5 ms in the
	// points' space, 25.7 on the patches, in three alternated runs).
	follow := n*n*d + 4*r*n*d + k*2*r*n*n
	return 4*follow <= 3*direct
}

// formGram writes G = X X^T into f.gram (Points x Points, row stride
// PointsStride(Points): rows a power of two apart would share the L1
// sets the mirror reads them through). On the assembly kernels one
// product computes only the tiles that reach the diagonal
// (gemmTask.upper), nearly half of them, and the rest is copied from the
// mirror image: every element of such a product is one chain of FMAs over
// the coordinates in an order fixed by Len alone, and X_i.X_j and X_j.X_i
// multiply the same pairs, so the copy has the bits the whole product
// would have given. (gonum's dot products, under the pure-Go kernels, sum
// in an order that depends on where the rows lie: those run the whole
// product.)
func (f *FisherProduct) formGram(k Kernels) {
	n, d := f.Points, f.Len
	if w := f.Windows; w != nil && w.fits(n, d) {
		f.formPixelGram(k)
		return
	}
	_, xt := f.packedX()
	f.gramOf(k, f.X, n, d, xt, f.gram, PointsStride(n))
}

// gramOf writes G = A A^T (n x n, row stride ld) for A n x d (row stride
// d), reading A^T from packedT (PackPoints' layout) when it is not nil,
// as formGram describes.
func (f *FisherProduct) gramOf(k Kernels, a []float32, n, d int, packedT, g []float32, ld int) {
	if !isAVX2(k) {
		k.Gemm(false, true, n, n, d, 1, a, d, a, d, 0, g, ld)
		return
	}
	t := gemmTask{m: n, n: n, k: d, alpha: 1, a: a, lda: d, c: g, ldc: ld, upper: true}
	if packedT != nil {
		t.packedB, t.panelStride = packedT, d*nr
	} else {
		t.transB, t.b, t.ldb = true, a, d
	}
	runGemm(&t)
	f.mirrorUpper(g, n, ld)
}

// mirrorUpper copies the part of the symmetric n x n matrix g (row stride
// ld) left of each row's upperFrom from its mirror image.
func (f *FisherProduct) mirrorUpper(g []float32, n, ld int) {
	m := &f.mirror
	*m = mirrorTask{g: g, n: n, ld: ld}
	Parallel(m, (n+mirrorTile-1)/mirrorTile)
	*m = mirrorTask{}
}

// mirrorTile is the side of mirrorTask's tiles.
const mirrorTile = 32

// mirrorTask copies the part of the Gram matrix left of each row's
// upperFrom from its mirror image, which the upper product computed: a
// part's blocks of mirrorTile rows (block b to part b % parts), a tile at
// a time, so that the reads down the columns stay in L1 (a serial loop
// down whole columns took about 2 ms of l3.conv's step).
type mirrorTask struct {
	g     []float32
	n, ld int
}

func (t *mirrorTask) RunPart(part, parts int) {
	g, n, ld := t.g, t.n, t.ld
	for ib := part * mirrorTile; ib < n; ib += parts * mirrorTile {
		ie := min(ib+mirrorTile, n)
		for jb := 0; jb < upperFrom(ie-1); jb += mirrorTile {
			for i := ib; i < ie; i++ {
				row := g[i*ld : i*ld+min(jb+mirrorTile, upperFrom(i))]
				for j := jb; j < len(row); j++ {
					row[j] = g[j*ld+i]
				}
			}
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

// PointsStride is the row stride of the Rows x Points blocks of a solve in
// the points' space: Points padded (see tPad).
func PointsStride(points int) int { return points + tPad }

// StartPoints writes U = R X^T (Rows x Points, row stride ld) for R Rows
// x Len, and the Gram matrix of X, on k's kernels: the start of a solve
// in the points' space (cg.PointsSpace). f.Image must be nil.
func (f *FisherProduct) StartPoints(k Kernels, u []float32, ld int, r []float32) {
	n := f.Points
	f.gram = buf.Grow(f.gram, n*PointsStride(n))
	f.formGram(k)
	f.timesXT(k, f.Rows, r, f.Len, u, ld)
}

// WeighRows writes s_j = Alpha * Weights_j .* t_j (Alpha * t_j when
// Weights is nil) for rows j0..j1 of blocks with row stride ld.
func (f *FisherProduct) WeighRows(s, t []float32, ld, j0, j1 int) {
	n := f.Points
	for j := j0; j < j1; j++ {
		sj, tj := s[j*ld:j*ld+n], t[j*ld:j*ld+n]
		switch {
		case f.Weights == nil:
			copy(sj, tj)
		case hasAVX2:
			copy(sj, tj)
			asm.Hadamard(f.Weights[j*n:(j+1)*n], sj)
		default:
			for i, v := range f.Weights[j*n : (j+1)*n] {
				sj[i] = v * tj[i]
			}
		}
		if f.Alpha != 1 {
			ScaleTo(f.Alpha, sj, sj)
		}
	}
}

// TimesGram writes W = S G (Rows x Points, row stride ld) with the Gram
// matrix StartPoints computed.
func (f *FisherProduct) TimesGram(k Kernels, w, s []float32, ld int) {
	r, n := f.Rows, f.Points
	if isAVX2(k) {
		// G read in place (not packed per block by each core, as Gemm
		// would): l3.conv 3-4 % less time, the last stage 0-2 %.
		runGemm(&gemmTask{m: r, n: n, k: n, alpha: 1, a: s, lda: ld, b: f.gram, ldb: PointsStride(n), inPlaceB: n%nr == 0, c: w, ldc: ld})
		return
	}
	k.Gemm(false, false, r, n, n, 1, s, ld, f.gram, PointsStride(n), 0, w, ld)
}

// Expand writes Z = C X (Rows x Len) for C Rows x Points (row stride ld),
// from the packed X when PackPoints made one, else reading X in place
// (when its rows fill whole panels; else the product packs it).
func (f *FisherProduct) Expand(k Kernels, z, c []float32, ld int) {
	r, n, d := f.Rows, f.Points, f.Len
	if xp, _ := f.packedX(); xp != nil && isAVX2(k) {
		runGemm(&gemmTask{m: r, n: d, k: n, alpha: 1, a: c, lda: ld, c: z, ldc: d, packedB: xp, panelStride: n * nr})
		return
	}
	if isAVX2(k) {
		runGemm(&gemmTask{m: r, n: d, k: n, alpha: 1, a: c, lda: ld, b: f.X, ldb: d, inPlaceB: d%nr == 0, c: z, ldc: d})
		return
	}
	k.Gemm(false, false, r, d, n, 1, c, ld, f.X, d, 0, z, d)
}

func isAVX2(k Kernels) bool {
	_, ok := k.(avx2)
	return ok
}
