//go:build !noasm

#include "textflag.h"
#include "fmaloop_amd64.h"
#include "dot_amd64.h"

// ZERO_Y0_Y7 and ZERO_Y0_Y11 clear the accumulators of a tile (or of the
// FMA loop).
#define ZERO_Y0_Y7 \
	ZERO4(VXORPS, Y0, Y1, Y2, Y3); \
	ZERO4(VXORPS, Y4, Y5, Y6, Y7)

#define ZERO_Y0_Y11 \
	ZERO_Y0_Y7; \
	ZERO4(VXORPS, Y8, Y9, Y10, Y11)

// The 6x16 tile of C lives in Y0..Y11 (row i in Y(2i), Y(2i+1)); Y12 and
// Y13 hold the current row of B, Y14 and Y15 the broadcast values of A.
#define ROW_FMA(src, lo, hi, bc) \
	VBROADCASTSS src, bc; \
	VFMADD231PS  Y12, bc, lo; \
	VFMADD231PS  Y13, bc, hi

#define STORE_ROW(lo, hi) \
	VMOVUPS     (DI), Y12; \
	VMOVUPS     32(DI), Y13; \
	VFMADD231PS lo, Y14, Y12; \
	VFMADD231PS hi, Y14, Y13; \
	VMOVUPS     Y12, (DI); \
	VMOVUPS     Y13, 32(DI); \
	ADDQ        DX, DI

// SET_ROW writes a row of the tile times alpha over C, which it does not
// read (the overwrite form of the kernels).
#define SET_ROW(lo, hi) \
	VMULPS  lo, Y14, Y12; \
	VMULPS  hi, Y14, Y13; \
	VMOVUPS Y12, (DI); \
	VMOVUPS Y13, 32(DI); \
	ADDQ    DX, DI

// The element-wise routines share one loop skeleton over CX values, four
// vectors of eight a round, then one vector of eight, then single values:
// ELEMENTWISE loads y (LOAD8, LOAD1; nothing when y is only written), runs
// OP8 / OP1 on it (y in Y0..Y3 / X0) and stores it with ST. UPDATE_Y
// rewrites y in place, y = OP(y, x); WRITE_Y writes y = OP(x). SI walks x
// and DI y; both end at "done" (Go assembler labels are local to each
// TEXT).
#define ELEMENTWISE(LOAD8, LOAD1, OP8, OP1, ST) \
	CMPQ    CX, $32; \
	JL      oct; \
loop: \
	LOAD8(0, Y0); \
	LOAD8(32, Y1); \
	LOAD8(64, Y2); \
	LOAD8(96, Y3); \
	OP8(0, Y0); \
	OP8(32, Y1); \
	OP8(64, Y2); \
	OP8(96, Y3); \
	ST      Y0, (DI); \
	ST      Y1, 32(DI); \
	ST      Y2, 64(DI); \
	ST      Y3, 96(DI); \
	ADDQ    $128, SI; \
	ADDQ    $128, DI; \
	SUBQ    $32, CX; \
	CMPQ    CX, $32; \
	JGE     loop; \
oct: \
	CMPQ    CX, $8; \
	JL      tail; \
	LOAD8(0, Y0); \
	OP8(0, Y0); \
	ST      Y0, (DI); \
	ADDQ    $32, SI; \
	ADDQ    $32, DI; \
	SUBQ    $8, CX; \
	JMP     oct; \
tail: \
	TESTQ   CX, CX; \
	JE      done; \
	LOAD1; \
	OP1; \
	VMOVSS  X0, (DI); \
	ADDQ    $4, SI; \
	ADDQ    $4, DI; \
	DECQ    CX; \
	JMP     tail; \
done:

#define LOAD_Y8(off, r) VMOVUPS off(DI), r
#define LOAD_Y1 VMOVSS (DI), X0
#define NO_LOAD8(off, r)
#define NO_LOAD1

#define UPDATE_Y(OP8, OP1) ELEMENTWISE(LOAD_Y8, LOAD_Y1, OP8, OP1, VMOVUPS)
#define WRITE_Y(OP8, OP1, ST) ELEMENTWISE(NO_LOAD8, NO_LOAD1, OP8, OP1, ST)

