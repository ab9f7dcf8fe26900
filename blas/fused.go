package blas

import (
	"sync/atomic"

	"github.com/frogopt/frog/asm"
	"github.com/frogopt/frog/internal/buf"
)

// FisherProduct is the product of the row-wise Fisher operator,
//
//	Q = Alpha * (Weights .* (P X^T)) X + Damping*P
//
// with P and Q Rows x Len, X Points x Len and Weights Rows x Points (nil
// means all ones). It keeps the workspace of the kernels between calls; a
// value is used by one goroutine at a time.
//
// The result depends on the shape and the kernels only, never on
// GOMAXPROCS or on how many helpers are idle: every parallel sum runs over
// pieces fixed by the shape, added in a fixed order.
type FisherProduct struct {
	Rows, Len, Points int
	P, X, Weights, Q  []float32
	Alpha, Damping    float32
	// Image, when not nil, describes X's rows as windows of images, and
	// X may be nil: only this package's kernels read such rows
	// (ReadsImage).
	Image *ImageRows
	// Windows, when not nil, describes the points as windows of images:
	// StartPoints then forms their Gram matrix from the pixels' (see
	// PixelWindows). X must still hold the points.
	Windows *PixelWindows

	weightsT packedWeights
	points   packedPoints
	work     *fisherWork
	// gram is the Gram matrix X X^T of a solve in the points' space
	// (StartPoints), Points x Points.
	gram   []float32
	mirror mirrorTask
	pixels pixelGram
}

// packedPoints is X copied into nr-wide column panels (panel q holds
// columns q*nr.. of every point, Points x nr values) and X^T in the same
// layout (panel q holds points q*nr.., Len x nr values), the last panels
// zero padded: the unfused product's B operands when it reads P in place
// (see rowsInPlace).
type packedPoints struct {
	data, dataT []float32
	// x, n and d identify the X that data holds; x is nil when none.
	x    *float32
	n, d int
}

// packedX returns the packed copies of X and X^T, or nils when there are
// none for the current X.
func (f *FisherProduct) packedX() (x, xt []float32) {
	pp := &f.points
	if pp.x == nil || len(f.X) == 0 || pp.x != &f.X[0] || pp.n != f.Points || pp.d != f.Len {
		return nil, nil
	}
	return pp.data, pp.dataT
}

// rowsInPlace reports whether the unfused product reads P in place, with X
// and X^T packed once a step (the copies cost 2 N x D a step), rather than
// X in place with P^T packed at every product (R x D a product): with
// about four products a step, when R >= N/2. (Read in place, the rows of a
// long X lie many pages apart; the packed copy is also read faster.)
func rowsInPlace(r, n int) bool { return 2*r >= n }

// packedWeights is Weights transposed, Points x Rows, so that the fused
// kernel scales its block x Rows products at unit stride. PackPoints only
// marks the Weights to transpose: the first product that reads them
// transposes them (transposedWeights), so that a solve in the points'
// space, which reads Weights as they are (WeighRows), makes no copy.
type packedWeights struct {
	data []float32
	// w, r and n identify the Weights that data is for; w is nil when
	// none. done says data holds them.
	w    *float32
	r, n int
	done bool
}

// pointPacker is implemented by kernels that read X as packed panels.
type pointPacker interface {
	packPoints(f *FisherProduct) bool
}

// PackPoints copies what k's Fisher kernel reads in another layout than
// f's (Weights transposed, or for some unfused shapes X and X^T in
// panels), as it is now, so that the products that follow (all the CG
// iterations of a step) do not copy it again, and reports whether k made
// (or, for the Weights, marked) such a copy. The Weights are transposed
// by the first product that reads them: a solve in the points' space
// (StartPoints) reads them as they are, and never copies them. A copy is
// used while f.Weights (f.X) starts at the same element and the shape is
// unchanged: after changing their contents in place call PackPoints
// again, or ForgetPoints.
func (f *FisherProduct) PackPoints(k Kernels) bool {
	pk, ok := k.(pointPacker)
	if !ok || f.Points == 0 || f.Len == 0 {
		f.ForgetPoints()
		return false
	}
	return pk.packPoints(f)
}

// ForgetPoints drops the copies PackPoints made: products read X and
// Weights themselves.
func (f *FisherProduct) ForgetPoints() { f.weightsT.w, f.points.x = nil, nil }

