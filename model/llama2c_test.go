package model

import (
	"math"
	"strconv"
	"testing"

	"llmq/internal/fixtures"
	"llmq/internal/shared"
)

// TestLlama2CReference compares with what llama2.c's own run.c computes on
// stories260K: logits at positions 0, 1 and 50 along the greedy path from
// BOS, and the first 64 greedy ids.
func TestLlama2CReference(t *testing.T) {
	dir := shared.Path(t, "models", "stories260K")
	ref := fixtures.ReadLlama2C(t, dir)
	m, err := Load(dir + "/stories260K.bin")
	if err != nil {
		t.Fatal(err)
	}
	// Teacher-forced pass over the reference path: position p's logits.
	st := m.NewState(64)
	logits, err := m.Forward(st, ref.Greedy[:64], Options{})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range ref.Logits {
		p, _ := strconv.Atoi(key)
		got := logits[p*m.Vocab : (p+1)*m.Vocab]
		var maxErr float64
		for i := range want {
			maxErr = math.Max(maxErr, math.Abs(float64(got[i])-want[i]))
		}
		if maxErr > 1e-4 {
			t.Errorf("position %d: max abs error %.3g > 1e-4", p, maxErr)
		} else {
			t.Logf("position %d: max abs error %.3g", p, maxErr)
		}
	}
	// Free-running greedy decoding with the KV cache, one token at a time.
	st = m.NewState(64)
	ids := []int{ref.Greedy[0]}
	for len(ids) < 64 {
		l, err := m.Forward(st, ids[len(ids)-1:], Options{LastOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, argmax(l))
	}
	for i := range ids {
		if ids[i] != ref.Greedy[i] {
			t.Fatalf("greedy id %d: got %d, want %d (got %v)", i, ids[i], ref.Greedy[i], ids)
		}
	}
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
