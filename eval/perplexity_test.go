package eval

import (
	"math"
	"os"
	"strconv"
	"testing"

	"llmq/internal/shared"
	"llmq/model"
	"llmq/tokenizer"
)

func TestWindows(t *testing.T) {
	ids := make([]int, 10)
	cases := []struct{ seqlen, limit, want int }{
		{3, 0, 3}, {5, 0, 2}, {11, 0, 0}, {2, 2, 2}, {10, 5, 1},
		{0, 0, 0}, {-5, 0, 0}, {-5, 3, 0}, // no window, no panic
	}
	for _, c := range cases {
		if got := len(Windows(ids, c.seqlen, c.limit)); got != c.want {
			t.Errorf("Windows(10 ids, %d, %d) = %d windows, want %d", c.seqlen, c.limit, got, c.want)
		}
	}
}

func TestLogSumExp(t *testing.T) {
	x := []float32{1000, 1000, -5, 2}
	want := 1000 + math.Log(2+math.Exp(-1005)+math.Exp(-998))
	if got := LogSumExp(x); math.Abs(got-want) > 1e-6 {
		t.Errorf("LogSumExp = %v, want %v", got, want)
	}
}

// TestWikiText2Perplexity is the end-to-end oracle: full WikiText-2 test at
// seqlen 512 must be within 0.1 % of the perplexity transformers computes
// from the same weights. It takes minutes, so it runs only with
// LLMQ_LONG=1 (set by .ci/run); otherwise the first windows are checked
// for a sane value.
func TestWikiText2Perplexity(t *testing.T) {
	dir := shared.Path(t, "models", "wiki-llama-25m")
	data := shared.Path(t, "data", "wikitext-2", "wiki.test.tokens")
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.FromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	ids := append([]int{tok.BOS()}, tok.Encode(string(text))...)
	long, _ := strconv.ParseBool(os.Getenv("LLMQ_LONG"))
	limit := 4
	if long {
		limit = 0
	}
	res, err := Perplexity(m, ids, 512, limit, nil)
	if err != nil {
		t.Fatal(err)
	}
	ppl := res.Value()
	t.Logf("ppl %.4f over %d windows (%.0f tok/s)", ppl, res.Windows, res.TokensPerSecond(512))
	if !long {
		if ppl < 100 || ppl > 2000 || math.IsNaN(ppl) {
			t.Errorf("ppl %.2f on the first windows is implausible", ppl)
		}
		return
	}
	const ref = 368.229 // reference.json: ppl_fp32_seq512, computed by transformers
	if rel := math.Abs(ppl-ref) / ref; rel > 0.001 {
		t.Errorf("ppl %.4f differs from transformers' %.3f by %.3f%% (> 0.1%%)", ppl, ref, 100*rel)
	}
}
