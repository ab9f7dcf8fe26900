// FROG on an OpenCL device: one layer's row-wise preconditioning (FROG.md
// steps 1-3, 5 and 6), every group of a grouped convolution at once.
//
// Compile-time parameters (build options):
//   TM, TN, TK  the tile of the two products: TM rows (weight rows) by TN
//               columns, TK deep in the contraction (TK divides KPAD, TN
//               divides NPAD)
//   WM, WN      the register block of one work-item, multiples of 4
//               (TM % WM == TN % WN == 0)
//   RL          the work-group size of the per-row kernels (a power of two)
//
// Layouts (all row-major; g is the channel group, j a global weight row;
// d is the row length, dp = d rounded up to KPAD, Np = N rounded up to
// NPAD; the padding holds zeros, so that the products need no bounds
// checks along the contraction and load aligned float4s):
//   X   [G][Np][dp]   scaled patches ps_g * u(n,l), N = r*L
//   Wt  [R][Np]       Lhat(j,i) / ps_g^2 (rows of a group are contiguous)
//   T   [R][Np]       Wt .* (P X^T)
//   Tp  [S][R][Np]    split-K partial sums of P X^T
//   P, Res     [R][dp] CG direction and residual
//   Z          [R][d]  CG iterate (the caller's direction buffer)
//   Qp  [S][R][dp]    split-K partial sums of T X (cg_update adds them);
//                     slice 0 then holds q
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

// IM is the side of im2col's tiles: IM patches by IM coordinates.
#define IM 32

// im2col: X[g][i][k] = ps_g * u(n,l)_k for i = n*L + l, and
// norms[c][g][i] = the part of |u(n,l)|^2 (in the original scale, in
// float64) over coordinates [c*kc, (c+1)*kc). A work-group of IM x 8 takes
// IM patches through those kc coordinates, a tile of IM coordinates at a
// time through local memory, so that both the reads (IM neighbouring
// patches, neighbouring pixels) and the writes (IM coordinates of a patch)
// are contiguous (grid: IM*C by Np/4 by G). Past the channels come the
// joint bias (k = d-1, the constant ps_g) and the zero padding; pixels
// outside the image and the rows i >= N read as zero. A patch's norm is
// the sum of 8 partial sums (coordinates k = y mod 8), added in order.
__kernel __attribute__((reqd_work_group_size(IM, 8, 1)))
void im2col(__global const float *acts, int actOff, __global const int *sidx,
		int imageLen, int H, int W, int cg, int kh, int kw, int sh, int sw,
		int ph, int pw, int dh, int dw, int oh, int ow, int d, int bias,
		__global const uint *maxbits, __global float *X, int N, int Np, int dp,
		int kc, __global double *norms) {
	__local float tile[2][IM][IM + 1];
	__local int4 tab[2][IM];
	__local double part[8][IM];
	int lx = get_local_id(0);
	int ly = get_local_id(1);
	int i0 = get_group_id(1) * IM;
	int g = get_global_id(2);
	int c = get_group_id(0);
	int kend = min(dp, (c + 1) * kc);
	float ps = (float)patch_scale(maxbits, g, bias);
	int i = i0 + lx;
	int khw = kh * kw;
	int L = oh * ow;
	int s = i / L;
	int l = i - s * L;
	int oy = l / ow;
	int ox = l - oy * ow;
	int y0 = oy * sh - ph;
	int x0 = ox * sw - pw;
	__global const float *a = acts;
	if (i < N) {
		a += actOff + (long)sidx[s] * imageLen + (long)g * cg * H * W;
	}
	__global float *x = X + ((long)g * Np + i0) * dp + lx;
	double nrm = 0.0;
	int buf = 0;
	for (int k0 = c * kc; k0 < kend; k0 += IM) {
		// The tile's coordinates decoded once: channel, row and column
		// offsets, and what the coordinate is (0 a pixel, 1 the bias, 2
		// padding).
		if (ly == 0) {
			int k = k0 + lx;
			int4 t = (int4)(0, 0, 0, 2);
			if (k < cg * khw) {
				int q = k / khw;
				int r = k - q * khw;
				int ki = r / kw;
				t = (int4)(q, ki * dh, (r - ki * kw) * dw, 0);
			} else if (bias && k == d - 1) {
				t.w = 1;
			}
			tab[buf][lx] = t;
		}
		barrier(CLK_LOCAL_MEM_FENCE);
		for (int kk = ly; kk < IM; kk += 8) {
			int4 t = tab[buf][kk];
			float v = 0.0f;
			if (i < N) {
				if (t.w == 0) {
					int y = y0 + t.y;
					int xx = x0 + t.z;
					if (y >= 0 && y < H && xx >= 0 && xx < W) {
						v = a[(long)t.x * H * W + y * W + xx] * ps;
					}
				} else if (t.w == 1) {
					v = ps;
				}
			}
			tile[buf][kk][lx] = v;
			nrm += (double)v * (double)v;
		}
		barrier(CLK_LOCAL_MEM_FENCE);
		for (int ii = ly; ii < IM; ii += 8) {
			x[(long)ii * dp + k0] = tile[buf][lx][ii];
		}
		buf ^= 1;
	}
	part[ly][lx] = nrm;
	barrier(CLK_LOCAL_MEM_FENCE);
	if (ly == 0 && i < N) {
		double t = part[0][lx];
		for (int y = 1; y < 8; y++) {
			t += part[y][lx];
		}
		double p = (double)ps;
		norms[((long)c * get_num_groups(2) + g) * N + i] = t / (p * p);
	}
}