// The operations: y += alpha*x (Axpy), y = x + beta*y (Xpby), y *= x
// (Hadamard), y = alpha*x (ScaleTo); alpha or beta broadcast in Y15.
#define AXPY8(off, r) VFMADD231PS off(SI), Y15, r
#define AXPY1 VFMADD231SS (SI), X15, X0
#define XPBY8(off, r) VFMADD213PS off(SI), Y15, r
#define XPBY1 VFMADD213SS (SI), X15, X0
#define HADAMARD8(off, r) VMULPS off(SI), r, r
#define HADAMARD1 VMULSS (SI), X0, X0
#define SCALE8(off, r) VMULPS off(SI), Y15, r
#define SCALE1 VMULSS (SI), X15, X0
// y += m*x (MulAdd), m at BX bytes from x.
#define MULADD8(off, r) VMOVUPS off(SI)(BX*1), Y4; VFMADD231PS off(SI), Y4, r
#define MULADD1 VMOVSS (SI)(BX*1), X4; VFMADD231SS (SI), X4, X0

// func Kernel6x16(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb int, c []float32, ldc int, overwrite bool)
TEXT ·Kernel6x16(SB), NOSPLIT, $0-121
	MOVQ k+0(FP), CX
	MOVQ a_base+16(FP), AX
	MOVQ rsa+40(FP), R8
	SHLQ $2, R8            // row stride of A in bytes
	MOVQ csa+48(FP), R11
	SHLQ $2, R11           // column stride of A in bytes
	LEAQ (R8)(R8*2), R9    // 3 rows
	LEAQ (AX)(R8*4), R10   // row 4
	MOVQ b_base+56(FP), BX
	MOVQ ldb+80(FP), R12
	SHLQ $2, R12

	ZERO_Y0_Y11

	TESTQ CX, CX
	JLE   store

	// Two steps of p per round while at least two remain.
	CMPQ CX, $2
	JL   tail

pair:
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	ROW_FMA((AX), Y0, Y1, Y14)
	ROW_FMA((AX)(R8*1), Y2, Y3, Y15)
	ROW_FMA((AX)(R8*2), Y4, Y5, Y14)
	ROW_FMA((AX)(R9*1), Y6, Y7, Y15)
	ROW_FMA((R10), Y8, Y9, Y14)
	ROW_FMA((R10)(R8*1), Y10, Y11, Y15)
	ADDQ R11, AX
	ADDQ R11, R10
	ADDQ R12, BX
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	ROW_FMA((AX), Y0, Y1, Y14)
	ROW_FMA((AX)(R8*1), Y2, Y3, Y15)
	ROW_FMA((AX)(R8*2), Y4, Y5, Y14)
	ROW_FMA((AX)(R9*1), Y6, Y7, Y15)
	ROW_FMA((R10), Y8, Y9, Y14)
	ROW_FMA((R10)(R8*1), Y10, Y11, Y15)
	ADDQ R11, AX
	ADDQ R11, R10
	ADDQ R12, BX
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  pair

tail:
	TESTQ CX, CX
	JLE   store
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	ROW_FMA((AX), Y0, Y1, Y14)
	ROW_FMA((AX)(R8*1), Y2, Y3, Y15)
	ROW_FMA((AX)(R8*2), Y4, Y5, Y14)
	ROW_FMA((AX)(R9*1), Y6, Y7, Y15)
	ROW_FMA((R10), Y8, Y9, Y14)
	ROW_FMA((R10)(R8*1), Y10, Y11, Y15)

store:
	VBROADCASTSS alpha+8(FP), Y14
	MOVQ         c_base+88(FP), DI
	MOVQ         ldc+112(FP), DX
	SHLQ         $2, DX
	MOVBLZX      overwrite+120(FP), SI
	TESTL        SI, SI
	JNE          set
	STORE_ROW(Y0, Y1)
	STORE_ROW(Y2, Y3)
	STORE_ROW(Y4, Y5)
	STORE_ROW(Y6, Y7)
	STORE_ROW(Y8, Y9)
	STORE_ROW(Y10, Y11)
	VZEROUPPER
	RET

