package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/frogopt/frog/asm"
)

// implementations lists the kernels under test: the assembly driver runs
// here even where the assembly is not compiled in (with the pure-Go
// micro-kernel), so that its blocking is checked under noasm too.
func implementations() []Kernels {
	return []Kernels{pureGo{}, avx2{}}
}

var nan32 = float32(math.NaN())

// kernelSets lists the micro-kernel sets that can run here: both always
// under noasm (the pure-Go twins), the AVX-512 one with the assembly only
// on a CPU with AVX-512F.
func kernelSets() []kernelSet {
	if asm.Enabled && !hasAVX512 {
		return []kernelSet{avx2Kernels}
	}
	return []kernelSet{avx2Kernels, avx512Kernels}
}

// setsFor lists the micro-kernel sets k's products run on: every set
// kernelSets lists for the assembly kernels, the current one for others.
func setsFor(k Kernels) []kernelSet {
	if isAVX2(k) {
		return kernelSets()
	}
	return []kernelSet{isa}
}

// withKernels runs f with the products on set s.
func withKernels(s kernelSet, f func()) {
	prev := isa
	isa = s
	defer func() { isa = prev }()
	f()
}

// matrix returns a rows x cols matrix with leading dimension ld inside NaN
// guards: NaN before, after, and in the ld-cols padding of every row.
func matrix(rng *rand.Rand, rows, cols, ld int) (all, view []float32) {
	const g = 5
	n := max(rows*ld, 1)
	all = make([]float32, n+2*g)
	for i := range all {
		all[i] = nan32
	}
	view = all[g : g+n]
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			view[i*ld+j] = rng.Float32()*2 - 1
		}
	}
	return all, view
}

func TestGemm(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	shapes := [][3]int{
		{1, 1, 1}, {1, 1, 0}, {2, 3, 4}, {5, 15, 7}, {6, 16, 1}, {7, 17, 3},
		{6, 16, 256}, {13, 33, 257}, {12, 48, 300}, {64, 27, 40}, {27, 64, 19},
		{31, 600, 20}, {70, 40, 530}, {100, 300, 64}, {16, 256, 576},
		{130, 20, 5}, {5, 400, 130}, // tiles of the portable Gemm over a short inner dimension
	}
	run := func(impl Kernels, label string) {
		for _, s := range shapes {
			m, n, k := s[0], s[1], s[2]
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					for _, ab := range [][2]float32{{1, 0}, {-2, 1}, {0.5, 0.25}, {0, 0.5}} {
						name := fmt.Sprintf("%s/%dx%dx%d/ta=%v/tb=%v/alpha=%v/beta=%v", label, m, n, k, ta, tb, ab[0], ab[1])
						checkGemm(t, name, rng, impl, ta, tb, m, n, k, ab[0], ab[1])
					}
				}
			}
		}
	}
	run(pureGo{}, "purego")
	for _, set := range kernelSets() {
		withKernels(set, func() { run(avx2{}, set.name) })
	}
}

// TestMicroKernelsAgree: the products give the same bits on the AVX2 and
// the AVX-512 micro-kernel, for every transpose and partial tiles of rows
// and columns (B read in place and from whole packed copies: the Fisher
// products of TestFisherDeterministic).
func TestMicroKernelsAgree(t *testing.T) {
	sets := kernelSets()
	if len(sets) < 2 {
		t.Log("no AVX-512F here: one micro-kernel only")
		return
	}
	rng := rand.New(rand.NewPCG(17, 18))
	shapes := [][3]int{{8, 32, 5}, {13, 47, 300}, {64, 576, 192}, {130, 48, 530}, {6, 16, 256}, {100, 300, 64}, {27, 27, 27}}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				lda, ldb := k+3, n+1
				if ta {
					lda = m + 2
				}
				if tb {
					ldb = k + 5
				}
				a := randSlice(rng, max(m, k)*lda)
				b := randSlice(rng, max(n, k)*ldb)
				c0 := randSlice(rng, m*n)
				var want []float32
				for _, set := range sets {
					c := append([]float32(nil), c0...)
					withKernels(set, func() { avx2{}.Gemm(ta, tb, m, n, k, 0.75, a, lda, b, ldb, 0.5, c, n) })
					if want == nil {
						want = c
						continue
					}
					for i := range c {
						if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%dx%dx%d ta=%v tb=%v: C[%d] = %v on %s, %v on %s", m, n, k, ta, tb, i, c[i], set.name, want[i], sets[0].name)
						}
					}
				}
			}
		}
	}
}

