package cg

import (
	"math"

	"github.com/frogopt/frog/blas"
	"github.com/frogopt/frog/internal/buf"
)

// PointsSpace is implemented by shifted operators whose unshifted part is
// B_j = X^T diag(v_j) X for every row j, one matrix X of a few rows (the
// points) and many columns shared by all rows. Every vector CG forms then
// lies in the span of the right-hand side b_j and the rows of X, and the
// solver can run wholly on coefficients over them (solvePoints): p_j =
// c_j r0_j + beta_j X, with r0_j the scaled b_j. It needs X p_j, which
// follows from the Gram matrix G = X X^T (X p_j = c_j U0_j + beta_j G,
// U0_j = X r0_j), and B_j p_j = s_j X with s_j = v_j .* (X p_j): one
// product with G (rows x points x points) an iteration but the last,
// which needs only the curvatures p_j.(B_j p_j) = t_j.s_j (as Solve's
// last iteration with a Curvature operator, it forms no new residual),
// and no product with X but the last, which expands z. Where there are
// far fewer points than columns that is a fraction of the two products
// with X that applying B_j takes.
type PointsSpace interface {
	Shifted
	// PointsSolve reports whether a solve of iters iterations gains by
	// running in the points' space, and if so the number of points and
	// the row stride ld (at least points) of the rows x points blocks
	// the methods below read and write.
	PointsSolve(iters int) (points, ld int, ok bool)
	// StartPoints writes U = R X^T for the rows R of r (rows x Len) and
	// prepares what TimesGram needs.
	StartPoints(u, r []float32)
	// Weigh writes s_j = v_j .* t_j for rows j0..j1.
	Weigh(s, t []float32, j0, j1 int)
	// TimesGram writes W = S G.
	TimesGram(w, s []float32)
	// Expand writes Z = C X (rows x Len).
	Expand(z, c []float32)
}

// pointsState is solvePoints' workspace: rows x ld blocks, and per-row
// coefficients of r0_j in r_j, p_j and z_j.
type pointsState struct {
	u0, t, s, w        []float32 // U0 = R0 X^T, T = P X^T, S = v .* T, W = S G
	br, vr, bp, vp, bz []float32 // beta of r, p and z over the rows of X; V = beta G
	cr, cp, cz         []float64
	points, ld         int
	op                 PointsSpace
}

// startRow sets row j's coefficients to those of r = p = r0 and z = 0.
func (ps *pointsState) startRow(j int) {
	row := j * ps.ld
	for _, v := range [][]float32{ps.br, ps.vr, ps.bp, ps.vp, ps.bz} {
		clear(v[row : row+ps.ld])
	}
	ps.cr[j], ps.cp[j], ps.cz[j] = 1, 1, 0
}

// pointsWeigh writes T = c_p U0 + V_p (U0 itself at the first
// iteration) and S for the rows that are still running.
func (u *rowUpdate) pointsWeigh(part, parts int) {
	j0, j1 := u.rows*part/parts, u.rows*(part+1)/parts
	s, ps := u.s, &u.s.points
	done := s.done[:u.rows]
	n, ld := ps.points, ps.ld
	for j := j0; j < j1; j++ {
		if done[j] {
			continue
		}
		o := j * ld
		t := ps.t[o : o+n]
		if u.it == 0 {
			copy(t, ps.u0[o:o+n])
		} else {
			blas.ScaleTo64(ps.cp[j], ps.u0[o:o+n], t)
			u.k.Axpy(1, ps.vp[o:o+n], t)
		}
		ps.op.Weigh(ps.s, ps.t, j, j+1)
	}
}