// row_trace: partial[j][c] = sum of lam(j,i)/s * |u_i|^2 over chunk c of
// the points (grid: C*RL by R), so that every row's trace is spread over
// several work-groups; |u_i|^2 is the sum of im2col's KS parts, in order.
__kernel __attribute__((reqd_work_group_size(RL, 1, 1)))
void row_trace(__global const float *og, int ogOff, __global const int *sidx, int outLen,
		int L, int samples, int rg, __global const double *norms, int KS, int G, int C,
		__global double *partial) {
	__local double buf[RL];
	int c = get_group_id(0);
	int j = get_group_id(1);
	int lid = get_local_id(0);
	int g = j / rg;
	int N = samples * L;
	int chunk = (N + C - 1) / C;
	int end = min(N, (c + 1) * chunk);
	double t = 0.0;
	for (int i = c * chunk + lid; i < end; i += RL) {
		int s = i / L;
		int l = i - s * L;
		double y = og[ogOff + (long)sidx[s] * outLen + (long)j * L + l];
		double u = norms[(long)g * N + i];
		for (int c = 1; c < KS; c++) {
			u += norms[((long)c * G + g) * N + i];
		}
		t += y * y * u;
	}
	t = block_sum(t, buf);
	if (lid == 0) {
		partial[(long)j * C + c] = t;
	}
}

// row_weights: the trace t_j = (s/d) sum lam*|u|^2 from row_trace's C
// partial sums, in order, and Wt[j][i] = lam(j,i)/(t_j+eps)/ps^2 for the
// 4*RL points of this work-group, zero beyond N (grid: ceil(Np/(4*RL))*RL
// by R), as fisher.RowWeights.Fill.
__kernel __attribute__((reqd_work_group_size(RL, 1, 1)))
void row_weights(__global const float *og, int ogOff, __global const int *sidx, int outLen,
		int L, int samples, int rg, int d, __global const double *partial, int C,
		__global const uint *maxbits, int bias, double lossScale, double eps,
		__global double *rows, int R, __global float *Wt, int Np) {
	__local double trace;
	int j = get_group_id(1);
	int lid = get_local_id(0);
	int g = j / rg;
	int N = samples * L;
	if (lid == 0) {
		double t = 0.0;
		for (int c = 0; c < C; c++) {
			t += partial[(long)j * C + c];
		}
		trace = t * (lossScale / (double)d);
	}
	barrier(CLK_LOCAL_MEM_FENCE);
	double t = trace;
	double ps = patch_scale(maxbits, g, bias);
	double c = lossScale / (t + eps) * (1.0 / (ps * ps));
	int beg = get_group_id(0) * 4 * RL;
	int end = min(Np, beg + 4 * RL);
	for (int i = beg + lid; i < end; i += RL) {
		float w = 0.0f;
		if (i < N) {
			int s = i / L;
			int l = i - s * L;
			double y = og[ogOff + (long)sidx[s] * outLen + (long)j * L + l];
			w = (float)(y * y * c);
		}
		Wt[(long)j * Np + i] = w;
	}
	if (get_group_id(0) == 0 && lid == 0) {
		rows[S_TRACE * R + j] = t;
	}
}

