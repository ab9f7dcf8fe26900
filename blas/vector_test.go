package blas

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// normalizerRef is Normalizer as a plain loop over the values: 2^-e
// bringing the largest magnitude into [1, 2) (math.Frexp), or 1 for all
// zeros or a value that is not finite.
func normalizerRef(x []float32) float64 {
	var m float32
	for _, v := range x {
		if v < 0 {
			v = -v
		}
		if v > m || v != v {
			m = v
		}
	}
	if m == 0 || m != m || math.IsInf(float64(m), 0) {
		return 1
	}
	_, e := math.Frexp(float64(m)) // m = f * 2^e, f in [0.5, 1)
	return math.Ldexp(1, 1-e)
}

// TestNormalizer: the vector pass gives the plain loop's factor, for
// zeros, tiny and huge values, Inf and NaN, every length to 70.
func TestNormalizer(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	specials := []float32{0, 1e-45, 1e-38, 0.75, 1, 2, 3e38, float32(math.Inf(-1)), float32(math.NaN())}
	for n := 0; n <= 70; n++ {
		for trial := 0; trial < 6; trial++ {
			x := make([]float32, n)
			scale := float32(math.Ldexp(1, rng.IntN(60)-30))
			for i := range x {
				x[i] = (rng.Float32()*2 - 1) * scale
			}
			if trial > 0 && n > 0 {
				x[rng.IntN(n)] = specials[rng.IntN(len(specials))]
			}
			if trial == 5 {
				clear(x)
			}
			if got, want := Normalizer(x), normalizerRef(x); got != want {
				t.Fatalf("n=%d trial %d: %v, want %v (%v)", n, trial, got, want, x)
			}
		}
	}
}

// TestScaleTo: the same bits as the plain loop, in place too.
func TestScaleTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for n := 0; n <= 70; n++ {
		x := make([]float32, n)
		for i := range x {
			x[i] = rng.Float32()*2 - 1
		}
		for _, alpha := range []float32{0.25, -3, 1e-30} {
			want := make([]float32, n)
			for i, v := range x {
				want[i] = alpha * v
			}
			got := append([]float32(nil), x...)
			ScaleTo(alpha, got, got)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d alpha=%v: [%d] = %v, want %v", n, alpha, i, got[i], want[i])
				}
			}
		}
	}
}

// TestMaxAbsBitsParallel: on a vector long enough to be scanned on every
// core, MaxAbsBits gives the plain loop's bits whichever part holds the
// largest magnitude (or a NaN or an Inf), with GOMAXPROCS 1 to 3.
func TestMaxAbsBitsParallel(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	x := make([]float32, 5*maxAbsPiece+17)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ref := func() uint32 {
		var m uint32
		for _, v := range x {
			m = max(m, math.Float32bits(v)&0x7fffffff)
		}
		return m
	}
	for _, at := range []int{0, len(x) / 2, len(x) - 1} {
		for _, v := range []float32{-1e30, float32(math.Inf(1)), float32(math.NaN())} {
			old := x[at]
			x[at] = v
			for _, procs := range []int{1, 2, 3} {
				prev := runtime.GOMAXPROCS(procs)
				got := MaxAbsBits(x)
				runtime.GOMAXPROCS(prev)
				if want := ref(); got != want {
					t.Fatalf("%v at %d, GOMAXPROCS=%d: %#x, want %#x", v, at, procs, got, want)
				}
			}
			x[at] = old
		}
	}
}