// transposedWeights returns Weights transposed, transposing them (split
// across the cores) at the first call after PackPoints, or nil when
// PackPoints marked no copy of the current Weights. Products call it
// before they split their work.
func (f *FisherProduct) transposedWeights() []float32 {
	pw := &f.weightsT
	if pw.w == nil || len(f.Weights) == 0 || pw.w != &f.Weights[0] || pw.r != f.Rows || pw.n != f.Points {
		return nil
	}
	if !pw.done {
		r, n := pw.r, pw.n
		pw.data = buf.Grow(pw.data, n*r)
		if f.work == nil {
			f.work = new(fisherWork)
		}
		tt := &f.work.transpose
		*tt = transposeTask{w: f.Weights[:r*n], dst: pw.data, r: r, n: n}
		Parallel(tt, max(1, r*n>>16))
		*tt = transposeTask{}
		pw.done = true
	}
	return pw.data
}

// fisherFuser is implemented by kernels with their own Fisher product.
type fisherFuser interface {
	fuseFisher(f *FisherProduct) bool
	fisherCurvatures(f *FisherProduct, pq []float64) bool
}

// FuseFisher computes f's product with k's own Fisher kernel when k has
// one that suits the shape (one pass over each block of X, or two products
// on the copies PackPoints made), and reports whether it did; otherwise it
// does nothing and the caller runs the two products.
func FuseFisher(k Kernels, f *FisherProduct) bool {
	ff, ok := k.(fisherFuser)
	return ok && ff.fuseFisher(f)
}

// fisherChunks is the most pieces the fused kernel cuts the points into
// (see fisherChunkCount). The count depends on the shape alone, so that
// the order in which the pieces' sums are added does too; eight keep two
// to four cores busy with pieces of equal size.
const fisherChunks = 8

// fisherChunkCount is how many chunks the fused kernel cuts n points into
// (in blocks blocks, rows r), a function of the shape only. Every chunk
// fills and hands to the reduction an r x d accumulator: they are kept
// to a quarter of the points' traffic (r per 4r points), but at least two
// so that two cores share the work. The cores take the chunks as they
// finish them; with few chunks, a core slowed by other load leaves the
// other waiting for much of one (l2.conv_s2's 4096 points of 128 rows, in
// 8 chunks rather than 4 at r per 8r points: 0.95-1.00 of the time in
// alternated steps at heavy load).
func fisherChunkCount(r, n, blocks int) int {
	return max(1, min(blocks, fisherChunks, max(2, n/(4*r))))
}

// fisherWork is the Fisher kernels' task and workspace.
//
// Fused, when P^T and a Rows x Len accumulator fit in the L2 cache with a
// block of a few hundred patches: the points are cut into fisherChunks
// chunks of whole blocks, every chunk summing its blocks' contributions
// into its own accumulator,
//
//	S   = X_blk P^T          (block x Rows, P^T packed once a call)
//	S  .*= Weights^T_blk
//	Acc_c += S^T X_blk       (Rows x Len)
//
// the chunks handed to whichever core is free, and Q = Damping*P + Acc_0 +
// Acc_1 + ... in that order at the end, split by elements of Q.
//
// Otherwise two products, each split by its output: T = P X^T .*= Weights
// and Q = Alpha*T X + Damping*P. Where P is the larger (rowsInPlace) they
// read P in place and the copies of X^T and X that PackPoints made; else
// they read X in place (a block of rows from memory at a time) with P^T
// packed once a call, the first computing T^T (Points x Rows, scaled by
// the transposed weights). The sums are the same, in the same order,
// either way.
//
// With X given as windows of images (FisherProduct.Image) the same two
// ways run on blocks of whole output rows or whole images (image.go).
type fisherWork struct {
	f         *FisherProduct
	block     int // points a block holds at most
	blocks    int
	chunks    int
	next      atomic.Int32
	packed    []float32 // P^T in nr-wide panels, Len x nr each
	prod      [fisherChunks][]float32
	xbuf      [fisherChunks][]float32 // blocks of image rows, copied
	plan      imagePlan               // the blocks of an image product
	acc       [fisherChunks][]float32
	reduce    bool
	t         []float32 // the unfused path's T, or T^T
	weightsT  []float32 // the fused chunks' transposed weights (or nil)
	pack      packTask
	transpose transposeTask
	image     imageTask
	// curv, when not nil, asks for the curvatures (FisherCurvatures)
	// instead of the product: sums holds their partial sums, a piece's r
	// values in float64, and sq its block's sums in float32.
	curv   []float64
	sums   []float64
	sq     []float32
	pieces curvaturePieces
	rows   curvatureRows
}

