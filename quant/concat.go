package quant

import (
	"fmt"
	"slices"
)

// ConcatRows stacks quantized linears with the same input into one whose
// output rows are theirs in order — a checkpoint's fused projection (Phi-3's
// qkv_proj, gate_up_proj) rebuilt from parts quantized apart. It is exact
// when every part has the same weight spec with per-row parameters
// (channel or group granularity: each row keeps its own scales) and the
// same activation quantization; per-tensor weight scales or different
// static input scales have no single fused form and are an error.
func ConcatRows(parts ...*QuantLinear) (*QuantLinear, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: nothing to concatenate", ErrShape)
	}
	first := parts[0]
	spec, cols, act := first.w.Spec, first.w.Cols, first.ActSpec()
	if spec.Granularity == PerTensor && len(parts) > 1 {
		return nil, fmt.Errorf("per-tensor weight scales (%s) cannot be fused: each part has its own", spec)
	}
	out := &QTensor{Cols: cols, Spec: spec}
	var bias []float32
	hasBias := first.bias != nil
	for i, p := range parts {
		w := p.w
		if w.Spec != spec || w.Cols != cols {
			return nil, fmt.Errorf("part %d is %s over %d columns, part 0 %s over %d: only parts of one format fuse", i, w.Spec, w.Cols, spec, cols)
		}
		if a := p.ActSpec(); (a == nil) != (act == nil) || a != nil && *a != *act {
			return nil, fmt.Errorf("part %d quantizes its input differently from part 0", i)
		}
		if (p.bias != nil) != hasBias {
			return nil, fmt.Errorf("part %d has a bias and part 0 not, or the reverse", i)
		}
		out.Rows += w.Rows
		out.Data = append(out.Data, w.Data...)
		out.Scales = append(out.Scales, w.Scales...)
		out.Zeros = append(out.Zeros, w.Zeros...)
		bias = append(bias, p.bias...)
	}
	if !hasBias {
		bias = nil
	}
	if act != nil {
		a := *act
		act = &a
	}
	return NewQuantLinear(out, slices.Clip(bias), act)
}
