package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

func TestFuseFisher(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	shapes := [][3]int{{16, 27, 100}, {64, 27, 1000}, {32, 576, 700}, {48, 13, 5}, {16, 300, 97}, {128, 64, 1031}}
	for _, s := range shapes {
		r, d, n := s[0], s[1], s[2]
		for _, weighted := range []bool{true, false} {
			name := fmt.Sprintf("R=%d/D=%d/N=%d/weights=%v", r, d, n, weighted)
			p := randSlice(rng, r*d)
			x := randSlice(rng, n*d)
			var w []float32
			if weighted {
				w = randSlice(rng, r*n)
			}
			q := make([]float32, r*d)
			for i := range q {
				q[i] = nan32
			}
			f := FisherProduct{Rows: r, Len: d, Points: n, P: p, X: x, Weights: w, Q: q, Alpha: 0.75, Damping: 0.5}
			if !(avx2{}).fuseFisher(&f) {
				t.Logf("%s: not fused", name)
				continue
			}
			checkFisherOracle(t, name, r, d, n, p, x, w, q, 0.75, 0.5)
			first := append([]float32(nil), q...)
			// Steady state allocates nothing.
			if allocs := testing.AllocsPerRun(3, func() { (avx2{}).fuseFisher(&f) }); allocs != 0 {
				t.Errorf("%s: %v allocations a call", name, allocs)
			}
			// The calls since gave the first one's bits: nothing a
			// product leaves in the workspace enters the next.
			for i := range q {
				if math.Float32bits(q[i]) != math.Float32bits(first[i]) {
					t.Fatalf("%s: a later call gives Q[%d] = %v, the first %v", name, i, q[i], first[i])
				}
			}
		}
	}
}

