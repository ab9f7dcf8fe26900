package backend

import (
	"runtime"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/cg"
	"github.com/frogopt/frog/conv"
	"github.com/frogopt/frog/fisher"
	"github.com/frogopt/frog/internal/buf"
)

// Job is one layer's row-wise preconditioning, already validated by the
// caller: shapes fit the geometry and every slice has its length.
type Job struct {
	// Geometry is the layer's convolution, normalized (a linear layer is a
	// 1x1 convolution of 1x1 inputs).
	Geometry conv.Geometry
	// JointBias appends a constant 1 to every patch: rows are [w_j, b_j].
	JointBias bool

	// Samples is r, the number of samples in Acts and OutGrads.
	Samples int
	// Acts holds the subsampled inputs, Samples x Cin x H x W.
	Acts []float32
	// OutGrads holds the subsampled output gradients, Samples x Cout x OutH x OutW.
	OutGrads []float32
	// Grad holds the effective gradient, Rows() x RowLen().
	Grad []float32

	// What the caller already knows of the data's magnitudes, so that
	// an engine need not read it again (blas.MaxAbsBits): ActsMaxBits of
	// Acts when ActsMaxKnown, and GradRowMaxBits[j] of row j of Grad
	// unless GradRowMaxBits is nil.
	ActsMaxBits    uint32
	ActsMaxKnown   bool
	GradRowMaxBits []uint32

	// LossScale is s in lam = s*y^2: B*B/r for a mean-reduced loss, 1/r for a sum.
	LossScale float64
	// Damping is tau.
	Damping float64
	// Iters is the number of CG iterations; Tolerance optionally stops rows early.
	Iters     int
	Tolerance float64
	// DenomEps is eps in t_j + eps, the CG denominators and c_j.
	DenomEps float64

	// Dir receives c_j z_j, Rows() x RowLen().
	Dir []float32
	// Trace, Residual, Scale and Breakdown receive per-row t_j, the last
	// CG residual norm (frog.RowDiagnostics.Residual: the last iteration
	// forms none), c_j, and whether CG broke down; Rows() values each.
	Trace, Residual, Scale []float64
	Breakdown              []bool
}

// Rows is R, the number of weight rows (output channels).
func (j *Job) Rows() int { return j.Geometry.OutChannels }

// RowLen is the length of a row: Cin/groups*kh*kw, plus one with a joint bias.
func (j *Job) RowLen() int {
	if j.JointBias {
		return j.Geometry.PatchLen() + 1
	}
	return j.Geometry.PatchLen()
}

// Engine carries out Jobs. An Engine value is used by one goroutine at a
// time; the optimizer keeps one per layer.
type Engine interface {
	// Name identifies the engine ("cpu", "opencl").
	Name() string
	// Precondition runs the job, writing its outputs. An error leaves the
	// outputs unspecified; the caller then changes no state.
	Precondition(job *Job) error
}

// CPU runs jobs on the host through package blas. Its workspace grows to
// the largest job it has seen and is reused, so steady-state calls do not
// allocate. The zero value is ready to use.
type CPU struct {
	// Kernels runs the dense products; nil means blas.Current().
	Kernels blas.Kernels

	// storePatches and alwaysImages, set by tests, store every patch even
	// where the products could read them in channel-last images
	// (channelLast), or read them there wherever they can; noWindows
	// forms a Gram matrix from the patches even where it could from the
	// pixels (windowPixels).
	storePatches, alwaysImages, noWindows bool

	patches []float32
	weights []float32
	norms   []float64
	op      fisher.Operator
	solver  cg.Solver
	unfold  unfold
	bufs    [maxParts]unfoldBuffers
	fill    fillWeights

	// The channel-last way (channelLast): the images and their
	// description, the pixels' norms, the permutation of the patch
	// coordinates and the permuted rows.
	hwc         channelLast
	images      []float32
	image       blas.ImageRows
	pix         [maxParts][]float64
	perm        []int
	gradP, dirP []float32
	permute     permuteRows

	// The pixels of a solve in the points' space (windowPixels).
	pixels  []float32
	windows blas.PixelWindows
	wpix    windowPixels
}

// Name returns "cpu", or "purego" when the engine runs on the portable
// kernels (blas.Portable), as the root package's backend of that name does.
func (c *CPU) Name() string {
	if c.Kernels != nil && c.Kernels.Name() == blas.Portable().Name() {
		return "purego"
	}
	return "cpu"
}