set:
	SET_ROW(Y0, Y1)
	SET_ROW(Y2, Y3)
	SET_ROW(Y4, Y5)
	SET_ROW(Y6, Y7)
	SET_ROW(Y8, Y9)
	SET_ROW(Y10, Y11)
	VZEROUPPER
	RET

// func Dot(x, y []float32) float64
TEXT ·Dot(SB), NOSPLIT, $0-56
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ y_base+24(FP), DI
	ZERO4PD(Y0, Y1, Y2, Y3)
	CMPQ CX, $16
	JL   dotquad

dotloop:
	WIDEN16
	FMA4PD(Y4, Y8, Y5, Y9, Y6, Y10, Y7, Y11, Y0, Y1, Y2, Y3)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	CMPQ CX, $16
	JGE  dotloop

dotquad:
	CMPQ CX, $4
	JL   dotreduce
	VCVTPS2PD   (SI), Y4
	VCVTPS2PD   (DI), Y8
	VFMADD231PD Y4, Y8, Y0
	ADDQ        $16, SI
	ADDQ        $16, DI
	SUBQ        $4, CX
	JMP         dotquad

dotreduce:
	REDUCE4PD(Y0, Y1, Y2, Y3, X0, X1)
	TESTQ        CX, CX
	JE           dotdone

dottail:
	VCVTSS2SD   (SI), X4, X4
	VCVTSS2SD   (DI), X8, X8
	VFMADD231SD X4, X8, X0
	ADDQ        $4, SI
	ADDQ        $4, DI
	DECQ        CX
	JNZ         dottail

dotdone:
	VMOVSD X0, ret+48(FP)
	VZEROUPPER
	RET

// func Axpy(alpha float32, x, y []float32)
TEXT ·Axpy(SB), NOSPLIT, $0-56
	VBROADCASTSS alpha+0(FP), Y15
	MOVQ         x_base+8(FP), SI
	MOVQ         x_len+16(FP), CX
	MOVQ         y_base+32(FP), DI
	UPDATE_Y(AXPY8, AXPY1)
	VZEROUPPER
	RET

// func Xpby(x []float32, beta float32, y []float32)
TEXT ·Xpby(SB), NOSPLIT, $0-56
	MOVQ         x_base+0(FP), SI
	MOVQ         x_len+8(FP), CX
	VBROADCASTSS beta+24(FP), Y15
	MOVQ         y_base+32(FP), DI
	UPDATE_Y(XPBY8, XPBY1)
	VZEROUPPER
	RET

// func FMALoop(n int) float32
//
// Every lane of Y0..Y11 gains 1 * 2^-10 a round; the result is lane 0 of
// their sum, 12*n*2^-10 (exact up to n = 2^24/12).
TEXT ·FMALoop(SB), NOSPLIT, $0-12
	MOVQ         n+0(FP), CX
	ZERO_Y0_Y11
	FMA_LOOP_CONSTS(Y12, Y13)
	TESTQ        CX, CX
	JLE          fmadone

fmaloop:
	FMA_ROUND12(Y12, Y13, Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11)
	DECQ        CX
	JNZ         fmaloop

fmadone:
	SUM12(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11)
	VMOVSS X0, ret+8(FP)
	VZEROUPPER
	RET

// func PackPanel(k int, b []float32, ldb int, dst []float32)
TEXT ·PackPanel(SB), NOSPLIT, $0-64
	MOVQ  k+0(FP), CX
	MOVQ  b_base+8(FP), SI
	MOVQ  ldb+32(FP), R8
	SHLQ  $2, R8
	MOVQ  dst_base+40(FP), DI
	TESTQ CX, CX
	JLE   packdone

packloop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    R8, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     packloop

packdone:
	VZEROUPPER
	RET