// sStride is the row stride of the block products S = X_blk P^T (and of
// the unfused T^T) for r rows: an odd number of whole 64-byte lines.
// Whole lines keep the first product's 512-bit loads and stores of a tile
// of S within one line each; the second product reads S^T in place, eight
// values of a row of S a step, and rows an even number of lines apart
// would put a whole tile's steps into a fraction of the L1 sets (a
// power-of-two number, into a sixteenth). Against r+4 floats (rows not
// whole lines), alternated call by call on whole preconditionings with
// each engine running both: l3.conv_s2 about 2 % faster, l2.conv and
// l3.conv about 1 %, l1.conv and l2.conv_s2 within 1 % either way.
func sStride(r int) int {
	lines := (r + 15) / 16
	if lines%2 == 0 {
		lines++
	}
	return lines * 16
}

// tPad is the padding of the rows of the unfused product's T (N is a
// power of two for every ResNet shape, and rows that far apart put the
// eight values a tile of the second product reads each step into the same
// L1 set).
const tPad = 16

// l2Budget is the part of a core's 1 MiB L2 cache the fused kernel plans
// for (896 KiB: on the Zen 5 cores here l2.conv_s2's Fisher product ran
// about 8 % faster than with 768, in 8 alternating runs, l1.conv's the
// same).
const l2Budget = 896 << 10

func (k avx2) fuseFisher(f *FisherProduct) bool { return k.fisher(f, nil) }

func (k avx2) fisherCurvatures(f *FisherProduct, pq []float64) bool {
	return k.fisher(f, pq[:f.Rows])
}

// fisher computes f's product, or with curv not nil only the curvatures
// of FisherCurvatures into curv, and reports whether the kernels took the
// shape.
func (k avx2) fisher(f *FisherProduct, curv []float64) bool {
	r, d, n := f.Rows, f.Len, f.Points
	if r == 0 || d == 0 || n == 0 {
		return false
	}
	if f.work == nil {
		f.work = new(fisherWork)
	}
	w := f.work
	block := fusedBlock(r, d)
	if f.Image != nil && !ReadsImage(k, r, d, f.Image) {
		return false
	}
	w.f, w.curv = f, curv
	defer w.release()
	if block == 0 {
		if f.Image != nil {
			return w.imageProducts(f)
		}
		return w.twoProducts(f)
	}
	blocks := (n + block - 1) / block
	if f.Image != nil {
		w.plan = planImage(f, block)
		block, blocks = w.plan.blockRows*f.Image.Width, w.plan.blocks()
	}
	w.block, w.blocks = block, blocks
	w.weightsT = f.transposedWeights()
	w.packRows(f)
	w.chunks = fisherChunkCount(r, n, blocks)
	w.next.Store(0)
	w.reduce = false
	if curv != nil {
		w.growSums(w.chunks)
		Parallel(w, w.chunks)
		w.addSums(w.chunks)
		return true
	}
	Parallel(w, w.chunks)
	w.reduce = true
	Parallel(w, max(1, r*d>>14))
	return true
}

// release drops what a call of fisher held: the product, its transposed
// weights and the curvatures asked for.
func (w *fisherWork) release() { w.f, w.weightsT, w.curv = nil, nil, nil }

// packRows copies P^T into nr-wide panels, the last zero padded, split
// across the cores by panels.
func (w *fisherWork) packRows(f *FisherProduct) {
	r, d := f.Rows, f.Len
	panels := (r + nr - 1) / nr
	w.packed = buf.Grow(w.packed, panels*d*nr)
	pt := &w.pack
	*pt = packTask{x: f.P[:r*d], dst: w.packed, n: r, d: d}
	Parallel(pt, min(panels, max(1, r*d>>16)))
	*pt = packTask{}
}

