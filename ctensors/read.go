package ctensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"llmq/checkpoint"
)

// Folder is a compressed-tensors checkpoint read back: its
// quantization_config and every quantized linear layer.
type Folder struct {
	Dir    string
	Config *Config
	Layers []*Layer // sorted by name
}

// Layer is one quantized linear layer [Rows×Cols] (out × in) as stored.
type Layer struct {
	Name   string
	Scheme *Scheme
	Rows   int
	Cols   int
	// Codes are the weight codes, row-major: signed integers on the b-bit
	// grid [−2^(b−1), 2^(b−1)−1] for int weights, FP8 E4M3 bit patterns
	// (0…255) for float weights.
	Codes []int32
	// Scales [ScaleRows×ScaleCols] (1×1 per tensor, Rows×1 per channel,
	// Rows×groups per group), widened to float32.
	Scales               []float32
	ScaleRows, ScaleCols int
	// Zeros are the zero points, Scales' layout, on the codes' grid; nil
	// for symmetric weights.
	Zeros []int32
	// GIdx maps each column to its group (activation-ordered GPTQ
	// checkpoints); nil when column c belongs to group c/group_size.
	GIdx []int32
	// InputScale and InputZero are the static activation parameters
	// (schemes with static input_activations).
	InputScale float32
	InputZero  int32
}

// Dequantize returns the layer's weight [Rows×Cols] by the format's
// definition, w = (q − zp)·s for integers and w = E4M3(q)·s for FP8,
// computed in float32 (exactly the library's result for float32 scales;
// for 16-bit scales the library computes in their dtype).
func (l *Layer) Dequantize() []float32 {
	out := make([]float32, l.Rows*l.Cols)
	float := l.Scheme.Weights.Type == typeFloat
	for r := 0; r < l.Rows; r++ {
		for c := 0; c < l.Cols; c++ {
			p := l.paramIndex(r, c)
			q := l.Codes[r*l.Cols+c]
			var v float32
			if float {
				v = decodeE4M3(byte(q))
			} else {
				v = float32(q)
				if l.Zeros != nil {
					v -= float32(l.Zeros[p])
				}
			}
			out[r*l.Cols+c] = v * l.Scales[p]
		}
	}
	return out
}

// paramIndex is the index into Scales of element (r, c).
func (l *Layer) paramIndex(r, c int) int {
	switch l.Scheme.Weights.Strategy {
	case "tensor":
		return 0
	case "channel":
		return r
	}
	g := c / l.Scheme.Weights.GroupSize
	if l.GIdx != nil {
		g = int(l.GIdx[c])
	}
	return r*l.ScaleCols + g
}

// Read opens the compressed-tensors folder dir (config.json and
// model.safetensors, or shards with their index) and decodes every
// quantized linear layer. Each problem is reported with the file and the
// tensor or field at fault.
func Read(dir string) (*Folder, error) {
	cfgPath := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(cfgPath, raw)
	if err != nil {
		return nil, err
	}
	st, err := checkpoint.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	f := &Folder{Dir: dir, Config: cfg}
	for _, name := range st.Names() {
		module, ok := strings.CutSuffix(name, ".weight_scale")
		if !ok {
			continue
		}
		s := cfg.SchemeFor(module)
		if s == nil {
			return nil, fmt.Errorf("%s: %s has a weight_scale, but no config group targets it (or it is in ignore)", dir, module)
		}
		l, err := readLayer(st, module, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", dir, module, err)
		}
		f.Layers = append(f.Layers, l)
	}
	if len(f.Layers) == 0 {
		return nil, fmt.Errorf("%s: no quantized layers (no tensor named *.weight_scale)", dir)
	}
	sort.Slice(f.Layers, func(i, j int) bool { return f.Layers[i].Name < f.Layers[j].Name })
	return f, nil
}