// TRANSPOSE8 transposes the 8x8 block in Y0..Y7 (rows) into Y8..Y15
// (columns), using Y0..Y7 as scratch.
#define TRANSPOSE8 \
	VUNPCKLPS  Y1, Y0, Y8; \
	VUNPCKHPS  Y1, Y0, Y9; \
	VUNPCKLPS  Y3, Y2, Y10; \
	VUNPCKHPS  Y3, Y2, Y11; \
	VUNPCKLPS  Y5, Y4, Y12; \
	VUNPCKHPS  Y5, Y4, Y13; \
	VUNPCKLPS  Y7, Y6, Y14; \
	VUNPCKHPS  Y7, Y6, Y15; \
	VSHUFPS    $0x44, Y10, Y8, Y0; \
	VSHUFPS    $0xEE, Y10, Y8, Y1; \
	VSHUFPS    $0x44, Y11, Y9, Y2; \
	VSHUFPS    $0xEE, Y11, Y9, Y3; \
	VSHUFPS    $0x44, Y14, Y12, Y4; \
	VSHUFPS    $0xEE, Y14, Y12, Y5; \
	VSHUFPS    $0x44, Y15, Y13, Y6; \
	VSHUFPS    $0xEE, Y15, Y13, Y7; \
	VPERM2F128 $0x20, Y4, Y0, Y8; \
	VPERM2F128 $0x20, Y5, Y1, Y9; \
	VPERM2F128 $0x20, Y6, Y2, Y10; \
	VPERM2F128 $0x20, Y7, Y3, Y11; \
	VPERM2F128 $0x31, Y4, Y0, Y12; \
	VPERM2F128 $0x31, Y5, Y1, Y13; \
	VPERM2F128 $0x31, Y6, Y2, Y14; \
	VPERM2F128 $0x31, Y7, Y3, Y15

// PREFETCHW_DI(off) asks for the line at off(DI) with intent to write.
#define PREFETCHW_DI(off) \
	BYTE $0x0F; BYTE $0x0D; BYTE $0x8F; LONG $off

// LOAD8 loads 8 values at offset off of eight rows: r0 = base, r4 = base
// + 4 rows; R8 is one row, R9 three rows in bytes.
#define LOAD8(r0, r4) \
	VMOVUPS (r0), Y0; \
	VMOVUPS (r0)(R8*1), Y1; \
	VMOVUPS (r0)(R8*2), Y2; \
	VMOVUPS (r0)(R9*1), Y3; \
	VMOVUPS (r4), Y4; \
	VMOVUPS (r4)(R8*1), Y5; \
	VMOVUPS (r4)(R8*2), Y6; \
	VMOVUPS (r4)(R9*1), Y7

// STORE8 writes the eight columns in Y8..Y15 at off within eight
// consecutive rows of dst: DI (rows 0-3) and AX (rows 4-7), DX one row
// and BX three rows apart in bytes.
#define STORE8(off) \
	VMOVUPS Y8, off(DI); \
	VMOVUPS Y9, off(DI)(DX*1); \
	VMOVUPS Y10, off(DI)(DX*2); \
	VMOVUPS Y11, off(DI)(BX*1); \
	VMOVUPS Y12, off(AX); \
	VMOVUPS Y13, off(AX)(DX*1); \
	VMOVUPS Y14, off(AX)(DX*2); \
	VMOVUPS Y15, off(AX)(BX*1)

// TRANSPOSE_ROUND transposes eight columns of the sixteen rows (SI, R10,
// R11, R12) into eight rows of dst (DI, AX) and moves every pointer on.
#define TRANSPOSE_ROUND \
	LOAD8(SI, R10); \
	TRANSPOSE8; \
	STORE8(0); \
	LOAD8(R11, R12); \
	TRANSPOSE8; \
	STORE8(32); \
	ADDQ $32, SI; \
	ADDQ $32, R10; \
	ADDQ $32, R11; \
	ADDQ $32, R12; \
	ADDQ R13, DI; \
	ADDQ R13, AX

// func TransposePanel(k int, b []float32, ldb int, dst []float32, ldd int)
TEXT ·TransposePanel(SB), NOSPLIT, $0-72
	MOVQ k+0(FP), CX
	SHRQ $3, CX
	MOVQ b_base+8(FP), SI
	MOVQ ldb+32(FP), R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	LEAQ (SI)(R8*4), R10  // row 4
	LEAQ (R10)(R8*4), R11 // row 8
	LEAQ (R11)(R8*4), R12 // row 12
	MOVQ dst_base+40(FP), DI
	MOVQ ldd+64(FP), DX
	SHLQ $2, DX
	LEAQ (DX)(DX*2), BX
	LEAQ (DI)(DX*4), AX   // dst row 4
	MOVQ DX, R13
	SHLQ $3, R13          // eight rows of dst in bytes
	TESTQ CX, CX
	JLE  transdone
	CMPQ DX, $64
	JEQ  transpanel

