package blas

import "github.com/frogopt/frog/asm"

// Blocking of the assembly GEMM. The micro-kernel keeps a tile of C in
// registers over kc steps of the inner dimension (isa.rows x isa.cols: 6 x
// 16 with AVX2, 8 x 32 with AVX-512); a block of kc x nc values of B (256
// KiB at most) stays in the 1 MiB L2 cache while every tile-high strip of
// A, read in place and kept in L1, runs across it. B is read as nr-wide
// panels whatever the tile width (an AVX-512 tile spans two).
const (
	mr      = 6
	nr      = 16
	kcBlock = 256
	ncBlock = 256
	// maxRows and maxCols bound the tiles of every kernel set.
	maxRows = 8
	maxCols = 32
)

// kernelFunc is a micro-kernel over a tile of C: the columns below nr
// read b[p*ldb+j], those from nr on b[p*ldb+boff+j-nr] (a kernel nr wide
// ignores boff). With overwrite it writes the tile without reading it.
type kernelFunc func(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, boff int, c []float32, ldc int, overwrite bool)

// kernelSet is the micro-kernels gemmRange runs: kernel on rows x cols
// tiles, and kernel4 (when not nil) on a last strip of four rows.
type kernelSet struct {
	name       string
	rows, cols int
	kernel     kernelFunc
	kernel4    kernelFunc
	// strip, when not nil, runs kernel on tiles whole tiles side by side
	// in one call (runStrip).
	strip stripFunc
	// segmented says the set reads a tile's rows of A in runs apart
	// (asm.Kernel8x32Tiles' jumps): the image products read the patches
	// in the image itself, where other sets read them copied out.
	segmented bool
}

// stripFunc runs a kernel on tiles whole tiles side by side: tile t reads
// B t*bstep values after the first and adds to (or writes) columns
// t*cols.. of C.
type stripFunc func(tiles, k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, boff, bstep int, c []float32, ldc int, overwrite bool)

var (
	avx2Kernels = kernelSet{
		name: "avx2", rows: mr, cols: nr,
		kernel: func(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, _ int, c []float32, ldc int, overwrite bool) {
			asm.Kernel6x16(k, alpha, a, rsa, csa, b, ldb, c, ldc, overwrite)
		},
		kernel4: func(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, _ int, c []float32, ldc int, overwrite bool) {
			asm.Kernel4x16(k, alpha, a, rsa, csa, b, ldb, c, ldc, overwrite)
		},
	}
	avx512Kernels = kernelSet{
		name: "avx512", rows: 8, cols: 2 * nr, segmented: true,
		kernel: asm.Kernel8x32,
		strip: func(tiles, k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, boff, bstep int, c []float32, ldc int, overwrite bool) {
			asm.Kernel8x32Tiles(tiles, k, alpha, a, rsa, csa, 0, b, ldb, boff, bstep, c, ldc, 2*nr, overwrite, 0, 0, 0)
		},
	}
)

// isa is the kernel set in use: chosen once at init (see avx2.go), or by
// tests that compare the two, never while a product runs.
var isa = avx2Kernels

// workspace is one goroutine's packing memory; it never shrinks.
type workspace struct {
	bpack []float32                  // kc x nc block of B in nr-wide panels
	apack []float32                  // a partial tile of A, zero padded
	ctile [maxRows * maxCols]float32 // a partial tile of C
}

