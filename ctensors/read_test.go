package ctensors

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmq/checkpoint"
)

// packConfig is a one-group pack-quantized int4 g8 asymmetric config.json.
const packConfig = `{"model_type": "llama", "quantization_config": {"quant_method": "compressed-tensors",
 "quantization_status": "compressed", "format": "pack-quantized", "ignore": ["lm_head"],
 "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int",
 "symmetric": false, "strategy": "group", "group_size": 8}}}}}`

// writeFolder writes config.json and model.safetensors into a new folder.
func writeFolder(t testing.TB, cfg string, tensors []checkpoint.WriteTensor) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.WriteSafetensors(filepath.Join(dir, "model.safetensors"), tensors, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

// handLayer is one 2×16 int4 g8 asymmetric layer written by hand from the
// format definition, with its expected dequantized values.
//
//	row 0: q = −8…7 (u = 0…15), scales 0.5 and 2, zero points −8 and 0
//	row 1: q = 0 everywhere,    scales 1 and 0.25, zero points 3 and −1
func handLayer() (tensors []checkpoint.WriteTensor, want []float32) {
	packed := []uint32{0x76543210, 0xFEDCBA98, 0x88888888, 0x88888888}
	// zero points [2 rows × 2 groups] packed down the columns: word g holds
	// rows 0 and 1 of group g, u = zp + 8.
	zp := []uint32{0 | 11<<4, 8 | 7<<4}
	scales := []float32{0.5, 2, 1, 0.25}
	tensors = []checkpoint.WriteTensor{
		{Name: "m.weight_packed", DType: checkpoint.I32, Shape: []int{2, 2}, Data: u32Bytes(packed)},
		{Name: "m.weight_shape", DType: checkpoint.I64, Shape: []int{2}, Data: i64Bytes(2, 16)},
		{Name: "m.weight_scale", DType: checkpoint.F32, Shape: []int{2, 2}, Data: f32Bytes(scales)},
		{Name: "m.weight_zero_point", DType: checkpoint.I32, Shape: []int{1, 2}, Data: u32Bytes(zp)},
		{Name: "lm_head.weight", DType: checkpoint.F32, Shape: []int{1, 1}, Data: f32Bytes([]float32{1})},
	}
	for c := 0; c < 16; c++ { // row 0: (q − zp)·s
		q := float32(c - 8)
		if c < 8 {
			want = append(want, (q+8)*0.5)
		} else {
			want = append(want, (q-0)*2)
		}
	}
	for c := 0; c < 16; c++ { // row 1
		if c < 8 {
			want = append(want, (0-3)*1)
		} else {
			want = append(want, (0+1)*0.25)
		}
	}
	return tensors, want
}

// A layer written by hand from the specification reads back to the values
// the definition gives.
func TestReadHandWritten(t *testing.T) {
	tensors, want := handLayer()
	f, err := Read(writeFolder(t, packConfig, tensors))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Layers) != 1 || f.Layers[0].Name != "m" {
		t.Fatalf("layers %v, want just m", f.Layers)
	}
	got := f.Layers[0].Dequantize()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("w[%d, %d] = %v, want %v", i/16, i%16, got[i], want[i])
		}
	}
}

// Corrupt folders give an error naming the folder or file, the tensor and
// the problem — never a panic.
func TestReadCorrupt(t *testing.T) {
	replace := func(name string, wt checkpoint.WriteTensor) []checkpoint.WriteTensor {
		ts, _ := handLayer()
		for i := range ts {
			if ts[i].Name == name {
				ts[i] = wt
			}
		}
		return ts
	}
	drop := func(name string) []checkpoint.WriteTensor {
		ts, _ := handLayer()
		var out []checkpoint.WriteTensor
		for _, x := range ts {
			if x.Name != name {
				out = append(out, x)
			}
		}
		return out
	}
	good, _ := handLayer()
	cases := []struct {
		name    string
		cfg     string
		tensors []checkpoint.WriteTensor
		want    string
	}{
		{"truncated config", packConfig[:40], good, "config.json: invalid JSON"},
		{"config not compressed-tensors", `{"quantization_config": {"quant_method": "llmq"}}`, good, "config.json: quantization_config: quant_method"},
		{"missing shape", packConfig, drop("m.weight_shape"), `"m.weight_shape" not found`},
		{"bad shape", packConfig, replace("m.weight_shape", checkpoint.WriteTensor{Name: "m.weight_shape", DType: checkpoint.I64, Shape: []int{2}, Data: i64Bytes(2, 40)}), "m: weight_packed"},
		{"packed dtype", packConfig, replace("m.weight_packed", checkpoint.WriteTensor{Name: "m.weight_packed", DType: checkpoint.U8, Shape: []int{2, 8}, Data: make([]byte, 16)}), "weight_packed is U8"},
		{"scale shape", packConfig, replace("m.weight_scale", checkpoint.WriteTensor{Name: "m.weight_scale", DType: checkpoint.F32, Shape: []int{4}, Data: f32Bytes([]float32{1, 1, 1, 1})}), "weight_scale has shape [4]"},
		{"negative scale", packConfig, replace("m.weight_scale", checkpoint.WriteTensor{Name: "m.weight_scale", DType: checkpoint.F32, Shape: []int{2, 2}, Data: f32Bytes([]float32{1, -1, 1, 1})}), "weight_scale[1] = -1"},
		{"NaN scale", packConfig, replace("m.weight_scale", checkpoint.WriteTensor{Name: "m.weight_scale", DType: checkpoint.F32, Shape: []int{2, 2}, Data: f32Bytes([]float32{1, 1, float32(math.NaN()), 1})}), "weight_scale[2] = NaN"},
		{"integer scale", packConfig, replace("m.weight_scale", checkpoint.WriteTensor{Name: "m.weight_scale", DType: checkpoint.I32, Shape: []int{2, 2}, Data: make([]byte, 16)}), "want a float"},
		{"missing zero points", packConfig, drop("m.weight_zero_point"), `"m.weight_zero_point" not found`},
		{"zero points unpacked", packConfig, replace("m.weight_zero_point", checkpoint.WriteTensor{Name: "m.weight_zero_point", DType: checkpoint.I8, Shape: []int{2, 2}, Data: make([]byte, 4)}), "packed along dim 0"},
		{"untargeted", strings.Replace(packConfig, `"Linear"`, `"re:other"`, 1), good, "no config group targets it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFolder(t, tc.cfg, tc.tensors)
			_, err := Read(dir)
			if err == nil {
				t.Fatalf("accepted; want an error with %q", tc.want)
			}
			if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line naming %s and %q", msg, dir, tc.want)
			}
		})
	}
}