transloop:
	TRANSPOSE_ROUND
	DECQ CX
	JNZ  transloop

transdone:
	VZEROUPPER
	RET

	// A contiguous panel (ldd 16): the lines 2 KiB on, eight rounds ahead,
	// asked for with intent to write (PREFETCHW, which Go's assembler does
	// not name: 0F 0D /1 on DI with a 32-bit offset). Every CPU with AVX2
	// and FMA, which this code needs, runs it (Intel's before Broadwell
	// as a hint they may ignore; only 64-bit Intel CPUs older than
	// Nehalem rejected the opcode). A panel is written
	// again at every product, after both cores have read it: waiting for
	// each line's ownership line by line made packing P^T in a CG step
	// several times slower than packing it twice in a row.
transpanel:
	PREFETCHW_DI(2048)
	PREFETCHW_DI(2112)
	PREFETCHW_DI(2176)
	PREFETCHW_DI(2240)
	PREFETCHW_DI(2304)
	PREFETCHW_DI(2368)
	PREFETCHW_DI(2432)
	PREFETCHW_DI(2496)
	TRANSPOSE_ROUND
	DECQ CX
	JNZ  transpanel
	JMP  transdone

// func MaxAbsBits(x []float32) uint32
TEXT ·MaxAbsBits(SB), NOSPLIT, $0-28
	MOVQ         x_base+0(FP), SI
	MOVQ         x_len+8(FP), CX
	MOVL         $0x7fffffff, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	VPXOR        Y0, Y0, Y0
	VPXOR        Y1, Y1, Y1
	VPXOR        Y2, Y2, Y2
	VPXOR        Y3, Y3, Y3
	CMPQ         CX, $32
	JL           maxoct

maxloop:
	// Clearing the sign bit leaves bit patterns that order as the
	// magnitudes do, with Inf and NaN above every finite value.
	VPAND   (SI), Y15, Y4
	VPAND   32(SI), Y15, Y5
	VPAND   64(SI), Y15, Y6
	VPAND   96(SI), Y15, Y7
	VPMAXUD Y4, Y0, Y0
	VPMAXUD Y5, Y1, Y1
	VPMAXUD Y6, Y2, Y2
	VPMAXUD Y7, Y3, Y3
	ADDQ    $128, SI
	SUBQ    $32, CX
	CMPQ    CX, $32
	JGE     maxloop

maxoct:
	CMPQ    CX, $8
	JL      maxreduce
	VPAND   (SI), Y15, Y4
	VPMAXUD Y4, Y0, Y0
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     maxoct

maxreduce:
	VPMAXUD      Y1, Y0, Y0
	VPMAXUD      Y3, Y2, Y2
	VPMAXUD      Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPMAXUD      X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPMAXUD      X1, X0, X0
	VPSHUFD      $0xb1, X0, X1
	VPMAXUD      X1, X0, X0
	VMOVD        X0, AX
	TESTQ        CX, CX
	JE           maxdone

maxtail:
	MOVL    (SI), DX
	ANDL    $0x7fffffff, DX
	CMPL    DX, AX
	CMOVLHI DX, AX
	ADDQ    $4, SI
	DECQ    CX
	JNZ     maxtail

maxdone:
	MOVL       AX, ret+24(FP)
	VZEROUPPER
	RET

// func Hadamard(x, y []float32)
TEXT ·Hadamard(SB), NOSPLIT, $0-48
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ y_base+24(FP), DI
	UPDATE_Y(HADAMARD8, HADAMARD1)
	VZEROUPPER
	RET

// func MulAdd(m, x, y []float32)
TEXT ·MulAdd(SB), NOSPLIT, $0-72
	MOVQ m_base+0(FP), BX
	MOVQ x_base+24(FP), SI
	MOVQ x_len+32(FP), CX
	MOVQ y_base+48(FP), DI
	SUBQ SI, BX
	UPDATE_Y(MULADD8, MULADD1)
	VZEROUPPER
	RET

