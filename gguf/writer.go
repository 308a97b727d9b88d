package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"llmq/checkpoint"
)

// Writer assembles a GGUF file. Metadata and tensor descriptions are added
// first; tensor data is produced by each tensor's Data function while the
// file is written, one tensor at a time, so a model never needs to be held
// encoded in memory all at once.
type Writer struct {
	kvs     []KV
	tensors []WriterTensor
}

// WriterTensor is a tensor to be written.
type WriterTensor struct {
	Name string
	Type Type
	Dims []uint64 // ggml order: Dims[0] is the contiguous (innermost) dimension
	// Data returns the tensor's encoded bytes (see Encode); it is called
	// once, when the tensor's turn comes.
	Data func() ([]byte, error)
}

// Set adds a metadata pair (or replaces the value of an existing key).
func (w *Writer) Set(key string, v Value) {
	for i := range w.kvs {
		if w.kvs[i].Key == key {
			w.kvs[i].Value = v
			return
		}
	}
	w.kvs = append(w.kvs, KV{key, v})
}

// AddTensor adds a tensor; tensors are stored in the order added.
func (w *Writer) AddTensor(t WriterTensor) { w.tensors = append(w.tensors, t) }

// alignment is general.alignment if set, else the default.
func (w *Writer) alignment() (uint64, error) {
	for _, kv := range w.kvs {
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.Any().(uint32)
			if !ok || kv.Value.Type != TypeUint32 || a == 0 || a&(a-1) != 0 {
				return 0, fmt.Errorf("general.alignment must be a uint32 power of two")
			}
			return uint64(a), nil
		}
	}
	return DefaultAlignment, nil
}

// layout validates the tensors and computes their sizes and offsets:
// consecutive, each padded to the alignment, as ggml's gguf writer does.
func (w *Writer) layout(align uint64) (sizes []int64, offsets []uint64, err error) {
	seen := map[string]bool{}
	var off uint64
	for _, t := range w.tensors {
		if t.Name == "" || len(t.Name) > maxNameLen {
			return nil, nil, fmt.Errorf("tensor name %q must be 1 to %d bytes", t.Name, maxNameLen)
		}
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("tensor %q added twice", t.Name)
		}
		seen[t.Name] = true
		if len(t.Dims) == 0 || len(t.Dims) > maxDims {
			return nil, nil, fmt.Errorf("tensor %q has %d dimensions (1 to %d allowed)", t.Name, len(t.Dims), maxDims)
		}
		for i, d := range t.Dims {
			if d == 0 || d > math.MaxInt64 {
				return nil, nil, fmt.Errorf("tensor %q: dimension %d is %d", t.Name, i, d)
			}
		}
		row, err := t.Type.RowBytes(int64(t.Dims[0]))
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		size := row
		for _, d := range t.Dims[1:] {
			if size > math.MaxInt64/int64(d) {
				return nil, nil, fmt.Errorf("tensor %q: dimensions %v overflow", t.Name, t.Dims)
			}
			size *= int64(d)
		}
		sizes = append(sizes, size)
		offsets = append(offsets, off)
		off = alignUp(off+uint64(size), align)
	}
	return sizes, offsets, nil
}

// WriteTo writes the file to out.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	align, err := w.alignment()
	if err != nil {
		return 0, err
	}
	sizes, offsets, err := w.layout(align)
	if err != nil {
		return 0, err
	}
	e := &encoder{w: out}
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kvs)))
	for _, kv := range w.kvs {
		if len(kv.Key) > maxKeyLen {
			return e.n, fmt.Errorf("metadata key of %d bytes is too long", len(kv.Key))
		}
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		if err := e.value(kv.Value); err != nil {
			return e.n, fmt.Errorf("metadata %q: %w", kv.Key, err)
		}
	}
	for i, t := range w.tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(offsets[i])
	}
	e.pad(align)
	for i, t := range w.tensors {
		if e.err != nil {
			break
		}
		data, err := t.Data()
		if err != nil {
			return e.n, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if int64(len(data)) != sizes[i] {
			return e.n, fmt.Errorf("tensor %q: %d bytes of data, %v %v needs %d", t.Name, len(data), t.Type, t.Dims, sizes[i])
		}
		e.raw(data)
		e.pad(align)
	}
	return e.n, e.err
}

// WriteFile writes the file to path through a temporary file in the same
// directory, renamed into place only when complete: an interrupted or failed
// write leaves nothing at path.
func (w *Writer) WriteFile(path string) error {
	err := checkpoint.WriteFileAtomic(path, func(b *bufio.Writer) error {
		_, err := w.WriteTo(b)
		return err
	})
	if err != nil {
		return err
	}
	// The temporary file was created private (0600); a model file is not.
	return os.Chmod(path, 0o644)
}

// encoder writes little-endian fields, remembering the first error.
type encoder struct {
	w   io.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(b)
	e.n += int64(n)
	e.err = err
}

func (e *encoder) u8(x uint8) { e.raw([]byte{x}) }
func (e *encoder) u16(x uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], x)
	e.raw(e.buf[:2])
}
func (e *encoder) u32(x uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], x)
	e.raw(e.buf[:4])
}
func (e *encoder) u64(x uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], x)
	e.raw(e.buf[:8])
}
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.raw([]byte(s))
}

func (e *encoder) pad(align uint64) {
	if n := alignUp(uint64(e.n), align) - uint64(e.n); n > 0 {
		e.raw(make([]byte, n))
	}
}

// value writes a value's payload (its type tag is written by the caller).
func (e *encoder) value(v Value) error {
	switch x := v.v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(x)
	default:
		if v.Type != TypeArray {
			return fmt.Errorf("value of type %v holds %T", v.Type, v.v)
		}
		e.u32(uint32(v.Elem))
		e.u64(uint64(v.Len()))
		return e.array(v)
	}
	return nil
}

func (e *encoder) array(v Value) error {
	switch s := v.v.(type) {
	case []Value:
		for _, x := range s {
			if x.Type != TypeArray {
				return fmt.Errorf("array of arrays holds a %v", x.Type)
			}
			e.u32(uint32(x.Elem))
			e.u64(uint64(x.Len()))
			if err := e.array(x); err != nil {
				return err
			}
		}
	case []string:
		for _, x := range s {
			e.str(x)
		}
	default:
		return writeAll(e, v.v)
	}
	return nil
}

// writeAll writes a slice of fixed-size scalars.
func writeAll(e *encoder, s any) error {
	switch s := s.(type) {
	case []uint8:
		e.raw(s)
	case []int8:
		for _, x := range s {
			e.u8(uint8(x))
		}
	case []uint16:
		for _, x := range s {
			e.u16(x)
		}
	case []int16:
		for _, x := range s {
			e.u16(uint16(x))
		}
	case []uint32:
		for _, x := range s {
			e.u32(x)
		}
	case []int32:
		for _, x := range s {
			e.u32(uint32(x))
		}
	case []float32:
		for _, x := range s {
			e.u32(math.Float32bits(x))
		}
	case []uint64:
		for _, x := range s {
			e.u64(x)
		}
	case []int64:
		for _, x := range s {
			e.u64(uint64(x))
		}
	case []float64:
		for _, x := range s {
			e.u64(math.Float64bits(x))
		}
	case []bool:
		for _, x := range s {
			if x {
				e.u8(1)
			} else {
				e.u8(0)
			}
		}
	default:
		return fmt.Errorf("cannot write an array of %T", s)
	}
	return nil
}