// readLayer decodes one module's tensors under scheme s.
func readLayer(st *checkpoint.Store, module string, s *Scheme) (*Layer, error) {
	w := s.Weights
	l := &Layer{Name: module, Scheme: s}
	var err error
	switch s.Format {
	case FormatPack:
		l.Codes, l.Rows, l.Cols, err = readPacked(st, module, w.NumBits)
	default:
		l.Codes, l.Rows, l.Cols, err = readUnpacked(st, module, w)
	}
	if err != nil {
		return nil, err
	}
	if w.Type == typeInt {
		if err := checkCodes(l.Codes, w.NumBits); err != nil {
			return nil, fmt.Errorf("weight: %w", err)
		}
	}

	// Scales: one per tensor, per row, or per row and group.
	sc, si, err := st.Float32(module + ".weight_scale")
	if err != nil {
		return nil, err
	}
	if !si.DType.IsFloat() {
		return nil, fmt.Errorf("weight_scale has dtype %s, want a float", si.DType)
	}
	l.Scales = sc
	switch w.Strategy {
	case "tensor":
		l.ScaleRows, l.ScaleCols = 1, 1
	case "channel":
		l.ScaleRows, l.ScaleCols = l.Rows, 1
	case "group":
		l.ScaleRows, l.ScaleCols = l.Rows, (l.Cols+w.GroupSize-1)/w.GroupSize
	}
	if err := checkParamShape("weight_scale", si.Shape, l.ScaleRows, l.ScaleCols); err != nil {
		return nil, err
	}
	for i, v := range sc {
		if !(v > 0) || math.IsInf(float64(v), 1) {
			return nil, fmt.Errorf("weight_scale[%d] = %v must be positive and finite", i, v)
		}
	}

	if !w.Symmetric {
		if l.Zeros, err = readZeros(st, module, s, l.ScaleRows, l.ScaleCols); err != nil {
			return nil, err
		}
	}
	if w.ActOrder == "group" {
		if _, ok := st.Info(module + ".weight_g_idx"); ok {
			g, gi, err := readInts(st, module+".weight_g_idx")
			if err != nil {
				return nil, err
			}
			if len(g) != l.Cols || len(gi.Shape) != 1 {
				return nil, fmt.Errorf("weight_g_idx has shape %v, want [%d]", gi.Shape, l.Cols)
			}
			l.GIdx = make([]int32, len(g))
			for i, v := range g {
				if v < 0 || v >= int64(l.ScaleCols) {
					return nil, fmt.Errorf("weight_g_idx[%d] = %d outside [0, %d)", i, v, l.ScaleCols)
				}
				l.GIdx[i] = int32(v)
			}
		}
	}
	if a := s.Input; a != nil && !a.Dynamic {
		is, ii, err := st.Float32(module + ".input_scale")
		if err != nil {
			return nil, err
		}
		if len(is) != 1 || !ii.DType.IsFloat() || !(is[0] > 0) || math.IsInf(float64(is[0]), 1) {
			return nil, fmt.Errorf("input_scale must be one positive float, have %s %v = %v", ii.DType, ii.Shape, is)
		}
		l.InputScale = is[0]
		if !a.Symmetric {
			z, _, err := readInts(st, module+".input_zero_point")
			if err != nil {
				return nil, err
			}
			if len(z) != 1 {
				return nil, fmt.Errorf("input_zero_point must hold one value, has %d", len(z))
			}
			l.InputZero = int32(z[0])
		}
	}
	return l, nil
}

// readPacked decodes NAME.weight_packed with NAME.weight_shape.
func readPacked(st *checkpoint.Store, module string, bits int) (codes []int32, rows, cols int, err error) {
	shape, _, err := readInts(st, module+".weight_shape")
	if err != nil {
		return nil, 0, 0, err
	}
	if len(shape) != 2 || shape[0] <= 0 || shape[1] <= 0 || shape[0] > 1<<30 || shape[1] > 1<<30 {
		return nil, 0, 0, fmt.Errorf("weight_shape %v must be two positive sizes", shape)
	}
	rows, cols = int(shape[0]), int(shape[1])
	raw, pi, err := st.Raw(module + ".weight_packed")
	if err != nil {
		return nil, 0, 0, err
	}
	if pi.DType != checkpoint.I32 || len(pi.Shape) != 2 || pi.Shape[0] != rows {
		return nil, 0, 0, fmt.Errorf("weight_packed is %s %v, want I32 [%d, ⌈%d/%d⌉]", pi.DType, pi.Shape, rows, cols, packFactor(bits))
	}
	codes, err = unpackRows(words(raw), rows, pi.Shape[1], cols, bits)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("weight_packed: %w", err)
	}
	return codes, rows, cols, nil
}

