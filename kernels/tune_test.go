package kernels

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"testing"
	"time"
)

type tuneVariant struct {
	name  string
	setup func()
}

func interleave(t *testing.T, rounds int, flops float64, f func(), vs []tuneVariant) {
	ts := make([][]float64, len(vs))
	for r := 0; r < rounds; r++ {
		for i, v := range vs {
			v.setup()
			if r == 0 {
				f()
			}
			st := time.Now()
			f()
			ts[i] = append(ts[i], time.Since(st).Seconds())
		}
	}
	for i, v := range vs {
		x := ts[i]
		sort.Float64s(x)
		g := func(s float64) float64 { return flops / s / 1e9 }
		t.Logf("%-40s best %7.1f p25 %7.1f median %7.1f", v.name, g(x[0]), g(x[len(x)/4]), g(x[len(x)/2]))
	}
}

func TestTuneSmallT(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	r := rand.New(rand.NewSource(1))
	saved := smallMT
	defer func() { smallMT = saved }()
	for _, m := range []int{32, 64, 96, 128, 256, 512} {
		n, k := 1024, 1024
		a, b, c := randSlice(r, m*k), randSlice(r, n*k), make([]float32, m*n)
		interleave(t, 40, 2*float64(m*n*k), func() { Sgemm(true, m, n, k, a, k, b, k, c, n, false) }, []tuneVariant{
			{fmt.Sprintf("m=%d dot", m), func() { smallMT = 1 << 30 }},
			{fmt.Sprintf("m=%d packed", m), func() { smallMT = 0 }},
		})
	}
}

func TestTuneSmallK(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	r := rand.New(rand.NewSource(1))
	saved := smallMT
	defer func() { smallMT = saved }()
	for _, s := range [][3]int{{4, 512, 64}, {8, 1024, 256}, {16, 1024, 256}, {32, 1024, 256}, {16, 1024, 512}, {32, 1024, 512}, {48, 1024, 512}, {4, 64, 16}} {
		m, n, k := s[0], s[1], s[2]
		a, b, c := randSlice(r, m*k), randSlice(r, n*k), make([]float32, m*n)
		interleave(t, 300, 2*float64(m*n*k), func() { Sgemm(true, m, n, k, a, k, b, k, c, n, false) }, []tuneVariant{
			{fmt.Sprintf("%v dot", s), func() { smallMT = 1 << 30 }},
			{fmt.Sprintf("%v packed", s), func() { smallMT = 0 }},
		})
	}
}

func TestTuneBig(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	r := rand.New(rand.NewSource(1))
	m, n, k := 512, 1024, 1024
	a, b, c := randSlice(r, m*k), randSlice(r, n*k), make([]float32, m*n)
	p := PackB(b, n, k)
	fl := 2 * float64(m*n*k)
	nop := func() {}
	vs := []tuneVariant{{"T", nop}, {"N", nop}, {"P", nop}}
	fs := []func(){func() { Sgemm(true, m, n, k, a, k, b, k, c, n, false) }, func() { Sgemm(false, m, n, k, a, k, b, n, c, n, false) }, func() { MatMulPacked(c, a, m, p) }}
	i := 0
	f := func() { fs[i%3](); }
	for j := range vs {
		jj := j
		vs[j].setup = func() { i = jj }
	}
	interleave(t, 30, fl, f, vs)
}

func TestTunePeak(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	const kc = 256
	r := rand.New(rand.NewSource(7))
	a := randSlice(r, kc*mr)
	bp := alignedFloats(kc * nr)
	copy(bp, randSlice(r, kc*nr))
	c := make([]float32, mr*nr)
	vs := []tuneVariant{{"fmaPeak", nil}, {"kernel6x16N", nil}}
	mode := 0
	vs[0].setup = func() { mode = 0 }
	vs[1].setup = func() { mode = 1 }
	interleave(t, 200, 2*mr*nr*kc*100, func() {
		if mode == 0 {
			fmaPeak(kc * 100 / 8 * 8 / 8) // 12 FMAs × 8 lanes × 2 = 192 flops/iter; match 2·6·16·kc·100
		} else {
			for i := 0; i < 100; i++ {
				sgemmKernel6x16N(kc, &a[0], &bp[0], &c[0], nr, 0, 1, 0)
			}
		}
	}, vs)
}

func TestTuneThreads(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	r := rand.New(rand.NewSource(1))
	m, n, k := 512, 1024, 1024
	a, b, c := randSlice(r, m*k), randSlice(r, n*k), make([]float32, m*n)
	p := PackB(b, n, k)
	interleave(t, 30, 2*float64(m*n*k), func() { MatMulPacked(c, a, m, p) }, []tuneVariant{
		{"P 1 thread", func() { runtime.GOMAXPROCS(1) }},
		{"P 2 threads", func() { runtime.GOMAXPROCS(2) }},
	})
}

func TestTuneBlocking(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	r := rand.New(rand.NewSource(1))
	m, n, k := 512, 1024, 1024
	a, b, c := randSlice(r, m*k), randSlice(r, n*k), make([]float32, m*n)
	p := PackB(b, n, k)
	saved := [3]int{kcMax, mcMax, ncMax}
	defer func() { kcMax, mcMax, ncMax = saved[0], saved[1], saved[2]; runtime.GOMAXPROCS(2) }()
	procs := 1
	if os.Getenv("PROCS") == "2" {
		procs = 2
	}
	runtime.GOMAXPROCS(procs)
	var vs []tuneVariant
	for _, kc := range []int{256, 384} {
		for _, mc := range []int{96, 144, 264} {
			for _, nc := range []int{64, 128, 256, 512} {
				kc, mc, nc := kc, mc, nc
				vs = append(vs, tuneVariant{fmt.Sprintf("kc=%d mc=%d nc=%d", kc, mc, nc), func() { kcMax, mcMax, ncMax = kc, mc, nc }})
			}
		}
	}
	interleave(t, 16, 2*float64(m*n*k), func() { MatMulPacked(c, a, m, p) }, vs)
}

func TestTuneKernelCache(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(2)
	const kc, k, np, nb = 256, 1024, 22, 64
	r := rand.New(rand.NewSource(7))
	ap := alignedFloats(np * mr * k)
	copy(ap, randSlice(r, len(ap)))
	bp := alignedFloats(nb * nr * k)
	copy(bp, randSlice(r, len(bp)))
	c := make([]float32, np*mr*1024)
	mode := 0
	var vs []tuneVariant
	for i, name := range []string{"L1 only", "A in L2, same B", "A in L2, 16 B panels (L2)", "A in L2, 64 B panels k-stride (L3)"} {
		i := i
		vs = append(vs, tuneVariant{name, func() { mode = i }})
	}
	interleave(t, 50, 2*mr*nr*kc*np*16, func() {
		switch mode {
		case 0:
			for i := 0; i < np*16; i++ {
				sgemmKernel6x16N(kc, &ap[0], &bp[0], &c[0], 1024, 1, 1, 0)
			}
		case 1:
			for i := 0; i < 16; i++ {
				sgemmKernel6x16N(kc, &ap[0], &bp[0], &c[0], 1024, 1, np, mr*k)
			}
		case 2:
			for i := 0; i < 16; i++ {
				sgemmKernel6x16N(kc, &ap[0], &bp[i*nr*kc], &c[i*16], 1024, 1, np, mr*k)
			}
		case 3:
			for i := 0; i < 16; i++ {
				sgemmKernel6x16N(kc, &ap[0], &bp[(i*4+rand.Intn(4))*nr*k], &c[i*16], 1024, 1, np, mr*k)
			}
		}
	}, vs)
}
