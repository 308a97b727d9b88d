package kernels

// Hooks for the external tests and benchmarks of the INT8 and int4 kernels
// (package kernels_test, which also imports llmq/quant).

// ClockLoop runs n iterations of 64 dependent single-cycle adds (asm builds
// only).
var ClockLoop = clockLoop

// S8PeakLoop runs n register-only k4 steps of the 5×16 INT8 microkernel:
// 320 int8 multiply-adds each (asm builds only).
var S8PeakLoop = s8PeakLoop

// S8KernelSet names the INT8 kernel set in use ("go" without assembly).
func S8KernelSet() string {
	if s := s8Active(); s != nil {
		return s.name
	}
	return "go"
}

// SetS8Blocking overrides the INT8 blocking (k4 steps per block, rows and
// columns per tile), the small-m threshold of GemmS8 and the packing budgets
// (bytes); it returns a function restoring the previous values.
func SetS8Blocking(kc4, mc, nc, smallM, aBudget, bBudget int) (restore func()) {
	old := [...]int{s8KcMax, s8McMax, s8NcMax, s8SmallM, s8ABudget, s8BBudget}
	s8KcMax, s8McMax, s8NcMax, s8SmallM, s8ABudget, s8BBudget = kc4, mc, nc, smallM, aBudget, bBudget
	return func() {
		s8KcMax, s8McMax, s8NcMax, s8SmallM, s8ABudget, s8BBudget = old[0], old[1], old[2], old[3], old[4], old[5]
	}
}

// SetQ4Blocking overrides the int4 blocking (rows per tile, k per block,
// columns per tile) and returns a function restoring it.
func SetQ4Blocking(mc, kc, nc int) (restore func()) {
	old := [...]int{q4McMax, q4KcMax, q4NcMax}
	q4McMax, q4KcMax, q4NcMax = mc, kc, nc
	return func() { q4McMax, q4KcMax, q4NcMax = old[0], old[1], old[2] }
}

// S8VPeakLoop runs n iterations of 16 independent VPDPBUSD zmm: 1024 int8
// multiply-adds each (CPUs with AVX-512 VNNI only).
var S8VPeakLoop = s8VPeakLoop

// HasVNNI reports whether the AVX-512 VNNI INT8 kernels run here.
func HasVNNI() bool {
	for _, s := range s8Sets() {
		if s.unsignedA {
			return true
		}
	}
	return false
}

// S8Sets names the assembly INT8 kernel sets this CPU runs.
func S8Sets() []string {
	var names []string
	for _, s := range s8Sets() {
		names = append(names, s.name)
	}
	return names
}

// UseS8Set makes the named kernel set (from S8Sets) the one in use and
// returns a function restoring the default.
func UseS8Set(name string) (restore func()) {
	for _, s := range s8Sets() {
		if s.name == name {
			prev := s8Override.Swap(s)
			return func() { s8Override.Store(prev) }
		}
	}
	panic("kernels: no INT8 kernel set " + name)
}

// HasQ4AVX512 reports whether the AVX-512 W4A16 decode kernel runs here.
func HasQ4AVX512() bool { return cpuHasAVX512 }

// UseQ4AVX512 turns the AVX-512 W4A16 decode kernel on or off (where the
// CPU has it) and returns a function restoring the previous choice.
func UseQ4AVX512(on bool) (restore func()) {
	prev := q4AVX512
	q4AVX512 = on && cpuHasAVX512
	return func() { q4AVX512 = prev }
}
