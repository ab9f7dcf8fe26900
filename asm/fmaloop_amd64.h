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
