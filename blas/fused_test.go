package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
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
			// Float64 oracle: T = W .* (P X^T), then Q = alpha*T X + damping*P.
			tm := make([]float64, r*n)
			for j := 0; j < r; j++ {
				for i := 0; i < n; i++ {
					var dot float64
					for e := 0; e < d; e++ {
						dot += float64(p[j*d+e]) * float64(x[i*d+e])
					}
					if weighted {
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
					want := 0.75*sum + 0.5*float64(p[j*d+c])
					if got := float64(q[j*d+c]); !(math.Abs(got-want) <= 1e-5*(mag+1)) {
						t.Fatalf("%s: Q[%d][%d] = %v, want %v", name, j, c, got, want)
					}
				}
			}
			// Steady state allocates nothing.
			if allocs := testing.AllocsPerRun(3, func() { (avx2{}).fuseFisher(&f) }); allocs != 0 {
				t.Errorf("%s: %v allocations a call", name, allocs)
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