// gemmTask is one product C = alpha*op(A)*op(B) + beta*C split by rows
// (in units of the kernel's tile) or columns of C.
type gemmTask struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
	byRows         bool
	// packedB, when set, holds all of op(B) already packed: panel q of
	// nr columns at q*panelStride (k*nr when zero), row p of a panel at
	// p*nr, the last panel zero padded.
	packedB     []float32
	panelStride int
	// inPlaceB, for a B that is not transposed and whose columns fill
	// whole nr-wide panels, has the kernels read B where it is (row
	// stride ldb) instead of a packed copy: the fused kernel's B is a
	// block of X that the first product has just brought into L2, and
	// packing it would be one more pass over X per iteration.
	inPlaceB bool
	// scaleBy, when set, holds an m x n matrix (row stride ldScaleBy)
	// that C is multiplied by elementwise once its product is complete,
	// block by block while the block is in cache: the Fisher product's
	// T .*= Weights, on every core instead of in a serial pass.
	scaleBy   []float32
	ldScaleBy int
	// prefetchA, for an A read in place (not transposed) that comes
	// from memory, asks for the next tile's rows of A while the kernels
	// run on the current one.
	prefetchA bool
	// start, when set, holds the matrix (row stride ldc) whose beta
	// multiple C starts from instead of C's own contents: each part copies
	// its own range, so no serial pass copies it into C first.
	start []float32
	// upper, for a square product (m == n) whose C is symmetric, skips
	// the tiles that lie wholly left of their first row, nearly half of
	// them: a row i is computed from column upperFrom(i) on, and the
	// caller copies the rest from the mirror image.
	upper bool
	// wholeK runs the inner dimension in one pass instead of blocks of
	// kcBlock, for a packedB that stays in L2 whole (the fused kernel's
	// P^T): its blocks would not be reused from a nearer cache anyway,
	// and each would read and write C once more.
	wholeK bool
	// rowsFirst splits the product by rows of C even where it has more
	// tiles of columns, so that stripClaims balance its parts (the
	// second product of twoProducts: by columns each part reads only its
	// columns of X, by rows all of X, which took about the same time on
	// this machine; but a fixed split waits for the slower core).
	rowsFirst bool
	// claims, when set, hands the strips to the parts (runClaimed)
	// instead of a fixed split by rows.
	claims *stripClaims
}

func (t *gemmTask) run(part, parts int, ws *workspace) {
	if t.claims != nil {
		t.runClaimed(ws, part, parts)
		return
	}
	i0, i1, j0, j1 := 0, t.m, 0, t.n
	switch {
	case t.upper:
		i0, i1 = upperSplit(t.m, part, parts)
	case t.byRows:
		i0, i1 = split(t.m, isa.rows, part, parts)
	default:
		j0, j1 = split(t.n, isa.cols, part, parts)
	}
	if i0 >= i1 || j0 >= j1 {
		return
	}
	if t.k == 0 || t.alpha == 0 {
		t.startC(i0, i1, j0, j1)
		return
	}
	gemmRange(ws, t, i0, i1, j0, j1, true)
}

// startC sets rows i0..i1, columns j0..j1 of C to beta*C (beta == 0
// clears, whatever C held), or to beta*start when start is set.
func (t *gemmTask) startC(i0, i1, j0, j1 int) {
	if t.start != nil && t.beta != 0 {
		for i := i0; i < i1; i++ {
			asm.ScaleTo(t.beta, t.start[i*t.ldc+j0:i*t.ldc+j1], t.c[i*t.ldc+j0:i*t.ldc+j1])
		}
		return
	}
	if t.beta == 1 {
		return
	}
	for i := i0; i < i1; i++ {
		row := t.c[i*t.ldc+j0 : i*t.ldc+j1]
		if t.beta == 0 {
			clear(row)
			continue
		}
		asm.ScaleTo(t.beta, row, row)
	}
}

// upperFrom is the first column of row i that an upper product
// computes: that of the first tile that reaches the diagonal.
func upperFrom(i int) int {
	return i / isa.rows * isa.rows / isa.cols * isa.cols
}

// upperSplit is split for an upper product of n rows and columns: whole
// tiles of rows, in parts of about the same number of computed elements.
func upperSplit(n, part, parts int) (lo, hi int) {
	tiles := (n + isa.rows - 1) / isa.rows
	total := 0
	for r := 0; r < tiles; r++ {
		total += n - upperFrom(r*isa.rows)
	}
	lo, hi = tiles, tiles
	done := 0
	for r := 0; r < tiles; r++ {
		if lo == tiles && done*parts >= total*part {
			lo = r
		}
		if done*parts >= total*(part+1) {
			hi = r
			break
		}
		done += n - upperFrom(r*isa.rows)
	}
	return min(lo*isa.rows, n), min(hi*isa.rows, n)
}

