package kernels

import (
	"os"
	"sync/atomic"
)

// asmOn selects the AVX2+FMA kernels. It starts true when the CPU has AVX2
// and FMA, unless the environment variable LLMQ_NOASM is set to a non-empty
// value other than "0".
var asmOn atomic.Bool

func init() {
	v := os.Getenv("LLMQ_NOASM")
	asmOn.Store(cpuHasAsm && (v == "" || v == "0"))
}

// HasAsm reports whether this build and CPU can run the assembly kernels.
func HasAsm() bool { return cpuHasAsm }

// AsmEnabled reports whether the assembly kernels are currently in use.
func AsmEnabled() bool { return asmOn.Load() }

// SetAsm turns the assembly kernels on or off (turning them on is a no-op
// where HasAsm is false) and returns the previous setting. It is meant for
// tests and benchmarks: calls already running keep the path they started
// with.
func SetAsm(on bool) (prev bool) {
	return asmOn.Swap(on && cpuHasAsm)
}
