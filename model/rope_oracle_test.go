package model

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"testing"

	"llmq/checkpoint"
	"llmq/nn"
	"llmq/tensor"
)

// ropeOracle is testdata/rope-oracles.json, written by
// scripts/rope-oracles.py from transformers' own rotary-embedding modules.
type ropeOracle struct {
	Meta  map[string]any `json:"meta"`
	Cases []struct {
		Name      string          `json:"name"`
		Config    json.RawMessage `json:"config"`
		LayerType string          `json:"layer_type"`
		HeadDim   int             `json:"head_dim"`
		Round     string          `json:"round"` // "bfloat16": inv_freq buffers cast to bf16
		Error     string          `json:"error"`
		Calls     []struct {
			Pos0      int         `json:"pos0"`
			Rows      int         `json:"rows"`
			History   string      `json:"history"`
			InvFreq   []float64   `json:"inv_freq"`
			Attention float64     `json:"attention_scaling"`
			RotDim    int         `json:"rot_dim"`
			Positions []int       `json:"positions"`
			Cos       [][]float64 `json:"cos"`
			Sin       [][]float64 `json:"sin"`
		} `json:"calls"`
	} `json:"cases"`
}

func readRopeOracle(t *testing.T) *ropeOracle {
	t.Helper()
	raw, err := os.ReadFile("testdata/rope-oracles.json")
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("testdata/rope-oracles.json is absent (scripts/rope-oracles.py writes it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	var o ropeOracle
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatal(err)
	}
	return &o
}

func bf16Round(f float32) float32 { return tensor.BF16ToF32(tensor.F32ToBF16(f)) }

// ropeProbe returns cos and sin of every pair at positions pos0 …
// pos0+rows−1 as Apply rotates them: rotating the unit vector of the
// pair's first feature leaves (cos, sin) in the pair.
func ropeProbe(r *nn.Rope, pos0, rows int) (cos, sin [][]float32) {
	hd, half := r.HeadDim, r.RotDim/2
	x := make([]float32, rows*hd)
	for t := 0; t < rows; t++ {
		for i := 0; i < half; i++ {
			x[t*hd+i] = 1
		}
	}
	r.Apply(x, rows, 1, pos0)
	for t := 0; t < rows; t++ {
		cos = append(cos, x[t*hd:t*hd+half])
		sin = append(sin, x[t*hd+half:t*hd+2*half])
	}
	return cos, sin
}

// TestRopeOracle checks ropeFor against transformers 5.17 on every case of
// the oracle: the config.json is read by both; the inverse frequencies of
// each call (the sequence length pos0+rows decides the dynamic and longrope
// ones) must agree to 1e-6 relative, the attention factor to 1e-12, and
// the cos/sin Apply rotates by to 1e-6 absolute.
func TestRopeOracle(t *testing.T) {
	o := readRopeOracle(t)
	t.Logf("oracle: %v", o.Meta)
	var worstInv, worstCS, worstLoose float64
	var worstInvAt, worstCSAt, worstLooseAt string
	exact, total := 0, 0
	for _, c := range o.Cases {
		t.Run(c.Name, func(t *testing.T) {
			cfg, err := checkpoint.ParseConfig(c.Name+"/config.json", c.Config)
			if err != nil {
				t.Fatal(err)
			}
			var round func(float32) float32
			if c.Round == "bfloat16" {
				round = bf16Round
			}
			hd := c.HeadDim
			if hd == 0 { // error records carry only the config
				h, _ := cfg.Int("hidden_size")
				n, _ := cfg.Int("num_attention_heads")
				if hd, _ = cfg.IntOr(h/max(n, 1), "head_dim"); hd == 0 {
					t.Fatal("cannot tell the head dimension")
				}
			}
			r, err := ropeFor(cfg, c.LayerType, hd, 10000, round)
			if c.Error != "" {
				if err == nil {
					t.Fatalf("ropeFor accepts a config transformers refuses (%s)", c.Error)
				}
				t.Logf("refused, as by transformers: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, call := range c.Calls {
				if call.History != "" {
					// A stateful divergence, documented in nn.Rope.regime.
					continue
				}
				if r.RotDim != call.RotDim {
					t.Fatalf("rotary dimension %d, transformers %d", r.RotDim, call.RotDim)
				}
				inv := r.InvFreq(call.Pos0 + call.Rows)
				if len(inv) != len(call.InvFreq) {
					t.Fatalf("%d frequencies, transformers %d", len(inv), len(call.InvFreq))
				}
				for i, want := range call.InvFreq {
					total++
					if float32(want) == inv[i] {
						exact++
					}
					rel := math.Abs(float64(inv[i])-want) / math.Abs(want)
					if rel > worstInv {
						worstInv, worstInvAt = rel, c.Name
					}
					if rel > 1e-6 {
						t.Errorf("pos0 %d rows %d: inv_freq[%d] = %g, transformers %g (rel %.2g)", call.Pos0, call.Rows, i, inv[i], want, rel)
					}
				}
				att := r.Scaling.AttentionFactor
				if att == 0 {
					att = 1
				}
				if math.Abs(att-call.Attention) > 1e-12*call.Attention {
					t.Errorf("attention factor %v, transformers %v", att, call.Attention)
				}
				cos, sin := ropeProbe(r, call.Pos0, call.Rows)
				for k, p := range call.Positions {
					for i := range call.Cos[k] {
						// Where our frequency is not bit-identical to
						// transformers' (a power θ^(2i/d) within a hair of a
						// float32 rounding boundary, which torch's ≤1-ulp
						// powf rounds the other way), the angle p·f differs
						// by p·|Δf| plus a rounding of the float32 angle.
						tol := 1e-6
						if df := math.Abs(float64(inv[i]) - call.InvFreq[i]); df != 0 {
							tol += att * float64(p) * (df + call.InvFreq[i]*0x1p-23)
						}
						for _, v := range []struct {
							what      string
							got, want float64
						}{{"cos", float64(cos[p-call.Pos0][i]), call.Cos[k][i]}, {"sin", float64(sin[p-call.Pos0][i]), call.Sin[k][i]}} {
							d := math.Abs(v.got - v.want)
							if tol == 1e-6 && d > worstCS {
								worstCS, worstCSAt = d, c.Name
							}
							if tol > 1e-6 && d > worstLoose {
								worstLoose, worstLooseAt = d, c.Name
							}
							if d > tol {
								t.Errorf("pos0 %d rows %d: %s at position %d pair %d = %.9g, transformers %.9g", call.Pos0, call.Rows, v.what, p, i, v.got, v.want)
							}
						}
					}
				}
			}
		})
	}
	t.Logf("worst inv_freq relative error %.3g (%s); %d of %d frequencies bit-identical", worstInv, worstInvAt, exact, total)
	t.Logf("worst cos/sin absolute error %.3g (%s) where the frequency is bit-identical; %.3g (%s) where it is not", worstCS, worstCSAt, worstLoose, worstLooseAt)
}
