//go:build !amd64 || purego

package kernels

// s8Best is nil: this build has no assembly INT8 kernels.
var s8Best *s8Set

func s8Epilogue(n int, acc *int32, c *float32, as float32, bs, bias *float32) { noAsm() }
func s8AbsMax(n int, x *float32) float32                                      { noAsm(); return 0 }
func s8Quant(n32 int, x *float32, dst *byte, s float32)                       { noAsm() }
func s8Dequant(rows, n32 int, src *byte, lds int, dst *float32, ldd int, scale *float32, sstride int) {
	noAsm()
}
func clockLoop(n int)   { noAsm() }
func s8PeakLoop(n int)  { noAsm() }
func s8VPeakLoop(n int) { noAsm() }

// s8Sets is empty: no assembly INT8 kernel sets in this build.
func s8Sets() []*s8Set { return nil }
