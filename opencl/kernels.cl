// FROG on an OpenCL device: one layer's row-wise preconditioning (FROG.md
// steps 1-3, 5 and 6), every group of a grouped convolution at once.
//
// Compile-time parameters (build options):
//   TM, TN, TK  the tile of the two products: TM rows (weight rows) by TN
//               columns, TK deep in the contraction
//   WM, WN      the register block of one work-item (TM % WM == TN % WN == 0)
//   RL          the work-group size of the per-row kernels (a power of two)
//
// Layouts (all row-major; g is the channel group, j a global weight row):
//   X   [G][N][d]     scaled patches ps_g * u(n,l), N = r*L
//   Wt  [R][N]        Lhat(j,i) / ps_g^2 (rows of a group are contiguous)
//   T   [R][N]        Wt .* (P X^T)
//   P, Res, Z  [R][d] CG direction, residual and iterate (Z is the output)
//   Qp  [S][R][d]     split-K partial sums of T X; slice 0 then holds q
//   rows  [7][R]      per-row float64 state, sections S_* below
//   flags [2][R]      per-row done and breakdown flags
// The float32 values and float64 scalars follow backend.CPU step for step.

#pragma OPENCL EXTENSION cl_khr_fp64 : enable

#define RTM (TM / WM)
#define RTN (TN / WN)

#define S_RHO 0
#define S_EPS 1
#define S_RHO0 2
#define S_SC 3
#define S_TRACE 4
#define S_RESID 5
#define S_SCALE 6
#define F_DONE 0
#define F_BROKE 1

// pow2_normalizer is internal/pow2.Normalizer for a maximum magnitude m:
// the power of two that brings m into [1, 2), or 1 for 0, NaN and Inf.
double pow2_normalizer(float m) {
	if (m == 0.0f || isnan(m) || isinf(m)) {
		return 1.0;
	}
	int e;
	frexp((double)m, &e);
	return ldexp(1.0, 1 - e);
}

// patch_scale is the patch normalizer of group g: the largest magnitude of
// the group's input channels (a bound on every patch entry) and, with a
// joint bias, the constant 1.
double patch_scale(__global const uint *maxbits, int g, int bias) {
	float m = as_float(maxbits[g]);
	if (bias && m < 1.0f) {
		m = 1.0f;
	}
	return pow2_normalizer(m);
}

// tile_fma adds the product of the staged TK-deep tiles to this
// work-item's WM x WN register block: rows ty + a*RTM of As, columns
// tx + b*RTN of Bs. Both products of the Fisher operator share it.
void tile_fma(__local float As[TK][TM + 1], __local float Bs[TK][TN + 1],
		float acc[WM][WN], int tx, int ty) {
	for (int kk = 0; kk < TK; kk++) {
		float ra[WM];
		float rb[WN];
		for (int a = 0; a < WM; a++) {
			ra[a] = As[kk][ty + a * RTM];
		}
		for (int b = 0; b < WN; b++) {
			rb[b] = Bs[kk][tx + b * RTN];
		}
		for (int a = 0; a < WM; a++) {
			for (int b = 0; b < WN; b++) {
				acc[a][b] = fma(ra[a], rb[b], acc[a][b]);
			}
		}
	}
}

