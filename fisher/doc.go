// Package fisher builds the row-wise Fisher operator of FROG without ever
// forming a D x D matrix:
//
//	Q = (Lhat .* (P X^T)) X + tau*P
//
// for a block P of R directions, with X the N x D patch matrix and Lhat the
// R x N matrix of trace-normalized scaled squares lam_j/(t_j+eps). It also
// computes the traces t_j = tr(F_j)/D from patch norms. The products run
// through package blas; the package knows nothing of conjugate gradients,
// but the Operator tells a solver its damping tau (Shift) and applies the
// Fisher part alone (ApplyUnshifted), which the conjugate gradients of
// package cg use to add tau*P themselves. Where there are far fewer
// patches than coordinates it lets the solver run wholly on coefficients
// over the patches (cg.PointsSpace; see blas.PointsGains), so that an
// iteration costs one product with the patches' Gram matrix and only the
// solution is expanded over X. Its Curvatures give CG's last iteration
// the one thing it needs, p_j.(F_j p_j), from the first product P X^T
// alone (cg.Curvature).
package fisher
