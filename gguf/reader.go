package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the format version this package writes. Reading also accepts
// version 2, whose layout is identical for little-endian files (v3 only
// added big-endian files, which carry no marker and are not supported).
const Version = 3

// DefaultAlignment applies when general.alignment is absent.
const DefaultAlignment = 32

// Limits from ggml's reader: at most GGML_MAX_DIMS dimensions and tensor
// names shorter than GGML_MAX_NAME (64, including C's terminator).
const (
	maxDims    = 4
	maxNameLen = 63
	maxKeyLen  = 1<<16 - 1 // the spec's limit on key length
	maxDepth   = 8         // nesting of arrays of arrays (the spec sets none)
)

// KV is one metadata pair.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name   string
	Dims   []uint64 // ggml order: Dims[0] is the contiguous (innermost) dimension
	Type   Type
	Offset uint64 // relative to the start of the data section
	Size   int64  // bytes
}

// Elements is the number of values of the tensor.
func (t TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= int64(d)
	}
	return n
}

// File is an open GGUF file: its metadata and tensor directory, parsed and
// validated; tensor data is read on demand.
type File struct {
	Path       string
	Version    uint32
	KV         []KV         // in file order
	Tensors    []TensorInfo // in file order
	Alignment  uint64
	DataOffset int64 // absolute offset of the data section

	r      io.ReaderAt
	closer io.Closer
	byKey  map[string]int
	byName map[string]int
}

// Open opens and validates a GGUF file. Close it when done.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	g, err := Read(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	g.closer = f
	return g, nil
}

// IsGGUF reports whether the file at path starts with the GGUF magic.
func IsGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	_, err = io.ReadFull(f, b[:])
	return err == nil && string(b[:]) == Magic
}

// Close releases the file.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// Get returns a metadata value by key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.byKey[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// Tensor returns a tensor's description by name.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// Raw reads a tensor's stored bytes.
func (f *File) Raw(name string) ([]byte, TensorInfo, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, TensorInfo{}, fmt.Errorf("%s: no tensor %q", f.Path, name)
	}
	b := make([]byte, t.Size)
	if t.Size == 0 {
		return b, t, nil
	}
	// ReadAt may report io.EOF along with a full read at the end of the file.
	if n, err := f.r.ReadAt(b, f.DataOffset+int64(t.Offset)); n < len(b) {
		return nil, t, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	return b, t, nil
}

// Float32 reads a tensor and decodes it to FP32 (in ggml's element order).
func (f *File) Float32(name string) ([]float32, TensorInfo, error) {
	b, t, err := f.Raw(name)
	if err != nil {
		return nil, t, err
	}
	v, err := Decode(t.Type, b, int(t.Elements()))
	if err != nil {
		return nil, t, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	return v, t, nil
}

// Read parses and validates a GGUF file of size bytes held by r; name is
// used in error messages. Every count and length is checked against the
// bytes that remain before anything is allocated, so corrupt or hostile
// input yields an error, never a panic or a huge allocation.
func Read(r io.ReaderAt, size int64, name string) (*File, error) {
	d := &decoder{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<16), size: size}
	f := &File{Path: name, r: r, byKey: map[string]int{}, byName: map[string]int{}}
	if err := f.parse(d); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

func (f *File) parse(d *decoder) error {
	if d.size < 4 {
		return fmt.Errorf("not a GGUF file: only %d bytes", d.size)
	}
	magic := d.bytes(4)
	if string(magic) != Magic {
		return fmt.Errorf("not a GGUF file: starts with %q, want %q", magic, Magic)
	}
	if d.size < 24 {
		return fmt.Errorf("truncated: %d bytes, shorter than the 24-byte GGUF header", d.size)
	}
	f.Version = d.u32()
	if d.err == nil && f.Version != 2 && f.Version != 3 {
		return fmt.Errorf("GGUF version %d is not supported (this reader handles versions 2 and 3)", f.Version)
	}
	nTensors, nKV := d.u64(), d.u64()
	if d.err != nil {
		return d.err
	}
	// Smallest encodings: a KV is a key length, a type and a 1-byte value;
	// a tensor info a name length, n_dims, one dim, a type and an offset.
	const minKV, minTensor = 8 + 4 + 1, 8 + 4 + 8 + 4 + 8
	if left := uint64(d.left()); nKV > left/minKV || nTensors > left/minTensor || nKV*minKV+nTensors*minTensor > left {
		return fmt.Errorf("header claims %d metadata pairs and %d tensors, more than the %d bytes after the header can hold", nKV, nTensors, left)
	}
	f.KV = make([]KV, 0, nKV)
	for i := uint64(0); i < nKV; i++ {
		key := d.str(maxKeyLen, "metadata key")
		if d.err != nil {
			return fmt.Errorf("metadata pair %d: %w", i, d.err)
		}
		if _, dup := f.byKey[key]; dup {
			return fmt.Errorf("metadata key %q appears twice", key)
		}
		v := d.value(ValueType(d.u32()), 0)
		if d.err != nil {
			return fmt.Errorf("metadata %q: %w", key, d.err)
		}
		f.byKey[key] = len(f.KV)
		f.KV = append(f.KV, KV{key, v})
	}
	f.Alignment = DefaultAlignment
	if v, ok := f.Get("general.alignment"); ok {
		a, isU32 := v.Any().(uint32)
		if !isU32 {
			return fmt.Errorf("general.alignment must be a uint32, is a %v", v.Type)
		}
		if a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("general.alignment %d is not a power of two", a)
		}
		f.Alignment = uint64(a)
	}
	f.Tensors = make([]TensorInfo, 0, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		t, err := d.tensorInfo()
		if err != nil {
			return fmt.Errorf("tensor %d: %w", i, err)
		}
		if _, dup := f.byName[t.Name]; dup {
			return fmt.Errorf("tensor %q appears twice", t.Name)
		}
		f.byName[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}
	f.DataOffset = int64(alignUp(uint64(d.pos), f.Alignment))
	if len(f.Tensors) == 0 {
		return nil
	}
	if f.DataOffset > d.size {
		return fmt.Errorf("data section would start at byte %d, past the end of the %d-byte file", f.DataOffset, d.size)
	}
	dataLen := uint64(d.size - f.DataOffset)
	for _, t := range f.Tensors {
		if t.Offset%f.Alignment != 0 {
			return fmt.Errorf("tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
		}
		if t.Offset > dataLen || uint64(t.Size) > dataLen-t.Offset {
			return fmt.Errorf("tensor %q: %d bytes at data offset %d run past the end of the file (data section holds %d bytes)", t.Name, t.Size, t.Offset, dataLen)
		}
	}
	// Tensors may be stored in any order but must not overlap.
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset })
	for k := 1; k < len(order); k++ {
		prev, cur := f.Tensors[order[k-1]], f.Tensors[order[k]]
		if prev.Offset+uint64(prev.Size) > cur.Offset {
			return fmt.Errorf("tensors %q and %q overlap in the data section", prev.Name, cur.Name)
		}
	}
	return nil
}

