package modelio

// Model-free quantization.
//
// Round-to-nearest needs nothing but each weight: no calibration data, no
// other layer's output. For recipes that do only that (w8a8, rtn-w4a16, FP8
// with dynamic activations, …) building the model — every weight widened to
// FP32, 32 GB for an 8B model — is pure cost. Like llm-compressor's
// model_free_ptq, the checkpoint is instead rewritten tensor by tensor: a
// linear weight is read (BF16, F16 or F32; a slice of rows at a time),
// quantized by the RTN method's own functions (methods.RTNWeight and
// methods.HeadWeight, so the codes and scales are those `methods.RTN`
// produces, bit for bit), written and dropped; every other tensor the
// family binds is copied at its stored dtype, not widened.
//
// Which tensors are linears, and under which module names a recipe's
// targets and ignore lists match them, comes from the family: the model is
// bound over the checkpoint with every tensor deferred (OpenModelFree),
// which resolves names, shapes, fused projections (Phi-3's qkv_proj, split
// into q, k and v by rows as loading splits it) and per-expert tensors
// exactly as loading does, without reading a weight. The recipe is built
// against that skeleton, so its targets are checked as usual.
//
// The output is an llmq quantized folder (save.go) that Load reads, written
// as transformers shards: model-0000N-of-0000M.safetensors of at most
// ShardBytes each plus model.safetensors.index.json (a single
// model.safetensors when everything fits in one shard). Every shard's
// header carries the same llmq metadata (llmq.format, llmq.layers,
// llmq.embedding): each shard is then a complete llmq safetensors file for
// a tool that reads one file, the index stays exactly what transformers
// reads, and the metadata is known before the first byte is written (it
// depends only on the plan). Load checks that the shards agree. The shards
// stream: each header is computed from the plan, then every tensor is
// produced and written in turn, and the folder appears under its name only
// when complete (checkpoint.WriteDirAtomic).

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"llmq/checkpoint"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
	"llmq/quant/methods"
)

// ModelFree is a Hugging Face checkpoint opened for model-free
// quantization.
type ModelFree struct {
	Src string
	// Model is the family's structure over the checkpoint, with no weight
	// read: every linear is a *model.DeferredLinear of its shape (a head
	// tied to the embedding, a placeholder of the embedding's shape), norms
	// and tables are empty. Build recipes against it (recipe.Recipe.Build):
	// targets resolve and are checked as against the loaded model. It
	// cannot run.
	Model  *model.Model
	st     *checkpoint.Store
	cfgRaw []byte
	names  model.OuterNames
	tied   bool // the head is the embedding table (no head tensor)
}

// deferAll defers every tensor of a checkpoint: the family's binder checks
// each name and shape and reads nothing (model.Deferring).
type deferAll struct{ *checkpoint.Store }

func (d deferAll) Deferred(name string) bool {
	_, ok := d.Info(name)
	return ok
}

// tiedHead stands in the skeleton for a head tied to the embedding, which
// binding leaves nil when the table is deferred; it gives recipes the
// head's shape.
type tiedHead struct{ out, in int }

func (h *tiedHead) In() int  { return h.in }
func (h *tiedHead) Out() int { return h.out }
func (h *tiedHead) Forward(y, x []float32, rows int) {
	panic("modelio: the head of a model-free skeleton cannot run") // programming error
}

// ErrNotModelFree marks what OpenModelFree cannot open by its kind, not
// by a defect: the model must be loaded instead.
var ErrNotModelFree = errors.New("not a checkpoint model-free quantization rewrites")