// twoProducts runs the unfused product, or reports false when it would
// need the weights transposed and PackPoints made no such copy.
func (w *fisherWork) twoProducts(f *FisherProduct) bool {
	r, d, n := f.Rows, f.Len, f.Points
	if xp, xt := f.packedX(); xp != nil {
		// T = P X^T .*= Weights, P in place.
		ldt := n + tPad
		w.t = buf.Grow(w.t, r*ldt)
		first := gemmTask{
			m: r, n: n, k: d, alpha: 1,
			a: f.P, lda: d, c: w.t, ldc: ldt,
			packedB: xt, panelStride: d * nr,
		}
		if f.Weights != nil && w.curv == nil {
			first.scaleBy, first.ldScaleBy = f.Weights[:r*n], n
		}
		runGemm(&first)
		if w.curv != nil {
			w.rowCurvatures(ldt)
			return true
		}
		second := gemmTask{
			m: r, n: d, k: n, alpha: f.Alpha, beta: f.Damping,
			a: w.t, lda: ldt, c: f.Q, ldc: d, start: f.P,
			packedB: xp, panelStride: n * nr,
		}
		runGemm(&second)
		return true
	}
	weightsT := f.transposedWeights()
	if f.Weights != nil && weightsT == nil {
		return false
	}
	w.packRows(f)
	ldt := sStride(r)
	w.t = buf.Grow(w.t, n*ldt)
	tt := w.t
	// T^T = X P^T, X read in place a tile of points at a time (the next
	// tile's rows asked for while the kernels run), times Weights^T block
	// by block as the product completes it.
	first := gemmTask{
		m: n, n: r, k: d, alpha: 1,
		a: f.X, lda: d, c: tt, ldc: ldt, prefetchA: true,
		packedB: w.packed, panelStride: d * nr,
	}
	if weightsT != nil && w.curv == nil {
		first.scaleBy, first.ldScaleBy = weightsT, r
	}
	runGemm(&first)
	if w.curv != nil {
		w.pointCurvatures(weightsT)
		return true
	}
	// Q = Damping*P + Alpha*(T^T)^T X, X read in place when its rows fill
	// whole panels (else packed a block at a time).
	second := gemmTask{
		transA: true, m: r, n: d, k: n, alpha: f.Alpha, beta: f.Damping,
		a: tt, lda: ldt, b: f.X, ldb: d, inPlaceB: d%nr == 0,
		c: f.Q, ldc: d, start: f.P, rowsFirst: true,
	}
	runGemm(&second)
	return true
}

// fusedBlock is the number of points in a block of the fused kernel, or 0
// when the shape does not suit it: P^T, the accumulator and a block of X
// must share the L2 cache, and the rows fill whole panels.
func fusedBlock(r, d int) int {
	// Blocks are whole tiles of both micro-kernels (6 and 8 rows), so
	// that the blocks, and with them the order of the sums, are the same
	// whichever runs.
	const blockUnit = 24
	room := l2Budget - 4*2*r*d
	block := min(room/(4*d), kcBlock) / blockUnit * blockUnit
	if r%nr != 0 || block < 2*blockUnit {
		return 0
	}
	return block
}

// RunPart takes chunks until none is left (fused products), or adds up a
// range of Q's elements (the reduction).
func (w *fisherWork) RunPart(part, parts int) {
	f := w.f
	r, d := f.Rows, f.Len
	if w.reduce {
		lo, hi := r*d*part/parts, r*d*(part+1)/parts
		q, p := f.Q[lo:hi], f.P[lo:hi]
		first := 0
		if f.Damping == 0 {
			// No P to read (CG adds the damping itself, see
			// cg.Shifted): Q starts from the first sum.
			copy(q, w.acc[0][lo:hi])
			first = 1
		} else {
			for i := range q {
				q[i] = f.Damping * p[i]
			}
		}
		for c := first; c < w.chunks; c++ {
			asm.Axpy(1, w.acc[c][lo:hi], q)
		}
		return
	}
	ws := spare.get()
	defer spare.put(ws)
	for {
		c := int(w.next.Add(1)) - 1
		if c >= w.chunks {
			return
		}
		w.runChunk(ws, part, c)
	}
}

