//go:build !noasm

#include "textflag.h"
#include "dot_amd64.h"

// The vector passes of a CG row update that read two vectors or more.
// Their float64 sums take the shape of Dot's (four 4-wide accumulators
// over rounds of 16, then rounds of 4 into the first, the reduction, then
// single values), so each sum has the bits Dot gives on the same values.

// func DotPair(x, y []float32) (xy, xx float64)
TEXT ·DotPair(SB), NOSPLIT, $0-64
	MOVQ   x_base+0(FP), SI
	MOVQ   x_len+8(FP), CX
	MOVQ   y_base+24(FP), DI
	ZERO4PD(Y0, Y1, Y2, Y3)
	ZERO4PD(Y12, Y13, Y14, Y15)
	CMPQ   CX, $16
	JL     pairquad

pairloop:
	WIDEN16
	FMA4PD(Y4, Y8, Y5, Y9, Y6, Y10, Y7, Y11, Y0, Y1, Y2, Y3)
	FMA4PD(Y4, Y4, Y5, Y5, Y6, Y6, Y7, Y7, Y12, Y13, Y14, Y15)
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	CMPQ        CX, $16
	JGE         pairloop

pairquad:
	CMPQ        CX, $4
	JL          pairreduce
	VCVTPS2PD   (SI), Y4
	VCVTPS2PD   (DI), Y8
	VFMADD231PD Y4, Y8, Y0
	VFMADD231PD Y4, Y4, Y12
	ADDQ        $16, SI
	ADDQ        $16, DI
	SUBQ        $4, CX
	JMP         pairquad

pairreduce:
	REDUCE4PD(Y0, Y1, Y2, Y3, X0, X1)
	REDUCE4PD(Y12, Y13, Y14, Y15, X12, X13)
	TESTQ CX, CX
	JE    pairdone

pairtail:
	VCVTSS2SD   (SI), X4, X4
	VCVTSS2SD   (DI), X8, X8
	VFMADD231SD X4, X8, X0
	VFMADD231SD X4, X4, X12
	ADDQ        $4, SI
	ADDQ        $4, DI
	DECQ        CX
	JNZ         pairtail

pairdone:
	VMOVSD X0, xy+48(FP)
	VMOVSD X12, xx+56(FP)
	VZEROUPPER
	RET

// The steps of y = b*w + (a*x + y) with the squares of the new y added
// to Y0..Y3 (X0 for a single value), a and b broadcast in Y14 and Y13,
// x, w and y addressed by SI, R8 and DI: 16 values (Dot's rounds), 4
// values (into the first accumulator), one value.
#define AXPY2DOT16 \
	VMOVUPS      (DI), Y4; \
	VMOVUPS      32(DI), Y5; \
	VFMADD231PS  (SI), Y14, Y4; \
	VFMADD231PS  32(SI), Y14, Y5; \
	VFMADD231PS  (R8), Y13, Y4; \
	VFMADD231PS  32(R8), Y13, Y5; \
	VMOVUPS      Y4, (DI); \
	VMOVUPS      Y5, 32(DI); \
	VCVTPS2PD    X4, Y6; \
	VEXTRACTF128 $1, Y4, X7; \
	VCVTPS2PD    X7, Y7; \
	VCVTPS2PD    X5, Y8; \
	VEXTRACTF128 $1, Y5, X9; \
	VCVTPS2PD    X9, Y9; \
	FMA4PD(Y6, Y6, Y7, Y7, Y8, Y8, Y9, Y9, Y0, Y1, Y2, Y3)

#define AXPY2DOT4 \
	VMOVUPS     (DI), X4; \
	VFMADD231PS (SI), X14, X4; \
	VFMADD231PS (R8), X13, X4; \
	VMOVUPS     X4, (DI); \
	VCVTPS2PD   X4, Y6; \
	VFMADD231PD Y6, Y6, Y0

#define AXPY2DOT1 \
	VMOVSS      (DI), X4; \
	VFMADD231SS (SI), X14, X4; \
	VFMADD231SS (R8), X13, X4; \
	VMOVSS      X4, (DI); \
	VCVTSS2SD   X4, X6, X6; \
	VFMADD231SD X6, X6, X0

