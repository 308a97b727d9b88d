package inspect

import (
	"math"
	"sort"

	"llmq/nn"
)

// Channel is one input channel ranked by its range.
type Channel struct {
	Index  int
	MaxAbs float64
	// Ratio is MaxAbs over the median MaxAbs of all channels of the input:
	// how far the channel stands out from a typical one. It is +Inf when
	// the median channel never fires.
	Ratio float64
}

// Median is the median of v (the mean of the two middle values for an
// even count), 0 for an empty slice.
func Median(v []float32) float64 {
	if len(v) == 0 {
		return 0
	}
	s := make([]float64, len(v))
	for i, x := range v {
		s[i] = float64(x)
	}
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// TopChannels returns the k channels of absMax with the largest values,
// largest first (lower index first on ties), with their ratio to the
// median. The median, not the mean, is the reference: a handful of
// outliers 100× the rest would pull the mean up and hide themselves.
func TopChannels(absMax []float32, k int) []Channel {
	med := Median(absMax)
	idx := make([]int, len(absMax))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return absMax[idx[a]] > absMax[idx[b]] })
	k = min(k, len(idx))
	out := make([]Channel, k)
	for i, j := range idx[:k] {
		v := float64(absMax[j])
		r := math.Inf(1)
		if med > 0 {
			r = v / med
		}
		out[i] = Channel{Index: j, MaxAbs: v, Ratio: r}
	}
	return out
}

// WeightInputMax is, for each input channel j, max |W[r, j]| over the rows
// r of every linear given (all of the same input width): the weight side of
// SmoothQuant's factor s_j = max|X_j|^α / max|W_j|^(1−α), taken over the
// linears that read the same input because they share s.
func WeightInputMax(ws []*nn.Dense) []float32 {
	if len(ws) == 0 {
		return nil
	}
	in := ws[0].In()
	out := make([]float32, in)
	for _, d := range ws {
		for r := 0; r < d.Out(); r++ {
			for j, v := range d.W[r*in : (r+1)*in] {
				out[j] = max(out[j], float32(math.Abs(float64(v))))
			}
		}
	}
	return out
}

// Recurring is a hidden channel that ranks among the top channels of the
// residual-stream inputs (the q/k/v and MLP inputs) in many places: the
// "same channels in every layer" signature of systematic outliers.
type Recurring struct {
	Index    int
	Count    int     // inputs where it ranks among the top K
	Of       int     // residual-stream inputs looked at
	MaxRatio float64 // its largest ratio to the median among them
}

// recurring tallies, over the given top lists, how often each channel
// appears; most frequent first, then by largest ratio.
func recurring(tops [][]Channel) []Recurring {
	by := map[int]*Recurring{}
	for _, top := range tops {
		for _, c := range top {
			r := by[c.Index]
			if r == nil {
				r = &Recurring{Index: c.Index, Of: len(tops)}
				by[c.Index] = r
			}
			r.Count++
			r.MaxRatio = math.Max(r.MaxRatio, c.Ratio)
		}
	}
	out := make([]Recurring, 0, len(by))
	for _, r := range by {
		out = append(out, *r)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Count != out[b].Count {
			return out[a].Count > out[b].Count
		}
		if out[a].MaxRatio != out[b].MaxRatio {
			return out[a].MaxRatio > out[b].MaxRatio
		}
		return out[a].Index < out[b].Index
	})
	return out
}
