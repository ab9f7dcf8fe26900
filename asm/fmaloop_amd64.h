// The FMA loops' steps (FMALoop on YMM registers, FMALoop512 on ZMM), and
// the clearing of their accumulators and of the kernels' tiles.

// ZERO4 clears four registers with xor (VXORPS for YMM, VPXORD for ZMM,
// which AVX-512F has).
#define ZERO4(xor, a0, a1, a2, a3) \
	xor a0, a0, a0; \
	xor a1, a1, a1; \
	xor a2, a2, a2; \
	xor a3, a3, a3

// FMA_LOOP_CONSTS sets every lane of one to 1 and of step to 2^-10 (through
// AX, X12 and X13): the operands of every FMA of FMALoop and FMALoop512,
// on YMM or ZMM registers.
#define FMA_LOOP_CONSTS(one, step) \
	MOVL         $0x3f800000, AX; \
	VMOVD        AX, X12; \
	VBROADCASTSS X12, one; \
	MOVL         $0x3a800000, AX; \
	VMOVD        AX, X13; \
	VBROADCASTSS X13, step

// FMA_ROUND12 is one round of the FMA loops: every one of the twelve
// accumulators a0..a11 gains one*step.
#define FMA_ROUND12(one, step, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11) \
	VFMADD231PS one, step, a0; \
	VFMADD231PS one, step, a1; \
	VFMADD231PS one, step, a2; \
	VFMADD231PS one, step, a3; \
	VFMADD231PS one, step, a4; \
	VFMADD231PS one, step, a5; \
	VFMADD231PS one, step, a6; \
	VFMADD231PS one, step, a7; \
	VFMADD231PS one, step, a8; \
	VFMADD231PS one, step, a9; \
	VFMADD231PS one, step, a10; \
	VFMADD231PS one, step, a11

// SUM12 adds the twelve accumulators into a0, in order.
#define SUM12(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11) \
	VADDPS a1, a0, a0; \
	VADDPS a2, a0, a0; \
	VADDPS a3, a0, a0; \
	VADDPS a4, a0, a0; \
	VADDPS a5, a0, a0; \
	VADDPS a6, a0, a0; \
	VADDPS a7, a0, a0; \
	VADDPS a8, a0, a0; \
	VADDPS a9, a0, a0; \
	VADDPS a10, a0, a0; \
	VADDPS a11, a0, a0