// The products. A work-group computes a TM x TN tile of C = A B through
// local memory, TK deep per step, in two slabs: while it multiplies one,
// its work-items hold the next one's float4 loads in registers, then
// stage them in the other slab (one barrier per step). A work-item
// computes a WM x WN block in registers: rows q*4*RTM + 4*ty + {0..3} for
// q < WM/4, columns q*4*RTN + 4*tx + {0..3}, so that it reads its operands
// from local memory as float4s and a warp's reads hit distinct banks.

#define SLABS 2

#define NT (RTM * RTN)
#define AS_LD (TM + 4)
#define BS_LD (TN + 4)
#define A_VECS (TM * TK / 4)
#define B_VECS (TN * TK / 4)
#define A_PER ((A_VECS + NT - 1) / NT)
#define B_PER ((B_VECS + NT - 1) / NT)

// fetch_rows loads rows r0 .. r0+nrows-1 (clamped to rows-1) and points
// k0 .. k0+TK-1 of a matrix whose rows run along the contraction (row
// stride ld, a multiple of 4, so that the float4 loads are aligned) into
// per registers of float4.
inline void fetch_rows(__global const float *src, int ld, int r0, int rows, int k0, int tid,
		int nvec, int per, float4 *reg) {
	#pragma unroll
	for (int i = 0; i < per; i++) {
		int e = tid + i * NT;
		if (e < nvec) {
			int m = e / (TK / 4);
			int k4 = e - m * (TK / 4);
			int r = min(r0 + m, rows - 1);
			reg[i] = *(__global const float4 *)(src + (long)r * ld + k0 + 4 * k4);
		}
	}
}

// stage_rows stores fetch_rows' registers transposed: dst[k][m].
inline void stage_rows(__local float *dst, int ldl, int tid, int nvec, int per, const float4 *reg) {
	#pragma unroll
	for (int i = 0; i < per; i++) {
		int e = tid + i * NT;
		if (e < nvec) {
			int m = e / (TK / 4);
			int k = 4 * (e - m * (TK / 4));
			dst[k * ldl + m] = reg[i].x;
			dst[(k + 1) * ldl + m] = reg[i].y;
			dst[(k + 2) * ldl + m] = reg[i].z;
			dst[(k + 3) * ldl + m] = reg[i].w;
		}
	}
}

// fetch_cols loads points k0 .. k0+TK-1 (rows of src, stride ld) and
// columns c0 .. c0+TN-1 (zero from cols on; cols is a multiple of 4).
inline void fetch_cols(__global const float *src, int ld, int c0, int cols, int k0, int tid, float4 *reg) {
	#pragma unroll
	for (int i = 0; i < B_PER; i++) {
		int e = tid + i * NT;
		if (e < B_VECS) {
			int k = e / (TN / 4);
			int c = c0 + 4 * (e - k * (TN / 4));
			reg[i] = c < cols ? *(__global const float4 *)(src + (long)(k0 + k) * ld + c) : (float4)(0.0f);
		}
	}
}

// stage_cols stores fetch_cols' registers as they are: dst[k][n].
inline void stage_cols(__local float4 *dst, int tid, const float4 *reg) {
	#pragma unroll
	for (int i = 0; i < B_PER; i++) {
		int e = tid + i * NT;
		if (e < B_VECS) {
			int k = e / (TN / 4);
			dst[k * (BS_LD / 4) + e - k * (TN / 4)] = reg[i];
		}
	}
}

// tile_fma adds the product of the staged slabs A[k][m] and B[k][n] to
// this work-item's register block. Both products share it.
inline void tile_fma(__local const float4 *A, __local const float4 *B, float acc[WM][WN], int tx, int ty) {
	#pragma unroll
	for (int kk = 0; kk < TK; kk++) {
		float a[WM];
		float b[WN];
		#pragma unroll
		for (int q = 0; q < WM / 4; q++) {
			float4 v = A[kk * (AS_LD / 4) + q * RTM + ty];
			a[4 * q] = v.x;
			a[4 * q + 1] = v.y;
			a[4 * q + 2] = v.z;
			a[4 * q + 3] = v.w;
		}
		#pragma unroll
		for (int q = 0; q < WN / 4; q++) {
			float4 v = B[kk * (BS_LD / 4) + q * RTN + tx];
			b[4 * q] = v.x;
			b[4 * q + 1] = v.y;
			b[4 * q + 2] = v.z;
			b[4 * q + 3] = v.w;
		}
		#pragma unroll
		for (int i = 0; i < WM; i++) {
			#pragma unroll
			for (int j = 0; j < WN; j++) {
				acc[i][j] = fma(a[i], b[j], acc[i][j]);
			}
		}
	}
}

