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
		spec := r.Scheme.Weights
		params, err := r.Scheme.WeightParams(d.W, d.Out(), d.In())
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(role), err)
		}
		refinePow2(d.W, d.Out(), d.In(), spec, params)
		qt, err := quant.QuantizeWithParams(d.W, d.Out(), d.In(), spec, params)
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
