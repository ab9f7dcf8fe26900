package cg

import (
	"math"
	"slices"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/internal/buf"
)

// Operator applies every row's matrix to its row of a block: q_j = A_j p_j
// for all rows j at once. p and q hold Rows x Len values, row-major.
type Operator interface {
	Apply(q, p []float32)
}

// Shifted is implemented by operators A = B + Shift()*I that can apply B
// alone (ApplyUnshifted). CG then adds the shift in its update of each
// row, which reads p_j there anyway, so that the operator's products need
// not read P a second time to start Q from Shift()*P:
//
//	p.q = p.(B p) + Shift()*(p.p),  r -= alpha*(B p) + alpha*Shift()*p.
type Shifted interface {
	Shift() float32
	ApplyUnshifted(q, p []float32)
}

// Curvature is implemented by shifted operators that can give every row's
// curvature p_j.(B_j p_j), B the unshifted part, for less than the cost
// of applying B. CG's last iteration needs nothing else of the product:
// it moves z along p, and the new residual and direction it would form
// are never used. With B_j = X^T diag(v_j) X the curvature is the
// weighted sum of squares of X p_j, the first of the two products with X.
type Curvature interface {
	Shifted
	// Curvatures writes pq[j] = p_j.(B_j p_j) for every row j of p.
	Curvatures(pq []float64, p []float32)
}

// Solver holds the settings and the reusable workspace of batched CG for
// blocks of Rows rows of length Len. The zero value of the settings runs
// no iteration; a Solver is not safe for concurrent use.
type Solver struct {
	// Iters is the number of iterations.
	Iters int
	// Tolerance, when positive, freezes a row once |res_j| <= Tolerance*|b_j|.
	Tolerance float64
	// Eps is added to the denominators p.q and rho of alpha and beta.
	Eps float64
	// Kernels runs the vector kernels; nil means blas.Current().
	Kernels blas.Kernels
	// KeepScaled, when set, leaves every z_j multiplied by the power of
	// two Result.Scale[j] that CG ran b_j at, for a caller that scales z
	// anyway and so saves a pass over it.
	KeepScaled bool
	// BMaxBits, when not nil, holds blas.MaxAbsBits of each row of b,
	// which the caller has found already: Solve then does not read b to
	// find the rows' scales.
	BMaxBits []uint32
	// Normalize, when set, returns every z_j times c_j = 1/sqrt(|z_j.b_j|
	// + NormEps), z_j the solution in the scale of b (FROG's row
	// normalization), with c_j in Result.Norm; KeepScaled is then
	// ignored. It costs no pass of its own: the plain solve does it in its
	// last pass over z, the points' space on the coefficients before it
	// expands z (z_j.b_j from them, as |r_j|^2).
	Normalize bool
	NormEps   float64

	res, p, q  []float32
	rho, scale []float64
	pq         []float64 // the last iteration's curvatures (see Curvature)
	shift      float32   // the shift CG adds itself (see Shifted), or 0
	done       []bool
	update     rowUpdate
	// points is solvePoints' (see PointsSpace).
	points pointsState
}

// Phases of a rowUpdate.
const (
	startRows  = iota // scale b into r and p (or coefficients), rho, clear z
	updateRows        // one iteration's update after the product
	lastRows          // the last iteration's z update, after the curvatures
	finishRows        // residual norms, z back to the scale of b
	// solvePoints' phases, n the number of points:
	pointsWeigh  // T and S of the rows still running
	pointsUpdate // one iteration's update after W = S G
	pointsFinish // residual norms, z's coefficients in b's scale
	expandRows   // z += c_z r0 after the product (n the row length)
)

// rowUpdate is one phase of the solve on every row, in parts of whole
// rows: rows are independent, so the parts give the values one loop
// would.
type rowUpdate struct {
	s     *Solver
	k     blas.Kernels
	phase int
	it, n int
	rows  int
	b, z  []float32
	// points marks startRows for solvePoints: the rows' coefficients
	// are set instead of p.
	points bool
}

