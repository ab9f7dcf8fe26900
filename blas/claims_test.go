package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestClaimedSplit: a product split by rows on stripClaims gives the bits
// of the product on one core, on both micro-kernel sets, with A in place
// or transposed, B packed per block, packed whole or read in place, C
// scaled by weights or not, over several blocks of columns and of the
// inner dimension, on two to four parts; also when parts are held up, so
// that strips pass from part to part between blocks (which must wait for
// each other) and shares are taken by other parts.
func TestClaimedSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	// {M, N, K}: one block; blocks of columns and of the inner dimension;
	// rows that end in a partial strip.
	shapes := [][3]int{{128, 64, 160}, {160, 300, 600}, {203, 48, 530}}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		a, at := randSlice(rng, m*k), randSlice(rng, k*m)
		b := randSlice(rng, k*n)
		w := randSlice(rng, m*n)
		panels := (n + nr - 1) / nr
		packed := make([]float32, panels*k*nr)
		for q := 0; q < panels; q++ {
			for p := 0; p < k; p++ {
				for j := 0; j < nr; j++ {
					if c := q*nr + j; c < n {
						packed[q*k*nr+p*nr+j] = b[p*n+c]
					}
				}
			}
		}
		for _, set := range kernelSets() {
			for _, v := range []struct {
				name                           string
				transA, inPlace, whole, scaled bool
			}{
				{"A, B packed per block", false, false, false, false},
				{"A^T, B in place, scaled", true, true, false, true},
				{"A, B packed whole, scaled", false, false, true, true},
			} {
				if v.inPlace && n%nr != 0 {
					continue
				}
				task := func(c []float32) gemmTask {
					g := gemmTask{m: m, n: n, k: k, alpha: 0.75, a: a, lda: k, b: b, ldb: n, c: c, ldc: n, prefetchA: !v.transA, rowsFirst: true}
					if v.transA {
						g.transA, g.a, g.lda = true, at, m
					}
					switch {
					case v.inPlace:
						g.inPlaceB = true
					case v.whole:
						g.packedB, g.panelStride = packed, k*nr
					}
					if v.scaled {
						g.scaleBy, g.ldScaleBy = w, n
					}
					return g
				}
				run := func(procs int, hook func(part, block, strip int)) []float32 {
					c := make([]float32, m*n)
					for i := range c {
						c[i] = nan32
					}
					g := task(c)
					prev := runtime.GOMAXPROCS(procs)
					claimHook = hook
					withKernels(set, func() { runGemm(&g) })
					claimHook = nil
					runtime.GOMAXPROCS(prev)
					return c
				}
				want := run(1, nil)
				checkClaimedOracle(t, fmt.Sprintf("%dx%dx%d %s %s", m, n, k, set.name, v.name), m, n, k, v.transA, a, at, b, w, v.scaled, want)
				// Over the runs: strips run on another part than at their
				// previous block, and strips taken from another's share.
				handoffs, taken := 0, 0
				for _, procs := range []int{2, 3, 4} {
					for _, slow := range []int{-1, 0, 1} {
						name := fmt.Sprintf("%dx%dx%d %s %s GOMAXPROCS=%d slow part %d", m, n, k, set.name, v.name, procs, slow)
						var mu sync.Mutex
						ran := map[[2]int]int{} // block, strip -> part
						hook := func(part, block, strip int) {
							mu.Lock()
							ran[[2]int{block, strip}] = part
							if prev, ok := ran[[2]int{block - 1, strip}]; ok && prev != part {
								handoffs++
							}
							strips, owner := (m+isa.rows-1)/isa.rows, 0
							for strips*(owner+1)/procs <= strip {
								owner++
							}
							if owner != part {
								taken++
							}
							mu.Unlock()
							// The slow part, or with slow -1 the parts in
							// turn block by block, sleeps at every strip.
							if part == slow || slow < 0 && part == block%procs {
								time.Sleep(50 * time.Microsecond)
							}
						}
						got := run(procs, hook)
						for i := range got {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%s: C[%d] = %v, on one core %v", name, i, got[i], want[i])
							}
						}
						if len(ran) == 0 {
							t.Fatalf("%s: no strip was claimed", name)
						}
					}
				}
				blocks := (n + ncBlock - 1) / ncBlock * ((k + kcBlock - 1) / kcBlock)
				if taken == 0 || blocks > 1 && handoffs == 0 {
					t.Fatalf("%dx%dx%d %s %s: %d strips passed between blocks, %d taken from other shares: the test did not exercise them", m, n, k, set.name, v.name, handoffs, taken)
				}
			}
		}
	}
}

// checkClaimedOracle compares c with alpha*op(A)*B (.* w when scaled) in
// float64.
func checkClaimedOracle(t *testing.T, name string, m, n, k int, transA bool, a, at, b, w []float32, scaled bool, c []float32) {
	t.Helper()
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var sum, mag float64
			for p := 0; p < k; p++ {
				av := a[i*k+p]
				if transA {
					av = at[p*m+i]
				}
				v := float64(av) * float64(b[p*n+j])
				sum += v
				mag += math.Abs(v)
			}
			want := 0.75 * sum
			if scaled {
				want *= float64(w[i*n+j])
				mag *= math.Abs(float64(w[i*n+j]))
			}
			if got := float64(c[i*n+j]); !(math.Abs(got-want) <= 1e-5*(mag+1)) {
				t.Fatalf("%s: C[%d][%d] = %v, want %v", name, i, j, got, want)
			}
		}
	}
}