// func ScaleTo(alpha float32, x, y []float32)
TEXT ·ScaleTo(SB), NOSPLIT, $0-56
	VBROADCASTSS alpha+0(FP), Y15
	MOVQ         x_base+8(FP), SI
	MOVQ         x_len+16(FP), CX
	MOVQ         y_base+32(FP), DI
	WRITE_Y(SCALE8, SCALE1, VMOVUPS)
	VZEROUPPER
	RET

// func Kernel4x16(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb int, c []float32, ldc int, overwrite bool)
//
// Kernel6x16 for a tile of four rows (Y0..Y7), so that a block of rows
// that leaves four at the end needs no padded copy and wastes no FMAs.
TEXT ·Kernel4x16(SB), NOSPLIT, $0-121
	MOVQ k+0(FP), CX
	MOVQ a_base+16(FP), AX
	MOVQ rsa+40(FP), R8
	SHLQ $2, R8
	MOVQ csa+48(FP), R11
	SHLQ $2, R11
	LEAQ (R8)(R8*2), R9
	MOVQ b_base+56(FP), BX
	MOVQ ldb+80(FP), R12
	SHLQ $2, R12

	ZERO_Y0_Y7

	TESTQ CX, CX
	JLE   store4

	CMPQ CX, $2
	JL   tail4

pair4:
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	ROW_FMA((AX), Y0, Y1, Y14)
	ROW_FMA((AX)(R8*1), Y2, Y3, Y15)
	ROW_FMA((AX)(R8*2), Y4, Y5, Y14)
	ROW_FMA((AX)(R9*1), Y6, Y7, Y15)
	ADDQ R11, AX
	ADDQ R12, BX
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	ROW_FMA((AX), Y0, Y1, Y14)
	ROW_FMA((AX)(R8*1), Y2, Y3, Y15)
	ROW_FMA((AX)(R8*2), Y4, Y5, Y14)
	ROW_FMA((AX)(R9*1), Y6, Y7, Y15)
	ADDQ R11, AX
	ADDQ R12, BX
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  pair4

tail4:
	TESTQ CX, CX
	JLE   store4
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	ROW_FMA((AX), Y0, Y1, Y14)
	ROW_FMA((AX)(R8*1), Y2, Y3, Y15)
	ROW_FMA((AX)(R8*2), Y4, Y5, Y14)
	ROW_FMA((AX)(R9*1), Y6, Y7, Y15)

store4:
	VBROADCASTSS alpha+8(FP), Y14
	MOVQ         c_base+88(FP), DI
	MOVQ         ldc+112(FP), DX
	SHLQ         $2, DX
	MOVBLZX      overwrite+120(FP), SI
	TESTL        SI, SI
	JNE          set4
	STORE_ROW(Y0, Y1)
	STORE_ROW(Y2, Y3)
	STORE_ROW(Y4, Y5)
	STORE_ROW(Y6, Y7)
	VZEROUPPER
	RET

set4:
	SET_ROW(Y0, Y1)
	SET_ROW(Y2, Y3)
	SET_ROW(Y4, Y5)
	SET_ROW(Y6, Y7)
	VZEROUPPER
	RET

// ScaleTo64 and SquaresTo64 share one loop: each value is widened to
// float64 (exact), squared there by SQ (SQUARE; NO_SQUARE leaves it),
// multiplied by alpha (broadcast in Y15) and rounded once to float32;
// sixteen values a round, then four, then one. SI walks x and DI y.
#define WIDE_SCALE(SQ) \
	CMPQ       CX, $16; \
	JL         quad; \
