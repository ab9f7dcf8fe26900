//go:build opencl

package opencl

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/frogopt/frog/backend"
	"github.com/frogopt/frog/conv"
	"github.com/jgillich/go-opencl/cl"
)

// resnetShape is a distinct convolution of the CIFAR-10 ResNet-18
// (GUIDE.md), named as frogbench names it. (internal/resnet has the same
// table but imports the root package, which imports this one.)
type resnetShape struct {
	name                 string
	cin, cout, k, stride int
	in                   int
}

// geometry is the shape's convolution: 3x3 kernels are padded by 1.
func (s resnetShape) geometry() conv.Geometry {
	pad := s.k / 2
	return conv.Geometry{InChannels: s.cin, OutChannels: s.cout, InH: s.in, InW: s.in, KernelH: s.k, KernelW: s.k,
		StrideH: s.stride, StrideW: s.stride, PadH: pad, PadW: pad}
}

// benchSamples is the r of the ResNet-18 benchmarks: FROG_BENCH_R, else 16.
func benchSamples() int {
	if r, err := strconv.Atoi(os.Getenv("FROG_BENCH_R")); err == nil && r > 0 {
		return r
	}
	return 16
}

var resnetShapes = []resnetShape{
	{"stem", 3, 64, 3, 1, 32},
	{"l1.conv", 64, 64, 3, 1, 32},
	{"l2.conv_s2", 64, 128, 3, 2, 32},
	{"l2.sc", 64, 128, 1, 2, 32},
	{"l2.conv", 128, 128, 3, 1, 16},
	{"l3.conv_s2", 128, 256, 3, 2, 16},
	{"l3.sc", 128, 256, 1, 2, 16},
	{"l3.conv", 256, 256, 3, 1, 8},
	{"l4.conv_s2", 256, 512, 3, 2, 8},
	{"l4.sc", 256, 512, 1, 2, 8},
	{"l4.conv", 512, 512, 3, 1, 4},
}

// BenchmarkResNet18 times one layer's preconditioning (k = 4) per shape,
// at r = FROG_BENCH_R samples (default 16), reporting GFLOP/s of the CG
// products (k*4*N*D*R). "host" is Engine.Precondition with its copies of
// the subsample to the device and of the direction back; "device" is
// PreconditionDevice on tensors already there (what a GPU training stack
// pays).
func BenchmarkResNet18(b *testing.B) {
	r := benchSamples()
	e, err := NewEngine(Options{AllowCPU: true})
	if err != nil {
		b.Skipf("no OpenCL device: %v", err)
	}
	defer e.Close()
	b.Logf("device %s, tiles %v, r = %d", e.Device().Name(), e.Device().Tiles(), r)
	for _, s := range resnetShapes {
		c := layerCase{name: s.name, samples: r, iters: 4, g: s.geometry()}
		job := newJob(c, 1, 1)
		g := job.Geometry
		flops := float64(4*job.Iters) * float64(r*g.Locations()) * float64(job.RowLen()) * float64(job.Rows())
		report := func(b *testing.B) {
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportAllocs()
		}
		b.Run(fmt.Sprintf("host/%s", s.name), func(b *testing.B) {
			for b.Loop() {
				if err := e.Precondition(job); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		b.Run(fmt.Sprintf("device/%s", s.name), func(b *testing.B) {
			dj, free, err := deviceCopy(e, job)
			if err != nil {
				b.Fatal(err)
			}
			defer free()
			for b.Loop() {
				if err := e.PreconditionDevice(dj); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
}

// BenchmarkResNet18CPU is the same on backend.CPU, for the ratio.
func BenchmarkResNet18CPU(b *testing.B) {
	r := benchSamples()
	for _, s := range resnetShapes {
		c := layerCase{name: s.name, samples: r, iters: 4, g: s.geometry()}
		job := newJob(c, 1, 1)
		g := job.Geometry
		flops := float64(4*job.Iters) * float64(r*g.Locations()) * float64(job.RowLen()) * float64(job.Rows())
		b.Run(s.name, func(b *testing.B) {
			var cpu backend.CPU
			for b.Loop() {
				if err := cpu.Precondition(job); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// deviceCopy puts a host job's tensors into device buffers once.
func deviceCopy(e *Engine, job *backend.Job) (*DeviceJob, func(), error) {
	var mems []*cl.MemObject
	free := func() {
		for _, m := range mems {
			m.Release()
		}
	}
	buf := func(host []float32, upload bool) (Buffer, error) {
		m, err := e.Context().CreateEmptyBuffer(cl.MemReadWrite, 4*len(host))
		if err != nil {
			return Buffer{}, err
		}
		mems = append(mems, m)
		if upload {
			ev, err := e.Queue().EnqueueWriteBufferFloat32(m, true, 0, host, nil)
			if err != nil {
				return Buffer{}, err
			}
			ev.Release()
		}
		return Buffer{Mem: m}, nil
	}
	dj := &DeviceJob{Geometry: job.Geometry, JointBias: job.JointBias, Batch: job.Samples,
		LossScale: job.LossScale, Damping: job.Damping, Iters: job.Iters, Tolerance: job.Tolerance, DenomEps: job.DenomEps}
	var err error
	for _, t := range []struct {
		dst    *Buffer
		host   []float32
		upload bool
	}{{&dj.Acts, job.Acts, true}, {&dj.OutGrads, job.OutGrads, true}, {&dj.Grad, job.Grad, true}, {&dj.Dir, job.Dir, false}} {
		if *t.dst, err = buf(t.host, t.upload); err != nil {
			free()
			return nil, nil, err
		}
	}
	return dj, free, nil
}

// BenchmarkProfileResNet18 (run it once: -test.bench ProfileResNet18
// -test.benchtime 1x -test.v; FROG_BENCH_R samples, default 16) prints per
// ResNet-18 shape the device time of every kernel of one preconditioning
// with the blocking chosen by shape, and the products' time with each
// blocking forced: the table to tune Engine.plan and the kernels on a new
// device.
func BenchmarkProfileResNet18(b *testing.B) {
	r := benchSamples()
	d, err := OpenDevice(Options{AllowCPU: true})
	if err != nil {
		b.Skipf("no OpenCL device: %v", err)
	}
	e, err := d.newProfiledEngine()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	b.Logf("device %s, %d units, r = %d", d.Name(), d.units, r)
	for _, s := range resnetShapes {
		c := layerCase{name: s.name, samples: r, iters: 4, g: s.geometry()}
		job := newJob(c, 1, 1)
		dj, free, err := deviceCopy(e, job)
		if err != nil {
			b.Fatal(err)
		}
		measure := func(force, runs int) string {
			e.forceVariant = force
			defer func() { e.forceVariant = -1 }()
			if err := e.PreconditionDevice(dj); err != nil {
				b.Fatal(err)
			}
			if err := e.prof.collect(); err != nil {
				b.Fatal(err)
			}
			e.prof.reset()
			for range runs {
				if err := e.PreconditionDevice(dj); err != nil {
					b.Fatal(err)
				}
			}
			if err := e.prof.collect(); err != nil {
				b.Fatal(err)
			}
			out := fmt.Sprintf("plan pxt %+v tx %+v %s", e.used[0], e.used[1], e.prof.String(runs))
			e.prof.reset()
			return out
		}
		b.Logf("%s auto: %s", s.name, measure(-1, 5))
		for v := range d.variants {
			b.Logf("%s %v: %s", s.name, d.variants[v].tiles, measure(v, 3))
		}
		free()
	}
}