// pointsUpdate is rowUpdate.update on the coefficients: with p_j =
// c_p r0_j + b_p X and |r0_j|^2 = rho0_j,
//
//	p.(B p) = T.S,  |p|^2 = c_p^2 rho0 + 2 c_p b_p.U0 + b_p.V_p,
//	z += a p:  c_z += a c_p,  b_z += a b_p,
//	r -= a (B p + shift p):  c_r -= a shift c_p,  b_r -= a (S + shift b_p),
//	                         V_r -= a (W + shift V_p),
//	|r|^2 = c_r^2 rho0 + 2 c_r b_r.U0 + b_r.V_r,
//	p = r + beta p:  on c, b and V alike.
//
// |r|^2 is a sum of terms that cancel as r shrinks, and may come out
// slightly negative: it is then taken as 0 (the row has converged to the
// rounding of its coefficients).
func (u *rowUpdate) pointsUpdate(part, parts int) {
	j0, j1 := u.rows*part/parts, u.rows*(part+1)/parts
	s, ps, k := u.s, &u.s.points, u.k
	rows := u.rows
	done, broke := s.done[:rows], s.done[rows:2*rows]
	rho, eps, rho0 := s.rho[:rows], s.rho[rows:2*rows], s.rho[2*rows:3*rows]
	n, ld := ps.points, ps.ld
	shift := float64(s.shift)
	for j := j0; j < j1; j++ {
		if done[j] {
			continue
		}
		if rho[j] == 0 {
			done[j] = true // z_j stays 0 at the first iteration
			continue
		}
		o := j * ld
		u0, t, sj, w := ps.u0[o:o+n], ps.t[o:o+n], ps.s[o:o+n], ps.w[o:o+n]
		br, vr, bp, vp, bz := ps.br[o:o+n], ps.vr[o:o+n], ps.bp[o:o+n], ps.vp[o:o+n], ps.bz[o:o+n]
		cp := ps.cp[j]
		pq := k.Dot(t, sj)
		if shift != 0 {
			pp := cp*cp*rho0[j] + 2*cp*k.Dot(bp, u0) + k.Dot(bp, vp)
			pq += shift * pp
		}
		den := pq + eps[j]
		if !(den > 0) || math.IsInf(den, 0) {
			done[j], broke[j] = true, true
			if u.it == 0 {
				ps.cz[j] = 1 // steepest descent: z = b (scaled)
			}
			continue
		}
		alpha := rho[j] / den
		a, as := float32(alpha), float32(alpha*shift)
		ps.cz[j] += alpha * cp
		k.Axpy(a, bp, bz)
		if u.it+1 == s.Iters {
			// The last iteration forms no new residual (see Curvature):
			// rho_j stays the previous iteration's, and TimesGram did
			// not write W.
			continue
		}
		ps.cr[j] -= alpha * shift * cp
		k.Axpy(-a, sj, br)
		k.Axpy(-a, w, vr)
		if shift != 0 {
			k.Axpy(-as, bp, br)
			k.Axpy(-as, vp, vr)
		}
		cr := ps.cr[j]
		rhoNew := max(0, cr*cr*rho0[j]+2*cr*k.Dot(br, u0)+k.Dot(br, vr))
		if u.it+1 < s.Iters {
			beta := rhoNew / (rho[j] + eps[j])
			b := float32(beta)
			ps.cp[j] = cr + beta*cp
			blas.Xpby(k, br, b, bp)
			blas.Xpby(k, vr, b, vp)
		}
		rho[j] = rhoNew
		if s.Tolerance > 0 && rhoNew <= s.Tolerance*s.Tolerance*rho0[j] {
			done[j] = true
		}
	}
}

// pointsFinish writes the residual norms, and brings z's coefficients to
// the scale of b unless the caller keeps z scaled (dividing by the power
// of two is exact), or with Normalize to those of c_j times the solution:
// with z = c_z r0 + b_z X (r0 = sc b), z.b = (c_z rho0 + b_z.U0)/sc.
func (u *rowUpdate) pointsFinish(part, parts int) {
	j0, j1 := u.rows*part/parts, u.rows*(part+1)/parts
	s, ps := u.s, &u.s.points
	rows := u.rows
	rho, rho0 := s.rho[:rows], s.rho[2*rows:3*rows]
	resid, norm := s.rho[3*rows:4*rows], s.rho[4*rows:5*rows]
	n, ld := ps.points, ps.ld
	for j := j0; j < j1; j++ {
		sc := s.scale[j]
		resid[j] = math.Sqrt(rho[j]) / sc
		bz := ps.bz[j*ld : j*ld+n]
		f := 1.0
		switch {
		case s.Normalize:
			zb := (ps.cz[j]*rho0[j] + u.k.Dot(bz, ps.u0[j*ld:j*ld+n])) / sc
			c := 1 / math.Sqrt(math.Abs(zb/sc)+s.NormEps)
			norm[j] = c
			f = c / sc
		case !s.KeepScaled:
			f = 1 / sc
		}
		if f != 1 {
			ps.cz[j] *= f
			blas.ScaleTo64(f, bz, bz)
		}
	}
}

// solvePoints is Solve on the coefficients over r0_j and the rows of X
// (see PointsSpace). It runs the same iteration as Solve, with the same
// per-row scalars, stops and breakdowns; only the rounding differs.
func (s *Solver) solvePoints(op PointsSpace, k blas.Kernels, b, z []float32, rows, d, points, ld int) Result {
	ps := &s.points
	ps.op, ps.points, ps.ld = op, points, ld
	size := rows * ld
	for _, v := range []*[]float32{&ps.u0, &ps.t, &ps.s, &ps.w, &ps.br, &ps.vr, &ps.bp, &ps.vp, &ps.bz} {
		*v = buf.Grow(*v, size)
	}
	ps.cr, ps.cp, ps.cz = buf.Grow(ps.cr, rows), buf.Grow(ps.cp, rows), buf.Grow(ps.cz, rows)
	s.runPhase(rowUpdate{s: s, k: k, phase: startRows, n: d, rows: rows, b: b, z: z, points: true})
	op.StartPoints(ps.u0, s.res[:rows*d])
	iterations := s.iterate(rows, func(it int) {
		s.runPhase(rowUpdate{s: s, k: k, phase: pointsWeigh, it: it, n: points, rows: rows})
		if it+1 < s.Iters {
			// Only the new residual needs W: the last iteration's
			// curvatures are T.S.
			op.TimesGram(ps.w, ps.s)
		}
		s.runPhase(rowUpdate{s: s, k: k, phase: pointsUpdate, it: it, n: points, rows: rows})
	})
	s.runPhase(rowUpdate{s: s, k: k, phase: pointsFinish, n: points, rows: rows})
	// z = c_z r0 + b_z X: the product, then r0's part row by row (a
	// separate pass: starting the product's blocks from c_z r0 instead
	// took 4-7 % more time on l4.conv_s2 and l4.conv).
	op.Expand(z, ps.bz)
	s.runPhase(rowUpdate{s: s, k: k, phase: expandRows, n: d, rows: rows, z: z})
	return s.result(rows, iterations)
}