// runChunk sums chunk c's blocks into its accumulator, with part's
// product buffer; with curvatures asked for, their weighted squares into
// piece c of the partial sums instead.
func (w *fisherWork) runChunk(ws *workspace, part, c int) {
	f := w.f
	r, d, n := f.Rows, f.Len, f.Points
	var acc []float32
	if w.curv == nil {
		acc = buf.Grow(w.acc[c], r*d)
		w.acc[c] = acc
	}
	// The second product reads S^T in place: rows sStride apart.
	lds := sStride(r)
	prod := buf.Grow(w.prod[part], w.block*lds)
	w.prod[part] = prod
	weightsT := w.weightsT
	blocks := w.blocks
	b0 := blocks * c / w.chunks
	for b := b0; b < blocks*(c+1)/w.chunks; b++ {
		// The first block writes acc over what it held, the others add
		// to it: no pass clears it.
		set := b == b0
		if f.Image != nil {
			w.imageBlock(ws, part, c, acc, prod, lds, weightsT, b, set)
			continue
		}
		n0 := b * w.block
		nb := min(w.block, n-n0)
		x := f.X[n0*d : (n0+nb)*d]
		s := prod[:nb*lds]
		// X_blk comes from memory: the next tile's rows are asked for
		// while the kernels run on the current one. S starts from zero:
		// the kernels write it without reading it.
		first := gemmTask{m: nb, n: r, k: d, alpha: 1, a: x, lda: d, c: s, ldc: lds, packedB: w.packed, prefetchA: true, wholeK: true}
		gemmRange(ws, &first, 0, nb, 0, r, true)
		if w.curv != nil {
			w.weighSquares(c, s, lds, weightsT, n0, nb)
			continue
		}
		w.scaleBlock(s, lds, weightsT, n0, nb)
		// X_blk is in L2 from the first product: the kernels read it
		// there in place (a packed copy from memory would cost more, and
		// packing it again one more pass over X per iteration).
		second := gemmTask{transA: true, m: r, n: d, k: nb, alpha: f.Alpha, a: s, lda: lds, b: x, ldb: d, c: acc, ldc: d, inPlaceB: d%nr == 0}
		gemmRange(ws, &second, 0, r, 0, d, set)
	}
}

// scaleBlock multiplies the block product S (points n0..n0+nb, row
// stride lds) by the weights: S .*= Weights^T, from their transposed copy
// when there is one.
func (w *fisherWork) scaleBlock(s []float32, lds int, weightsT []float32, n0, nb int) {
	f := w.f
	r, n := f.Rows, f.Points
	switch {
	case weightsT != nil:
		for i := 0; i < nb; i++ {
			asm.Hadamard(weightsT[(n0+i)*r:(n0+i+1)*r], s[i*lds:])
		}
	case f.Weights != nil:
		for j := 0; j < r; j++ {
			wt := f.Weights[j*n+n0 : j*n+n0+nb]
			for i, v := range wt {
				s[i*lds+j] *= v
			}
		}
	}
}

// imageBlock sums block b of an image product (f.Image) into acc (with
// set, over what acc held), or with curvatures asked for its weighted
// squares into piece c of the partial sums, with part's buffers: on the
// AVX-512 kernel straight from the images, on the others from the
// block's rows copied out of them.
func (w *fisherWork) imageBlock(ws *workspace, part, c int, acc, prod []float32, lds int, weightsT []float32, b int, set bool) {
	f := w.f
	n0, nb := w.plan.block(f.Image, b)
	var xb []float32
	if !isa.segmented {
		w.xbuf[part] = buf.Grow(w.xbuf[part], w.block*f.Len)
		xb = w.xbuf[part][:nb*f.Len]
		f.Image.Rows(xb, f.Len, n0, n0+nb)
	}
	s := prod[:nb*lds]
	w.imageFirst(ws, f, s, lds, n0, nb, xb)
	if w.curv != nil {
		w.weighSquares(c, s, lds, weightsT, n0, nb)
		return
	}
	w.scaleBlock(s, lds, weightsT, n0, nb)
	w.imageSecond(ws, f, acc, s, lds, n0, nb, xb, set)
}