// OpenModelFree opens the Hugging Face folder src for model-free
// quantization. What cannot be rewritten tensor by tensor — not a
// safetensors folder (GGUF, llama2.c), an already quantized folder, a
// family whose checkpoints fuse or transpose weights in ways llmq does not
// write back (GPT-2, GPT-NeoX) — fails with ErrNotModelFree, and callers
// load the model instead; other errors (a tensor missing or of the wrong
// shape) are the checkpoint's, as loading it would report them.
func OpenModelFree(src string) (*ModelFree, error) {
	not := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrNotModelFree}, a...)...)
	}
	if IsGGUF(src) {
		return nil, not("%s is a GGUF file (loaded whole)", src)
	}
	cfgPath := filepath.Join(src, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, not("%v", err)
	}
	cfg, err := checkpoint.ParseConfig(cfgPath, raw)
	if err != nil {
		return nil, err
	}
	if cfg.Present("quantization_config") {
		return nil, not("%s: the checkpoint is already quantized (quantization_config)", cfgPath)
	}
	names, writable := model.TensorNamesOf(cfg.ModelType)
	if !writable {
		return nil, not("%s: %q checkpoints are not written back tensor by tensor (an unknown family, or one whose checkpoints fuse or transpose block weights)", cfgPath, cfg.ModelType)
	}
	st, err := checkpoint.OpenDir(src)
	if err != nil {
		return nil, err
	}
	m, err := model.LoadFrom(cfg, deferAll{st})
	if err != nil {
		st.Close()
		return nil, err
	}
	f := &ModelFree{Src: src, Model: m, st: st, cfgRaw: raw, names: names}
	if m.Head == nil { // tied: bound to the (deferred) embedding
		f.tied = true
		m.Head = &tiedHead{out: m.Vocab, in: m.Hidden}
	}
	return f, nil
}

// Close releases the checkpoint.
func (f *ModelFree) Close() error { return f.st.Close() }

// ModelFreeBlocker says why stages cannot run model-free, or "" when they
// can: every stage must be round-to-nearest quantization (methods.RTN)
// without calibration (static activation ranges need it).
func ModelFreeBlocker(stages []methods.Method) string {
	if len(stages) == 0 {
		return "the recipe has no stages"
	}
	for _, s := range stages {
		r, ok := s.(*methods.RTN)
		if !ok {
			return fmt.Sprintf("%s works on the model (model-free covers round-to-nearest quantization only)", s.Name())
		}
		if r.NeedsCalibration() {
			return fmt.Sprintf("%s with static activation ranges needs calibration", s.Name())
		}
	}
	return ""
}

// ModelFreeOptions tune Quantize.
type ModelFreeOptions struct {
	// ShardBytes is the largest shard (0: checkpoint.DefaultShardBytes).
	ShardBytes int64
	// ChunkElems bounds the weights widened to FP32 at once: weights are
	// read and quantized a slice of whole rows of about this many values
	// at a time (0: 8M values, 32 MiB; per-tensor granularity takes the
	// whole tensor). The result does not depend on it.
	ChunkElems int
	// Progress, if set, is called after each tensor with the bytes
	// written so far and the total.
	Progress func(done, total int64)
}

// ModelFreeReport describes a model-free write.
type ModelFreeReport struct {
	Quantized int      // linears quantized
	Copied    int      // tensors copied at their stored dtype
	Shards    int      // safetensors files
	Bytes     int64    // tensor bytes written
	Dropped   []string // checkpoint tensors the family does not bind (not written, as Save does not)
}

// Parts of a quantized linear in the output.
const (
	mfPacked = iota + 1
	mfScale
	mfZero
)

// mfItem is one output tensor and where it comes from.
type mfItem struct {
	out checkpoint.PlannedTensor
	src string // source tensor
	// A copy: rows [row0, row0+rows) of src (rows 0: all of it).
	row0, rows int
	// A quantized linear's packed codes, scales or zero-points.
	q    *mfLinear
	part int
}

// mfLinear is one linear to quantize: rows [row0, row0+rows) of the source
// weight src [· × cols].
type mfLinear struct {
	name             string
	src              string
	row0, rows, cols int
	scheme           methods.Scheme
	head             bool
	// Filled while the packed codes are written, written after them.
	scales []float32
	zeros  []uint8
}