// readUnpacked reads NAME.weight of the int-, naive- and float-quantized
// formats: int8 codes, or FP8 E4M3 bit patterns.
func readUnpacked(st *checkpoint.Store, module string, w Args) (codes []int32, rows, cols int, err error) {
	raw, info, err := st.Raw(module + ".weight")
	if err != nil {
		return nil, 0, 0, err
	}
	want := checkpoint.I8
	if w.Type == typeFloat {
		want = dtypeF8E4M3
	}
	if info.DType != want || len(info.Shape) != 2 || info.Shape[0] == 0 || info.Shape[1] == 0 {
		return nil, 0, 0, fmt.Errorf("weight is %s %v, want a 2-D %s tensor", info.DType, info.Shape, want)
	}
	codes = make([]int32, len(raw))
	for i, b := range raw {
		if w.Type == typeFloat {
			if b&0x7F == 0x7F {
				return nil, 0, 0, fmt.Errorf("weight[%d] is an FP8 NaN", i)
			}
			codes[i] = int32(b)
		} else {
			codes[i] = int32(int8(b))
		}
	}
	return codes, info.Shape[0], info.Shape[1], nil
}

// readZeros reads the zero points of an asymmetric weight: packed down the
// columns in pack-quantized group/channel layers, one per scale otherwise.
func readZeros(st *checkpoint.Store, module string, s *Scheme, pr, pc int) ([]int32, error) {
	name := module + ".weight_zero_point"
	bits := s.Weights.NumBits
	if s.Format == FormatPack && s.Weights.Strategy != "tensor" {
		raw, zi, err := st.Raw(name)
		if err != nil {
			return nil, err
		}
		if zi.DType != checkpoint.I32 || len(zi.Shape) != 2 {
			return nil, fmt.Errorf("weight_zero_point is %s %v, want I32 [⌈%d/%d⌉, %d] (packed along dim 0)", zi.DType, zi.Shape, pr, packFactor(bits), pc)
		}
		z, err := unpackCols(words(raw), zi.Shape[0], pr, pc, bits)
		if err != nil {
			return nil, fmt.Errorf("weight_zero_point: %w", err)
		}
		return z, nil
	}
	v, zi, err := readInts(st, name)
	if err != nil {
		return nil, err
	}
	if err := checkParamShape("weight_zero_point", zi.Shape, pr, pc); err != nil {
		return nil, err
	}
	z := make([]int32, len(v))
	lo, hi := -int64(codeOffset(bits)), int64(codeOffset(bits))-1
	for i, x := range v {
		if x < lo || x > hi {
			return nil, fmt.Errorf("weight_zero_point[%d] = %d outside the %d-bit grid [%d, %d]", i, x, bits, lo, hi)
		}
		z[i] = int32(x)
	}
	return z, nil
}

// checkParamShape accepts [pr, pc], and the squeezed forms the library
// also writes ([pr] for channels, [1] or a scalar for tensors).
func checkParamShape(what string, shape []int, pr, pc int) error {
	n := 1
	for _, d := range shape {
		n *= d
	}
	ok := n == pr*pc && (len(shape) == 2 && shape[0] == pr && shape[1] == pc ||
		len(shape) == 1 && pc == 1 && shape[0] == pr ||
		pr == 1 && pc == 1 && len(shape) <= 2)
	if !ok {
		return fmt.Errorf("%s has shape %v, want [%d, %d]", what, shape, pr, pc)
	}
	return nil
}

// readInts reads an integer tensor widened to int64.
func readInts(st *checkpoint.Store, name string) ([]int64, checkpoint.TensorInfo, error) {
	raw, info, err := st.Raw(name)
	if err != nil {
		return nil, info, err
	}
	n := info.NumElements()
	out := make([]int64, n)
	for i := range out {
		switch info.DType {
		case checkpoint.I8:
			out[i] = int64(int8(raw[i]))
		case checkpoint.U8:
			out[i] = int64(raw[i])
		case checkpoint.I16:
			out[i] = int64(int16(binary.LittleEndian.Uint16(raw[2*i:])))
		case checkpoint.I32:
			out[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		case checkpoint.I64:
			out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		default:
			return nil, info, fmt.Errorf("%s has dtype %s, want an integer type", name, info.DType)
		}
	}
	return out, info, nil
}

// words reinterprets little-endian bytes as uint32 words.
func words(raw []byte) []uint32 {
	w := make([]uint32, len(raw)/4)
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(raw[4*i:])
	}
	return w
}
