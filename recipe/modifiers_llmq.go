package recipe

// Modifiers for the methods llm-compressor lacks, in the same style.

import (
	"fmt"

	"gopkg.in/yaml.v3"

	"llmq/model"
	"llmq/quant/methods"
)

func init() {
	modifiers["LLMInt8Modifier"] = buildLLMInt8
	modifiers["LoRCModifier"] = buildLoRC
	modifiers["LKDModifier"] = buildLKD
	modifiers["KVCacheModifier"] = buildKVCache
	modifiers["ZeroQuantHEROModifier"] = buildHERO
}

type lorcFields struct {
	Rank int `yaml:"rank"`
	Bits int `yaml:"bits"`
}

func buildLoRC(body *yaml.Node) (buildFunc, error) {
	var f lorcFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	if f.Rank <= 0 {
		return nil, fmt.Errorf("rank must be positive")
	}
	if f.Bits != 0 && (f.Bits < 2 || f.Bits > 8) {
		return nil, fmt.Errorf("bits must be 0 (FP32 factors) or 2…8")
	}
	return wrapQuantizers("LoRCModifier", func(base methods.Method) methods.Method {
		return &methods.LoRC{Rank: f.Rank, Bits: f.Bits, Base: base}
	}), nil
}

type llmInt8Fields struct {
	Targets         stringList `yaml:"targets"`
	Ignore          []string   `yaml:"ignore"`
	Threshold       *float64   `yaml:"threshold"`
	DequantOutliers bool       `yaml:"dequant_outliers"`
}

func buildLLMInt8(body *yaml.Node) (buildFunc, error) {
	var f llmInt8Fields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	sel, err := methods.NewSelector(f.Targets, f.Ignore)
	if err != nil {
		return nil, err
	}
	threshold := 6.0
	if f.Threshold != nil {
		if !(*f.Threshold > 0) {
			return nil, fmt.Errorf("threshold must be positive (use .inf to disable the decomposition)")
		}
		threshold = *f.Threshold
	}
	return func(m *model.Model, prev []methods.Method) ([]methods.Method, error) {
		if err := checkTarget(m, sel, nil, false); err != nil {
			return nil, err
		}
		return append(prev, &methods.LLMInt8{Threshold: threshold, Select: sel, DequantOutliers: f.DequantOutliers}), nil
	}, nil
}

type kvFields struct {
	Format string `yaml:"format"` // int8 (default), int4, fp8e4m3
	Static bool   `yaml:"static"` // one calibrated scale per layer for K and for V
	BMM    bool   `yaml:"bmm"`
}

func buildKVCache(body *yaml.Node) (buildFunc, error) {
	var f kvFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	if f.Format == "" {
		f.Format = "int8"
	}
	switch f.Format {
	case "int8", "int4", "fp8e4m3":
	default:
		return nil, fmt.Errorf("format %q: want int8, int4 or fp8e4m3", f.Format)
	}
	return appendMethods(&methods.KVCache{Format: f.Format, Static: f.Static, BMM: f.BMM}), nil
}

type heroFields struct {
	Level int `yaml:"level"`
}

func buildHERO(body *yaml.Node) (buildFunc, error) {
	var f heroFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	h, err := methods.NewHERO(f.Level)
	if err != nil {
		return nil, err
	}
	return appendMethods(h), nil
}

type lkdFields struct {
	Steps int     `yaml:"steps"`
	LR    float64 `yaml:"lr"`
	Batch int     `yaml:"batch"`
	Seqs  int     `yaml:"seqs"`
	Seed  uint64  `yaml:"seed"`
}

func buildLKD(body *yaml.Node) (buildFunc, error) {
	var f lkdFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	if f.Steps < 0 || f.LR < 0 || f.Batch < 0 || f.Seqs < 0 {
		return nil, fmt.Errorf("steps, lr, batch and seqs must not be negative")
	}
	return wrapQuantizers("LKDModifier", func(base methods.Method) methods.Method {
		return &methods.LKD{Base: base, Steps: f.Steps, LR: f.LR, Batch: f.Batch, Seqs: f.Seqs, Seed: f.Seed}
	}), nil
}