// packPoints copies X and X^T into panels when the unfused product will
// read P in place, else transposes the weights (Points x Rows) for the
// products laid out by points; each split across the cores.
func (avx2) packPoints(f *FisherProduct) bool {
	n, r, d := f.Points, f.Rows, f.Len
	f.ForgetPoints()
	if f.work == nil {
		f.work = new(fisherWork)
	}
	if fusedBlock(r, d) == 0 && rowsInPlace(r, n) && f.Image == nil {
		pp := &f.points
		pp.data = buf.Grow(pp.data, (d+nr-1)/nr*n*nr)
		pt := &f.work.pack
		*pt = packTask{x: f.X[:n*d], dst: pp.data, n: n, d: d, columns: true}
		Parallel(pt, max(1, n*d>>16))
		pp.dataT = buf.Grow(pp.dataT, (n+nr-1)/nr*nr*d)
		*pt = packTask{x: f.X[:n*d], dst: pp.dataT, n: n, d: d}
		Parallel(pt, min((n+nr-1)/nr, max(1, n*d>>16)))
		*pt = packTask{}
		pp.x, pp.n, pp.d = &f.X[0], n, d
		return true
	}
	if f.Weights == nil {
		return false
	}
	pw := &f.weightsT
	pw.w, pw.r, pw.n, pw.done = &f.Weights[0], r, n, false
	return true
}

// packTask copies a part's range of nr-row panels of an n x d matrix x
// transposed (panel q holds rows q*nr.. of x as d x nr values), or with
// columns set a part's range of rows of x into every nr-column panel
// (panel q holds columns q*nr.. of every row, n x nr values); the last
// panels zero padded.
type packTask struct {
	x, dst  []float32
	n, d    int
	columns bool
}

func (t *packTask) RunPart(part, parts int) {
	n, d := t.n, t.d
	if t.columns {
		t.packColumns(part, parts)
		return
	}
	panels := (n + nr - 1) / nr
	for q := panels * part / parts; q < panels*(part+1)/parts; q++ {
		panel := t.dst[q*d*nr : (q+1)*d*nr]
		rows := t.x[q*nr*d:]
		jn := min(nr, n-q*nr)
		done := 0
		if jn == nr {
			asm.TransposePanel(d, rows, d, panel, nr)
			done = d &^ 7
		} else {
			clear(panel)
		}
		for jj := 0; jj < jn; jj++ {
			for p, v := range rows[jj*d+done : jj*d+d] {
				panel[(done+p)*nr+jj] = v
			}
		}
	}
}

// packColumns copies rows of a part's range a few at a time across every
// panel: their values are read from L1 once each instead of once a panel
// from farther out.
func (t *packTask) packColumns(part, parts int) {
	n, d := t.n, t.d
	i0, i1 := n*part/parts, n*(part+1)/parts
	const rows = 32
	full := d / nr
	for b0 := i0; b0 < i1; b0 += rows {
		b1 := min(b0+rows, i1)
		for q := 0; q < full; q++ {
			asm.PackPanel(b1-b0, t.x[b0*d+q*nr:], d, t.dst[q*n*nr+b0*nr:])
		}
		if rest := d - full*nr; rest > 0 {
			panel := t.dst[full*n*nr:]
			for i := b0; i < b1; i++ {
				row := panel[i*nr : i*nr+nr]
				copy(row, t.x[i*d+full*nr:i*d+d])
				clear(row[rest:])
			}
		}
	}
}

// transposeTask writes the Rows x Points weights transposed, a part's
// range of points at a time, in 16 x 16 tiles.
type transposeTask struct {
	w, dst []float32
	r, n   int
}

func (t *transposeTask) RunPart(part, parts int) {
	r, n := t.r, t.n
	i0, i1 := n*part/parts, n*(part+1)/parts
	ib := i0
	if r%nr == 0 {
		// Sixteen rows at a time, a chunk of points transposed eight by
		// eight in registers straight into their rows of the result.
		for ; ib+transposeChunk <= i1; ib += transposeChunk {
			for q := 0; q < r/nr; q++ {
				asm.TransposePanel(transposeChunk, t.w[q*nr*n+ib:], n, t.dst[ib*r+q*nr:], r)
			}
		}
	}
	const tile = 16
	for ; ib < i1; ib += tile {
		ie := min(ib+tile, i1)
		for jb := 0; jb < r; jb += tile {
			je := min(jb+tile, r)
			for j := jb; j < je; j++ {
				src := t.w[j*n+ib : j*n+ie]
				for i, v := range src {
					t.dst[(ib+i)*r+j] = v
				}
			}
		}
	}
}

// transposeChunk is how many points transposeTask takes at a time (a
// multiple of eight).
const transposeChunk = 64
