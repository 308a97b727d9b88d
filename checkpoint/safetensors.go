package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"unsafe"
)

// maxHeaderLen bounds the JSON header of a safetensors file. The reference
// implementation uses 100 MB; a header longer than that is a corrupt file,
// not a model, and we refuse to allocate for it.
const maxHeaderLen = 100 << 20

// TensorInfo describes one tensor inside a safetensors file: its dtype, its
// shape and the byte range [Begin, End) relative to the start of the data
// section that follows the header.
type TensorInfo struct {
	Name       string
	DType      DType
	Shape      []int
	Begin, End int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is an open safetensors file. Its bytes are memory-mapped, so tensors
// are read lazily and Raw returns zero-copy views. Close unmaps the file;
// slices returned by Raw must not be used afterwards.
type File struct {
	Path     string
	Metadata map[string]string
	names    []string
	infos    map[string]TensorInfo
	data     []byte // the data section (after the 8-byte length and the header)
	mapping  []byte // the whole mapped file, for unmapping
}

// Header is the parsed, validated header of a safetensors buffer.
type Header struct {
	Metadata map[string]string
	Tensors  []TensorInfo // sorted by Begin
	DataLen  int64        // bytes of the data section the header claims (max End)
	Offset   int64        // where the data section starts in the file
}

// ParseHeader parses and validates the header of a safetensors file whose
// total size is fileSize; prefix must hold at least the first 8 bytes and the
// header itself (it may hold more). It checks everything the format allows
// us to check without reading tensor data: the length bound, the JSON, the
// dtypes, shape × dtype size == byte range, offsets inside the file, no
// overlapping tensors and no duplicate names.
func ParseHeader(prefix []byte, fileSize int64) (*Header, error) {
	if fileSize < 8 || len(prefix) < 8 {
		return nil, errors.New("file too short for a safetensors header (need at least 8 bytes)")
	}
	n := binary.LittleEndian.Uint64(prefix)
	if n > maxHeaderLen {
		return nil, fmt.Errorf("header length %d exceeds the %d-byte limit (corrupt or not a safetensors file)", n, maxHeaderLen)
	}
	if int64(n) > fileSize-8 {
		return nil, fmt.Errorf("header length %d runs past the end of the file (%d bytes): truncated?", n, fileSize)
	}
	if int64(len(prefix)) < 8+int64(n) {
		return nil, fmt.Errorf("header length %d runs past the bytes read", n)
	}
	raw := prefix[8 : 8+n]
	h := &Header{Offset: 8 + int64(n)}
	if err := parseHeaderJSON(raw, h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	dataLen := fileSize - h.Offset
	sort.Slice(h.Tensors, func(i, j int) bool {
		a, b := h.Tensors[i], h.Tensors[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	var prevEnd int64
	prevName := ""
	for i, t := range h.Tensors {
		if t.End > dataLen {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] run past the end of the data (%d bytes): truncated file?", t.Name, t.Begin, t.End, dataLen)
		}
		if i > 0 && t.Begin < prevEnd && t.End > t.Begin {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q (ends at %d)", t.Name, t.Begin, t.End, prevName, prevEnd)
		}
		if t.End > prevEnd {
			prevEnd, prevName = t.End, t.Name
		}
	}
	h.DataLen = prevEnd
	return h, nil
}

// parseHeaderJSON walks the header object token by token so that duplicate
// keys (which encoding/json would silently merge) are reported.
func parseHeaderJSON(raw []byte, h *Header) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("invalid JSON: the header must be an object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		name, _ := tok.(string)
		if seen[name] {
			return fmt.Errorf("duplicate entry %q", name)
		}
		seen[name] = true
		if name == "__metadata__" {
			if err := dec.Decode(&h.Metadata); err != nil {
				return fmt.Errorf("__metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		var e struct {
			DType   *string  `json:"dtype"`
			Shape   *[]int64 `json:"shape"`
			Offsets *[]int64 `json:"data_offsets"`
		}
		if err := dec.Decode(&e); err != nil {
			return fmt.Errorf("tensor %q: invalid JSON: %w", name, err)
		}
		t, err := validateEntry(name, e.DType, e.Shape, e.Offsets)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", name, err)
		}
		h.Tensors = append(h.Tensors, t)
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return errors.New("invalid JSON: trailing data after the header object")
	}
	// Trailing bytes after the object may only be padding (the writer pads
	// the header with spaces to an 8-byte boundary).
	if len(bytes.Trim(raw[dec.InputOffset():], " \x00\n\t\r")) != 0 {
		return errors.New("invalid JSON: trailing data after the header object")
	}
	return nil
}

func validateEntry(name string, dtype *string, shape, offs *[]int64) (TensorInfo, error) {
	t := TensorInfo{Name: name}
	if dtype == nil || shape == nil || offs == nil {
		return t, errors.New("entry needs dtype, shape and data_offsets")
	}
	t.DType = DType(*dtype)
	if t.DType.Size() == 0 {
		return t, fmt.Errorf("unknown dtype %q", *dtype)
	}
	elems := int64(1)
	for _, d := range *shape {
		if d < 0 {
			return t, fmt.Errorf("negative dimension in shape %v", *shape)
		}
		if d > 0 && elems > (1<<62)/d {
			return t, fmt.Errorf("shape %v is too large", *shape)
		}
		elems *= d
		t.Shape = append(t.Shape, int(d))
	}
	if len(*offs) != 2 {
		return t, fmt.Errorf("data_offsets must have 2 entries, got %d", len(*offs))
	}
	t.Begin, t.End = (*offs)[0], (*offs)[1]
	if t.Begin < 0 || t.End < t.Begin {
		return t, fmt.Errorf("invalid data_offsets [%d, %d]", t.Begin, t.End)
	}
	if want := elems * int64(t.DType.Size()); t.End-t.Begin != want {
		return t, fmt.Errorf("shape %v of %s needs %d bytes but data_offsets [%d, %d] hold %d", t.Shape, t.DType, want, t.Begin, t.End, t.End-t.Begin)
	}
	return t, nil
}

// OpenSafetensors memory-maps and validates a safetensors file.
func OpenSafetensors(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a directory, not a safetensors file", path)
	}
	m, err := mapFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h, err := ParseHeader(m, st.Size())
	if err != nil {
		unmapFile(m)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	file := &File{Path: path, Metadata: h.Metadata, infos: map[string]TensorInfo{}, data: m[h.Offset:], mapping: m}
	for _, t := range h.Tensors {
		file.infos[t.Name] = t
		file.names = append(file.names, t.Name)
	}
	sort.Strings(file.names)
	return file, nil
}

// Close releases the mapping.
func (f *File) Close() error {
	m := f.mapping
	f.mapping, f.data = nil, nil
	return unmapFile(m)
}

// Names lists the tensors in the file, sorted.
func (f *File) Names() []string { return f.names }

// Info returns the description of a tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	t, ok := f.infos[name]
	return t, ok
}

// Raw returns the stored little-endian bytes of a tensor without copying.
func (f *File) Raw(name string) ([]byte, TensorInfo, error) {
	t, ok := f.infos[name]
	if !ok {
		return nil, t, fmt.Errorf("%s: tensor %q not found", f.Path, name)
	}
	return f.data[t.Begin:t.End:t.End], t, nil
}

// Float32 returns a tensor converted to float32 (a new slice).
func (f *File) Float32(name string) ([]float32, TensorInfo, error) {
	raw, t, err := f.Raw(name)
	if err != nil {
		return nil, t, err
	}
	out := make([]float32, t.NumElements())
	if t.DType == F32 && littleEndian {
		copy(out, unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(raw))), len(out)))
		return out, t, nil
	}
	if err := decodeFloat32(out, raw, t.DType); err != nil {
		return nil, t, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	return out, t, nil
}

// Evict drops a tensor's pages from the process's resident memory (they
// stay cached by the kernel and are read back on the next access). Loaders
// that convert tensors one at a time call it so that the resident size
// tracks what they hold, not how much of the file they have read.
func (f *File) Evict(name string) {
	if t, ok := f.infos[name]; ok {
		evict(f.data[t.Begin:t.End])
	}
}

// Int64 returns an integer tensor widened to int64 (a new slice).
func (f *File) Int64(name string) ([]int64, TensorInfo, error) {
	raw, t, err := f.Raw(name)
	if err != nil {
		return nil, t, err
	}
	out := make([]int64, t.NumElements())
	if err := decodeInt64(out, raw, t.DType); err != nil {
		return nil, t, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	return out, t, nil
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()