loop: \
	VCVTPS2PD  (SI), Y0; \
	VCVTPS2PD  16(SI), Y1; \
	VCVTPS2PD  32(SI), Y2; \
	VCVTPS2PD  48(SI), Y3; \
	SQ(Y0); \
	SQ(Y1); \
	SQ(Y2); \
	SQ(Y3); \
	VMULPD     Y15, Y0, Y0; \
	VMULPD     Y15, Y1, Y1; \
	VMULPD     Y15, Y2, Y2; \
	VMULPD     Y15, Y3, Y3; \
	VCVTPD2PSY Y0, X0; \
	VCVTPD2PSY Y1, X1; \
	VCVTPD2PSY Y2, X2; \
	VCVTPD2PSY Y3, X3; \
	VMOVUPS    X0, (DI); \
	VMOVUPS    X1, 16(DI); \
	VMOVUPS    X2, 32(DI); \
	VMOVUPS    X3, 48(DI); \
	ADDQ       $64, SI; \
	ADDQ       $64, DI; \
	SUBQ       $16, CX; \
	CMPQ       CX, $16; \
	JGE        loop; \
quad: \
	CMPQ       CX, $4; \
	JL         tail; \
	VCVTPS2PD  (SI), Y0; \
	SQ(Y0); \
	VMULPD     Y15, Y0, Y0; \
	VCVTPD2PSY Y0, X0; \
	VMOVUPS    X0, (DI); \
	ADDQ       $16, SI; \
	ADDQ       $16, DI; \
	SUBQ       $4, CX; \
	JMP        quad; \
tail: \
	TESTQ      CX, CX; \
	JE         done; \
	VCVTSS2SD  (SI), X0, X0; \
	SQ(X0); \
	VMULSD     X15, X0, X0; \
	VCVTSD2SS  X0, X0, X0; \
	VMOVSS     X0, (DI); \
	ADDQ       $4, SI; \
	ADDQ       $4, DI; \
	DECQ       CX; \
	JMP        tail; \
done:

#define SQUARE(r) VMULPD r, r, r
#define NO_SQUARE(r)

// func ScaleTo64(alpha float64, x, y []float32)
//
// The bits of float32(float64(x[i])*alpha).
TEXT ·ScaleTo64(SB), NOSPLIT, $0-56
	VBROADCASTSD alpha+0(FP), Y15
	MOVQ         x_base+8(FP), SI
	MOVQ         x_len+16(FP), CX
	MOVQ         y_base+32(FP), DI
	WIDE_SCALE(NO_SQUARE)
	VZEROUPPER
	RET

// func SquaresTo64(alpha float64, x, y []float32)
//
// The bits of float32(float64(x[i])*float64(x[i])*alpha), the square and
// the product each rounded as Go rounds them (no fused multiply-add).
TEXT ·SquaresTo64(SB), NOSPLIT, $0-56
	VBROADCASTSD alpha+0(FP), Y15
	MOVQ         x_base+8(FP), SI
	MOVQ         x_len+16(FP), CX
	MOVQ         y_base+32(FP), DI
	WIDE_SCALE(SQUARE)
	VZEROUPPER
	RET

// func Patch3x3(row, src []float32, channels, plane, line int)
//
// Each channel's nine values are three runs of three: a 16-byte load and
// store per run, the fourth value of each store overwritten by the next
// one. The last channel is written exactly (8 + 4 bytes a run), so that
// nothing past its nine values is read or written.
TEXT ·Patch3x3(SB), NOSPLIT, $0-72
	MOVQ row_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ channels+48(FP), CX
	MOVQ plane+56(FP), R8
	SHLQ $2, R8
	MOVQ line+64(FP), R9
	SHLQ $2, R9
	LEAQ (SI)(R9*1), R10   // second input line
	LEAQ (SI)(R9*2), R11   // third input line
	TESTQ CX, CX
	JLE   p3done
	DECQ  CX
	JZ    p3last

p3loop:
	VMOVUPS (SI), X0
	VMOVUPS (R10), X1
	VMOVUPS (R11), X2
	VMOVUPS X0, (DI)
	VMOVUPS X1, 12(DI)
	VMOVUPS X2, 24(DI)
	ADDQ    R8, SI
	ADDQ    R8, R10
	ADDQ    R8, R11
	ADDQ    $36, DI
	DECQ    CX
	JNZ     p3loop

p3last:
	MOVQ  (SI), AX
	MOVQ  AX, (DI)
	MOVL  8(SI), AX
	MOVL  AX, 8(DI)
	MOVQ  (R10), AX
	MOVQ  AX, 12(DI)
	MOVL  8(R10), AX
	MOVL  AX, 20(DI)
	MOVQ  (R11), AX
	MOVQ  AX, 24(DI)
	MOVL  8(R11), AX
	MOVL  AX, 32(DI)