// Unpacked int8 codes outside a narrower grid are rejected (an int-quantized
// 4-bit layer stores one code per byte).
func TestReadCodeRange(t *testing.T) {
	cfg := `{"quantization_config": {"quant_method": "compressed-tensors", "quantization_status": "compressed",
	 "format": "int-quantized", "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 4, "strategy": "channel"}}}}}`
	dir := writeFolder(t, cfg, []checkpoint.WriteTensor{
		{Name: "m.weight", DType: checkpoint.I8, Shape: []int{1, 2}, Data: []byte{7, 9}},
		{Name: "m.weight_scale", DType: checkpoint.F32, Shape: []int{1, 1}, Data: f32Bytes([]float32{1})},
	})
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "code 9 at 1 outside the 4-bit grid") {
		t.Errorf("error %v, want the out-of-grid code named", err)
	}
}

// FuzzParseConfig: no config.json makes the parser panic, and what it
// accepts is internally consistent.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(packConfig))
	f.Add(qcfg(`"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "int-quantized", "ignore": ["re:.*"],
		"config_groups": {"g": {"targets": ["re:a+"], "weights": {"group_size": -1}, "input_activations": {"strategy": "token", "dynamic": true}}}`))
	f.Add([]byte(`{"quantization_config": null}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseConfig("config.json", raw)
		if err != nil {
			return
		}
		for _, s := range c.Schemes {
			w := s.Weights
			if w.Strategy == "group" && w.GroupSize <= 0 || w.NumBits < 1 || w.NumBits > 8 {
				t.Fatalf("accepted inconsistent weights %+v", w)
			}
		}
		c.SchemeFor("model.layers.0.self_attn.q_proj")
	})
}

// FuzzRead: arbitrary configs and tensor shapes and contents never make
// Read or Dequantize panic, and what Read accepts dequantizes to the shape
// it reports.
func FuzzRead(f *testing.F) {
	f.Add([]byte(packConfig), uint8(2), uint8(16), uint8(2), uint8(2), uint8(1), []byte{0x10, 0x32, 0x54, 0x76, 1, 2, 3, 4})
	f.Add([]byte(strings.Replace(packConfig, `"symmetric": false`, `"symmetric": true`, 1)), uint8(3), uint8(9), uint8(2), uint8(2), uint8(1), []byte{0xff})
	f.Add([]byte(`{"quantization_config": {"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "int-quantized",
		"config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "strategy": "tensor"}}}}}`), uint8(2), uint8(2), uint8(1), uint8(1), uint8(1), []byte{1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, cfg []byte, rows, cols, pcols, scols, zrows uint8, data []byte) {
		r, c := int(rows%9), int(cols%40)
		pc, sc, zr := int(pcols%8), int(scols%8), int(zrows%4)
		fill := func(n int) []byte {
			b := make([]byte, n)
			for i := range b {
				if len(data) > 0 {
					b[i] = data[i%len(data)]
				}
			}
			return b
		}
		// Scales are kept finite and positive half of the time, so that
		// decoding gets past the scale checks.
		scale := fill(4 * r * sc)
		if len(data) > 0 && data[0]&1 == 0 {
			scale = f32Bytes(func() []float32 {
				v := make([]float32, r*sc)
				for i := range v {
					v[i] = 0.5
				}
				return v
			}())
		}
		dir := writeFolder(t, string(cfg), []checkpoint.WriteTensor{
			{Name: "m.weight_packed", DType: checkpoint.I32, Shape: []int{r, pc}, Data: fill(4 * r * pc)},
			{Name: "m.weight_shape", DType: checkpoint.I64, Shape: []int{2}, Data: i64Bytes(int64(r), int64(c))},
			{Name: "m.weight", DType: checkpoint.I8, Shape: []int{r, c}, Data: fill(r * c)},
			{Name: "m.weight_scale", DType: checkpoint.F32, Shape: []int{r, sc}, Data: scale},
			{Name: "m.weight_zero_point", DType: checkpoint.I32, Shape: []int{zr, sc}, Data: fill(4 * zr * sc)},
			{Name: "m.weight_g_idx", DType: checkpoint.I32, Shape: []int{c}, Data: fill(4 * c)},
			{Name: "m.input_scale", DType: checkpoint.F32, Shape: []int{1}, Data: f32Bytes([]float32{0.25})},
		})
		folder, err := Read(dir)
		if err != nil {
			return
		}
		for _, l := range folder.Layers {
			if w := l.Dequantize(); len(w) != l.Rows*l.Cols {
				t.Fatalf("%d values for %d×%d", len(w), l.Rows, l.Cols)
			}
		}
	})
}
