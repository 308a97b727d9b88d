package calib

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"llmq/internal/shared"
	"llmq/model"
)

// Sample draws n windows of seqlen consecutive tokens, inside the text,
// reproducibly for a seed.
func TestSample(t *testing.T) {
	ids := make([]int, 1000)
	for i := range ids {
		ids[i] = i
	}
	a, err := Sample(ids, 64, 50, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 64 {
		t.Fatalf("%d windows, want 64", len(a))
	}
	starts := map[int]bool{}
	for _, w := range a {
		if len(w) != 50 {
			t.Fatalf("window of %d tokens, want 50", len(w))
		}
		for j := 1; j < len(w); j++ {
			if w[j] != w[j-1]+1 {
				t.Fatalf("window %v is not consecutive", w[:5])
			}
		}
		if w[0] < 0 || w[len(w)-1] >= len(ids) {
			t.Fatalf("window %d…%d outside the text", w[0], w[len(w)-1])
		}
		starts[w[0]] = true
	}
	if len(starts) < 32 {
		t.Errorf("only %d distinct offsets in 64 draws", len(starts))
	}
	b, _ := Sample(ids, 64, 50, 7)
	if !reflect.DeepEqual(a, b) {
		t.Error("the same seed drew different windows")
	}
	c, _ := Sample(ids, 64, 50, 8)
	if reflect.DeepEqual(a, c) {
		t.Error("seeds 7 and 8 drew the same windows")
	}
}

func TestSampleBounds(t *testing.T) {
	ids := make([]int, 100)
	bad := []struct{ n, seqlen int }{{0, 10}, {-1, 10}, {4, 0}, {4, -3}, {4, 100}, {4, 1000}}
	for _, c := range bad {
		if _, err := Sample(ids, c.n, c.seqlen, 0); err == nil {
			t.Errorf("Sample(100 ids, %d, %d): no error", c.n, c.seqlen)
		}
	}
	// The longest window that fits.
	w, err := Sample(ids, 3, 99, 0)
	if err != nil || len(w) != 3 || len(w[0]) != 99 {
		t.Errorf("99 of 100 tokens: %v, %v", len(w), err)
	}
}

// The float32 Hessian (lower triangle by panels, mirrored) against XᵀX
// summed in float64, over batches of LLM-like inputs with outlier channels:
// entries within 10⁻⁵ of the scale √(H_ii·H_jj), exactly symmetric.
func TestHessianAccumulation(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	const in, rows, batches = 700, 300, 6
	s := &Stats{In: in, AbsMax: make([]float32, in), AbsSum: make([]float64, in), Hessian: make([]float32, in*in)}
	g := &group{stats: s, opt: Options{Hessian: true}, name: "test"}
	ref := make([]float64, in*in)
	gain := make([]float64, in)
	for j := range gain {
		gain[j] = 1
	}
	gain[3], gain[500] = 30, 12
	for b := 0; b < batches; b++ {
		x := make([]float32, rows*in)
		for i := 0; i < rows; i++ {
			common := rng.NormFloat64()
			for j := 0; j < in; j++ {
				x[i*in+j] = float32((common + 0.5*rng.NormFloat64()) * gain[j])
			}
		}
		if err := g.record(x, rows); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < rows; i++ {
			row := x[i*in : (i+1)*in]
			for a, va := range row {
				for c, vc := range row[:a+1] {
					ref[a*in+c] += float64(va) * float64(vc)
				}
			}
		}
	}
	mirrorLower(s.Hessian, in)
	if s.Tokens != rows*batches {
		t.Fatalf("%d tokens, want %d", s.Tokens, rows*batches)
	}
	worst := 0.0
	for a := 0; a < in; a++ {
		for c := 0; c <= a; c++ {
			h := s.Hessian[a*in+c]
			if h != s.Hessian[c*in+a] {
				t.Fatalf("H not symmetric at (%d, %d)", a, c)
			}
			scale := math.Sqrt(ref[a*in+a] * ref[c*in+c])
			worst = math.Max(worst, math.Abs(float64(h)-ref[a*in+c])/scale)
		}
	}
	t.Logf("worst relative error %.3g", worst)
	if worst > 1e-5 {
		t.Errorf("float32 Hessian: error %.3g of the scale", worst)
	}
}

// Ending the block once every group has recorded changes no statistic: for
// each input group alone and for all of them, on dense families (pre-norm,
// parallel residual, post-norm) and a mixture of experts, Collect returns
// the same numbers with and without the early end.
func TestCollectEarlyStop(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-gptneox", "tiny-opt", "tiny-mixtral", "tiny-gemma2"} {
		m, err := model.Load(shared.Path(t, "models", name))
		if err != nil {
			t.Fatal(err)
		}
		seqs := make([][]int, 3)
		for i := range seqs {
			seqs[i] = make([]int, 24)
			for j := range seqs[i] {
				seqs[i][j] = (i*131 + j*17 + 3) % m.Vocab
			}
		}
		a, err := Embed(m, seqs)
		if err != nil {
			t.Fatal(err)
		}
		r := m.NewBlockRunner()
		l := len(m.Blocks) - 1
		sets := [][]string{nil}
		for _, g := range m.Blocks[l].InputGroups() {
			sets = append(sets, g)
		}
		for _, roles := range sets {
			opt := Options{Hessian: true, KeepRows: 5}
			collectEarlyStop = false
			full, err := Collect(m, r, l, a, roles, opt)
			collectEarlyStop = true
			if err != nil {
				t.Fatal(err)
			}
			stops := collectStops
			early, err := Collect(m, r, l, a, roles, opt)
			if err != nil {
				t.Fatal(err)
			}
			if want := len(seqs); m.Blocks[l].MoE == nil && collectStops-stops != want {
				t.Errorf("%s %v: %d of %d passes ended early", name, roles, collectStops-stops, want)
			}
			if len(full) != len(early) {
				t.Fatalf("%s %v: %d and %d roles", name, roles, len(full), len(early))
			}
			for role, s := range full {
				if !equalStats(s, early[role]) {
					t.Errorf("%s %v: the statistics of %s differ with the early end", name, roles, role)
				}
			}
		}
	}
}

func equalStats(a, b *Stats) bool {
	a2, b2 := *a, *b
	a2.HessianTime, b2.HessianTime = 0, 0
	return reflect.DeepEqual(a2, b2)
}
