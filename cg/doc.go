// Package cg solves many independent symmetric positive definite systems
// A_j z_j = b_j at once by conjugate gradients, one system per row of a
// row-major block, with every row keeping its own step sizes. The matrices
// are reached only through an Operator that applies all of them to a block
// of directions in one call, so that the expensive products are shared.
//
// An operator that is B + shift*I and says so (Shifted) is applied as B
// alone: the solver adds the shift in its row updates, which read p_j
// anyway, so that the operator's products need not read the directions a
// second time. One whose matrices are X^T diag(v_j) X (+ shift*I) for a
// shared X of fewer rows than columns (PointsSpace) is solved wholly on
// coefficients over b_j and the rows of X: one product with X X^T an
// iteration but the last, and one with X at the end. One that can give
// the curvatures p_j.(B_j p_j) alone (Curvature) runs the last iteration
// on them: it needs no more of the product, and forms no new residual.
//
// It runs a fixed number of iterations from z = 0 (the reference
// behaviour) or stops a row once its residual falls below a relative
// tolerance. The per-row scalars are float64, and each row is scaled by a
// power of two before the iteration (and the damping eps with it), which
// changes no rounding but keeps the float32 vectors and their products away
// from overflow and underflow.
package cg
