package methods

import "testing"

// The estimate is the sum of what the shapes say: calibration activations
// scale with the sequences, GPTQ adds every input group's float32 Hessian,
// and a lazily loaded model holds one block's FP32 weights instead of all.
func TestEstimateRun(t *testing.T) {
	m := loadTiny(t, "tiny-llama")
	H, T := int64(m.Hidden), 32
	rtn := []Method{&RTN{}}
	gptq := []Method{&GPTQ{}}
	e0 := EstimateRun(m, rtn, 0, T, false)
	e4 := EstimateRun(m, gptq, 4, T, false)
	if e0.Activations != 0 || e0.Statistics != 0 {
		t.Errorf("data-free RTN: %+v, want no activations or statistics", e0)
	}
	if e4.Activations < 4*int64(T)*H*4 {
		t.Errorf("activations %d < 4 sequences × %d tokens × hidden %d in FP32", e4.Activations, T, H)
	}
	b := m.Blocks[0]
	var want int64
	for _, g := range b.InputGroups() {
		in := int64((*b.Linear(g[0])).In())
		want += 4 * in * in
	}
	if e4.Statistics < want {
		t.Errorf("statistics %d < the block's Hessians %d", e4.Statistics, want)
	}
	lazy := EstimateRun(m, rtn, 0, T, true)
	if lazy.Weights >= e0.Weights || len(m.Blocks) > 1 && lazy.Weights*int64(len(m.Blocks)) < e0.Weights-4*int64(len(m.Embed)) {
		t.Errorf("lazy weights %d vs eager %d", lazy.Weights, e0.Weights)
	}
}