// Precondition runs the job one channel group at a time.
func (c *CPU) Precondition(job *Job) error {
	g := job.Geometry
	L := g.Locations()
	n := job.Samples * L
	d := job.RowLen()
	rg := g.GroupOutChannels()
	c.weights = buf.Grow(c.weights, rg*n)
	c.norms = buf.Grow(c.norms, n)
	norms := c.norms
	c.solver.Iters, c.solver.Tolerance, c.solver.Eps = job.Iters, job.Tolerance, job.DenomEps
	c.solver.Kernels = c.Kernels
	// CG applies the row normalization c_j = 1/sqrt(|z_j.e_j| + eps) in
	// its last pass over z (in the points' space, to z's coefficients,
	// before it expands them).
	c.solver.Normalize, c.solver.NormEps = true, job.DenomEps
	for grp := 0; grp < g.Groups; grp++ {
		k := c.Kernels
		if k == nil {
			k = blas.Current()
		}
		fromImages := !c.storePatches && canUseImages(g, k, rg, d, job.JointBias) && (c.alwaysImages || prefersImages(g, d))
		var x []float32
		if !fromImages {
			c.patches = buf.Grow(c.patches, n*d)
			x = c.patches[:n*d]
		}
		// The power-of-two scale from the activations, then the patches
		// (im2col, the squared norms and the scaling, a few patch rows at
		// a time) or the channel-last images, each pass split across the
		// cores by samples.
		c.unfold = unfold{
			geom: g, group: grp, samples: job.Samples, rowLen: d, jointBias: job.JointBias,
			acts: job.Acts, patches: x, norms: norms, kernels: k, scan: true, bufs: &c.bufs,
			bypass: 4*len(x) > bypassBytes,
		}
		parts := min(job.Samples, maxParts, runtime.GOMAXPROCS(0))
		var ps float64
		if job.ActsMaxKnown && g.Groups == 1 {
			// The group's activations are all of them: no scan.
			ps = c.unfold.normalizerOf(job.ActsMaxBits)
		} else {
			blas.Parallel(&c.unfold, parts)
			ps = c.unfold.normalizer(parts)
		}
		if fromImages {
			c.images = buf.Grow(c.images, job.Samples*g.HWCLen())
			c.hwc = channelLast{
				geom: g, group: grp, samples: job.Samples, acts: job.Acts, kernels: k,
				scale: float32(ps), images: c.images, norms: norms, pix: &c.pix,
			}
			blas.Parallel(&c.hwc, parts)
			c.hwc = channelLast{}
		} else {
			c.unfold.scan, c.unfold.scale = false, float32(ps)
			blas.Parallel(&c.unfold, parts)
		}
		r0 := grp * rg
		rw := fisher.RowWeights{
			OutGrads:     job.OutGrads,
			SampleStride: g.OutputLen(),
			RowOffset:    r0,
			Rows:         rg,
			Samples:      job.Samples,
			Locations:    L,
		}
		c.fill = fillWeights{rw: rw, weights: c.weights, trace: job.Trace[r0 : r0+rg], norms: norms,
			lossScale: job.LossScale, d: d, eps: job.DenomEps, scale: ps}
		blas.Parallel(&c.fill, min(rg, maxParts, runtime.GOMAXPROCS(0), max(1, rg*n>>15)))
		c.fill = fillWeights{}
		// Assign field by field: the operator keeps its product workspace.
		c.op.Rows, c.op.Len, c.op.Points = rg, d, n
		c.op.Patches, c.op.Image, c.op.Weights = x, nil, c.weights[:rg*n]
		c.op.Windows = nil
		if fromImages {
			c.image = imageRows(g, c.images[:job.Samples*g.HWCLen()])
			c.op.Image = &c.image
		}
		if _, _, points := c.op.PointsSolve(job.Iters); points && !job.JointBias && !c.noWindows && sameSizeWindows(g) {
			// CG will run in the points' space: their Gram matrix from
			// the pixels', which the patches repeat.
			hw := g.InH * g.InW
			c.pixels = buf.Grow(c.pixels, job.Samples*hw*g.GroupInChannels())
			c.wpix = windowPixels{geom: g, group: grp, samples: job.Samples, acts: job.Acts, pixels: c.pixels, scale: float32(ps)}
			blas.Parallel(&c.wpix, parts)
			c.wpix = windowPixels{}
			c.windows = blas.PixelWindows{
				Pixels: c.pixels, Samples: job.Samples, Height: g.InH, Width: g.InW,
				Channels: g.GroupInChannels(), KernelH: g.KernelH, KernelW: g.KernelW,
			}
			c.op.Windows = &c.windows
		}
		c.op.Damping, c.op.Kernels = float32(job.Damping), c.Kernels
		// The patches stay fixed through the CG iterations: copy them once
		// into the layout the kernels read.
		c.op.PackPatches()
		grad := job.Grad[r0*d : (r0+rg)*d]
		dir := job.Dir[r0*d : (r0+rg)*d]
		if fromImages {
			// Rows in the patches' order (i, j, c) for the solve.
			c.perm = buf.Grow(c.perm, d)
			g.HWCOrder(c.perm)
			c.gradP, c.dirP = buf.Grow(c.gradP, rg*d), buf.Grow(c.dirP, rg*d)
			c.permute = permuteRows{src: grad, dst: c.gradP, perm: c.perm, d: d}
			c.permute.run()
			grad, dir = c.gradP, c.dirP
		}
		c.solver.BMaxBits = nil
		if job.GradRowMaxBits != nil {
			c.solver.BMaxBits = job.GradRowMaxBits[r0 : r0+rg]
		}
		res := c.solver.Solve(&c.op, grad, dir, rg, d)
		c.solver.BMaxBits = nil
		copy(job.Residual[r0:r0+rg], res.Residual)
		copy(job.Breakdown[r0:r0+rg], res.Breakdown)
		copy(job.Scale[r0:r0+rg], res.Norm)
		if fromImages {
			c.permute = permuteRows{src: dir, dst: job.Dir[r0*d : (r0+rg)*d], perm: c.perm, d: d, back: true}
			c.permute.run()
			c.permute = permuteRows{}
			c.op.Image, c.image = nil, blas.ImageRows{}
		}
	}
	return nil
}