// split returns the range of part `part` of `parts` when n is cut into
// pieces that are multiples of unit.
func split(n, unit, part, parts int) (lo, hi int) {
	units := (n + unit - 1) / unit
	lo = units * part / parts * unit
	hi = min(units*(part+1)/parts*unit, n)
	return min(lo, n), hi
}

// gemmRange accumulates alpha*op(A)*op(B) into rows i0..i1 and columns
// j0..j1 of C. With startC it first applies beta (or start) to each block
// of columns of C just before that block's first product, while the block
// is in cache, instead of in a pass over all of C that the products would
// then read back from memory; when that start is zero (beta 0),
// the kernels of the first block of the inner dimension write C without
// reading it instead, so C is neither cleared nor read. Tasks that
// accumulate into C (the fused kernel's second product) pass false.
func gemmRange(ws *workspace, t *gemmTask, i0, i1, j0, j1 int, startC bool) {
	a, rsa := t.a, t.lda
	if t.transA {
		rsa = 1
	}
	set := startC && t.beta == 0
	kBlocks := t.kBlocks()
	for jc := j0; jc < j1; jc += ncBlock {
		nc := min(ncBlock, j1-jc)
		if startC && !set {
			t.startC(i0, i1, jc, jc+nc)
		}
		for kb := 0; kb < kBlocks; kb++ {
			blk := t.block(ws, jc, nc, kb, kBlocks)
			overwrite := set && kb == 0
			tm := isa.rows
			for ic := i0; ic < i1; ic += tm {
				if t.prefetchA && !t.transA {
					switch {
					case ic+tm < i1:
						asm.PrefetchRows(a[(ic+tm)*rsa+blk.pc:], min(tm, i1-ic-tm), rsa, blk.kc)
					case kb+1 < kBlocks:
						// The first tile of the next block of the inner
						// dimension.
						pn := t.k * (kb + 1) / kBlocks
						asm.PrefetchRows(a[i0*rsa+pn:], min(tm, i1-i0), rsa, t.k*(kb+2)/kBlocks-pn)
					}
				}
				t.strip(ws, &blk, ic, i1, overwrite)
			}
		}
		if t.scaleBy != nil {
			t.scaleRows(i0, i1, jc, nc)
		}
	}
}

// kBlocks is the number of blocks the inner dimension is cut into, of
// equal size (576 is 3 x 192, not 256+256+64: a short last block would
// pay a whole block's packing and C traffic for a few steps).
func (t *gemmTask) kBlocks() int {
	if t.wholeK {
		return 1
	}
	return (t.k + kcBlock - 1) / kcBlock
}

// gemmBlock is the block of op(B) that strips run across: columns jc..
// jc+nc, inner rows pc..pc+kc, packed into bp unless B is packed whole
// or read in place.
type gemmBlock struct {
	jc, nc, pc, kc int
	bp             []float32
}

// block returns block kb of kBlocks of the inner dimension for the
// columns jc..jc+nc, packing it into ws when B is neither packed whole
// nor read in place: B is packed into nr-wide panels, so that every
// tile-high strip of A streams it at unit stride whatever ldb (a large
// power-of-two multiple as row stride would alias in the caches).
func (t *gemmTask) block(ws *workspace, jc, nc, kb, kBlocks int) gemmBlock {
	pc := t.k * kb / kBlocks
	blk := gemmBlock{jc: jc, nc: nc, pc: pc, kc: t.k*(kb+1)/kBlocks - pc}
	if t.packedB == nil && !t.inPlaceB {
		blk.bp = packB(ws, t.b, t.ldb, t.transB, pc, blk.kc, jc, nc)
	}
	return blk
}

