package calib

import (
	"reflect"
	"testing"
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