// func AxpyPairDot(a float32, x []float32, b float32, w, y []float32) float64
TEXT ·AxpyPairDot(SB), NOSPLIT, $0-96
	VBROADCASTSS a+0(FP), Y14
	MOVQ         x_base+8(FP), SI
	MOVQ         x_len+16(FP), CX
	VBROADCASTSS b+32(FP), Y13
	MOVQ         w_base+40(FP), R8
	MOVQ         y_base+64(FP), DI
	ZERO4PD(Y0, Y1, Y2, Y3)
	CMPQ         CX, $16
	JL           apdquad

apdloop:
	AXPY2DOT16
	ADDQ         $64, SI
	ADDQ         $64, R8
	ADDQ         $64, DI
	SUBQ         $16, CX
	CMPQ         CX, $16
	JGE          apdloop

apdquad:
	CMPQ        CX, $4
	JL          apdreduce
	AXPY2DOT4
	ADDQ        $16, SI
	ADDQ        $16, R8
	ADDQ        $16, DI
	SUBQ        $4, CX
	JMP         apdquad

apdreduce:
	REDUCE4PD(Y0, Y1, Y2, Y3, X0, X1)
	TESTQ CX, CX
	JE    apddone

apdtail:
	AXPY2DOT1
	ADDQ        $4, SI
	ADDQ        $4, R8
	ADDQ        $4, DI
	DECQ        CX
	JNZ         apdtail

apddone:
	VMOVSD X0, ret+88(FP)
	VZEROUPPER
	RET

// func UpdateZR(alpha float32, p []float32, a float32, q []float32, b float32, z, r []float32) float64
//
// z += alpha*p and r = b*p + (a*q + r), each an FMA, in one pass over the
// four vectors; the sum of the new r's squares takes Dot's shape. q, p and
// r are AxpyPairDot's x, w and y (the AXPY2DOT steps); z is in R9.
TEXT ·UpdateZR(SB), NOSPLIT, $0-128
	VBROADCASTSS alpha+0(FP), Y12
	MOVQ         p_base+8(FP), R8
	MOVQ         p_len+16(FP), CX
	VBROADCASTSS a+32(FP), Y14
	MOVQ         q_base+40(FP), SI
	VBROADCASTSS b+64(FP), Y13
	MOVQ         z_base+72(FP), R9
	MOVQ         r_base+96(FP), DI
	ZERO4PD(Y0, Y1, Y2, Y3)
	CMPQ         CX, $16
	JL           zrquad

zrloop:
	VMOVUPS      (R9), Y10
	VMOVUPS      32(R9), Y11
	VFMADD231PS  (R8), Y12, Y10
	VFMADD231PS  32(R8), Y12, Y11
	VMOVUPS      Y10, (R9)
	VMOVUPS      Y11, 32(R9)
	AXPY2DOT16
	ADDQ         $64, SI
	ADDQ         $64, R8
	ADDQ         $64, R9
	ADDQ         $64, DI
	SUBQ         $16, CX
	CMPQ         CX, $16
	JGE          zrloop

zrquad:
	CMPQ        CX, $4
	JL          zrreduce
	VMOVUPS     (R9), X10
	VFMADD231PS (R8), X12, X10
	VMOVUPS     X10, (R9)
	AXPY2DOT4
	ADDQ        $16, SI
	ADDQ        $16, R8
	ADDQ        $16, R9
	ADDQ        $16, DI
	SUBQ        $4, CX
	JMP         zrquad

zrreduce:
	REDUCE4PD(Y0, Y1, Y2, Y3, X0, X1)
	TESTQ CX, CX
	JE    zrdone

zrtail:
	VMOVSS      (R9), X10
	VFMADD231SS (R8), X12, X10
	VMOVSS      X10, (R9)
	AXPY2DOT1
	ADDQ        $4, SI
	ADDQ        $4, R8
	ADDQ        $4, R9
	ADDQ        $4, DI
	DECQ        CX
	JNZ         zrtail

zrdone:
	VMOVSD X0, ret+120(FP)
	VZEROUPPER
	RET