// mfPlan is everything Quantize writes, decided before writing starts.
type mfPlan struct {
	f      *ModelFree
	items  []mfItem
	next   []string // per item: the next item's source, when it differs (prefetched)
	layers map[string]LayerInfo
	meta   map[string]string
	used   map[string]bool
	chunk  int
	buf    []float32 // FP32 rows being quantized, reused
	err    error
}

func (p *mfPlan) add(it mfItem) {
	p.items = append(p.items, it)
	p.used[it.src] = true
}

// copyTensor plans the copy of a tensor of the checkpoint under its name.
func (p *mfPlan) copyTensor(name string) {
	info, ok := p.f.st.Info(name)
	if !ok {
		if p.err == nil {
			p.err = fmt.Errorf("%s: tensor %q not found", p.f.Src, name)
		}
		return
	}
	p.add(mfItem{out: checkpoint.PlannedTensor{Name: name, DType: info.DType, Shape: info.Shape}, src: name})
}

func (p *mfPlan) copyOptional(name string) {
	if _, ok := p.f.st.Info(name); ok {
		p.copyTensor(name)
	}
}

// copyRows plans the copy of rows [row0, row0+rows) of src as out (a part
// of a fused projection; biases are 1-D).
func (p *mfPlan) copyRows(out, src string, row0, rows int) {
	info, ok := p.f.st.Info(src)
	if !ok {
		return
	}
	shape := append([]int{rows}, info.Shape[1:]...)
	p.add(mfItem{out: checkpoint.PlannedTensor{Name: out, DType: info.DType, Shape: shape}, src: src, row0: row0, rows: rows})
}

// quantize plans a quantized linear: its packed codes, scales and
// zero-points, in the layout of Save.
func (p *mfPlan) quantize(q *mfLinear) {
	if p.err != nil {
		return
	}
	spec := q.scheme.Weights
	if err := spec.Validate(q.rows, q.cols); err != nil {
		p.err = fmt.Errorf("%s: %w", q.name, err)
		return
	}
	act, err := q.scheme.ActQuant(nil)
	if q.head {
		act, err = methods.HeadActs(q.scheme), nil
	}
	if err != nil {
		p.err = fmt.Errorf("%s: %w", q.name, err)
		return
	}
	info := LayerInfo{Kind: "quant", Out: q.rows, In: q.cols, Weights: spec.String()}
	if act != nil {
		info.Acts = act.Spec.String()
	}
	p.layers[q.name] = info
	pr, pc := spec.ParamShape(q.rows, q.cols)
	p.add(mfItem{out: checkpoint.PlannedTensor{Name: q.name + ".weight_packed", DType: checkpoint.U8, Shape: []int{q.rows, quant.PackedLen(q.cols, spec.Bits)}}, src: q.src, q: q, part: mfPacked})
	p.add(mfItem{out: checkpoint.PlannedTensor{Name: q.name + ".weight_scale", DType: checkpoint.F32, Shape: []int{pr, pc}}, src: q.src, q: q, part: mfScale})
	if spec.HasZero() {
		p.add(mfItem{out: checkpoint.PlannedTensor{Name: q.name + ".weight_zero_point", DType: checkpoint.U8, Shape: []int{pr, pc}}, src: q.src, q: q, part: mfZero})
	}
}