// strip adds the product of block blk to the tile-high strip of C at rows
// ic..min(ic+isa.rows, i1) (with overwrite, writes it).
func (t *gemmTask) strip(ws *workspace, blk *gemmBlock, ic, i1 int, overwrite bool) {
	// Element (i, p) of op(A) is a[i*rsa + p*csa].
	rsa, csa := t.lda, 1
	if t.transA {
		rsa, csa = 1, t.lda
	}
	stride := t.panelStride
	if stride == 0 {
		stride = t.k * nr
	}
	b, ldb := t.b, t.ldb
	jc, pc, kc, bp := blk.jc, blk.pc, blk.kc, blk.bp
	// bTile says where the tile at column jr of the block reads B: its
	// first panel, row stride and the distance of its second panel; and
	// where the next tile's B lies.
	bTile := func(jr int) (bt []float32, ld, boff, next int) {
		switch {
		case t.packedB != nil:
			return t.packedB[(jc+jr)/nr*stride+pc*nr:], nr, stride, 2 * stride
		case t.inPlaceB:
			return b[pc*ldb+jc+jr:], ldb, nr, 2 * nr
		default:
			return bp[jr*kc:], nr, kc * nr, 2 * nr * kc
		}
	}
	tm, tn := isa.rows, isa.cols
	mrr := min(tm, i1-ic)
	at, ars, acs := t.a[ic*rsa+pc*csa:], rsa, csa
	kernel, full := isa.kernel, mrr == tm
	switch {
	case isa.kernel4 != nil && mrr == 4:
		// Four rows left (64 = 10*6 + 4, 256 = 42*6 + 4): their own
		// kernel, on A in place.
		kernel, full = isa.kernel4, true
	case mrr < tm:
		at, ars, acs = packA(ws, t.a, rsa, csa, ic, mrr, tm, pc, kc), 1, tm
	}
	// An upper product starts at the first tile that reaches the diagonal
	// (upperFrom).
	jr0 := 0
	if t.upper && ic > jc {
		jr0 = (ic - jc) / tn * tn
	}
	runStrip(ws, kernel, isa.strip, full, mrr, jr0, blk.nc, kc, t.alpha, at, ars, acs, bTile, t.c[ic*t.ldc+jc:], t.ldc, overwrite)
}

// scaleRows multiplies rows i0..i1, columns jc..jc+nc of the completed C
// by scaleBy, elementwise.
func (t *gemmTask) scaleRows(i0, i1, jc, nc int) {
	for i := i0; i < i1; i++ {
		asm.Hadamard(t.scaleBy[i*t.ldScaleBy+jc:][:nc], t.c[i*t.ldc+jc:][:nc])
	}
}

// runStrip runs kernel on the tiles of one tile-high strip of C (mrr
// rows at c, row stride ldc), columns jr0 to n: the whole tiles in one
// call of strip when there is one (and the rows are whole), the others one
// by one (runTile). bTile(jr) gives the B of the tile at column jr: its
// first panel, row stride, the distance of its second panel and that of
// the next tile's B; a tile of at most nr columns gets no second panel
// (the kernel then reads the first twice, into the part of the tile that
// is dropped).
func runStrip(ws *workspace, kernel kernelFunc, strip stripFunc, full bool, mrr, jr0, n, kc int, alpha float32, a []float32, rsa, csa int, bTile func(jr int) ([]float32, int, int, int), c []float32, ldc int, overwrite bool) {
	tn := isa.cols
	jr := jr0
	if strip != nil && mrr == isa.rows && n-jr >= 2*tn {
		tiles := (n - jr) / tn
		bt, ld, boff, bstep := bTile(jr)
		strip(tiles, kc, alpha, a, rsa, csa, bt, ld, boff, bstep, c[jr:], ldc, overwrite)
		jr += tiles * tn
	}
	for ; jr < n; jr += tn {
		nrr := min(tn, n-jr)
		bt, ld, boff, _ := bTile(jr)
		if nrr <= nr {
			boff = 0
		}
		runTile(ws, kernel, full, mrr, nrr, kc, alpha, a, rsa, csa, bt, ld, boff, c[jr:], ldc, overwrite)
	}
}

