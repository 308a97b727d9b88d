package model

import (
	"encoding/json"
	"fmt"

	"llmq/checkpoint"
	"llmq/nn"
)

// ropeFor builds the rotary embedding of the layers of type layerType from
// cfg (default rope only; scaled variants are refused).
func ropeFor(cfg *checkpoint.Config, layerType string, headDim int, defTheta float64, roundFreq func(float32) float32) (*nn.Rope, error) {
	var keyed map[string]json.RawMessage
	if ok, _ := cfg.Decode("rope_parameters", &keyed); ok && layerType != "" {
		if sub, ok := keyed[layerType]; ok {
			c, err := checkpoint.ParseConfig(cfg.Path+": rope_parameters."+layerType, append([]byte(`{"model_type":"rope","rope_parameters":`), append(sub, '}')...))
			if err != nil {
				return nil, err
			}
			theta, partial, err := c.Rope(defTheta)
			if err != nil {
				return nil, err
			}
			return newRope(cfg, headDim, theta, partial, roundFreq)
		}
	}
	theta, partial, err := cfg.Rope(defTheta)
	if err != nil {
		return nil, err
	}
	return newRope(cfg, headDim, theta, partial, roundFreq)
}

func newRope(cfg *checkpoint.Config, headDim int, theta, partial float64, roundFreq func(float32) float32) (*nn.Rope, error) {
	maxPos, err := cfg.IntOr(2048, "max_position_embeddings")
	if err != nil {
		return nil, err
	}
	rot := int(float64(headDim) * partial)
	if rot < 2 || rot%2 != 0 {
		return nil, fmt.Errorf("%s: rotary dimension %d (head_dim %d × %v) must be even and ≥ 2", cfg.Path, rot, headDim, partial)
	}
	return nn.NewRope(headDim, rot, theta, false, maxPos, roundFreq), nil
}
