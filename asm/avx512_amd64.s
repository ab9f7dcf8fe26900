//go:build !noasm

#include "textflag.h"
#include "fmaloop_amd64.h"

// The 8x32 tile of C lives in Z0..Z15 (row i in Z(2i), Z(2i+1)); Z16 and
// Z17 hold the current row of B, Z18..Z21 the broadcast values of A.
#define ROW_FMA512(src, lo, hi, bc) \
	VBROADCASTSS src, bc; \
	VFMADD231PS  Z16, bc, lo; \
	VFMADD231PS  Z17, bc, hi

// One step of p: a row of B (two 16-wide halves, boff bytes apart) times
// a column of A's eight rows.
#define STEP8X32 \
	VMOVUPS (BX), Z16; \
	VMOVUPS (BX)(R13*1), Z17; \
	ROW_FMA512((AX), Z0, Z1, Z18); \
	ROW_FMA512((AX)(R8*1), Z2, Z3, Z19); \
	ROW_FMA512((AX)(R8*2), Z4, Z5, Z20); \
	ROW_FMA512((AX)(R9*1), Z6, Z7, Z21); \
	ROW_FMA512((R10), Z8, Z9, Z18); \
	ROW_FMA512((R10)(R8*1), Z10, Z11, Z19); \
	ROW_FMA512((R10)(R8*2), Z12, Z13, Z20); \
	ROW_FMA512((R10)(R9*1), Z14, Z15, Z21); \
	ADDQ R11, AX; \
	ADDQ R11, R10; \
	ADDQ R12, BX

#define STORE_ROW512(lo, hi) \
	VMOVUPS     (DI), Z16; \
	VMOVUPS     64(DI), Z17; \
	VFMADD231PS lo, Z18, Z16; \
	VFMADD231PS hi, Z18, Z17; \
	VMOVUPS     Z16, (DI); \
	VMOVUPS     Z17, 64(DI); \
	ADDQ        DX, DI

// SET_ROW512 writes a row of the tile times alpha over C, which it does
// not read (the overwrite form).
#define SET_ROW512(lo, hi) \
	VMULPS  lo, Z18, Z16; \
	VMULPS  hi, Z18, Z17; \
	VMOVUPS Z16, (DI); \
	VMOVUPS Z17, 64(DI); \
	ADDQ    DX, DI

// ZERO_Z0_Z11 and ZERO_Z0_Z15 clear the accumulators of the FMA loop and
// of a tile.
#define ZERO_Z0_Z11 \
	ZERO4(VPXORD, Z0, Z1, Z2, Z3); \
	ZERO4(VPXORD, Z4, Z5, Z6, Z7); \
	ZERO4(VPXORD, Z8, Z9, Z10, Z11)

#define ZERO_Z0_Z15 \
	ZERO_Z0_Z11; \
	ZERO4(VPXORD, Z12, Z13, Z14, Z15)

// KERNEL8X32_ENTRY loads the arguments both kernels share and clears
// the tile.
#define KERNEL8X32_ENTRY \
	MOVQ   k+0(FP), CX; \
	MOVQ   a_base+16(FP), AX; \
	MOVQ   rsa+40(FP), R8; \
	SHLQ   $2, R8; \
	MOVQ   csa+48(FP), R11; \
	SHLQ   $2, R11; \
	LEAQ   (R8)(R8*2), R9; \
	LEAQ   (AX)(R8*4), R10; \
	MOVQ   b_base+56(FP), BX; \
	MOVQ   ldb+80(FP), R12; \
	SHLQ   $2, R12; \
	MOVQ   boff+88(FP), R13; \
	SHLQ   $2, R13; \
	ZERO_Z0_Z15

// WRITE_TILE512 adds the tile (times alpha, in Z18) to C at DI, rows DX
// bytes apart, or writes it over C when SI is not zero; then it goes on
// at out.
#define WRITE_TILE512(set, out) \
	TESTL SI, SI; \
	JNE   set; \
	STORE_ROW512(Z0, Z1); \
	STORE_ROW512(Z2, Z3); \
	STORE_ROW512(Z4, Z5); \
	STORE_ROW512(Z6, Z7); \
	STORE_ROW512(Z8, Z9); \
	STORE_ROW512(Z10, Z11); \
	STORE_ROW512(Z12, Z13); \
	STORE_ROW512(Z14, Z15); \
	JMP   out; \
set: \
	SET_ROW512(Z0, Z1); \
	SET_ROW512(Z2, Z3); \
	SET_ROW512(Z4, Z5); \
	SET_ROW512(Z6, Z7); \
	SET_ROW512(Z8, Z9); \
	SET_ROW512(Z10, Z11); \
	SET_ROW512(Z12, Z13); \
	SET_ROW512(Z14, Z15)

// KERNEL8X32_STORE adds alpha times the tile to C, or writes it over C
// when overwrite is set, and returns.
#define KERNEL8X32_STORE \
	VBROADCASTSS alpha+8(FP), Z18; \
	MOVQ         c_base+96(FP), DI; \
	MOVQ         ldc+120(FP), DX; \
	SHLQ         $2, DX; \
	MOVBLZX      overwrite+128(FP), SI; \
	WRITE_TILE512(set, stored); \
