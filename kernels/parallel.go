package kernels

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// ParallelFor runs f(lo, hi) over [0, n) split into contiguous, nearly equal
// chunks, one per goroutine, using at most runtime.GOMAXPROCS(0) goroutines
// (fewer when n is small). The calling goroutine runs the first chunk.
// ParallelFor returns when every chunk has finished. n ≤ 0 is a no-op.
func ParallelFor(n int, f func(lo, hi int)) {
	parallelChunks(n, runtime.GOMAXPROCS(0), f)
}

// ParallelForFlops is ParallelFor for a job of about flops floating-point
// (or integer) operations in all: it uses no more goroutines than the work
// pays for (about one per MFLOP, workersFor), so a small job — one decode
// step's attention, say — runs on the calling goroutine instead of paying
// for hand-offs that cost more than the work.
func ParallelForFlops(n int, flops float64, f func(lo, hi int)) {
	if n <= 0 {
		return
	}
	parallelChunks(n, workersFor(flops, n), f)
}

// parallelChunks runs f over [0, n) in w nearly equal contiguous chunks
// (at most n), the caller taking the first.
func parallelChunks(n, w int, f func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if w > n {
		w = n
	}
	if w <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	var failed atomic.Pointer[WorkerPanic]
	wg.Add(w - 1)
	for i := 1; i < w; i++ {
		lo, hi := i*n/w, (i+1)*n/w
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					failed.CompareAndSwap(nil, &WorkerPanic{Value: r, Stack: debug.Stack()})
				}
			}()
			f(lo, hi)
		}()
	}
	f(0, n/w)
	wg.Wait()
	if p := failed.Load(); p != nil {
		panic(p)
	}
}

// WorkerPanic is what ParallelFor panics with on the calling goroutine when
// f panicked on one of its workers: the worker's panic value and stack. A
// panic on a worker goroutine would otherwise end the process before any
// caller could recover it.
type WorkerPanic struct {
	Value any
	Stack []byte
}

func (p *WorkerPanic) String() string {
	return fmt.Sprintf("%v [recovered from a worker goroutine]\n\n%s", p.Value, p.Stack)
}

// Error makes the panic print its value when it is not recovered.
func (p *WorkerPanic) Error() string { return p.String() }

// workersFor returns how many goroutines to use for a job of the given size
// (in flops) that splits into at most units independent pieces.
func workersFor(flops float64, units int) int {
	w := runtime.GOMAXPROCS(0)
	// Below ~minFlopsPerWorker of work a goroutine hand-off costs more than
	// it saves.
	if lim := int(flops / minFlopsPerWorker); lim < w {
		w = lim
	}
	if units < w {
		w = units
	}
	if w < 1 {
		w = 1
	}
	return w
}

const minFlopsPerWorker = 1 << 20

// taskRunner is implemented by the job types handed to parallelDynamic, so the
// scheduler needs no closure allocation per call.
type taskRunner interface {
	run(i int)
}

// parallelDynamic runs t.run(i) for every i in [0, n) on `workers`
// goroutines (the caller included) which pull indices from a shared counter,
// so uneven tasks balance out.
func parallelDynamic(n, workers int, t taskRunner) {
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		for i := 0; i < n; i++ {
			t.run(i)
		}
		return
	}
	s := schedPool.Get().(*sched)
	s.next.Store(0)
	s.n = int64(n)
	s.t = t
	s.wg.Add(workers - 1)
	for i := 1; i < workers; i++ {
		go s.worker()
	}
	s.loop()
	s.wg.Wait()
	s.t = nil
	schedPool.Put(s)
}

type sched struct {
	next atomic.Int64
	n    int64
	t    taskRunner
	wg   sync.WaitGroup
}

var schedPool = sync.Pool{New: func() any { return new(sched) }}

func (s *sched) loop() {
	for {
		i := s.next.Add(1) - 1
		if i >= s.n {
			return
		}
		s.t.run(int(i))
	}
}

func (s *sched) worker() {
	s.loop()
	s.wg.Done()
}
