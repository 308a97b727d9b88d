package model

import (
	"math"
	"strings"
	"testing"

	"llmq/checkpoint"
	"llmq/internal/shared"
)

// TestRopeForFixtures reads the rope of the tiny fixtures whose rope is not
// the plain one-theta kind: tiny-llama3's llama3 scaling (checked against
// the oracle case built from the same config), tiny-gemma3's two layer
// types with their two thetas, tiny-phi3's partial rotary factor.
func TestRopeForFixtures(t *testing.T) {
	read := func(name string) *checkpoint.Config {
		cfg, err := checkpoint.ReadConfig(shared.Path(t, "models", name, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	t.Run("tiny-llama3", func(t *testing.T) {
		cfg := read("tiny-llama3")
		r, err := ropeFor(cfg, "", 32, 10000, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := r.Scaling
		if s.Type != "llama3" || s.Factor != 8 || s.LowFreqFactor != 1 || s.HighFreqFactor != 4 || s.OriginalMaxPos != 64 || r.Theta != 500000 || r.RotDim != 32 {
			t.Fatalf("rope %+v theta %v rotDim %d", s, r.Theta, r.RotDim)
		}
		o := readRopeOracle(t)
		for _, c := range o.Cases {
			if c.Name != "llama3_tiny" {
				continue
			}
			got := r.InvFreq(48)
			for i, want := range c.Calls[0].InvFreq {
				if got[i] != float32(want) {
					t.Errorf("inv_freq[%d] = %g, transformers %g", i, got[i], want)
				}
			}
			// The three llama3 bands all occur with an original context of
			// 64: kept, blended and divided by the factor.
			plain := func(i int) float64 { return math.Pow(500000, -float64(2*i)/32) }
			kept, blended, divided := 0, 0, 0
			for i, f := range got {
				switch ratio := plain(i) / float64(f); {
				case math.Abs(ratio-1) < 1e-6:
					kept++
				case math.Abs(ratio-8) < 1e-5:
					divided++
				default:
					blended++
				}
			}
			if kept == 0 || blended == 0 || divided == 0 {
				t.Errorf("bands kept/blended/divided = %d/%d/%d, want all three", kept, blended, divided)
			}
			return
		}
		t.Skip("oracle has no llama3_tiny case")
	})

	t.Run("tiny-gemma3", func(t *testing.T) {
		cfg := read("tiny-gemma3")
		for lt, theta := range map[string]float64{"sliding_attention": 1e4, "full_attention": 1e6} {
			r, err := ropeFor(cfg, lt, 32, 10000, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Theta != theta || r.RotDim != 32 || r.Scaling.Type != "default" {
				t.Errorf("%s: theta %v rotDim %d type %q, want theta %v", lt, r.Theta, r.RotDim, r.Scaling.Type, theta)
			}
			inv := r.InvFreq(1)
			if want := float32(1 / math.Pow(theta, 2.0/32)); math.Abs(float64(inv[1]-want)) > 1e-7 {
				t.Errorf("%s: inv_freq[1] = %g, want %g", lt, inv[1], want)
			}
		}
		if _, err := ropeFor(cfg, "", 32, 10000, nil); err == nil {
			t.Error("Gemma 3 without a layer type: want an error")
		}
	})

	t.Run("tiny-phi3", func(t *testing.T) {
		r, err := ropeFor(read("tiny-phi3"), "", 32, 10000, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.RotDim != 24 || r.HeadDim != 32 || r.Theta != 10000 {
			t.Errorf("rotDim %d headDim %d theta %v, want 24, 32, 10000", r.RotDim, r.HeadDim, r.Theta)
		}
	})
}

// TestRopeForForms checks the config spellings ropeFor reads and the
// errors it gives.
func TestRopeForForms(t *testing.T) {
	parse := func(t *testing.T, js string) *checkpoint.Config {
		t.Helper()
		cfg, err := checkpoint.ParseConfig("config.json", []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	longList := func(n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat("1.5,", n), ",") + "]"
	}
	ok := []struct {
		name, js, layer string
		check           func(t *testing.T, theta float64, rot int, typ string, factor, att float64, orig int)
	}{
		{"v5 default", `{"model_type":"llama","rope_parameters":{"rope_type":"default","rope_theta":5e5}}`, "",
			func(t *testing.T, theta float64, rot int, typ string, _, _ float64, _ int) {
				if theta != 5e5 || rot != 64 || typ != "default" {
					t.Errorf("theta %v rot %d type %q", theta, rot, typ)
				}
			}},
		{"legacy default", `{"model_type":"llama","rope_theta":1e6,"rope_scaling":null}`, "",
			func(t *testing.T, theta float64, _ int, typ string, _, _ float64, _ int) {
				if theta != 1e6 || typ != "default" {
					t.Errorf("theta %v type %q", theta, typ)
				}
			}},
		{"nothing", `{"model_type":"llama"}`, "",
			func(t *testing.T, theta float64, _ int, typ string, _, _ float64, _ int) {
				if theta != 10000 || typ != "default" {
					t.Errorf("theta %v type %q", theta, typ)
				}
			}},
		{"gpt-neox", `{"model_type":"gpt_neox","rotary_emb_base":20000,"rotary_pct":0.25}`, "",
			func(t *testing.T, theta float64, rot int, _ string, _, _ float64, _ int) {
				if theta != 20000 || rot != 16 {
					t.Errorf("theta %v rot %d", theta, rot)
				}
			}},
		{"legacy linear, type key", `{"model_type":"llama","rope_theta":1e4,"rope_scaling":{"type":"linear","factor":2}}`, "",
			func(t *testing.T, _ float64, _ int, typ string, f, _ float64, _ int) {
				if typ != "linear" || f != 2 {
					t.Errorf("type %q factor %v", typ, f)
				}
			}},
		{"rope_scaling replaces rope_parameters", `{"model_type":"llama","rope_parameters":{"rope_type":"default","rope_theta":1e4},"rope_scaling":{"rope_type":"linear","factor":4}}`, "",
			func(t *testing.T, _ float64, _ int, typ string, f, _ float64, _ int) {
				if typ != "linear" || f != 4 {
					t.Errorf("type %q factor %v", typ, f)
				}
			}},
		{"yarn defaults", `{"model_type":"qwen2","max_position_embeddings":32768,"rope_scaling":{"type":"yarn","factor":4}}`, "",
			func(t *testing.T, _ float64, _ int, typ string, f, att float64, orig int) {
				if typ != "yarn" || f != 4 || orig != 32768 || math.Abs(att-(0.1*math.Log(4)+1)) > 1e-15 {
					t.Errorf("type %q factor %v attention %v original %d", typ, f, att, orig)
				}
			}},
		{"phi3 top-level original", `{"model_type":"phi3","max_position_embeddings":131072,"original_max_position_embeddings":4096,
			"rope_scaling":{"type":"longrope","short_factor":` + longList(32) + `,"long_factor":` + longList(32) + `,"original_max_position_embeddings":1}}`, "",
			func(t *testing.T, _ float64, _ int, typ string, f, att float64, orig int) {
				if typ != "longrope" || orig != 4096 || f != 32 || math.Abs(att-math.Sqrt(1+math.Log(32)/math.Log(4096))) > 1e-15 {
					t.Errorf("type %q factor %v attention %v original %d", typ, f, att, orig)
				}
			}},
		{"keyed, unkeyed fallback", `{"model_type":"qwen3","layer_types":["full_attention"],"rope_parameters":{"rope_type":"default","rope_theta":3e4}}`, "full_attention",
			func(t *testing.T, theta float64, _ int, _ string, _, _ float64, _ int) {
				if theta != 3e4 {
					t.Errorf("theta %v", theta)
				}
			}},
		{"gemma3 legacy full", `{"model_type":"gemma3_text","rope_theta":1e6,"rope_local_base_freq":1e4,"rope_scaling":{"rope_type":"linear","factor":8}}`, "full_attention",
			func(t *testing.T, theta float64, _ int, typ string, f, _ float64, _ int) {
				if theta != 1e6 || typ != "linear" || f != 8 {
					t.Errorf("theta %v type %q factor %v", theta, typ, f)
				}
			}},
		{"gemma3 legacy sliding", `{"model_type":"gemma3_text","rope_theta":1e6,"rope_local_base_freq":1e4,"rope_scaling":{"rope_type":"linear","factor":8}}`, "sliding_attention",
			func(t *testing.T, theta float64, _ int, typ string, _, _ float64, _ int) {
				if theta != 1e4 || typ != "default" {
					t.Errorf("theta %v type %q", theta, typ)
				}
			}},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			r, err := ropeFor(parse(t, c.js), c.layer, 64, 10000, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := r.Scaling
			typ := s.Type
			if typ == "" {
				typ = "default"
			}
			c.check(t, r.Theta, r.RotDim, typ, s.Factor, s.AttentionFactor, s.OriginalMaxPos)
		})
	}

	t.Run("null layer entry is NoPE", func(t *testing.T) {
		r, err := ropeFor(parse(t, `{"model_type":"x","rope_parameters":{"full_attention":{"rope_type":"default"},"sliding_attention":null}}`), "sliding_attention", 64, 1e4, nil)
		if err != nil || r != nil {
			t.Fatalf("rope %v, err %v; want nil, nil", r, err)
		}
	})

	bad := []struct{ name, js, layer, want string }{
		{"unknown type", `{"model_type":"llama","rope_parameters":{"rope_type":"ntk-by-magic"}}`, "", `rope_type "ntk-by-magic" is not supported (supported: default, linear, dynamic, llama3, yarn, longrope)`},
		{"negative factor", `{"model_type":"llama","rope_parameters":{"rope_type":"linear","factor":-2}}`, "", `config.json: rope_parameters: field "factor" must be positive, got -2`},
		{"missing factor", `{"model_type":"llama","rope_scaling":{"type":"dynamic"}}`, "", `config.json: rope_scaling: rope_type "dynamic" needs field "factor"`},
		{"llama3 bands", `{"model_type":"llama","rope_parameters":{"rope_type":"llama3","factor":8,"low_freq_factor":4,"high_freq_factor":1,"original_max_position_embeddings":8192}}`, "", "high_freq_factor 1 must exceed low_freq_factor 4"},
		{"missing long_factor", `{"model_type":"phi3","rope_scaling":{"type":"longrope","short_factor":` + longList(32) + `}}`, "", `config.json: rope_scaling: rope_type "longrope" needs field "long_factor"`},
		{"long_factor length", `{"model_type":"phi3","rope_scaling":{"type":"longrope","short_factor":` + longList(32) + `,"long_factor":` + longList(31) + `}}`, "", `config.json: rope_scaling: field "long_factor" has 31 values, want rotary dimension / 2 = 32`},
		{"odd rotary dimension", `{"model_type":"llama","partial_rotary_factor":0.3}`, "", "rotary dimension of 19"},
		{"partial out of range", `{"model_type":"llama","rope_parameters":{"partial_rotary_factor":1.5}}`, "", "partial_rotary_factor must be in (0, 1]"},
		{"keyed without layer type", `{"model_type":"x","rope_parameters":{"full_attention":{"rope_type":"default"}}}`, "", "keyed by layer type"},
		{"keyed, absent type", `{"model_type":"x","rope_parameters":{"full_attention":{"rope_type":"default"}}}`, "sliding_attention", `no rope settings for layer type "sliding_attention"`},
		{"not an object", `{"model_type":"llama","rope_scaling":7}`, "", `field "rope_scaling" must be an object`},
		{"negative theta", `{"model_type":"llama","rope_theta":-1}`, "", "rope_theta must be positive"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := ropeFor(parse(t, c.js), c.layer, 64, 10000, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "config.json") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}