func alignUp(x, a uint64) uint64 { return x + (a-x%a)%a }

// decoder reads little-endian fields sequentially, remembering the first
// error; later reads return zero values.
type decoder struct {
	r    *bufio.Reader
	pos  int64
	size int64
	err  error
}

func (d *decoder) left() int64 { return d.size - d.pos }

func (d *decoder) bytes(n int64) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > d.left() {
		d.err = fmt.Errorf("needs %d bytes at offset %d but the file ends at %d", n, d.pos, d.size)
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.err = fmt.Errorf("reading %d bytes at offset %d: %w", n, d.pos, err)
		return nil
	}
	d.pos += n
	return b
}

func (d *decoder) u8() uint8 {
	b := d.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (d *decoder) u16() uint16 {
	b := d.bytes(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func (d *decoder) u32() uint32 {
	b := d.bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (d *decoder) u64() uint64 {
	b := d.bytes(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// str reads a gguf_string_t of at most limit bytes.
func (d *decoder) str(limit uint64, what string) string {
	n := d.u64()
	if d.err != nil {
		return ""
	}
	if n > limit {
		d.err = fmt.Errorf("%s of %d bytes at offset %d exceeds the limit of %d", what, n, d.pos-8, limit)
		return ""
	}
	if n > uint64(d.left()) {
		d.err = fmt.Errorf("%s of %d bytes at offset %d runs past the end of the file (%d bytes left)", what, n, d.pos-8, d.left())
		return ""
	}
	return string(d.bytes(int64(n)))
}

// value reads one value of type t; depth counts enclosing arrays.
func (d *decoder) value(t ValueType, depth int) Value {
	if d.err != nil {
		return Value{}
	}
	switch t {
	case TypeUint8:
		return Uint8(d.u8())
	case TypeInt8:
		return Int8(int8(d.u8()))
	case TypeUint16:
		return Uint16(d.u16())
	case TypeInt16:
		return Int16(int16(d.u16()))
	case TypeUint32:
		return Uint32(d.u32())
	case TypeInt32:
		return Int32(int32(d.u32()))
	case TypeFloat32:
		return Float32(math.Float32frombits(d.u32()))
	case TypeUint64:
		return Uint64(d.u64())
	case TypeInt64:
		return Int64(int64(d.u64()))
	case TypeFloat64:
		return Float64(math.Float64frombits(d.u64()))
	case TypeBool:
		b := d.u8()
		if d.err == nil && b > 1 {
			d.err = fmt.Errorf("bool value %d at offset %d (must be 0 or 1)", b, d.pos-1)
		}
		return Bool(b == 1)
	case TypeString:
		return String(d.str(math.MaxUint64, "string"))
	case TypeArray:
		return d.array(depth)
	}
	d.err = fmt.Errorf("unknown value type %d at offset %d", uint32(t), d.pos-4)
	return Value{}
}

func (d *decoder) array(depth int) Value {
	if depth >= maxDepth {
		d.err = fmt.Errorf("arrays nested deeper than %d", maxDepth)
		return Value{}
	}
	elem := ValueType(d.u32())
	n := d.u64()
	if d.err != nil {
		return Value{}
	}
	if !elem.valid() {
		d.err = fmt.Errorf("array of unknown value type %d at offset %d", uint32(elem), d.pos-12)
		return Value{}
	}
	minSize := uint64(elem.size())
	switch elem {
	case TypeString:
		minSize = 8
	case TypeArray:
		minSize = 12
	}
	if n > uint64(d.left())/minSize {
		d.err = fmt.Errorf("array of %d %v values at offset %d cannot fit in the %d bytes left", n, elem, d.pos-12, d.left())
		return Value{}
	}
	var s any
	switch elem {
	case TypeUint8:
		s = readN(d, n, func() uint8 { return d.u8() })
	case TypeInt8:
		s = readN(d, n, func() int8 { return int8(d.u8()) })
	case TypeUint16:
		s = readN(d, n, func() uint16 { return d.u16() })
	case TypeInt16:
		s = readN(d, n, func() int16 { return int16(d.u16()) })
	case TypeUint32:
		s = readN(d, n, func() uint32 { return d.u32() })
	case TypeInt32:
		s = readN(d, n, func() int32 { return int32(d.u32()) })
	case TypeFloat32:
		s = readN(d, n, func() float32 { return math.Float32frombits(d.u32()) })
	case TypeUint64:
		s = readN(d, n, func() uint64 { return d.u64() })
	case TypeInt64:
		s = readN(d, n, func() int64 { return int64(d.u64()) })
	case TypeFloat64:
		s = readN(d, n, func() float64 { return math.Float64frombits(d.u64()) })
	case TypeBool:
		s = readN(d, n, func() bool { v, _ := d.value(TypeBool, depth).Bool(); return v })
	case TypeString:
		s = readN(d, n, func() string { return d.str(math.MaxUint64, "string") })
	case TypeArray:
		s = readN(d, n, func() Value { return d.array(depth + 1) })
	}
	if d.err != nil {
		return Value{}
	}
	return Value{Type: TypeArray, Elem: elem, v: s}
}

// readN reads n elements with next, stopping at the first error.
func readN[T any](d *decoder, n uint64, next func() T) []T {
	s := make([]T, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		s = append(s, next())
	}
	return s
}

// tensorInfo reads and checks one gguf_tensor_info_t.
func (d *decoder) tensorInfo() (TensorInfo, error) {
	var t TensorInfo
	t.Name = d.str(maxNameLen, "tensor name")
	nd := d.u32()
	if d.err != nil {
		return t, d.err
	}
	if nd == 0 || nd > maxDims {
		return t, fmt.Errorf("%q has %d dimensions (ggml supports 1 to %d)", t.Name, nd, maxDims)
	}
	t.Dims = make([]uint64, nd)
	elems := uint64(1)
	for i := range t.Dims {
		t.Dims[i] = d.u64()
		if d.err != nil {
			return t, d.err
		}
		if t.Dims[i] == 0 {
			return t, fmt.Errorf("%q: dimension %d is zero", t.Name, i)
		}
		if t.Dims[i] > math.MaxInt64 || elems > math.MaxInt64/t.Dims[i] {
			return t, fmt.Errorf("%q: dimensions %v overflow", t.Name, t.Dims[:i+1])
		}
		elems *= t.Dims[i]
	}
	t.Type = Type(d.u32())
	t.Offset = d.u64()
	if d.err != nil {
		return t, d.err
	}
	if _, known := typeNames[t.Type]; !known {
		return t, fmt.Errorf("%q has unknown ggml type %d", t.Name, uint32(t.Type))
	}
	if !t.Type.Supported() {
		return t, fmt.Errorf("%q has type %v, which llmq does not read (supported: F32, F16, BF16, Q8_0, Q4_0)", t.Name, t.Type)
	}
	row, err := t.Type.RowBytes(int64(t.Dims[0]))
	if err != nil {
		return t, fmt.Errorf("%q: %w", t.Name, err)
	}
	rows := elems / t.Dims[0]
	if uint64(row) > uint64(d.size)/rows {
		return t, fmt.Errorf("%q: %v of %v needs more bytes than the %d-byte file holds", t.Name, t.Dims, t.Type, d.size)
	}
	t.Size = row * int64(rows)
	return t, nil
}
