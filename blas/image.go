package blas

import (
	"runtime"

	"github.com/frogopt/frog/asm"
	"github.com/frogopt/frog/internal/buf"
)

// ImageRows describes the rows of X as windows of images instead of
// stored values, as the patches of a convolution are windows of its
// channel-last input: point n lies in image n/(Height*Width), output row
// (n/Width)%Height, column n%Width, and its row of X is Segs runs of
// SegLen consecutive values of Data, run s starting at
//
//	img*ImageLen + row*RowStride + col*ColStride + s*SegStride.
//
// The Fisher kernels read such rows where they lie: stored, the patches of
// l1.conv are 38 MB written once a step and read from memory at every CG
// iteration; its images are 4.7 MB.
type ImageRows struct {
	Data                    []float32
	Width, Height, ImageLen int
	RowStride, ColStride    int
	Segs, SegLen, SegStride int
}

// imagePlan cuts the points of an image product into blocks of whole
// output rows of one image: blockRows rows (the last of an image fewer),
// rowBlocks blocks an image.
type imagePlan struct {
	images, blockRows, rowBlocks int
}

// planImage returns the plan for f's points in blocks of at most
// maxPoints points (at least one output row), as few blocks an image as
// that allows, of as even a number of rows as can be: a short last block
// would pay a whole block's traffic of the accumulator for a few points
// (l2.conv_s2, 16 rows: 6, 6 and 4 rows instead of 7, 7 and 2 took 1.4-1.6 %
// less time).
func planImage(f *FisherProduct, maxPoints int) imagePlan {
	m := f.Image
	rows := min(m.Height, max(1, maxPoints/m.Width))
	per := (m.Height + rows - 1) / rows
	return imagePlan{images: f.Points / (m.Width * m.Height), blockRows: (m.Height + per - 1) / per, rowBlocks: per}
}

// blocks is the number of blocks.
func (p imagePlan) blocks() int { return p.images * p.rowBlocks }

// block returns the first point and the number of points of block b.
func (p imagePlan) block(m *ImageRows, b int) (n0, nb int) {
	img, rb := b/p.rowBlocks, b%p.rowBlocks
	row0 := rb * p.blockRows
	rows := min(p.blockRows, m.Height-row0)
	return (img*m.Height + row0) * m.Width, rows * m.Width
}

// rowJump is how far the next output row's first point lies beyond where
// a row's points, ColStride apart, would go on: the jump between the runs
// of points that Kernel8x32Tiles reads as B.
func (m *ImageRows) rowJump() int { return m.RowStride - m.Width*m.ColStride }

// point returns the offset in Data of point n's first value.
func (m *ImageRows) point(n int) int {
	img, rc := n/(m.Height*m.Width), n%(m.Height*m.Width)
	return img*m.ImageLen + rc/m.Width*m.RowStride + rc%m.Width*m.ColStride
}

// Rows writes the rows of points n0..n1 into dst, ld apart.
func (m *ImageRows) Rows(dst []float32, ld, n0, n1 int) {
	m.Cols(dst, ld, n0, n1, 0, m.Segs*m.SegLen)
}

// Cols writes values c0..c1 of the rows of points n0..n1 into dst, ld
// apart, value c0 of a row first.
func (m *ImageRows) Cols(dst []float32, ld, n0, n1, c0, c1 int) {
	for n := n0; n < n1; n++ {
		o, row := m.point(n), dst[(n-n0)*ld:]
		for c := c0; c < c1; {
			s, off := c/m.SegLen, c%m.SegLen
			k := min(m.SegLen-off, c1-c)
			copy(row[c-c0:c-c0+k], m.Data[o+s*m.SegStride+off:][:k])
			c += k
		}
	}
}

// ReadsImage reports whether k's Fisher kernels compute the product of
// rows x length blocks with X given as im (FisherProduct.Image): for runs
// that are whole 32-wide tiles and output rows of at most kcBlock points
// (a block of points is whole output rows, summed in one pass on every
// kernel set), the fused kernel where P^T and the accumulator share the
// L2 cache with a block of points, otherwise two products over the images
// (rows a multiple of 8).
func ReadsImage(k Kernels, rows, length int, im *ImageRows) bool {
	_, ok := k.(fisherFuser)
	return ok && im.SegLen%(2*nr) == 0 && im.Segs*im.SegLen == length && im.Width > 0 && im.Width <= kcBlock &&
		im.Height > 0 && (fusedBlock(rows, length) > 0 || rows%8 == 0)
}

