package blas

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// productShape is one ResNet-18 layer's Fisher products (R rows, N
// patches at r = 16, D patch length): T = P X^T (R x N, inner D) and
// Q = T X (R x D, inner N).
type productShape struct {
	layer   string
	r, n, d int
}

// operands returns P (R x D) and X (N x D) filled with small integers, and
// room for T (R x N) and Q (R x D).
func (s productShape) operands() (p, x, t, q []float32) {
	p, x = make([]float32, s.r*s.d), make([]float32, s.n*s.d)
	t, q = make([]float32, s.r*s.n), make([]float32, s.r*s.d)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	for i := range p {
		p[i] = float32(i%5) - 2
	}
	return p, x, t, q
}

// productShapes are the benchmarked layers.
var productShapes = []productShape{
	{"stem", 64, 16384, 27},
	{"l1.conv", 64, 16384, 576},
	{"l2.conv_s2", 128, 4096, 576},
	{"l2.conv", 128, 4096, 1152},
	{"l3.conv_s2", 256, 1024, 1152},
	{"l3.conv", 256, 1024, 2304},
	{"l4.conv", 512, 256, 4608},
}

func BenchmarkProducts(b *testing.B) {
	impls := []Kernels{pureGo{}}
	if hasAVX2 {
		impls = append(impls, avx2{})
	}
	for _, s := range productShapes {
		p, x, t, q := s.operands()
		flops := float64(2 * s.r * s.n * s.d)
		for _, impl := range impls {
			b.Run(fmt.Sprintf("PXt/%s/%s", s.layer, impl.Name()), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					impl.Gemm(false, true, s.r, s.n, s.d, 1, p, s.d, x, s.d, 0, t, s.n)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
			b.Run(fmt.Sprintf("TX/%s/%s", s.layer, impl.Name()), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					impl.Gemm(false, false, s.r, s.d, s.n, 1, t, s.n, x, s.d, 1e-3, q, s.d)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkFisher compares the fused Fisher product with the same product
// as two GEMMs (the unfused operator), both on the assembly kernels.
func BenchmarkFisher(b *testing.B) {
	if !hasAVX2 {
		b.Skip("no AVX2")
	}
	for _, s := range productShapes {
		p, x, t, q := s.operands()
		w := make([]float32, s.r*s.n)
		for i := range w {
			w[i] = 0.5
		}
		flops := float64(4 * s.r * s.n * s.d)
		f := FisherProduct{Rows: s.r, Len: s.d, Points: s.n, P: p, X: x, Weights: w, Q: q, Alpha: 1, Damping: 1e-3}
		// What a CG iteration runs: X (and the weights) packed once a
		// step by PackPoints, then the fused or the unfused product.
		b.Run(s.layer+"/packed", func(b *testing.B) {
			f.PackPoints(avx2{})
			defer f.ForgetPoints()
			b.ReportAllocs()
			for b.Loop() {
				(avx2{}).fuseFisher(&f)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		if (avx2{}).fuseFisher(&f) {
			b.Run(s.layer+"/fused", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					(avx2{}).fuseFisher(&f)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
		b.Run(s.layer+"/twoproducts", func(b *testing.B) {
			b.ReportAllocs()
			k := avx2{}
			for b.Loop() {
				k.Gemm(false, true, s.r, s.n, s.d, 1, p, s.d, x, s.d, 0, t, s.n)
				for i, v := range w {
					t[i] *= v
				}
				copy(q, p)
				k.Gemm(false, false, s.r, s.d, s.n, 1, t, s.n, x, s.d, 1e-3, q, s.d)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkFMAPeak is the arithmetic ceiling the GFLOP/s figures compare
// with: the assembly FMA loop of the micro-kernel in use (PeakLoop) on
// every core at once.
func BenchmarkFMAPeak(b *testing.B) {
	const rounds = 1 << 16
	loop, flops := PeakLoop()
	procs := runtime.GOMAXPROCS(0)
	for b.Loop() {
		var wg sync.WaitGroup
		for range procs {
			wg.Go(func() { loop(rounds) })
		}
		wg.Wait()
	}
	b.ReportMetric(float64(procs*rounds*flops)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
