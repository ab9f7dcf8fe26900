package blas

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/frogopt/frog/internal/pow2"
)

// TestNormalizer: the vector pass gives pow2.Normalizer's factor, for
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
			if got, want := Normalizer(x), pow2.Normalizer(x); got != want {
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