// runTile runs kernel on the mrr x nrr tile of C at c (row stride ldc):
// in place when it is a whole tile (whole rows, isa.cols columns),
// otherwise on a copy of its part of C, so that its values are rounded as
// a whole tile's are (one FMA of the sum into C, or one product over it)
// whatever the tiling.
func runTile(ws *workspace, kernel kernelFunc, whole bool, mrr, nrr, kc int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, boff int, c []float32, ldc int, overwrite bool) {
	tm, tn := isa.rows, isa.cols
	if whole && nrr == tn {
		kernel(kc, alpha, a, rsa, csa, b, ldb, boff, c, ldc, overwrite)
		return
	}
	tile := ws.ctile[:tm*tn]
	if !overwrite {
		clear(tile)
		for i := 0; i < mrr; i++ {
			copy(tile[i*tn:i*tn+nrr], c[i*ldc:][:nrr])
		}
	}
	kernel(kc, alpha, a, rsa, csa, b, ldb, boff, tile, tn, overwrite)
	for i := 0; i < mrr; i++ {
		copy(c[i*ldc:][:nrr], tile[i*tn:i*tn+nrr])
	}
}

// packB copies rows pc..pc+kc and columns j0..j0+n of op(B) into panels of
// nr columns, kc x nr values each, the last zero padded.
func packB(ws *workspace, b []float32, ldb int, trans bool, pc, kc, j0, n int) []float32 {
	panels := (n + nr - 1) / nr
	size := panels * kc * nr
	if cap(ws.bpack) < kcBlock*ncBlock {
		ws.bpack = make([]float32, kcBlock*ncBlock)
	}
	dst := ws.bpack[:size]
	for q := 0; q < panels; q++ {
		panel := dst[q*kc*nr : (q+1)*kc*nr]
		jn := min(nr, n-q*nr)
		if jn < nr {
			clear(panel)
		}
		col := j0 + q*nr
		if trans {
			// op(B)(p, j) = b[j*ldb + p]: each stored row becomes a column.
			done := 0
			if jn == nr {
				asm.TransposePanel(kc, b[col*ldb+pc:], ldb, panel, nr)
				done = kc &^ 7
			}
			for jj := 0; jj < jn; jj++ {
				src := b[(col+jj)*ldb+pc:][done:kc]
				for p, v := range src {
					panel[(done+p)*nr+jj] = v
				}
			}
			continue
		}
		if jn == nr {
			asm.PackPanel(kc, b[pc*ldb+col:], ldb, panel)
			continue
		}
		for p := 0; p < kc; p++ {
			copy(panel[p*nr:p*nr+jn], b[(pc+p)*ldb+col:][:jn])
		}
	}
	return dst
}

// aTile returns n values of the partial-tile buffer, grown when short,
// zeros from index from on (the caller writes those before it).
func (ws *workspace) aTile(n, from int) []float32 {
	if cap(ws.apack) < n {
		ws.apack = make([]float32, max(n, maxRows*kcBlock))
	}
	a := ws.apack[:n]
	clear(a[from:])
	return a
}

// packA copies the mrr < tm rows ic.. of op(A), columns pc..pc+kc, as a
// transposed tile padded with zero rows (element (i, p) at p*tm + i).
func packA(ws *workspace, a []float32, rsa, csa, ic, mrr, tm, pc, kc int) []float32 {
	dst := ws.aTile(kc*tm, 0)
	for i := 0; i < mrr; i++ {
		base := (ic+i)*rsa + pc*csa
		for p := 0; p < kc; p++ {
			dst[p*tm+i] = a[base+p*csa]
		}
	}
	return dst
}
