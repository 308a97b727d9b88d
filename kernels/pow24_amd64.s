//go:build amd64 && !purego

#include "textflag.h"

// func quantErrPow24AVX2(x *float32, n int, s, z, qmin, qmax float32, bound float64) float64
//
// 8 values per iteration: the fake quantization in float32 as
// quant.QuantizeInt computes it (VDIVPS, VROUNDPS to nearest even, + z,
// clip, − z, × s, x − ·), |d| split into its exponent k and mantissa m,
// m^2.4 by Horner in float64 (two 4-lane halves), times pow24Table[k]
// (gathered), accumulated in Y14/Y15. After each iteration the sum is
// compared with bound.
TEXT ·quantErrPow24AVX2(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS s+16(FP), Y10
	VBROADCASTSS z+20(FP), Y11
	VBROADCASTSS qmin+24(FP), Y12
	VBROADCASTSS qmax+28(FP), Y13
	LEAQ ·pow24Table(SB), R8
	LEAQ ·pow24Vec(SB), R9
	VXORPD Y14, Y14, Y14
	VXORPD Y15, Y15, Y15

loop:
	VMOVUPS (SI), Y0
	VDIVPS Y10, Y0, Y1
	VROUNDPS $0, Y1, Y1
	VADDPS Y11, Y1, Y1
	VMINPS Y13, Y1, Y1
	VMAXPS Y12, Y1, Y1
	VSUBPS Y11, Y1, Y1
	VMULPS Y10, Y1, Y1
	VSUBPS Y1, Y0, Y1
	VANDPS 0(R9), Y1, Y1
	VPSRLD $23, Y1, Y2
	VANDPS 32(R9), Y1, Y3
	VORPS 64(R9), Y3, Y3
	VADDPS Y3, Y3, Y3
	VSUBPS 96(R9), Y3, Y3
	VCVTPS2PD X3, Y4
	VEXTRACTF128 $1, Y3, X3
	VCVTPS2PD X3, Y5
	VMOVUPD 352(R9), Y6
	VMOVUPD Y6, Y7
	VFMADD213PD 320(R9), Y4, Y6
	VFMADD213PD 320(R9), Y5, Y7
	VFMADD213PD 288(R9), Y4, Y6
	VFMADD213PD 288(R9), Y5, Y7
	VFMADD213PD 256(R9), Y4, Y6
	VFMADD213PD 256(R9), Y5, Y7
	VFMADD213PD 224(R9), Y4, Y6
	VFMADD213PD 224(R9), Y5, Y7
	VFMADD213PD 192(R9), Y4, Y6
	VFMADD213PD 192(R9), Y5, Y7
	VFMADD213PD 160(R9), Y4, Y6
	VFMADD213PD 160(R9), Y5, Y7
	VFMADD213PD 128(R9), Y4, Y6
	VFMADD213PD 128(R9), Y5, Y7
	VPCMPEQD Y8, Y8, Y8
	VGATHERDPD Y8, (R8)(X2*8), Y0
	VEXTRACTI128 $1, Y2, X2
	VPCMPEQD Y8, Y8, Y8
	VGATHERDPD Y8, (R8)(X2*8), Y1
	VFMADD231PD Y0, Y6, Y14
	VFMADD231PD Y1, Y7, Y15
	ADDQ $32, SI

	VADDPD Y14, Y15, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPD X9, X8, X8
	VPERMILPD $1, X8, X9
	VADDSD X9, X8, X8
	UCOMISD bound+32(FP), X8
	JCC done
	SUBQ $8, CX
	JNZ loop

done:
	MOVSD X8, ret+40(FP)
	VZEROUPPER
	RET