p3done:
	RET

// func ScaleToNT(alpha float32, x, y []float32)
//
// ScaleTo with non-temporal stores from the first 32-byte boundary of y
// on: the values go to memory without the cache first reading the lines
// they overwrite, for outputs too large to stay in cache.
TEXT ·ScaleToNT(SB), NOSPLIT, $0-56
	VBROADCASTSS alpha+0(FP), Y15
	MOVQ         x_base+8(FP), SI
	MOVQ         x_len+16(FP), CX
	MOVQ         y_base+32(FP), DI

head:
	TESTQ  CX, CX
	JE     done
	TESTQ  $31, DI
	JZ     body
	VMULSS (SI), X15, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JMP    head

body:
	WRITE_Y(SCALE8, SCALE1, VMOVNTPS)
	SFENCE
	VZEROUPPER
	RET

// func PrefetchRows(a []float32, rows, ld, cols int)
//
// One PREFETCHT0 a cache line of each row: the lines move toward L1
// while the caller computes on others. Prefetches do not fault, and
// change no memory.
TEXT ·PrefetchRows(SB), NOSPLIT, $0-48
	MOVQ a_base+0(FP), SI
	MOVQ rows+24(FP), CX
	MOVQ ld+32(FP), R8
	SHLQ $2, R8
	MOVQ cols+40(FP), R9
	SHLQ $2, R9

pfrow:
	TESTQ CX, CX
	JLE   pfdone
	MOVQ  SI, DI
	LEAQ  (SI)(R9*1), R10

pfline:
	CMPQ       DI, R10
	JGE        pfnext
	PREFETCHT0 (DI)
	ADDQ       $64, DI
	JMP        pfline

pfnext:
	ADDQ R8, SI
	DECQ CX
	JMP  pfrow

pfdone:
	RET

// func SquaresDot4(acc *[16]float64, y []float32, ldy int, w []float64)
//
// Four rows of y at once, each summing into its own four lanes (acc[4r]
// to acc[4r+3], one YMM register): four independent chains of additions,
// where one row alone would wait for the latency of each. Every lane adds
// its terms in the order of the loop, unfused, as the Go loop does.
TEXT ·SquaresDot4(SB), NOSPLIT, $0-64
	MOVQ    acc+0(FP), DI
	MOVQ    y_base+8(FP), SI
	MOVQ    ldy+32(FP), DX
	MOVQ    w_base+40(FP), BX
	MOVQ    w_len+48(FP), CX
	SHLQ    $2, DX
	LEAQ    (SI)(DX*2), R8
	VMOVUPD (DI), Y0
	VMOVUPD 32(DI), Y1
	VMOVUPD 64(DI), Y2
	VMOVUPD 96(DI), Y3
	SHRQ    $2, CX
	JZ      squaresdot4done

squaresdot4loop:
	VMOVUPD   (BX), Y4
	VCVTPS2PD (SI), Y5
	VCVTPS2PD (SI)(DX*1), Y6
	VCVTPS2PD (R8), Y7
	VCVTPS2PD (R8)(DX*1), Y8
	VMULPD    Y5, Y5, Y5
	VMULPD    Y6, Y6, Y6
	VMULPD    Y7, Y7, Y7
	VMULPD    Y8, Y8, Y8
	VMULPD    Y4, Y5, Y5
	VMULPD    Y4, Y6, Y6
	VMULPD    Y4, Y7, Y7
	VMULPD    Y4, Y8, Y8
	VADDPD    Y5, Y0, Y0
	VADDPD    Y6, Y1, Y1
	VADDPD    Y7, Y2, Y2
	VADDPD    Y8, Y3, Y3
	ADDQ      $16, SI
	ADDQ      $16, R8
	ADDQ      $32, BX
	DECQ      CX
	JNZ       squaresdot4loop

squaresdot4done:
	VMOVUPD Y0, (DI)
	VMOVUPD Y1, 32(DI)
	VMOVUPD Y2, 64(DI)
	VMOVUPD Y3, 96(DI)
	VZEROUPPER
	RET