func checkGemm(t *testing.T, name string, rng *rand.Rand, impl Kernels, ta, tb bool, m, n, k int, alpha, beta float32) {
	t.Helper()
	pad := 1 + rng.IntN(3)
	ar, ac := m, k
	if ta {
		ar, ac = k, m
	}
	br, bc := k, n
	if tb {
		br, bc = n, k
	}
	lda, ldb, ldc := ac+pad, bc+pad, n+pad
	_, a := matrix(rng, ar, ac, lda)
	_, b := matrix(rng, br, bc, ldb)
	cAll, c := matrix(rng, m, n, ldc)
	if beta == 0 {
		// BLAS semantics: a zero beta clears C, NaN included.
		for i := 0; i < m; i++ {
			c[i*ldc] = nan32
		}
	}
	orig := append([]float32(nil), cAll...)
	at := func(i, p int) float64 {
		if ta {
			return float64(a[p*lda+i])
		}
		return float64(a[i*lda+p])
	}
	bt := func(p, j int) float64 {
		if tb {
			return float64(b[j*ldb+p])
		}
		return float64(b[p*ldb+j])
	}
	impl.Gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	const g = 5
	for idx, v := range cAll {
		pos := idx - g
		inside := pos >= 0 && pos < len(c) && pos/ldc < m && pos%ldc < n
		if !inside {
			if math.Float32bits(v) != math.Float32bits(orig[idx]) {
				t.Fatalf("%s: guard at %d changed to %v", name, pos, v)
			}
			continue
		}
		i, j := pos/ldc, pos%ldc
		var s, mag float64
		for p := 0; p < k; p++ {
			s += at(i, p) * bt(p, j)
			mag += math.Abs(at(i, p) * bt(p, j))
		}
		want := float64(alpha) * s
		if beta != 0 {
			want += float64(beta) * float64(orig[idx])
		}
		tol := 1e-6 * (float64(k+2)*math.Abs(float64(alpha))*mag + 2)
		if !(math.Abs(float64(v)-want) <= tol) {
			t.Fatalf("%s: C[%d][%d] = %v, want %v", name, i, j, v, want)
		}
	}
}

func TestVectorKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, impl := range implementations() {
		for _, n := range []int{0, 1, 3, 8, 15, 16, 33, 100, 1025} {
			x := make([]float32, n)
			y := make([]float32, n+3) // Dot reads y[:len(x)] only.
			for i := range x {
				x[i] = rng.Float32()
			}
			for i := range y {
				y[i] = rng.Float32()
			}
			y[n] = nan32
			var want float64
			for i := range x {
				want += float64(x[i]) * float64(y[i])
			}
			if got := impl.Dot(x, y); math.Abs(got-want) > 1e-12*float64(n+1) {
				t.Errorf("%s Dot n=%d: %v, want %v", impl.Name(), n, got, want)
			}
			orig := append([]float32(nil), y...)
			impl.Axpy(-0.5, x, y)
			for i := range x {
				if w := orig[i] - 0.5*x[i]; math.Abs(float64(y[i]-w)) > 1e-6 {
					t.Fatalf("%s Axpy n=%d: y[%d] = %v, want %v", impl.Name(), n, i, y[i], w)
				}
			}
			if math.Float32bits(y[n]) != math.Float32bits(nan32) {
				t.Fatalf("%s Axpy n=%d wrote past len(x)", impl.Name(), n)
			}
			copy(y, orig)
			Xpby(impl, x, 0.25, y)
			for i := range x {
				if w := x[i] + 0.25*orig[i]; math.Abs(float64(y[i]-w)) > 1e-6 {
					t.Fatalf("%s Xpby n=%d: y[%d] = %v, want %v", impl.Name(), n, i, y[i], w)
				}
			}
		}
	}
}

// TestGemmAllocs: a steady-state product allocates nothing, on either
// kernel set (the portable one keeps gonum from starting goroutines).
func TestGemmAllocs(t *testing.T) {
	m, n, k := 64, 1024, 576
	a := make([]float32, m*k)
	b := make([]float32, n*k)
	c := make([]float32, m*n)
	for _, impl := range []Kernels{pureGo{}, avx2{}} {
		if impl.Name() == "avx2" && !hasAVX2 {
			continue
		}
		impl.Gemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		allocs := testing.AllocsPerRun(5, func() {
			impl.Gemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
			impl.Gemm(false, false, m, k, n, 1, c, n, b, k, 1, a, k)
		})
		if allocs != 0 {
			t.Errorf("%s: steady-state Gemm allocates %v times a call", impl.Name(), allocs)
		}
	}
}