// block_sum returns the sum of v over the work-group, in a fixed order so
// that results do not depend on scheduling.
double block_sum(double v, __local double *buf) {
	int lid = get_local_id(0);
	buf[lid] = v;
	barrier(CLK_LOCAL_MEM_FENCE);
	for (int s = RL / 2; s > 0; s >>= 1) {
		if (lid < s) {
			buf[lid] += buf[lid + s];
		}
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	double r = buf[0];
	barrier(CLK_LOCAL_MEM_FENCE);
	return r;
}

// block_maxabs returns the largest |v| over the work-group; a NaN wins.
float block_maxabs(float v, __local float *buf) {
	int lid = get_local_id(0);
	buf[lid] = v;
	barrier(CLK_LOCAL_MEM_FENCE);
	for (int s = RL / 2; s > 0; s >>= 1) {
		if (lid < s) {
			float o = buf[lid + s];
			if (o > buf[lid] || isnan(o)) {
				buf[lid] = o;
			}
		}
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	float r = buf[0];
	barrier(CLK_LOCAL_MEM_FENCE);
	return r;
}

// act_maxabs: maxbits[g] = max over the subsample of |acts| in the input
// channels of group g (grid: any multiple of RL by G). maxbits must start
// at zero. Bit patterns of non-negative floats order as the floats do, and
// a NaN's pattern is above Inf's.
__kernel __attribute__((reqd_work_group_size(RL, 1, 1)))
void act_maxabs(__global const float *acts, int actOff, __global const int *sidx,
		int samples, int imageLen, int groupLen, __global uint *maxbits) {
	__local float buf[RL];
	int g = get_global_id(1);
	int total = samples * groupLen;
	float m = 0.0f;
	for (int e = get_global_id(0); e < total; e += get_global_size(0)) {
		int s = e / groupLen;
		int k = e - s * groupLen;
		float v = fabs(acts[actOff + (long)sidx[s] * imageLen + (long)g * groupLen + k]);
		if (v > m || isnan(v)) {
			m = v;
		}
	}
	m = block_maxabs(m, buf);
	if (get_local_id(0) == 0) {
		atomic_max(&maxbits[g], as_uint(m));
	}
}

// im2col: X[g][i][k] = ps_g * u(n,l)_k for i = n*L + l (grid: N*d rounded
// up, by G). Padding reads as zero; a joint bias is the last coordinate.
__kernel void im2col(__global const float *acts, int actOff, __global const int *sidx,
		int imageLen, int H, int W, int cg, int kh, int kw, int sh, int sw,
		int ph, int pw, int dh, int dw, int oh, int ow, int d, int bias,
		__global const uint *maxbits, __global float *X, int N) {
	int g = get_global_id(1);
	int e = get_global_id(0);
	if (e >= N * d) {
		return;
	}
	int i = e / d;
	int k = e - i * d;
	float ps = (float)patch_scale(maxbits, g, bias);
	float v = 0.0f;
	if (bias && k == d - 1) {
		v = ps;
	} else {
		int L = oh * ow;
		int s = i / L;
		int l = i - s * L;
		int oy = l / ow;
		int ox = l - oy * ow;
		int c = k / (kh * kw);
		int r = k - c * (kh * kw);
		int ki = r / kw;
		int kj = r - ki * kw;
		int y = oy * sh - ph + ki * dh;
		int x = ox * sw - pw + kj * dw;
		if (y >= 0 && y < H && x >= 0 && x < W) {
			v = acts[actOff + (long)sidx[s] * imageLen + ((long)(g * cg + c) * H + y) * W + x] * ps;
		}
	}
	X[(long)g * N * d + e] = v;
}

// patch_norms: norms[g][i] = |u(n,l)|^2 in the original scale, in float64
// (grid: N rounded up, by G).
__kernel void patch_norms(__global const float *X, int N, int d, __global const uint *maxbits,
		int bias, __global double *norms) {
	int g = get_global_id(1);
	int i = get_global_id(0);
	if (i >= N) {
		return;
	}
	double ps = patch_scale(maxbits, g, bias);
	__global const float *x = X + ((long)g * N + i) * d;
	double s = 0.0;
	for (int k = 0; k < d; k++) {
		double v = x[k];
		s += v * v;
	}
	norms[(long)g * N + i] = s / (ps * ps);
}

// row_weights, one work-group per row j: the trace t_j = (s/d) sum lam*|u|^2
// and Wt[j][i] = lam(j,i)/(t_j+eps)/ps^2, as fisher.RowWeights.Fill.
__kernel __attribute__((reqd_work_group_size(RL, 1, 1)))
void row_weights(__global const float *og, int ogOff, __global const int *sidx, int outLen,
		int L, int samples, int rg, int d, __global const double *norms,
		__global const uint *maxbits, int bias, double lossScale, double eps,
		__global double *rows, int R, __global float *Wt) {
	__local double buf[RL];
	int j = get_group_id(0);
	int lid = get_local_id(0);
	int g = j / rg;
	int N = samples * L;
	double t = 0.0;
	for (int i = lid; i < N; i += RL) {
		int s = i / L;
		int l = i - s * L;
		double y = og[ogOff + (long)sidx[s] * outLen + (long)j * L + l];
		t += y * y * norms[(long)g * N + i];
	}
	t = block_sum(t, buf);
	t *= lossScale / (double)d;
	double ps = patch_scale(maxbits, g, bias);
	double c = lossScale / (t + eps) * (1.0 / (ps * ps));
	for (int i = lid; i < N; i += RL) {
		int s = i / L;
		int l = i - s * L;
		double y = og[ogOff + (long)sidx[s] * outLen + (long)j * L + l];
		Wt[(long)j * N + i] = (float)(y * y * c);
	}
	if (lid == 0) {
		rows[S_TRACE * R + j] = t;
	}
}

// fisher_pxt, the first product: T = Wt .* (P X^T) for every group
// (grid: ceil(N/TN)*RTN by ceil(rg/TM)*RTM by G). A work-group computes a
// TM x TN tile through local memory, a work-item a WM x WN block in
// registers; its rows and columns are strided by RTM and RTN so that
// neighbouring work-items touch neighbouring addresses.
__kernel __attribute__((reqd_work_group_size(RTN, RTM, 1)))
void fisher_pxt(__global const float *P, __global const float *X, __global const float *Wt,
		__global float *T, int rg, int N, int d) {
	__local float As[TK][TM + 1];
	__local float Bs[TK][TN + 1];
	int g = get_global_id(2);
	P += (long)g * rg * d;
	X += (long)g * N * d;
	Wt += (long)g * rg * N;
	T += (long)g * rg * N;
	const int tx = get_local_id(0);
	const int ty = get_local_id(1);
	const int tid = ty * RTN + tx;
	const int m0 = get_group_id(1) * TM;
	const int n0 = get_group_id(0) * TN;
	float acc[WM][WN] = {{0.0f}};
	for (int k0 = 0; k0 < d; k0 += TK) {
		for (int e = tid; e < TM * TK; e += RTM * RTN) {
			int m = e / TK;
			int kk = e - m * TK;
			int gm = m0 + m;
			int gk = k0 + kk;
			As[kk][m] = (gm < rg && gk < d) ? P[(long)gm * d + gk] : 0.0f;
		}
		for (int e = tid; e < TN * TK; e += RTM * RTN) {
			int n = e / TK;
			int kk = e - n * TK;
			int gn = n0 + n;
			int gk = k0 + kk;
			Bs[kk][n] = (gn < N && gk < d) ? X[(long)gn * d + gk] : 0.0f;
		}
		barrier(CLK_LOCAL_MEM_FENCE);
		tile_fma(As, Bs, acc, tx, ty);
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	for (int a = 0; a < WM; a++) {
		int gm = m0 + ty + a * RTM;
		if (gm >= rg) {
			break;
		}
		for (int b = 0; b < WN; b++) {
			int gn = n0 + tx + b * RTN;
			if (gn < N) {
				long o = (long)gm * N + gn;
				T[o] = acc[a][b] * Wt[o];
			}
		}
	}
}

// fisher_tx, the second product split over the contraction: Qp[s] = T X
// over points [s*chunk, (s+1)*chunk) (grid: ceil(d/TN)*RTN by
// ceil(rg/TM)*RTM by G*S).
__kernel __attribute__((reqd_work_group_size(RTN, RTM, 1)))
void fisher_tx(__global const float *T, __global const float *X, __global float *Qp,
		int rg, int N, int d, int R, int S, int chunk) {
	__local float As[TK][TM + 1];
	__local float Bs[TK][TN + 1];
	int gz = get_global_id(2);
	int g = gz / S;
	int s = gz - g * S;
	T += (long)g * rg * N;
	X += (long)g * N * d;
	Qp += (long)s * R * d + (long)g * rg * d;
	const int tx = get_local_id(0);
	const int ty = get_local_id(1);
	const int tid = ty * RTN + tx;
	const int m0 = get_group_id(1) * TM;
	const int n0 = get_group_id(0) * TN;
	int kbeg = s * chunk;
	int kend = min(N, kbeg + chunk);
	float acc[WM][WN] = {{0.0f}};
	for (int k0 = kbeg; k0 < kend; k0 += TK) {
		for (int e = tid; e < TM * TK; e += RTM * RTN) {
			int m = e / TK;
			int kk = e - m * TK;
			int gm = m0 + m;
			int gk = k0 + kk;
			As[kk][m] = (gm < rg && gk < kend) ? T[(long)gm * N + gk] : 0.0f;
		}
		for (int e = tid; e < TN * TK; e += RTM * RTN) {
			int kk = e / TN;
			int n = e - kk * TN;
			int gn = n0 + n;
			int gk = k0 + kk;
			Bs[kk][n] = (gn < d && gk < kend) ? X[(long)gk * d + gn] : 0.0f;
		}
		barrier(CLK_LOCAL_MEM_FENCE);
		tile_fma(As, Bs, acc, tx, ty);
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	for (int a = 0; a < WM; a++) {
		int gm = m0 + ty + a * RTM;
		if (gm >= rg) {
			break;
		}
		for (int b = 0; b < WN; b++) {
			int gn = n0 + tx + b * RTN;
			if (gn < d) {
				Qp[(long)gm * d + gn] = acc[a][b];
			}
		}
	}
}

// cg_init, one work-group per row: the row's power-of-two scale sc_j, then
// res = p = sc_j*b_j, z = 0, rho = res.res (cg.Solver.Solve's set-up).
__kernel __attribute__((reqd_work_group_size(RL, 1, 1)))
void cg_init(__global const float *grad, int gradOff, __global float *Z, int zOff,
		__global float *Res, __global float *P, int d, double eps,
		__global double *rows, __global int *flags, int R) {
	__local double buf[RL];
	__local float fbuf[RL];
	int j = get_group_id(0);
	int lid = get_local_id(0);
	__global const float *b = grad + gradOff + (long)j * d;
	float m = 0.0f;
	for (int k = lid; k < d; k += RL) {
		float v = fabs(b[k]);
		if (v > m || isnan(v)) {
			m = v;
		}
	}
	m = block_maxabs(m, fbuf);
	double sc = pow2_normalizer(m);
	float f = (float)sc;
	long o = (long)j * d;
	double rr = 0.0;
	for (int k = lid; k < d; k += RL) {
		float r = b[k] * f;
		Res[o + k] = r;
		P[o + k] = r;
		Z[zOff + o + k] = 0.0f;
		rr += (double)r * (double)r;
	}
	rr = block_sum(rr, buf);
	if (lid == 0) {
		rows[S_RHO * R + j] = rr;
		rows[S_RHO0 * R + j] = rr;
		rows[S_EPS * R + j] = eps * sc * sc;
		rows[S_SC * R + j] = sc;
		flags[F_DONE * R + j] = 0;
		flags[F_BROKE * R + j] = 0;
	}
}

// cg_update, one work-group per row: q = sum of the partials + tau*p, then
// one iteration of the batched CG of cg.Solver.Solve.
__kernel __attribute__((reqd_work_group_size(RL, 1, 1)))
void cg_update(__global float *Qp, int S, __global float *P, __global float *Res,
		__global float *Z, int zOff, int d, float tau, double tol, int it,
		__global double *rows, __global int *flags, int R) {
	__local double buf[RL];
	int j = get_group_id(0);
	int lid = get_local_id(0);
	if (flags[F_DONE * R + j]) {
		return;
	}
	long o = (long)j * d;
	long rd = (long)R * d;
	double pq = 0.0;
	for (int k = lid; k < d; k += RL) {
		float q = Qp[o + k];
		for (int s = 1; s < S; s++) {
			q += Qp[s * rd + o + k];
		}
		float p = P[o + k];
		q = fma(tau, p, q);
		Qp[o + k] = q;
		pq += (double)p * (double)q;
	}
	double epsj = rows[S_EPS * R + j];
	double rho = rows[S_RHO * R + j];
	double den = block_sum(pq, buf) + epsj;
	if (!(den > 0.0) || isinf(den)) {
		if (it == 0) {
			for (int k = lid; k < d; k += RL) {
				Z[zOff + o + k] = Res[o + k];
			}
		}
		if (lid == 0) {
			flags[F_DONE * R + j] = 1;
			flags[F_BROKE * R + j] = 1;
		}
		return;
	}
	float alpha = (float)(rho / den);
	double rr = 0.0;
	for (int k = lid; k < d; k += RL) {
		Z[zOff + o + k] = fma(alpha, P[o + k], Z[zOff + o + k]);
		float r = fma(-alpha, Qp[o + k], Res[o + k]);
		Res[o + k] = r;
		rr += (double)r * (double)r;
	}
	double rhoNew = block_sum(rr, buf);
	float beta = (float)(rhoNew / (rho + epsj));
	for (int k = lid; k < d; k += RL) {
		P[o + k] = fma(beta, P[o + k], Res[o + k]);
	}
	if (lid == 0) {
		rows[S_RHO * R + j] = rhoNew;
		if (tol > 0.0 && rhoNew <= tol * tol * rows[S_RHO0 * R + j]) {
			flags[F_DONE * R + j] = 1;
		}
	}
}

// cg_finish, one work-group per row: undo the row scale, record the
// residual, and normalize: z_j *= c_j = 1/sqrt(|z_j.e_j + eps|), as
// backend.NormalizeRows.
__kernel __attribute__((reqd_work_group_size(RL, 1, 1)))
void cg_finish(__global const float *grad, int gradOff, __global float *Z, int zOff, int d,
		double eps, __global double *rows, int R) {
	__local double buf[RL];
	int j = get_group_id(0);
	int lid = get_local_id(0);
	long o = (long)j * d;
	double sc = rows[S_SC * R + j];
	float f = (float)(1.0 / sc);
	double ze = 0.0;
	for (int k = lid; k < d; k += RL) {
		float z = Z[zOff + o + k];
		if (sc != 1.0) {
			z *= f;
			Z[zOff + o + k] = z;
		}
		ze += (double)z * (double)grad[gradOff + o + k];
	}
	ze = block_sum(ze, buf);
	double c = 1.0 / sqrt(fabs(ze + eps));
	for (int k = lid; k < d; k += RL) {
		Z[zOff + o + k] = (float)((double)Z[zOff + o + k] * c);
	}
	if (lid == 0) {
		rows[S_RESID * R + j] = sqrt(rows[S_RHO * R + j]) / sc;
		rows[S_SCALE * R + j] = c;
	}
}
