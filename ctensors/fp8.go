package ctensors

import "math"

// decodeE4M3 returns the value of an FP8 E4M3FN byte (OCP 8-bit floating
// point specification, the format of torch.float8_e4m3fn that
// compressed-tensors stores float-quantized weights in): sign bit 7,
// exponent bits 6–3 with bias 7, mantissa bits 2–0; exponent 0 encodes
// subnormals m/8·2^−6; there are no infinities and S.1111.111 is NaN, so
// the largest finite value is 1.75·2^8 = 448.
//
// It is written from the format definition, independently of llmq's
// quantizer, so that Read checks exports against the specification rather
// than against the code that wrote them.
func decodeE4M3(b byte) float32 {
	sign := float32(1)
	if b&0x80 != 0 {
		sign = -1
	}
	e := int(b>>3) & 0xF
	m := float64(b & 7)
	switch {
	case e == 0xF && m == 7:
		return float32(math.NaN())
	case e == 0:
		return sign * float32(math.Ldexp(m/8, -6))
	}
	return sign * float32(math.Ldexp(1+m/8, e-7))
}
