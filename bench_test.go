package frog_test

import (
	"testing"

	"github.com/frogopt/frog"
	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/internal/resnet"
)

// BenchmarkPreconditionRows runs the row-wise preconditioning of every
// distinct ResNet-18 convolution (r = 16, k = 4) on each CPU backend,
// reporting GFLOP/s (the nominal 4*N*D*R flops an iteration), where CG
// runs on the patches work-GFLOP/s (the flops its products run: the last
// iteration runs one product, see cmd/frogbench) and allocations; steady
// state allocates nothing. cmd/frogbench gives the same figures as a
// fraction of the FMA peak measured in the same run.
func BenchmarkPreconditionRows(b *testing.B) {
	const r, iters = 16, 4
	for _, name := range []string{frog.BackendCPU, frog.BackendPureGo} {
		p, err := frog.NewPreconditioner(name)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range resnet.Convs {
			b.Run(name+"/"+c.Name, func(b *testing.B) {
				in, dir := c.Input(r, iters)
				var diag frog.RowDiagnostics
				if err := p.Precondition(in, dir, &diag); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := p.Precondition(in, dir, &diag); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(c.Flops(r, iters)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				if !blas.PointsGains(c.Out, c.RowLen(), c.Points(r), iters) {
					b.ReportMetric(c.WorkFlops(r, iters)*float64(b.N)/b.Elapsed().Seconds()/1e9, "work-GFLOP/s")
				}
			})
		}
		p.Close()
	}
}