// acc_row is the tile row of register row i of work-item row ty.
#define ACC_ROW(i, ty) (((i) / 4) * 4 * RTM + 4 * (ty) + (i) % 4)
// ACC_COL is the tile column of register columns 4q .. 4q+3.
#define ACC_COL(q, tx) ((q) * 4 * RTN + 4 * (tx))

// zero_acc clears a work-item's block of sums.
inline void zero_acc(float acc[WM][WN]) {
	#pragma unroll
	for (int i = 0; i < WM; i++) {
		#pragma unroll
		for (int j = 0; j < WN; j++) {
			acc[i][j] = 0.0f;
		}
	}
}

// PRODUCT_LOOP runs a work-group's contraction [kbeg, kend) into acc: the
// slab at k is fetched into registers (FETCH_A(k), FETCH_B(k), into ra and
// rb), staged into local memory (B by STAGE_B(slab): its layout differs
// between the products), and multiplied while the next slab's loads are in
// flight, one barrier per step. Each product defines FETCH_A, FETCH_B and
// STAGE_B for its operands; the loop uses the kernel's tid, tx, ty, kbeg,
// kend, As and Bs.
#define PRODUCT_LOOP(acc) \
	do { \
		float4 ra[A_PER]; \
		float4 rb[B_PER]; \
		if (kbeg < kend) { \
			FETCH_A(kbeg); \
			FETCH_B(kbeg); \
			stage_rows((__local float *)As[0], AS_LD, tid, A_VECS, A_PER, ra); \
			STAGE_B(0); \
			barrier(CLK_LOCAL_MEM_FENCE); \
		} \
		int buf = 0; \
		for (int k0 = kbeg; k0 < kend; k0 += TK) { \
			bool more = k0 + TK < kend; \
			if (more) { \
				FETCH_A(k0 + TK); \
				FETCH_B(k0 + TK); \
			} \
			tile_fma(As[buf], Bs[buf], acc, tx, ty); \
			if (more) { \
				stage_rows((__local float *)As[buf ^ 1], AS_LD, tid, A_VECS, A_PER, ra); \
				STAGE_B(buf ^ 1); \
			} \
			barrier(CLK_LOCAL_MEM_FENCE); \
			buf ^= 1; \
		} \
	} while (0)

// The two products begin alike. PRODUCT_SLABS declares the local slabs
// and, from the third grid dimension, the group g and the part s of the
// contraction; the kernel then offsets its pointers to group g and part s.
// PRODUCT_PROLOGUE(K) declares the work-item's place in its tile (tx, ty,
// tid), the tile's origin (m0, n0), its range [kbeg, kend) of a
// contraction of length K, and the cleared sums acc.
#define PRODUCT_SLABS \
	__local float4 As[SLABS][TK * AS_LD / 4]; \
	__local float4 Bs[SLABS][TK * BS_LD / 4]; \
	int gz = get_global_id(2); \
	int g = gz / S; \
	int s = gz - g * S
#define PRODUCT_PROLOGUE(K) \
	const int tx = get_local_id(0); \
	const int ty = get_local_id(1); \
	const int tid = ty * RTN + tx; \
	const int m0 = get_group_id(1) * TM; \
	const int n0 = get_group_id(0) * TN; \
	const int kbeg = s * chunk; \
	const int kend = min(K, kbeg + chunk); \
	float acc[WM][WN]; \
	zero_acc(acc)

// weigh is an element of the first product's result: w*v, or with square
// (CG's last iteration, see cg_last) w*v*v.
inline float4 weigh(float4 v, float4 w, int square) {
	return square ? w * (v * v) : w * v;
}