// imageFirst computes S = X_blk P^T for the nb points from n0 of an image
// product into s (row stride lds), each element one chain of FMAs over
// all the inner dimension: on the AVX-512 kernel a tile of points in one
// output row reads A in place from the image, the kernel jumping from run
// to run (against a call per run, each adding its sum to S: l1.conv and
// l2.conv about 5 % less time); other tiles, and every tile of the other
// kernels, read their rows copied out whole (from xb when given, the
// block's rows stored).
func (w *fisherWork) imageFirst(ws *workspace, f *FisherProduct, s []float32, lds, n0, nb int, xb []float32) {
	m, r, d := f.Image, f.Rows, f.Len
	tm := isa.rows
	jump := m.SegStride - m.SegLen
	// A tile in place, and a strip of them: Kernel8x32Tiles over the
	// runs.
	inPlace := func(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, boff int, c []float32, ldc int, overwrite bool) {
		asm.Kernel8x32Tiles(1, k, alpha, a, rsa, csa, 0, b, ldb, boff, 0, c, ldc, 0, overwrite, m.SegLen, jump, 0)
	}
	inPlaceStrip := func(tiles, k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, boff, bstep int, c []float32, ldc int, overwrite bool) {
		asm.Kernel8x32Tiles(tiles, k, alpha, a, rsa, csa, 0, b, ldb, boff, bstep, c, ldc, 2*nr, overwrite, m.SegLen, jump, 0)
	}
	// The panels of P^T cover r, the last zero padded: a tile over more
	// than nr rows reads two.
	bTile := func(jr int) ([]float32, int, int, int) {
		return w.packed[jr/nr*d*nr:], nr, d * nr, 2 * d * nr
	}
	for ic := 0; ic < nb; ic += tm {
		mrr := min(tm, nb-ic)
		col := (n0 + ic) % m.Width
		kernel, strip := isa.kernel, isa.strip
		var at []float32
		ars := d
		switch {
		case xb != nil && mrr == tm:
			at = xb[ic*d:]
		case xb == nil && isa.segmented && mrr == tm && col+tm <= m.Width:
			at, ars = m.Data[m.point(n0+ic):], m.ColStride
			kernel, strip = inPlace, inPlaceStrip
		default:
			// The tile crosses an output row, is short, or its kernel
			// cannot jump: its rows copied out, zero padded (the kernel
			// reads whole tiles).
			at = ws.aTile(tm*d, mrr*d)
			if xb != nil {
				copy(at, xb[ic*d:(ic+mrr)*d])
			} else {
				m.Rows(at, d, n0+ic, n0+ic+mrr)
			}
		}
		runStrip(ws, kernel, strip, mrr == tm, mrr, 0, r, d, 1, at, ars, 1, bTile, s[ic*lds:], lds, true)
	}
}

// imageSecond adds S^T X_blk (R x D) into acc (with set, writes it over
// acc) for the nb points from n0 of an image product, whole output rows:
// on the AVX-512 kernel B is read in the image, one output row a segment
// of the inner dimension (Kernel8x32Tiles); otherwise from xb, the
// block's rows stored. Either way every sum runs over the block's points
// in order, in one call.
func (w *fisherWork) imageSecond(ws *workspace, f *FisherProduct, acc, s []float32, lds, n0, nb int, xb []float32, set bool) {
	m, r, d := f.Image, f.Rows, f.Len
	if xb != nil {
		second := gemmTask{transA: true, m: r, n: d, k: nb, alpha: f.Alpha, a: s, lda: lds, b: xb, ldb: d, c: acc, ldc: d, inPlaceB: true}
		gemmRange(ws, &second, 0, r, 0, d, set)
		return
	}
	origin := m.point(n0)
	jump := m.rowJump()
	// A strip of eight rows of acc at a time, across each run: its
	// columns of S stay in L1 while B streams from L2 (with the runs
	// outside, B's rows, a stride of whole lines apart, fell into a
	// fraction of L1's sets and did not stay either: l1.conv took about
	// 5 % longer).
	for ir := 0; ir < r; ir += 8 {
		for seg := 0; seg < m.Segs; seg++ {
			b := m.Data[origin+seg*m.SegStride:]
			asm.Kernel8x32Tiles(m.SegLen/(2*nr), nb, f.Alpha, s[ir:], 1, lds, 0, b, m.ColStride, nr, 2*nr,
				acc[ir*d+seg*m.SegLen:], d, 2*nr, set, m.Width, 0, jump)
		}
	}
}

// imageTask runs the two products of an image product too large for the
// fused kernel (imageProducts): T^T by points, then Q by columns.
type imageTask struct {
	w        *fisherWork
	second   bool
	weightsT []float32
	// claims, when set, hands out the current product's pieces: runs of
	// imageFirstUnit points, or pairs of nr columns block by block.
	claims *stripClaims
}

// imageFirstUnit is the points a part takes at a time from the first
// image product's claims: whole tiles of either kernel set (6 and 8
// rows).
const imageFirstUnit = 48

