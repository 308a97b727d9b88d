package methods

import (
	"fmt"

	"llmq/calib"
	"llmq/quant"
)

// RTN is round-to-nearest quantization, the baseline every paper compares
// against: each selected linear's weight is quantized independently with
// the scheme's granularity, q = clip(round(W/s) + z, qmin, qmax), with
// s (and z) from the min/max of each group — no calibration of weights,
// only of static activation ranges when the scheme asks for them.
type RTN struct {
	Scheme Scheme
	Select *Selector
	roles  []string // if set, only these roles (composite methods)
}

func (r *RTN) Name() string { return "rtn" }

func (r *RTN) NeedsCalibration() bool { return r.Scheme.NeedsCalibration() }

func (r *RTN) ApplyLayer(l *Layer) error {
	roles := r.Select.Roles(l)
	if r.roles != nil {
		roles = intersect(roles, r.roles)
	}
	stats, err := statsFor(l, r.Scheme, roles)
	if err != nil {
		return err
	}
	return r.quantize(l, roles, stats)
}

// quantize replaces the given roles by RTN-quantized linears; stats supply
// static activation ranges.
func (r *RTN) quantize(l *Layer, roles []string, stats map[string]*calib.Stats) error {
	for _, role := range roles {
		d, err := dense(l, role)
		if err != nil {
			return err
		}
		act, err := r.Scheme.ActQuant(stats[role])
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(role), err)
		}
		qt, err := RTNWeight(r.Scheme, d.W, d.Out(), d.In())
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(role), err)
		}
		q, err := quant.NewQuantLinear(qt, d.B, act)
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(role), err)
		}
		*l.Block.Linear(role) = q
	}
	return nil
}

// RTNWeight is RTN's quantization of one decoder-block weight w
// [rows×cols]: the scheme's observer picks each group's parameters,
// power-of-two constrained scales are refined (refinePow2), and w is
// rounded onto the grids. Model-free quantization (modelio) calls it on the
// weights it streams from a checkpoint, so both paths store the same codes
// and scales bit for bit. Rows are independent except under per-tensor
// granularity, so a caller may pass any whole rows of a larger weight
// (a part of a fused projection, or a slice of rows to bound memory) and
// get those rows of the whole weight's result.
func RTNWeight(s Scheme, w []float32, rows, cols int) (*quant.QTensor, error) {
	params, err := s.WeightParams(w, rows, cols)
	if err != nil {
		return nil, err
	}
	refinePow2(w, rows, cols, s.Weights, params)
	return quant.QuantizeWithParams(w, rows, cols, s.Weights, params)
}

// intersect keeps the roles of a that are in b, in a's order.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
				break
			}
		}
	}
	return out
}
