package model

import (
	"testing"

	"llmq/internal/shared"
)

func loadBench(b *testing.B) *Model {
	m, err := Load(shared.Path(b, "models", "wiki-llama-25m"))
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func benchTokens(n, vocab int) []int {
	t := make([]int, n)
	for i := range t {
		t[i] = (i*7919 + 13) % vocab
	}
	return t
}

// BenchmarkPrefill512 feeds one 512-token window (the eval workload).
func BenchmarkPrefill512(b *testing.B) {
	m := loadBench(b)
	tokens := benchTokens(512, m.Vocab)
	st := m.NewState(512)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st.Reset()
		if _, err := m.Forward(st, tokens, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(512*b.N)/b.Elapsed().Seconds(), "tok/s")
}

// BenchmarkDecode generates 128 tokens one at a time after a 16-token prompt.
func BenchmarkDecode(b *testing.B) {
	m := loadBench(b)
	prompt := benchTokens(16, m.Vocab)
	st := m.NewState(256)
	const gen = 128
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st.Reset()
		if _, err := m.Forward(st, prompt, Options{LastOnly: true}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for j := 0; j < gen; j++ {
			if _, err := m.Forward(st, []int{j + 3}, Options{LastOnly: true}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(gen*b.N)/b.Elapsed().Seconds(), "tok/s")
}
