// Macros of the float64-accumulated dot products (Dot, DotPair,
// AxpyPairDot, UpdateZR), so that every sum has the shape of Dot's: four
// 4-wide accumulators over rounds of 16 values, then rounds of 4 into the
// first, the reduction, then single values.

// ZERO4PD clears four accumulators.
#define ZERO4PD(a, b, c, d) \
	VXORPD a, a, a; \
	VXORPD b, b, b; \
	VXORPD c, c, c; \
	VXORPD d, d, d

// WIDEN16 loads 16 values of x (SI) into Y4..Y7 and of y (DI) into
// Y8..Y11, widened to float64 (exactly: so is the product of two widened
// values, and only the additions round).
#define WIDEN16 \
	VCVTPS2PD 0(SI), Y4; \
	VCVTPS2PD 0(DI), Y8; \
	VCVTPS2PD 16(SI), Y5; \
	VCVTPS2PD 16(DI), Y9; \
	VCVTPS2PD 32(SI), Y6; \
	VCVTPS2PD 32(DI), Y10; \
	VCVTPS2PD 48(SI), Y7; \
	VCVTPS2PD 48(DI), Y11

// FMA4PD adds the products a*b of four register pairs to a0..a3.
#define FMA4PD(a, b, c, d, e, f, g, h, a0, a1, a2, a3) \
	VFMADD231PD a, b, a0; \
	VFMADD231PD c, d, a1; \
	VFMADD231PD e, f, a2; \
	VFMADD231PD g, h, a3

// REDUCE4PD adds the four accumulators a..d into the low lane of a (xa);
// xt is scratch.
#define REDUCE4PD(a, b, c, d, xa, xt) \
	VADDPD       b, a, a; \
	VADDPD       d, c, c; \
	VADDPD       c, a, a; \
	VEXTRACTF128 $1, a, xt; \
	VADDPD       xt, xa, xa; \
	VPERMILPD    $1, xa, xt; \
	VADDSD       xt, xa, xa