// runPhase runs u on every row, split across the cores by whole rows.
// The update lives in the Solver: handed to the helpers, a local one would
// escape to the heap on every call.
func (s *Solver) runPhase(u rowUpdate) {
	s.update = u
	blas.Parallel(&s.update, max(1, u.rows*u.n>>15))
	s.update = rowUpdate{}
}

// phases holds each phase's pass over a part's rows.
var phases = [...]func(u *rowUpdate, part, parts int){
	startRows:    (*rowUpdate).start,
	updateRows:   (*rowUpdate).update,
	lastRows:     (*rowUpdate).last,
	finishRows:   (*rowUpdate).finish,
	pointsWeigh:  (*rowUpdate).pointsWeigh,
	pointsUpdate: (*rowUpdate).pointsUpdate,
	pointsFinish: (*rowUpdate).pointsFinish,
	expandRows:   (*rowUpdate).expand,
}

func (u *rowUpdate) RunPart(part, parts int) { phases[u.phase](u, part, parts) }

func (u *rowUpdate) start(part, parts int) {
	s, k, n, b := u.s, u.k, u.n, u.b
	rows := u.rows
	done, broke := s.done[:rows], s.done[rows:2*rows]
	rho, eps, rho0 := s.rho[:rows], s.rho[rows:2*rows], s.rho[2*rows:3*rows]
	for j := rows * part / parts; j < rows*(part+1)/parts; j++ {
		bj := b[j*n : (j+1)*n]
		var sc float64
		if s.BMaxBits != nil {
			sc = blas.NormalizerOfBits(s.BMaxBits[j])
		} else {
			sc = blas.Normalizer(bj)
		}
		s.scale[j] = sc
		eps[j] = s.Eps * sc * sc
		rj := s.res[j*n : (j+1)*n]
		blas.ScaleTo(float32(sc), bj, rj)
		if u.points {
			s.points.startRow(j)
		} else {
			copy(s.p[j*n:(j+1)*n], rj)
		}
		if s.Iters <= 0 {
			// Otherwise the first iteration writes z_j (alpha p_j, b_j
			// or 0) without reading it: no pass clearing it first.
			clear(u.z[j*n : (j+1)*n])
		}
		rho[j] = k.Dot(rj, rj)
		rho0[j] = rho[j]
		done[j] = false
		broke[j] = false
	}
}

func (u *rowUpdate) finish(part, parts int) {
	s, n, rows := u.s, u.n, u.rows
	rho, resid, norm := s.rho[:rows], s.rho[3*rows:4*rows], s.rho[4*rows:5*rows]
	for j := rows * part / parts; j < rows*(part+1)/parts; j++ {
		sc := s.scale[j]
		resid[j] = math.Sqrt(rho[j]) / sc
		zj := u.z[j*n : (j+1)*n]
		switch {
		case s.Normalize:
			// z_j is sc times the solution: z.b/sc, and c_j/sc.
			c := 1 / math.Sqrt(math.Abs(u.k.Dot(zj, u.b[j*n:(j+1)*n])/sc+s.NormEps))
			norm[j] = c
			blas.ScaleTo64(c/sc, zj, zj)
		case sc != 1 && !s.KeepScaled:
			blas.ScaleTo(float32(1/sc), zj, zj)
		}
	}
}

// expand adds r0_j's part of z_j, c_z r0_j, to the product's b_z X.
func (u *rowUpdate) expand(part, parts int) {
	s, n := u.s, u.n
	for j := u.rows * part / parts; j < u.rows*(part+1)/parts; j++ {
		if cz := s.points.cz[j]; cz != 0 {
			u.k.Axpy(float32(cz), s.res[j*n:(j+1)*n], u.z[j*n:(j+1)*n])
		}
	}
}

// settled marks row j done, and reports true, when its residual is
// exactly zero: the row has converged, and alpha = 0 would change nothing
// (p.q may be 0 too, which is no breakdown).
func (u *rowUpdate) settled(j int) bool {
	s, n := u.s, u.n
	if s.rho[j] != 0 {
		return false
	}
	s.done[j] = true
	if u.it == 0 {
		clear(u.z[j*n : (j+1)*n])
	}
	return true
}

