package blas

import "github.com/frogopt/frog/asm"

// FisherProduct is the product of the row-wise Fisher operator,
//
//	Q = Alpha * (Weights .* (P X^T)) X + Damping*P
//
// with P and Q Rows x Len, X Points x Len and Weights Rows x Points (nil
// means all ones). It keeps the workspace of the fused kernel between
// calls; a value is used by one goroutine at a time.
type FisherProduct struct {
	Rows, Len, Points int
	P, X, Weights, Q  []float32
	Alpha, Damping    float32

	fused *fusedFisher
}

// fisherFuser is implemented by kernels with a fused Fisher product.
type fisherFuser interface {
	fuseFisher(f *FisherProduct) bool
}

// FuseFisher computes f's product in one pass over X when k has a fused
// kernel and the shape suits it, and reports whether it did; otherwise it
// does nothing and the caller runs the two products.
func FuseFisher(k Kernels, f *FisherProduct) bool {
	ff, ok := k.(fisherFuser)
	return ok && ff.fuseFisher(f)
}

// fusedFisher is the fused kernel's task: the points are cut into blocks
// of a few hundred patches that stay in the L2 cache from the first
// product to the second. Each part (a range of blocks on one core) sums
// its blocks' contributions into its own Rows x Len accumulator:
//
//	S   = X_blk P^T          (block x Rows, P^T packed once a call)
//	S  .*= Weights^T_blk
//	Acc += S^T X_blk         (Rows x Len)
//
// and the accumulators are added up with Damping*P at the end.
type fusedFisher struct {
	f      *FisherProduct
	block  int
	packed []float32 // P^T in nr-wide panels, Len x nr each
	prod   [maxHelpers][]float32
	acc    [maxHelpers][]float32
	parts  int
	reduce bool
}

// l2Budget is the part of a core's L2 cache the fused kernel plans for.
const l2Budget = 768 << 10

func (avx2) fuseFisher(f *FisherProduct) bool {
	r, d, n := f.Rows, f.Len, f.Points
	if r%nr != 0 || r == 0 || d == 0 || n == 0 {
		return false
	}
	// P^T, the accumulator and a block of X must share the L2 cache.
	room := l2Budget - 4*2*r*d
	block := min(room/(4*d), kcBlock) / mr * mr
	if block < 8*mr {
		return false
	}
	if f.fused == nil {
		f.fused = new(fusedFisher)
	}
	t := f.fused
	t.f, t.block = f, block
	t.packed = grow(t.packed, r*d)
	for q := 0; q < r/nr; q++ {
		panel := t.packed[q*d*nr : (q+1)*d*nr]
		rows := f.P[q*nr*d:]
		asm.TransposePanel(d, rows, d, panel)
		for jj := 0; jj < nr; jj++ {
			for p := d &^ 7; p < d; p++ {
				panel[p*nr+jj] = rows[jj*d+p]
			}
		}
	}
	blocks := (n + block - 1) / block
	t.reduce = false
	Parallel(t, blocks)
	t.reduce = true
	Parallel(t, max(1, r*d>>14))
	t.f = nil
	return true
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func (t *fusedFisher) RunPart(part, parts int) {
	f := t.f
	r, d, n := f.Rows, f.Len, f.Points
	if t.reduce {
		lo, hi := r*d*part/parts, r*d*(part+1)/parts
		q, p := f.Q[lo:hi], f.P[lo:hi]
		for i := range q {
			q[i] = f.Damping * p[i]
		}
		for w := 0; w < t.parts; w++ {
			asm.Axpy(1, t.acc[w][lo:hi], q)
		}
		return
	}
	if part == 0 {
		t.parts = parts
	}
	ws := getWorkspace()
	defer putWorkspace(ws)
	acc := grow(t.acc[part], r*d)
	t.acc[part] = acc
	clear(acc)
	prod := grow(t.prod[part], t.block*r)
	t.prod[part] = prod
	blocks := (n + t.block - 1) / t.block
	for b := blocks * part / parts; b < blocks*(part+1)/parts; b++ {
		n0 := b * t.block
		nb := min(t.block, n-n0)
		x := f.X[n0*d : (n0+nb)*d]
		s := prod[:nb*r]
		clear(s)
		first := gemmTask{m: nb, n: r, k: d, alpha: 1, a: x, lda: d, c: s, ldc: r, packedB: t.packed}
		gemmRange(ws, &first, 0, nb, 0, r)
		if f.Weights != nil {
			for j := 0; j < r; j++ {
				w := f.Weights[j*n+n0 : j*n+n0+nb]
				for i, v := range w {
					s[i*r+j] *= v
				}
			}
		}
		second := gemmTask{transA: true, m: r, n: d, k: nb, alpha: f.Alpha, a: s, lda: r, b: x, ldb: d, c: acc, ldc: d}
		gemmRange(ws, &second, 0, r, 0, d)
	}
}
