package blas

import (
	"runtime"
	"sync/atomic"

	"github.com/frogopt/frog/asm"
)

// stripClaims hands the strips of a product split by rows (a strip is a
// tile-high row of tiles of C; in the image products, a run of points or
// a pair of panels of Q) to its parts, one block of B after another
// (gemmBlock: a block of C's columns and of the inner dimension), so that
// a core that runs slower does fewer of them. These cores are shared:
// under load one often runs several percent slower than the other for a
// whole product, and a fixed split waits for it.
//
// Each part has the share of the strips of every block that the fixed
// split would give it, and takes runs of strips from the front of its own
// share, then single strips from the back of the others'. Every part reads each block of B
// whole, as in the fixed split (its strips share it), and a strip mostly
// stays with one part from block to block, its rows of C in that core's
// cache. A strip starts a block only once its previous block is done,
// wherever that ran (progress): every tile adds its blocks in order, so C
// has the bits of the fixed split whichever part ran what.
type stripClaims struct {
	// shares holds the strips of each block's shares not yet taken,
	// part p's of block b at b*parts+p.
	shares []share
	// progress holds, for each strip, the number of blocks done on it.
	progress []atomic.Int32
	parts    int
	strips   int
	blocks   int
}

// share is the strips of a share not yet taken, front<<32 | back, alone
// in its cache line: each part takes from its own at every strip.
type share struct {
	v atomic.Uint64
	_ [56]byte
}

// freeClaims keeps stripClaims for reuse: their slices only grow.
var freeClaims = make(freeList[stripClaims], maxHelpers)

// minClaimStrips is the fewest strips a share holds in a product that
// claimedSplit takes.
const minClaimStrips = 4

// claimedSplit reports whether t, split into parts, runs on stripClaims:
// a product split by rows into at least minClaimStrips strips a part,
// which writes C from nothing (beta 0) and computes every tile (not
// upper).
func (t *gemmTask) claimedSplit(parts int) bool {
	return parts > 1 && t.byRows && !t.upper && t.beta == 0 && t.k > 0 && t.alpha != 0 &&
		(t.m+isa.rows-1)/isa.rows >= parts*minClaimStrips
}

// claimsFor returns stripClaims for strips strips in blocks blocks,
// split into parts shares; give them back to freeClaims after use.
func claimsFor(strips, blocks, parts int) *stripClaims {
	c := freeClaims.get()
	c.reset(strips, blocks, parts)
	return c
}

// reset prepares c for strips strips in blocks blocks, split into parts
// shares.
func (c *stripClaims) reset(strips, blocks, parts int) {
	c.parts, c.strips, c.blocks = parts, strips, blocks
	if cap(c.shares) < blocks*parts {
		c.shares = make([]share, blocks*parts)
	}
	c.shares = c.shares[:blocks*parts]
	if cap(c.progress) < strips {
		c.progress = make([]atomic.Int32, strips)
	}
	c.progress = c.progress[:strips]
	for p := 0; p < parts; p++ {
		lo, hi := strips*p/parts, strips*(p+1)/parts
		for b := 0; b < blocks; b++ {
			c.shares[b*parts+p].v.Store(uint64(lo)<<32 | uint64(hi))
		}
	}
	for s := range c.progress {
		c.progress[s].Store(0)
	}
}

// claimRun is the most strips a part takes from its own share at once.
// Taking strips, and marking them done, are atomic operations that wait
// for the stores of the strips before to drain: with one of each a strip,
// l3.conv's steps took 1-4 % longer than with the fixed split, with runs
// of four 1-2 % less (alternated steps, under load).
const claimRun = 4

// claim takes strips s..s+n-1 of block b for part: a run from the front
// of its own share, else a strip from the back of another's; n is 0 when
// none is left. A part beyond the shares (the split got more parts than
// planned) takes only from the others'.
func (c *stripClaims) claim(b, part int) (s, n int, own bool) {
	shares := c.shares[b*c.parts : (b+1)*c.parts]
	if part < c.parts {
		if s, n := shares[part].take(claimRun, true); n > 0 {
			return s, n, true
		}
	}
	for i := 1; i <= c.parts; i++ {
		q := (part + i) % c.parts
		if q == part {
			continue
		}
		if s, n := shares[q].take(1, false); n > 0 {
			return s, n, false
		}
	}
	return 0, 0, false
}

// take removes up to most strips from the front of the share, or from
// its back, and returns the first and how many.
func (sh *share) take(most int, front bool) (s, n int) {
	for {
		v := sh.v.Load()
		lo, hi := v>>32, v&(1<<32-1)
		if lo >= hi {
			return 0, 0
		}
		k := min(uint64(most), hi-lo)
		next, first := (lo+k)<<32|hi, lo
		if !front {
			next, first = lo<<32|(hi-k), hi-k
		}
		if sh.v.CompareAndSwap(v, next) {
			return int(first), int(k)
		}
	}
}

// waitFor returns once strip s has done blocks blocks.
func (c *stripClaims) waitFor(s, blocks int) {
	for c.progress[s].Load() < int32(blocks) {
		runtime.Gosched()
	}
}

// claimHook, when set (by tests), runs before every strip a part takes.
var claimHook func(part, block, strip int)

// run calls f for every strip of block b that part takes (own: from its
// own share), each once its previous block is done, and marks them done
// a run at a time.
func (c *stripClaims) run(b, part int, f func(strip int, own bool)) {
	for {
		s0, n, own := c.claim(b, part)
		if n == 0 {
			return
		}
		for s := s0; s < s0+n; s++ {
			if claimHook != nil {
				claimHook(part, b, s)
			}
			c.waitFor(s, b)
			f(s, own)
		}
		for s := s0; s < s0+n; s++ {
			c.progress[s].Store(int32(b + 1))
		}
	}
}

// runClaimed runs the strips of t that part takes from t.claims, of
// parts parts, block by block. The weights' scaling (scaleBy) waits for
// the last block of its columns to be done on every strip, then scales
// the fixed split's rows in order: strip by strip, in the order taken,
// the weights came from memory unprefetched, 1 % slower.
func (t *gemmTask) runClaimed(ws *workspace, part, parts int) {
	c := t.claims
	kBlocks := t.kBlocks()
	tm := isa.rows
	a, rsa := t.a, t.lda
	for b := 0; b < c.blocks; b++ {
		jc, kb := b/kBlocks*ncBlock, b%kBlocks
		nc := min(ncBlock, t.n-jc)
		var blk gemmBlock
		packed := false
		c.run(b, part, func(s int, own bool) {
			if !packed {
				// A part packs a block (when B is not packed whole or
				// read in place) once it has a strip of it to run.
				blk = t.block(ws, jc, nc, kb, kBlocks)
				packed = true
			}
			if t.prefetchA && !t.transA {
				// The rows of the strip this part most likely takes next.
				next := s + 1
				if !own {
					next = s - 1
				}
				if next >= 0 && next < c.strips {
					asm.PrefetchRows(a[next*tm*rsa+blk.pc:], min(tm, t.m-next*tm), rsa, blk.kc)
				}
			}
			t.strip(ws, &blk, s*tm, t.m, kb == 0)
		})
		if kb == kBlocks-1 && t.scaleBy != nil {
			for s := range c.strips {
				c.waitFor(s, b+1)
			}
			i0, i1 := split(t.m, tm, part, parts)
			t.scaleRows(i0, i1, jc, nc)
		}
	}
}