// alpha returns row j's step rho_j/(pq + eps_j) for its curvature pq =
// p_j.(A_j p_j). When pq + eps_j is not positive or not finite it marks
// the row done and broken down, and reports false: z_j keeps its last
// iterate, or is b_j (scaled) at the first iteration, steepest descent.
func (u *rowUpdate) alpha(j int, pq float64) (float64, bool) {
	s, n, rows := u.s, u.n, u.rows
	den := pq + s.rho[rows+j]
	if !(den > 0) || math.IsInf(den, 0) {
		s.done[j], s.done[rows+j] = true, true
		if u.it == 0 {
			copy(u.z[j*n:(j+1)*n], s.res[j*n:(j+1)*n])
		}
		return 0, false
	}
	return s.rho[j] / den, true
}

func (u *rowUpdate) update(part, parts int) {
	s, k, n := u.s, u.k, u.n
	rows := u.rows
	done := s.done[:rows]
	rho, eps, rho0 := s.rho[:rows], s.rho[rows:2*rows], s.rho[2*rows:3*rows]
	res, p, q, z := s.res, s.p, s.q, u.z
	for j := rows * part / parts; j < rows*(part+1)/parts; j++ {
		if done[j] || u.settled(j) {
			continue
		}
		pj, qj := p[j*n:(j+1)*n], q[j*n:(j+1)*n]
		rj, zj := res[j*n:(j+1)*n], z[j*n:(j+1)*n]
		var pq float64
		if s.shift != 0 {
			var pp float64
			pq, pp = blas.DotPair(k, pj, qj)
			pq += float64(s.shift) * pp
		} else {
			pq = k.Dot(pj, qj)
		}
		alpha, ok := u.alpha(j, pq)
		if !ok {
			continue
		}
		a, as := float32(-alpha), float32(-alpha*float64(s.shift))
		var rhoNew float64
		if s.shift != 0 && u.it > 0 {
			// z_j += alpha p_j and r_j -= alpha (q_j + shift p_j) in one
			// pass over the four vectors, which streams z_j and r_j
			// together: the values of the Axpy and AxpyPairDot below.
			rhoNew = blas.UpdateZR(k, float32(alpha), pj, a, qj, as, zj, rj)
		} else {
			u.moveZ(float32(alpha), pj, zj)
			if s.shift != 0 {
				rhoNew = blas.AxpyPairDot(k, a, qj, as, pj, rj)
			} else {
				k.Axpy(a, qj, rj)
				rhoNew = k.Dot(rj, rj)
			}
		}
		if u.it+1 < s.Iters {
			// The last iteration's direction would never be used.
			beta := rhoNew / (rho[j] + eps[j])
			blas.Xpby(k, rj, float32(beta), pj)
		}
		rho[j] = rhoNew
		if s.Tolerance > 0 && rhoNew <= s.Tolerance*s.Tolerance*rho0[j] {
			done[j] = true
		}
	}
}

// last is the last iteration's update on an operator with curvatures
// (see Curvature): z_j += alpha p_j, alpha from s.pq. It forms no new
// residual, so rho_j, and the residual Solve reports, stay those of the
// previous iteration.
func (u *rowUpdate) last(part, parts int) {
	s, k, n := u.s, u.k, u.n
	for j := u.rows * part / parts; j < u.rows*(part+1)/parts; j++ {
		if s.done[j] || u.settled(j) {
			continue
		}
		pj, zj := s.p[j*n:(j+1)*n], u.z[j*n:(j+1)*n]
		pq := s.pq[j]
		if s.shift != 0 {
			pq += float64(s.shift) * k.Dot(pj, pj)
		}
		alpha, ok := u.alpha(j, pq)
		if !ok {
			continue
		}
		u.moveZ(float32(alpha), pj, zj)
	}
}

// moveZ adds alpha p_j to z_j. At the first iteration z_j is 0 + alpha
// p_j: the same values as the axpy (up to the sign of a zero), without
// reading z_j.
func (u *rowUpdate) moveZ(alpha float32, pj, zj []float32) {
	if u.it == 0 {
		blas.ScaleTo(alpha, pj, zj)
	} else {
		u.k.Axpy(alpha, pj, zj)
	}
}