stored: \
	VZEROUPPER; \
	RET

// BYTES moves the count of float32 values in arg, as bytes, into dst
// with op (MOVQ or ADDQ), through AX.
#define BYTES(arg, op, dst) \
	MOVQ arg, AX; \
	SHLQ $2, AX; \
	op   AX, dst

// func Kernel8x32(k int, alpha float32, a []float32, rsa, csa int, b []float32, ldb, boff int, c []float32, ldc int, overwrite bool)
//
// A is read through AX (rows 0-3, R8 apart) and R10 (rows 4-7), columns
// R11 apart; B through BX, rows R12 apart, the second half R13 on.
TEXT ·Kernel8x32(SB), NOSPLIT, $0-129
	KERNEL8X32_ENTRY

	TESTQ CX, CX
	JLE   store

	// Four steps of p per round while at least four remain.
	CMPQ CX, $4
	JL   tail

quad:
	STEP8X32
	STEP8X32
	STEP8X32
	STEP8X32
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  quad

tail:
	TESTQ CX, CX
	JLE   store
	STEP8X32
	DECQ  CX
	JMP   tail

store:
	KERNEL8X32_STORE

// func Kernel8x32Tiles(tiles, k int, alpha float32, a []float32, rsa, csa, astep int, b []float32, ldb, boff, bstep int, c []float32, ldc, cstep int, overwrite bool, kseg, ajump, bjump int)
//
// Kernel8x32 on tiles tiles in turn, each from its own A, B and C
// (astep, bstep and cstep values on from the last), the k steps of each in
// segments of kseg: after each, A and B move on by ajump and bjump values.
// DI counts a segment's steps; the frame holds the tiles left (0), the
// tile's A, B and C (8, 16, 24), the jumps in bytes (32, 40) and the
// segment length (48).
TEXT ·Kernel8x32Tiles(SB), NOSPLIT, $56-192
	MOVQ tiles+0(FP), AX
	MOVQ AX, 0(SP)
	MOVQ a_base+24(FP), AX
	MOVQ AX, 8(SP)
	MOVQ b_base+72(FP), AX
	MOVQ AX, 16(SP)
	MOVQ c_base+120(FP), AX
	MOVQ AX, 24(SP)
	BYTES(ajump+176(FP), MOVQ, 32(SP))
	BYTES(bjump+184(FP), MOVQ, 40(SP))
	MOVQ kseg+168(FP), AX
	MOVQ k+8(FP), CX
	TESTQ AX, AX
	CMOVQLE CX, AX
	MOVQ AX, 48(SP)
	MOVQ rsa+48(FP), R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	MOVQ csa+56(FP), R11
	SHLQ $2, R11
	MOVQ ldb+96(FP), R12
	SHLQ $2, R12
	MOVQ boff+104(FP), R13
	SHLQ $2, R13
	MOVQ ldc+144(FP), DX
	SHLQ $2, DX

tile:
	CMPQ 0(SP), $0
	JLE  done
	MOVQ k+8(FP), CX
	MOVQ 8(SP), AX
	LEAQ (AX)(R8*4), R10
	MOVQ 16(SP), BX
	ZERO_Z0_Z15

segment:
	TESTQ   CX, CX
	JLE     store
	MOVQ    48(SP), DI
	CMPQ    DI, CX
	CMOVQGT CX, DI
	SUBQ    DI, CX

segquad:
	CMPQ DI, $4
	JL   segtail
	STEP8X32
	STEP8X32
	STEP8X32
	STEP8X32
	SUBQ $4, DI
	JMP  segquad

segtail:
	TESTQ DI, DI
	JLE   segend
	STEP8X32
	DECQ  DI
	JMP   segtail

segend:
	ADDQ 32(SP), AX
	ADDQ 32(SP), R10
	ADDQ 40(SP), BX
	JMP  segment

store:
	VBROADCASTSS alpha+16(FP), Z18
	MOVQ         24(SP), DI
	MOVBLZX      overwrite+160(FP), SI
	WRITE_TILE512(set, next)

next:
	DECQ 0(SP)
	BYTES(astep+64(FP), ADDQ, 8(SP))
	BYTES(bstep+112(FP), ADDQ, 16(SP))
	BYTES(cstep+152(FP), ADDQ, 24(SP))
	JMP  tile

done:
	VZEROUPPER
	RET

// func FMALoop512(n int) float32
//
// FMALoop's rounds on Z0..Z11: the result is again 12*n*2^-10.
TEXT ·FMALoop512(SB), NOSPLIT, $0-12
	MOVQ         n+0(FP), CX
	ZERO_Z0_Z11
	FMA_LOOP_CONSTS(Z12, Z13)
	TESTQ        CX, CX
	JLE          fma512done

fma512loop:
	FMA_ROUND12(Z12, Z13, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11)
	DECQ        CX
	JNZ         fma512loop

fma512done:
	SUM12(Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11)
	VMOVSS X0, ret+8(FP)
	VZEROUPPER
	RET