// imageProducts computes f's product on image rows in two products:
// T^T = X P^T .*= Weights^T (Points x Rows), split across the cores by
// points, each element one chain over the inner dimension (imageFirst);
// then Q = Alpha*(T^T)^T X, split by columns of Q, the points in
// blocks of whole output rows of one image (at most kcBlock), each block's
// sum added to Q in order. On two or more parts the first product's runs
// of points, and on the AVX-512 kernel the second's pairs of panels block
// by block, go to the parts through stripClaims, so that a core slowed by
// other load does fewer. It reports false when it would need the weights
// transposed and PackPoints made no such copy.
func (w *fisherWork) imageProducts(f *FisherProduct) bool {
	weightsT := f.transposedWeights()
	if f.Weights != nil && weightsT == nil {
		return false
	}
	r, n := f.Rows, f.Points
	w.plan = planImage(f, kcBlock)
	w.packRows(f)
	w.t = buf.Grow(w.t, n*sStride(r))
	t := &w.image
	*t = imageTask{w: w, weightsT: weightsT}
	maxParts := (n + isa.rows - 1) / isa.rows
	units := (n + imageFirstUnit - 1) / imageFirstUnit
	if parts := min(runtime.GOMAXPROCS(0), maxParts); parts > 1 && units >= parts*minClaimStrips {
		t.claims = claimsFor(units, 1, parts)
	}
	Parallel(t, maxParts)
	t.release()
	if w.curv != nil {
		w.pointCurvatures(weightsT)
	} else {
		t.second = true
		maxParts = (f.Len + 2*nr - 1) / (2 * nr)
		if parts := min(runtime.GOMAXPROCS(0), maxParts); isa.segmented && parts > 1 && maxParts >= parts*minClaimStrips {
			t.claims = claimsFor(maxParts, w.plan.blocks(), parts)
		}
		Parallel(t, maxParts)
		t.release()
	}
	*t = imageTask{}
	return true
}

// release gives back t's claims.
func (t *imageTask) release() {
	if t.claims != nil {
		freeClaims.put(t.claims)
		t.claims = nil
	}
}

func (t *imageTask) RunPart(part, parts int) {
	w := t.w
	f := w.f
	m, r, d, n := f.Image, f.Rows, f.Len, f.Points
	ldt := sStride(r)
	ws := spare.get()
	defer spare.put(ws)
	if !t.second {
		first := func(p0, p1 int) {
			w.imageFirst(ws, f, w.t[p0*ldt:], ldt, p0, p1-p0, nil)
			if w.curv == nil {
				w.scaleBlock(w.t[p0*ldt:], ldt, t.weightsT, p0, p1-p0)
			}
		}
		if c := t.claims; c != nil {
			// One block: runs of points, in any order.
			c.run(0, part, func(u int, _ bool) {
				first(u*imageFirstUnit, min((u+1)*imageFirstUnit, n))
			})
			return
		}
		if p0, p1 := split(n, isa.rows, part, parts); p0 < p1 {
			first(p0, p1)
		}
		return
	}
	jump := m.rowJump()
	// pair adds block kb's sum for the pair of panels of Q at col (on the
	// AVX-512 kernel, B read in the images).
	pair := func(kb, col int) {
		p0, np := w.plan.block(m, kb)
		b := m.Data[m.point(p0)+col/m.SegLen*m.SegStride+col%m.SegLen:]
		asm.Kernel8x32Tiles(r/8, np, f.Alpha, w.t[p0*ldt:], 1, ldt, 8, b, m.ColStride, nr, 0, f.Q[col:], d, 8*d, kb == 0, m.Width, 0, jump)
	}
	if c := t.claims; c != nil {
		// A pair starts a block once its previous block is done,
		// wherever that ran, so Q adds the blocks in order.
		for kb := 0; kb < c.blocks; kb++ {
			c.run(kb, part, func(u int, _ bool) { pair(kb, u*2*nr) })
		}
		return
	}
	c0, c1 := split(d, 2*nr, part, parts)
	if c0 >= c1 {
		return
	}
	for kb := 0; kb < w.plan.blocks(); kb++ {
		p0, np := w.plan.block(m, kb)
		a := w.t[p0*ldt:]
		if !isa.segmented {
			// The part's columns of the block's rows copied out, B read
			// there in place (tiles and blocks of columns fall where they
			// would on the whole rows: c0 is a multiple of the tiles).
			wc := c1 - c0
			w.xbuf[part] = buf.Grow(w.xbuf[part], w.plan.blockRows*m.Width*wc)
			xb := w.xbuf[part][:np*wc]
			m.Cols(xb, wc, p0, p0+np, c0, c1)
			second := gemmTask{transA: true, m: r, n: wc, k: np, alpha: f.Alpha, a: a, lda: ldt, b: xb, ldb: wc, c: f.Q[c0:], ldc: d, inPlaceB: true}
			if kb > 0 {
				second.beta = 1
			}
			gemmRange(ws, &second, 0, r, 0, wc, true)
			continue
		}
		for col := c0; col < c1; col += 2 * nr {
			pair(kb, col)
		}
	}
}