// Result reports per-row facts of a solve. Its slices are owned by the
// solver and overwritten by the next solve.
type Result struct {
	// Residual is |b_j - A_j z_j| as tracked by the recurrence, in the
	// scale of b, for the last iterate of row j whose residual was
	// formed. (In the points' space, PointsSpace, it comes from the
	// coefficients: accurate to rounding relative to |b_j|, not |r_j|.)
	// With a Curvature operator, and in the points' space, the last of
	// Iters iterations forms no residual: a row that ran them all reports
	// the residual of the iterate before the last (|b_j| when Iters is 1).
	Residual []float64
	// Breakdown marks rows whose iteration stopped because p.q + eps was
	// not positive or not finite. Such a row keeps the last finite iterate,
	// or b_j itself when the breakdown came at the first iteration.
	Breakdown []bool
	// Breakdowns counts the marked rows.
	Breakdowns int
	// Iterations is the number of iterations run.
	Iterations int
	// Scale is the power of two each row of b was multiplied by; with
	// Solver.KeepScaled, z_j holds Scale[j] times the solution.
	Scale []float64
	// Norm holds c_j with Solver.Normalize.
	Norm []float64
}

// Solve runs batched CG on rows x n blocks: z_j ~= A_j^-1 b_j for every row,
// written to z. It returns per-row residuals and breakdowns.
func (s *Solver) Solve(op Operator, b, z []float32, rows, n int) Result {
	total := rows * n
	k := s.Kernels
	if k == nil {
		k = blas.Current()
	}
	s.res = buf.Grow(s.res, total)
	s.rho = buf.Grow(s.rho, 5*rows)
	s.scale = buf.Grow(s.scale, rows)
	s.done = buf.Grow(s.done, 2*rows)
	z = z[:total]
	sh, _ := op.(Shifted)
	s.shift = 0
	if sh != nil {
		s.shift = sh.Shift()
	}
	if ps, ok := op.(PointsSpace); ok && s.Iters > 0 {
		if points, ld, ok := ps.PointsSolve(s.Iters); ok {
			return s.solvePoints(ps, k, b, z, rows, n, points, ld)
		}
	}
	// p and q only here: the points' space keeps coefficients instead.
	s.p, s.q = buf.Grow(s.p, total), buf.Grow(s.q, total)
	p, q := s.p, s.q
	s.runPhase(rowUpdate{s: s, k: k, phase: startRows, n: n, rows: rows, b: b, z: z})
	cv, _ := op.(Curvature)
	iterations := s.iterate(rows, func(it int) {
		if cv != nil && it+1 == s.Iters {
			s.pq = buf.Grow(s.pq, rows)
			cv.Curvatures(s.pq, p)
			s.runPhase(rowUpdate{s: s, k: k, phase: lastRows, it: it, n: n, rows: rows, z: z})
			return
		}
		if s.shift != 0 {
			sh.ApplyUnshifted(q, p)
		} else {
			op.Apply(q, p)
		}
		// Rows are independent: their updates split across the cores
		// give the same values as one loop.
		s.runPhase(rowUpdate{s: s, k: k, phase: updateRows, it: it, n: n, rows: rows, z: z})
	})
	s.runPhase(rowUpdate{s: s, k: k, phase: finishRows, n: n, rows: rows, b: b, z: z})
	return s.result(rows, iterations)
}

// iterate calls step for each iteration, at most Iters, while some row
// is still running, and returns how many it ran.
func (s *Solver) iterate(rows int, step func(it int)) int {
	it := 0
	for ; it < s.Iters && slices.Contains(s.done[:rows], false); it++ {
		step(it)
	}
	return it
}

// result reports the per-row facts of a solve that ran iterations.
func (s *Solver) result(rows, iterations int) Result {
	r := Result{
		Residual: s.rho[3*rows : 4*rows], Breakdown: s.done[rows : 2*rows],
		Iterations: iterations, Scale: s.scale[:rows],
	}
	if s.Normalize {
		r.Norm = s.rho[4*rows : 5*rows]
	}
	for _, b := range r.Breakdown {
		if b {
			r.Breakdowns++
		}
	}
	return r
}