// checkFisherOracle compares q with alpha*(W .* (P X^T)) X + damping*P in
// float64 (W all ones when w is nil).
func checkFisherOracle(t *testing.T, name string, r, d, n int, p, x, w, q []float32, alpha, damping float64) {
	t.Helper()
	tm := make([]float64, r*n)
	for j := 0; j < r; j++ {
		for i := 0; i < n; i++ {
			var dot float64
			for e := 0; e < d; e++ {
				dot += float64(p[j*d+e]) * float64(x[i*d+e])
			}
			if w != nil {
				dot *= float64(w[j*n+i])
			}
			tm[j*n+i] = dot
		}
	}
	for j := 0; j < r; j++ {
		for c := 0; c < d; c++ {
			var sum, mag float64
			for i := 0; i < n; i++ {
				sum += tm[j*n+i] * float64(x[i*d+c])
				mag += math.Abs(tm[j*n+i] * float64(x[i*d+c]))
			}
			want := alpha*sum + damping*float64(p[j*d+c])
			if got := float64(q[j*d+c]); !(math.Abs(got-want) <= 1e-5*(mag+1)) {
				t.Fatalf("%s: Q[%d][%d] = %v, want %v", name, j, c, got, want)
			}
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// TestFisherDeterministic: the Fisher product is bit for bit the same with
// GOMAXPROCS 1, 2 and 3, with X read in place or from the copy PackPoints
// makes, and on either micro-kernel, on the fused and the unfused path.
func TestFisherDeterministic(t *testing.T) {
	if !hasAVX2 {
		t.Skip("no AVX2")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	// {R, D, N}: fused with 8 chunks, fused with fewer, unfused (too big
	// for L2) reading X in place, the same reading P in place (R >= N/2),
	// unfused with R not a multiple of 16, an odd D.
	shapes := [][3]int{{64, 288, 3000}, {32, 100, 700}, {256, 600, 900}, {256, 600, 300}, {20, 64, 1200}, {48, 37, 2111}}
	for _, s := range shapes {
		r, d, n := s[0], s[1], s[2]
		p, x, w := randSlice(rng, r*d), randSlice(rng, n*d), randSlice(rng, r*n)
		var want []float32
		for _, set := range kernelSets() {
			for _, procs := range []int{2, 1, 3} {
				for _, packed := range []bool{false, true} {
					q := make([]float32, r*d)
					f := FisherProduct{Rows: r, Len: d, Points: n, P: p, X: x, Weights: w, Q: q, Alpha: 0.5, Damping: 0.25}
					prev := runtime.GOMAXPROCS(procs)
					if packed && !f.PackPoints(avx2{}) {
						t.Fatal("avx2 made no copy of X or the weights")
					}
					var done bool
					withKernels(set, func() { done = (avx2{}).fuseFisher(&f) })
					runtime.GOMAXPROCS(prev)
					if !done {
						if packed {
							t.Fatalf("R=%d D=%d N=%d: no product with packed X", r, d, n)
						}
						continue
					}
					if want == nil {
						want = q
						continue
					}
					for i := range q {
						if math.Float32bits(q[i]) != math.Float32bits(want[i]) {
							t.Fatalf("R=%d D=%d N=%d %s GOMAXPROCS=%d packed=%v: Q[%d] = %v, want %v", r, d, n, set.name, procs, packed, i, q[i], want[i])
						}
					}
				}
			}
		}
		if want == nil {
			t.Fatalf("R=%d D=%d N=%d: never computed", r, d, n)
		}
	}
}

// TestPackPointsUnfused: the unfused product on the packed X matches the
// float64 oracle.
func TestPackPointsUnfused(t *testing.T) {
	if !hasAVX2 {
		t.Skip("no AVX2")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, s := range [][3]int{{20, 64, 300}, {256, 600, 90}, {7, 17, 33}} {
		r, d, n := s[0], s[1], s[2]
		p, x, w := randSlice(rng, r*d), randSlice(rng, n*d), randSlice(rng, r*n)
		q := make([]float32, r*d)
		f := FisherProduct{Rows: r, Len: d, Points: n, P: p, X: x, Weights: w, Q: q, Alpha: 0.5, Damping: 0.25}
		f.PackPoints(avx2{})
		// The weights are transposed by the first product, not before.
		marked := f.weightsT.w != nil
		if f.weightsT.done {
			t.Fatalf("R=%d D=%d N=%d: PackPoints transposed the weights", r, d, n)
		}
		if !(avx2{}).fuseFisher(&f) {
			t.Fatal("not computed")
		}
		if marked != f.weightsT.done {
			t.Fatalf("R=%d D=%d N=%d: weights marked %v, transposed %v", r, d, n, marked, f.weightsT.done)
		}
		tm := make([]float64, n)
		for j := 0; j < r; j++ {
			for i := range tm {
				var dot float64
				for e := 0; e < d; e++ {
					dot += float64(p[j*d+e]) * float64(x[i*d+e])
				}
				tm[i] = dot * float64(w[j*n+i])
			}
			for c := 0; c < d; c++ {
				var sum, mag float64
				for i := 0; i < n; i++ {
					v := tm[i] * float64(x[i*d+c])
					sum += v
					mag += math.Abs(v)
				}
				want := 0.5*sum + 0.25*float64(p[j*d+c])
				if got := float64(q[j*d+c]); !(math.Abs(got-want) <= 1e-5*(mag+1)) {
					t.Fatalf("R=%d D=%d N=%d: Q[%d][%d] = %v, want %v", r, d, n, j, c, got, want)
				}
			}
		}
		if allocs := testing.AllocsPerRun(3, func() { (avx2{}).fuseFisher(&f) }); allocs != 0 {
			t.Errorf("%v allocations a call", allocs)
		}
	}
}

// The weights' transpose, on every split into parts, on row counts that
// are and are not multiples of the panel width.
func TestTransposeWeights(t *testing.T) {
	for _, r := range []int{16, 48, 20, 1} {
		for _, n := range []int{1, 63, 64, 130, 1031} {
			w := make([]float32, r*n)
			for i := range w {
				w[i] = float32(i) + 0.5
			}
			for parts := 1; parts <= 3; parts++ {
				dst := make([]float32, n*r)
				task := transposeTask{w: w, dst: dst, r: r, n: n}
				for p := 0; p < parts; p++ {
					task.RunPart(p, parts)
				}
				for j := 0; j < r; j++ {
					for i := 0; i < n; i++ {
						if dst[i*r+j] != w[j*n+i] {
							t.Fatalf("r=%d n=%d parts=%d: dst[%d][%d] = %v, want %v", r, n, parts, i, j, dst[i*r+j], w[j*n+i])
						}
					}
				}
			}
		}
	}
}

// TestGram: the Gram matrix computed on the tiles that reach its diagonal,
// the rest mirrored, has the bits of the whole product X X^T, on both
// assembly kernel sets, with X read in place or packed, on one to three
// cores (upperSplit's and mirrorTask's parts), and under the pure-Go
// kernels (which run the whole product); its rows' padding is left
// alone.
func TestGram(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	ran := 0
	kernels := []Kernels{pureGo{}}
	if hasAVX2 {
		kernels = append(kernels, avx2{})
	}
	for _, s := range [][2]int{{256, 300}, {100, 37}, {47, 64}, {97, 16}, {1, 5}, {160, 8}} {
		n, d := s[0], s[1]
		x := randSlice(rng, n*d)
		for _, k := range kernels {
			for _, set := range setsFor(k) {
				for _, c := range [][2]int{{0, 1}, {0, 3}, {1, 2}, {1, 3}} {
					packed, procs := c[0] == 1, c[1]
					name := fmt.Sprintf("N=%d D=%d %s/%s packed=%v GOMAXPROCS=%d", n, d, k.Name(), set.name, packed, procs)
					want := make([]float32, n*n)
					// Rows >= Points/2, not a multiple of 16: the shape for
					// which the assembly kernels pack X (rowsInPlace).
					f := FisherProduct{Rows: n/2 + 1, Len: d, Points: n, X: x}
					if _, ok := k.(avx2); packed && ok {
						if !f.PackPoints(k) {
							t.Fatalf("%s: avx2 made no copy of X", name)
						}
						ran++
					} else if packed {
						continue
					}
					ld := PointsStride(n)
					f.gram = make([]float32, n*ld)
					for i := range f.gram {
						f.gram[i] = nan32
					}
					prev := runtime.GOMAXPROCS(procs)
					withKernels(set, func() {
						k.Gemm(false, true, n, n, d, 1, x, d, x, d, 0, want, n)
						f.formGram(k)
					})
					runtime.GOMAXPROCS(prev)
					for i, v := range f.gram {
						r, c := i/ld, i%ld
						if c >= n {
							if !math.IsNaN(float64(v)) {
								t.Fatalf("%s: G's padding at (%d, %d) = %v", name, r, c, v)
							}
							continue
						}
						if math.Float32bits(v) != math.Float32bits(want[r*n+c]) {
							t.Fatalf("%s: G[%d][%d] = %v, want %v", name, r, c, v, want[r*n+c])
						}
					}
				}
			}
		}
	}
	if hasAVX2 && ran == 0 {
		t.Fatal("no product ran on packed X")
	}
}

// sStride: room for the rows, whole 64-byte lines, an odd number of them.
func TestSStride(t *testing.T) {
	for r := 1; r <= 600; r++ {
		s := sStride(r)
		if s < r || s%16 != 0 || (s/16)%2 != 1 || s-r > 31 {
			t.Fatalf("sStride(%d) = %d", r, s)
		}
	}
	if s := sStride(128); s != 144 {
		t.Errorf("sStride(128) = %d, want 144", s)
	}
}

// TestPointsMethods: StartPoints, WeighRows, TimesGram and Expand (a
// solve in the points' space) write U = R X^T, s = Alpha*Weights .* t
// (Alpha*t without weights), W = S G and Z = C X as a float64 loop does,
// to float32 rounding, leave the blocks' padding alone, and give the
// same bits with GOMAXPROCS 1 and 3, with X in place or packed, on every
// kernel set.
func TestPointsMethods(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	kernels := []Kernels{pureGo{}}
	if hasAVX2 {
		kernels = append(kernels, avx2{})
	}
	// {R, D, N}: R >= N/2 (X packed by the assembly kernels) and not,
	// the last with whole panels (G and X read in place).
	for _, s := range [][3]int{{40, 150, 24}, {9, 70, 33}, {8, 96, 32}} {
		r, d, n := s[0], s[1], s[2]
		ld := PointsStride(n)
		x, rr, w := randSlice(rng, n*d), randSlice(rng, r*d), randSlice(rng, r*n)
		t0, c := randSlice(rng, r*ld), randSlice(rng, r*ld)
		dot := func(a []float32, sa int, b []float32, sb int, k int) float64 {
			var sum float64
			for i := 0; i < k; i++ {
				sum += float64(a[i*sa]) * float64(b[i*sb])
			}
			return sum
		}
		check := func(name, what string, got []float32, want func(i, j int) float64, rows, cols, ldg int, scale float64) {
			t.Helper()
			for i := 0; i < rows; i++ {
				for j := 0; j < ldg; j++ {
					v := got[i*ldg+j]
					if j >= cols {
						if !math.IsNaN(float64(v)) {
							t.Fatalf("%s: %s wrote its padding at (%d, %d)", name, what, i, j)
						}
						continue
					}
					if e := want(i, j); math.Abs(float64(v)-e) > 1e-4*scale {
						t.Fatalf("%s: %s(%d, %d) = %v, want %v", name, what, i, j, v, e)
					}
				}
			}
		}
		bits := map[bool][]float32{}
		for _, k := range kernels {
			for _, set := range setsFor(k) {
				for _, procs := range []int{1, 3} {
					for _, weights := range []bool{true, false} {
						packed := procs == 3
						name := fmt.Sprintf("R=%d D=%d N=%d %s/%s GOMAXPROCS=%d weights=%v", r, d, n, k.Name(), set.name, procs, weights)
						f := FisherProduct{Rows: r, Len: d, Points: n, X: x, Alpha: 1}
						if weights {
							f.Weights = w
						} else {
							f.Alpha = 0.75
						}
						if packed {
							f.PackPoints(k)
						}
						blocks := make([][]float32, 3)
						for i := range blocks {
							blocks[i] = make([]float32, r*ld)
							for j := range blocks[i] {
								blocks[i][j] = nan32
							}
						}
						u, sw, gw := blocks[0], blocks[1], blocks[2]
						z := make([]float32, r*d)
						prev := runtime.GOMAXPROCS(procs)
						withKernels(set, func() {
							f.StartPoints(k, u, ld, rr)
							f.WeighRows(sw, t0, ld, 0, r/2)
							f.WeighRows(sw, t0, ld, r/2, r)
							f.TimesGram(k, gw, c, ld)
							f.Expand(k, z, c, ld)
						})
						runtime.GOMAXPROCS(prev)
						if f.weightsT.done {
							t.Fatalf("%s: a solve in the points' space transposed the weights", name)
						}
						check(name, "U", u, func(i, j int) float64 { return dot(rr[i*d:], 1, x[j*d:], 1, d) }, r, n, ld, math.Sqrt(float64(d)))
						check(name, "S", sw, func(i, j int) float64 {
							if weights {
								return float64(w[i*n+j]) * float64(t0[i*ld+j])
							}
							return 0.75 * float64(t0[i*ld+j])
						}, r, n, ld, 1)
						check(name, "W", gw, func(i, j int) float64 {
							var sum float64
							for a := 0; a < n; a++ {
								sum += float64(c[i*ld+a]) * dot(x[a*d:], 1, x[j*d:], 1, d)
							}
							return sum
						}, r, n, ld, float64(n)*float64(d))
						check(name, "Z", z, func(i, j int) float64 { return dot(c[i*ld:], 1, x[j:], d, n) }, r, d, d, math.Sqrt(float64(n)))
						if _, ok := k.(avx2); !ok {
							continue
						}
						all := append(append(append(append([]float32(nil), u...), sw...), gw...), z...)
						want, ok := bits[weights]
						if !ok {
							bits[weights] = all
							continue
						}
						for i := range all {
							if math.Float32bits(all[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%s: value %d = %v, %v on the first assembly run", name, i, all[i], want[i])
							}
						}
					}
				}
			}
		}
	}
}
