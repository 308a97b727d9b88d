package kernels

import (
	"runtime"
	"strings"
	"testing"
)

// A panic on a worker goroutine reaches the caller of ParallelFor (where a
// recover can catch it) with the worker's value and stack.
func TestParallelForWorkerPanic(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	defer func() {
		r := recover()
		p, ok := r.(*WorkerPanic)
		if !ok {
			t.Fatalf("recovered %T %v, want a *WorkerPanic", r, r)
		}
		if p.Value != "boom" || !strings.Contains(string(p.Stack), "TestParallelForWorkerPanic") {
			t.Errorf("value %v, stack %s", p.Value, p.Stack)
		}
	}()
	ParallelFor(8, func(lo, hi int) {
		if lo >= 4 {
			panic("boom")
		}
	})
	t.Fatal("ParallelFor returned")
}