// plan decides every output tensor, in the model's order: the embedding,
// the blocks' parts as Block.Parts lists them, the final norm, the head.
func (f *ModelFree) plan(stages []methods.Method, opt ModelFreeOptions) (*mfPlan, error) {
	if why := ModelFreeBlocker(stages); why != "" {
		return nil, errors.New(why)
	}
	var rtns []*methods.RTN
	for _, s := range stages {
		rtns = append(rtns, s.(*methods.RTN))
	}
	// pick returns the stage that quantizes the linear name (nil: none);
	// two stages selecting one linear fail as the second one would on the
	// model.
	pick := func(name string) (*methods.RTN, error) {
		var hit *methods.RTN
		for _, r := range rtns {
			if r.Select.Selected(name) {
				if hit != nil {
					return nil, fmt.Errorf("%s is selected by two quantizing modifiers; it can be quantized once", name)
				}
				hit = r
			}
		}
		return hit, nil
	}
	p := &mfPlan{f: f, layers: map[string]LayerInfo{}, used: map[string]bool{}, chunk: opt.ChunkElems,
		meta: map[string]string{"format": "pt", "llmq.format": fmt.Sprint(FormatVersion)}}
	if p.chunk <= 0 {
		p.chunk = 8 << 20
	}
	m, n := f.Model, f.names
	headRTN, err := pick(n.Head)
	if err != nil {
		return nil, err
	}
	if !f.tied || headRTN == nil {
		p.copyTensor(n.Embed)
	}
	if n.Pos != "" {
		p.copyOptional(n.Pos) // learned positions (OPT)
	}
	for l, b := range m.Blocks {
		for _, part := range b.Parts() {
			name := m.LinearName(l, part.Role)
			if part.Norm != nil {
				p.copyTensor(name + ".weight")
				if _, ok := (*part.Norm).(*nn.LayerNorm); ok {
					p.copyTensor(name + ".bias")
				}
				continue
			}
			dl, ok := (*part.Linear).(*model.DeferredLinear)
			if !ok {
				return nil, fmt.Errorf("%s: bound as %T, not deferred", name, *part.Linear)
			}
			r, err := pick(name)
			if err != nil {
				return nil, err
			}
			src, row0 := dl.Name, 0
			if dl.Fused != "" {
				src, row0 = dl.Fused, dl.Row0
			}
			switch {
			case r != nil:
				p.quantize(&mfLinear{name: name, src: src + ".weight", row0: row0, rows: dl.Out(), cols: dl.In(), scheme: r.Scheme})
			case dl.Fused != "": // stored apart, as Save stores the parts
				p.copyRows(name+".weight", src+".weight", row0, dl.Out())
			default:
				p.copyTensor(name + ".weight")
			}
			if dl.Fused != "" {
				p.copyRows(name+".bias", src+".bias", row0, dl.Out())
			} else {
				p.copyOptional(name + ".bias")
			}
		}
	}
	if m.Norm != nil {
		p.copyTensor(n.Norm + ".weight")
		if _, ok := m.Norm.(*nn.LayerNorm); ok {
			p.copyTensor(n.Norm + ".bias")
		}
	}
	switch {
	case f.tied && headRTN != nil:
		// The table is stored once, as the quantized head (as Save does).
		p.quantize(&mfLinear{name: n.Head, src: n.Embed, rows: m.Vocab, cols: m.Hidden, scheme: headRTN.Scheme, head: true})
		p.meta["llmq.embedding"] = n.Head
	case f.tied:
	case headRTN != nil:
		p.quantize(&mfLinear{name: n.Head, src: n.Head + ".weight", rows: m.Head.Out(), cols: m.Head.In(), scheme: headRTN.Scheme, head: true})
		p.copyOptional(n.Head + ".bias")
	default:
		p.copyTensor(n.Head + ".weight")
		p.copyOptional(n.Head + ".bias")
	}
	if p.err != nil {
		return nil, p.err
	}
	if len(p.layers) == 0 {
		return nil, fmt.Errorf("the recipe selects no linear layer")
	}
	raw, err := json.Marshal(p.layers) // sorted keys: deterministic
	if err != nil {
		return nil, err
	}
	p.meta["llmq.layers"] = string(raw)
	// The first item of each source tensor prefetches the next source.
	p.next = make([]string, len(p.items))
	for i := range p.items {
		if i > 0 && p.items[i-1].src == p.items[i].src {
			continue
		}
		for j := i + 1; j < len(p.items); j++ {
			if p.items[j].src != p.items[i].src {
				p.next[i] = p.items[j].src
				break
			}
		}
	}
	return p, nil
}