// fisher_pxt, the first product: T = Wt .* (P X^T) for every group (with
// square, Wt .* (P X^T)^2), or, split over the contraction (S > 1), the
// partial sums Tp[s] = P X^T over coordinates [s*chunk, (s+1)*chunk) for
// pxt_reduce (grid: Np/TN*RTN by ceil(rg/TM)*RTM by G*S).
__kernel __attribute__((reqd_work_group_size(RTN, RTM, 1)))
void fisher_pxt(__global const float *P, __global const float *X, __global const float *Wt,
		__global float *T, int rg, int Np, int dp, int R, int S, int chunk, int square) {
	PRODUCT_SLABS;
	P += (long)g * rg * dp;
	X += (long)g * Np * dp;
	Wt += (long)g * rg * Np;
	T += (long)s * R * Np + (long)g * rg * Np;
	PRODUCT_PROLOGUE(dp);
#define FETCH_A(k) fetch_rows(P, dp, m0, rg, k, tid, A_VECS, A_PER, ra)
#define FETCH_B(k) fetch_rows(X, dp, n0, Np, k, tid, B_VECS, B_PER, rb)
#define STAGE_B(slab) stage_rows((__local float *)Bs[slab], BS_LD, tid, B_VECS, B_PER, rb)
	PRODUCT_LOOP(acc);
#undef FETCH_A
#undef FETCH_B
#undef STAGE_B
	#pragma unroll
	for (int i = 0; i < WM; i++) {
		int gm = m0 + ACC_ROW(i, ty);
		if (gm < rg) {
			#pragma unroll
			for (int q = 0; q < WN / 4; q++) {
				long o = (long)gm * Np + n0 + ACC_COL(q, tx);
				float4 v = (float4)(acc[i][4 * q], acc[i][4 * q + 1], acc[i][4 * q + 2], acc[i][4 * q + 3]);
				if (S == 1) {
					v = weigh(v, *(__global const float4 *)(Wt + o), square);
				}
				*(__global float4 *)(T + o) = v;
			}
		}
	}
}

// pxt_reduce: T = Wt .* (sum of the S partial sums Tp), in order (with
// square, Wt .* sum^2; grid: n4 = R*Np/4 rounded up, a float4 each).
__kernel void pxt_reduce(__global const float4 *Tp, __global const float4 *Wt, __global float4 *T,
		int S, int n4, int square) {
	int e = get_global_id(0);
	if (e >= n4) {
		return;
	}
	float4 v = Tp[e];
	for (int s = 1; s < S; s++) {
		v += Tp[(long)s * n4 + e];
	}
	T[e] = weigh(v, Wt[e], square);
}

// fisher_tx, the second product split over the contraction: Qp[s] = T X
// over points [s*chunk, (s+1)*chunk) (grid: ceil(dp/TN)*RTN by
// ceil(rg/TM)*RTM by G*S).
__kernel __attribute__((reqd_work_group_size(RTN, RTM, 1)))
void fisher_tx(__global const float *T, __global const float *X, __global float *Qp,
		int rg, int Np, int dp, int R, int S, int chunk) {
	PRODUCT_SLABS;
	T += (long)g * rg * Np;
	X += (long)g * Np * dp;
	Qp += (long)s * R * dp + (long)g * rg * dp;
	PRODUCT_PROLOGUE(Np);
#define FETCH_A(k) fetch_rows(T, Np, m0, rg, k, tid, A_VECS, A_PER, ra)
#define FETCH_B(k) fetch_cols(X, dp, n0, dp, k, tid, rb)
#define STAGE_B(slab) stage_cols(Bs[slab], tid, rb)
	PRODUCT_LOOP(acc);
#undef FETCH_A
#undef FETCH_B
#undef STAGE_B
	#pragma unroll
	for (int i = 0; i < WM; i++) {
		int gm = m0 + ACC_ROW(i, ty);
		if (gm < rg) {
			#pragma unroll
			for (int q = 0; q < WN / 4; q++) {
				int gn = n0 + ACC_COL(q, tx);
				if (gn < dp) {
					float4 v = (float4)(acc[i][4 * q], acc[i][4 * q + 1], acc[i][4 * q + 2], acc[i][4 * q + 3]);
					*(__global float4 *)(Qp + (long)gm * dp + gn) = v;
				}
			}
		}
	}
}

// cg_init, one work-group per row: the row's power-of-two scale sc_j, then
// res = p = sc_j*b_j, z = 0, rho = res.res (cg.Solver.Solve's set-up).
__kernel __attribute__((reqd_work_group_size(RL, 1, 1)))
void cg_init(__global const float *grad, int gradOff, __global float *Z, int zOff,
		__global float *Res, __global float *P, int d, int dp, double eps,
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
	long op = (long)j * dp;
	double rr = 0.0;
	for (int k = lid; k < dp; k += RL) {
		float r = k < d ? b[k] * f : 0.0f;
		Res[op + k] = r;
		P[op + k] = r;
		if (k < d) {
			Z[zOff + o + k] = 0.0f;
		}
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

// CG_ROW_START begins a kernel that runs one CG row j a work-group: its
// reduction buffer, the work-item's lid, nothing to do for a row that has
// stopped (flags), and the row's offsets in Z (o, d a row) and in P and
// Res (op, dp a row).
#define CG_ROW_START \
	__local double buf[RL]; \
	int j = get_group_id(0); \
	int lid = get_local_id(0); \
	if (flags[F_DONE * R + j]) { \
		return; \
	} \
	long o = (long)j * d; \
	long op = (long)j * dp

// cg_update, one work-group per row: q = Q + tau*p, Q = T X the sum of
// the S partial sums Qp[s] (R*dp apart) added in order, then one iteration
// of the batched CG of cg.Solver.Solve; q is kept in Qp's slice 0. The
// padding of P and Res (k >= d) stays zero.
__kernel __attribute__((reqd_work_group_size(RL, 1, 1)))
void cg_update(__global float *Qp, int S, __global float *P, __global float *Res,
		__global float *Z, int zOff, int d, int dp, float tau, double tol, int it,
		__global double *rows, __global int *flags, int R) {
	CG_ROW_START;
	long stride = (long)R * dp;
	double pq = 0.0;
	for (int k = lid; k < d; k += RL) {
		float q = Qp[op + k];
		for (int s = 1; s < S; s++) {
			q += Qp[s * stride + op + k];
		}
		float p = P[op + k];
		q = fma(tau, p, q);
		Qp[op + k] = q;
		pq += (double)p * (double)q;
	}
	double epsj = rows[S_EPS * R + j];
	double rho = rows[S_RHO * R + j];
	double den = block_sum(pq, buf) + epsj;
	if (!(den > 0.0) || isinf(den)) {
		if (it == 0) {
			for (int k = lid; k < d; k += RL) {
				Z[zOff + o + k] = Res[op + k];
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
		Z[zOff + o + k] = fma(alpha, P[op + k], Z[zOff + o + k]);
		float r = fma(-alpha, Qp[op + k], Res[op + k]);
		Res[op + k] = r;
		rr += (double)r * (double)r;
	}
	double rhoNew = block_sum(rr, buf);
	float beta = (float)(rhoNew / (rho + epsj));
	for (int k = lid; k < d; k += RL) {
		P[op + k] = fma(beta, P[op + k], Res[op + k]);
	}
	if (lid == 0) {
		rows[S_RHO * R + j] = rhoNew;
		if (tol > 0.0 && rhoNew <= tol * tol * rows[S_RHO0 * R + j]) {
			flags[F_DONE * R + j] = 1;
		}
	}
}

// cg_last, one work-group per row: CG's last iteration, which needs of
// the product only the row's curvature p.q = sum_n T[n] + tau*p.p, T the
// first product's weighted squares (fisher_pxt with square): z += alpha*p,
// alpha = rho/(p.q + eps). Like cg.Solver.Solve with a cg.Curvature
// operator it forms no new residual, so rho stays the previous
// iteration's, and the residual cg_finish reports with it.
__kernel __attribute__((reqd_work_group_size(RL, 1, 1)))
void cg_last(__global const float *T, int Np, __global const float *P, __global const float *Res,
		__global float *Z, int zOff, int d, int dp, float tau, int it,
		__global double *rows, __global int *flags, int R) {
	CG_ROW_START;
	double rho = rows[S_RHO * R + j];
	if (rho == 0.0) {
		// Converged: z stays (0 at the first iteration, from cg_init).
		if (lid == 0) {
			flags[F_DONE * R + j] = 1;
		}
		return;
	}
	double pq = 0.0;
	for (int n = lid; n < Np; n += RL) {
		pq += (double)T[(long)j * Np + n];
	}
	double pp = 0.0;
	for (int k = lid; k < d; k += RL) {
		float p = P[op + k];
		pp += (double)p * (double)p;
	}
	pq = block_sum(pq, buf);
	pp = block_sum(pp, buf);
	double den = pq + (double)tau * pp + rows[S_EPS * R + j];
	// No return past the barriers of block_sum: PoCL 3.1 (CPU) ran the
	// first trip of the loop below on every work-item, k >= d included,
	// when the breakdown branch returned.
	bool broke = !(den > 0.0) || isinf(den);
	float alpha = broke ? 0.0f : (float)(rho / den);
	for (int k = lid; k < d; k += RL) {
		if (!broke) {
			Z[zOff + o + k] = fma(alpha, P[op + k], Z[zOff + o + k]);
		} else if (it == 0) {
			Z[zOff + o + k] = Res[op + k];
		}
	}
	if (broke && lid == 0) {
		flags[F_DONE * R + j] = 1;
		flags[F_BROKE * R + j] = 1;
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