// PeakEstimate is the memory Quantize holds at its peak besides the
// program itself, in bytes: the largest slice of rows widened to FP32 and
// its codes, and the scales and zero-points of the largest quantized
// weight (written after its codes). The checkpoint's pages are mapped,
// read once and released as they are used; the output goes to the page
// cache as it is written.
func (f *ModelFree) PeakEstimate(stages []methods.Method, opt ModelFreeOptions) (int64, error) {
	p, err := f.plan(stages, opt)
	if err != nil {
		return 0, err
	}
	var peak int64
	for _, it := range p.items {
		q := it.q
		if q == nil || it.part != mfPacked {
			continue
		}
		rows := int64(min(q.rows, max(1, p.chunk/q.cols)))
		if q.scheme.Weights.Granularity == quant.PerTensor {
			rows = int64(q.rows)
		}
		pr, pc := q.scheme.Weights.ParamShape(q.rows, q.cols)
		slice := rows * int64(q.cols) * (4 + 1) // FP32 rows and their codes
		peak = max(peak, slice+int64(pr*pc)*5)
	}
	return peak, nil
}

// Quantize writes the checkpoint quantized by stages (see ModelFreeBlocker)
// to the folder out, which must not exist; recipe is recorded in the
// config's quantization_config as Save records it.
func (f *ModelFree) Quantize(out string, stages []methods.Method, recipe string, opt ModelFreeOptions) (*ModelFreeReport, error) {
	p, err := f.plan(stages, opt)
	if err != nil {
		return nil, err
	}
	cfgOut, err := quantizedConfig(filepath.Join(f.Src, "config.json"), f.cfgRaw, recipe)
	if err != nil {
		return nil, err
	}
	plan := make([]checkpoint.PlannedTensor, len(p.items))
	rep := &ModelFreeReport{}
	for i, it := range p.items {
		plan[i] = it.out
		rep.Bytes += it.out.Bytes()
		if it.q == nil {
			rep.Copied++
		} else if it.part == mfPacked {
			rep.Quantized++
		}
	}
	shardBytes := opt.ShardBytes
	if shardBytes <= 0 {
		shardBytes = checkpoint.DefaultShardBytes
	}
	rep.Shards = len(checkpoint.SplitShards(plan, shardBytes))
	for _, name := range f.st.Names() {
		if !p.used[name] {
			rep.Dropped = append(rep.Dropped, name)
		}
	}
	var done int64
	err = checkpoint.WriteDirAtomic(out, func(tmp string) error {
		err := checkpoint.WriteShards(tmp, plan, p.meta, shardBytes, func(i int, w io.Writer) error {
			if nx := p.next[i]; nx != "" {
				f.st.Prefetch(nx) // read ahead while this one is worked on
			}
			if err := p.write(&p.items[i], w); err != nil {
				return err
			}
			done += p.items[i].out.Bytes()
			if opt.Progress != nil {
				opt.Progress(done, rep.Bytes)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return writeSidecars(tmp, f.Src, cfgOut, nil)
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// copyPiece is the largest piece of a tensor copied (and released from
// resident memory) at once.
const copyPiece = 16 << 20

// write produces one output tensor.
func (p *mfPlan) write(it *mfItem, w io.Writer) error {
	st := p.f.st
	if it.q != nil {
		q := it.q
		switch it.part {
		case mfPacked:
			return p.quantizeTo(q, w)
		case mfScale:
			b := make([]byte, 4*len(q.scales))
			for i, s := range q.scales {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(s))
			}
			q.scales = nil
			_, err := w.Write(b)
			return err
		default:
			z := q.zeros
			q.zeros = nil
			_, err := w.Write(z)
			return err
		}
	}
	raw, info, err := st.Raw(it.src)
	if err != nil {
		return err
	}
	if it.rows > 0 {
		rowBytes := len(raw) / info.Shape[0]
		raw = raw[it.row0*rowBytes : (it.row0+it.rows)*rowBytes]
	}
	for off := 0; off < len(raw); off += copyPiece {
		piece := raw[off:min(off+copyPiece, len(raw))]
		if i := nonFinite(piece, info.DType); i >= 0 {
			return fmt.Errorf("%s: tensor %q holds a non-finite value (element %d)", p.f.Src, it.src, off/info.DType.Size()+i)
		}
		if _, err := w.Write(piece); err != nil {
			return err
		}
		st.ReleaseRaw(piece)
	}
	return nil
}

// quantizeTo quantizes q slice of rows by slice of rows, writing the packed
// codes and keeping the scales and zero-points for the next items.
func (p *mfPlan) quantizeTo(q *mfLinear, w io.Writer) error {
	st := p.f.st
	raw, info, err := st.Raw(q.src)
	if err != nil {
		return err
	}
	if !info.DType.IsFloat() || len(info.Shape) != 2 || info.Shape[1] != q.cols || q.row0+q.rows > info.Shape[0] {
		return fmt.Errorf("%s: tensor %q is %s %v, not a float weight holding rows %d…%d of %d columns", p.f.Src, q.src, info.DType, info.Shape, q.row0, q.row0+q.rows, q.cols)
	}
	quantize := methods.RTNWeight
	if q.head {
		quantize = methods.HeadWeight
	}
	rowBytes := q.cols * info.DType.Size()
	step := max(1, p.chunk/q.cols)
	if q.scheme.Weights.Granularity == quant.PerTensor {
		step = q.rows // one scale for the whole weight
	}
	step = min(step, q.rows)
	if cap(p.buf) < step*q.cols {
		p.buf = make([]float32, step*q.cols)
	}
	for r := 0; r < q.rows; r += step {
		n := min(step, q.rows-r)
		piece := raw[(q.row0+r)*rowBytes : (q.row0+r+n)*rowBytes]
		x := p.buf[:n*q.cols]
		if err := checkpoint.DecodeFloat32(x, piece, info.DType); err != nil {
			return fmt.Errorf("%s: %w", q.src, err)
		}
		st.ReleaseRaw(piece)
		qt, err := quantize(q.scheme, x, n, q.cols)
		if err != nil {
			var where string
			if q.row0+r > 0 {
				where = fmt.Sprintf(" (rows from %d)", q.row0+r)
			}
			return fmt.Errorf("%s: tensor %q%s: %w", q.name, q.src, where, err)
		}
		if _, err := w.Write(qt.Data); err != nil {
			return err
		}
		q.scales = append(q.scales, qt.Scales...)
		q.zeros = append(q.zeros, qt.Zeros...)
	}
	if cap(p.buf) > 64<<20 { // a per-tensor weight: do not keep it
		p.buf = nil
	}
	return nil
}

// nonFinite returns the index of the first NaN or infinity among the
// little-endian floats raw of dtype d, or -1 (also for non-float dtypes).
func nonFinite(raw []byte, d checkpoint.DType) int {
	switch d {
	case checkpoint.BF16:
		for i := 0; i+1 < len(raw); i += 2 {
			if binary.LittleEndian.Uint16(raw[i:])&0x7f80 == 0x7f80 {
				return i / 2
			}
		}
	case checkpoint.F16:
		for i := 0; i+1 < len(raw); i += 2 {
			if binary.LittleEndian.Uint16(raw[i:])&0x7c00 == 0x7c00 {
				return i / 2
			}
		}
	case checkpoint.F32:
		for i := 0; i+3 < len(raw); i += 4 {
			if binary.LittleEndian.Uint32(raw[i:])&0x7f800000 == 0x7f800000 {
				return i / 4
			}
		}
	case checkpoint.F64:
		for i := 0; i+7 < len(raw); i += 8 {
			if binary.LittleEndian.Uint64(raw[i:])&0x7ff0000000000000 == 0x7ff0000000000000 {
				return i / 8
			}
		}
	}
	return -1
}
