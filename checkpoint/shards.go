package checkpoint

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
)

// Streamed, sharded writing.
//
// WriteSafetensors needs every tensor's bytes in memory at once; a model of
// billions of parameters does not fit. WriteShards instead takes a plan —
// every tensor's name, dtype and shape, fixed before any byte is written —
// so each shard's header (which safetensors puts in front of the data) can
// be written first, and asks for each tensor's bytes in order as it writes
// them: the caller produces one tensor at a time (reads it, converts or
// quantizes it) and may drop it as soon as it is written. The layout is
// what transformers' save_pretrained writes: model.safetensors when
// everything fits in one shard, else model-0000N-of-0000M.safetensors with
// model.safetensors.index.json mapping each tensor to its shard.

// PlannedTensor is one tensor of a streamed write.
type PlannedTensor struct {
	Name  string
	DType DType
	Shape []int
}

// Bytes is the tensor's size in the file.
func (t PlannedTensor) Bytes() int64 {
	n := int64(t.DType.Size())
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// DefaultShardBytes is transformers' default max_shard_size ("5GB", decimal).
const DefaultShardBytes = 5_000_000_000

// ShardName is transformers' name for shard i (1-based) of n.
func ShardName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)
}

// SplitShards groups tensors, in order, into shards of at most maxBytes of
// data as huggingface_hub's split_state_dict_into_shards does: a tensor
// that would overflow the current shard starts the next one, and a tensor
// larger than maxBytes gets a shard of its own. maxBytes ≤ 0 means one shard.
func SplitShards(tensors []PlannedTensor, maxBytes int64) [][]PlannedTensor {
	var shards [][]PlannedTensor
	var cur []PlannedTensor
	var size int64
	for _, t := range tensors {
		n := t.Bytes()
		if maxBytes > 0 && len(cur) > 0 && size+n > maxBytes {
			shards = append(shards, cur)
			cur, size = nil, 0
		}
		cur = append(cur, t)
		size += n
	}
	if len(cur) > 0 || len(shards) == 0 {
		shards = append(shards, cur)
	}
	return shards
}

// Index is model.safetensors.index.json.
type Index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// WriteShards writes tensors into the folder dir (which must exist), in the
// given order, split by SplitShards(tensors, maxBytes). Each shard is
// written atomically (WriteFileAtomic) and carries metadata in its header.
// fill(i, w) is called once for each tensor, in order, and must write
// exactly tensors[i]'s bytes to w; anything else is an error. Nothing is
// held beyond one write buffer.
func WriteShards(dir string, tensors []PlannedTensor, metadata map[string]string, maxBytes int64, fill func(i int, w io.Writer) error) error {
	seen := map[string]bool{}
	for _, t := range tensors {
		if t.DType.Size() == 0 {
			return fmt.Errorf("%s: tensor %q: unknown dtype %q", dir, t.Name, t.DType)
		}
		if t.Name == "" || t.Name == "__metadata__" || seen[t.Name] {
			return fmt.Errorf("%s: duplicate or invalid tensor name %q", dir, t.Name)
		}
		seen[t.Name] = true
	}
	shards := SplitShards(tensors, maxBytes)
	idx := Index{Metadata: map[string]any{}, WeightMap: map[string]string{}}
	var total int64
	next := 0 // index into tensors of the next tensor to fill
	for si, shard := range shards {
		name := "model.safetensors"
		if len(shards) > 1 {
			name = ShardName(si+1, len(shards))
		}
		header, err := encodeHeader(shard, metadata)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		first := next
		err = WriteFileAtomic(filepath.Join(dir, name), func(w *bufio.Writer) error {
			var n [8]byte
			binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
			w.Write(n[:])
			if _, err := w.Write(header); err != nil {
				return err
			}
			for i, t := range shard {
				cw := &countingWriter{w: w}
				if err := fill(first+i, cw); err != nil {
					return fmt.Errorf("tensor %q: %w", t.Name, err)
				}
				if cw.n != t.Bytes() {
					return fmt.Errorf("tensor %q: %d bytes written, its shape %v of %s holds %d", t.Name, cw.n, t.Shape, t.DType, t.Bytes())
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		next += len(shard)
		for _, t := range shard {
			idx.WeightMap[t.Name] = name
			total += t.Bytes()
		}
	}
	if len(shards) == 1 {
		return nil
	}
	idx.Metadata["total_size"] = total
	raw, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, IndexFile), func(w *bufio.Writer) error {
		_, err := w.Write(append(raw, '\n'))
		return err
	})
}

// encodeHeader is the JSON header of a safetensors file holding tensors
// laid out contiguously in the given order, padded to 8 bytes.
func encodeHeader(tensors []PlannedTensor, metadata map[string]string) ([]byte, error) {
	header := make(map[string]any, len(tensors)+1)
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for _, t := range tensors {
		if _, dup := header[t.Name]; dup {
			return nil, fmt.Errorf("duplicate tensor %q", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		n := t.Bytes()
		header[t.Name] = map[string]any{"dtype": t.DType, "shape": shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	hj, err := json.Marshal(header) // map keys sorted: deterministic
	if err != nil {
		return nil, err
	}
	for len(hj)%8 != 0 { // the data section starts 8-byte aligned
		hj = append(hj, ' ')
	}
	return hj, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Shards lists the open safetensors files of the store, in the order their
// metadata is merged (Metadata).
func (s *Store) Shards() []*File { return s.files }

// ReleaseRaw drops the pages of b, a sub-slice of a slice Raw returned,
// from the process's resident memory (see Evict): a reader that walks a
// large tensor piece by piece releases each piece once used, so the
// resident size stays at one piece, not the tensor.
func (s *Store) ReleaseRaw(b []byte) { evict(b) }

// Prefetch asks the kernel to start reading a tensor's pages in the
// background (madvise WILLNEED), so a reader working on one tensor finds
// the next one already in the page cache.
func (s *Store) Prefetch(name string) {
	if f, ok := s.byName[name]; ok {
		if t, ok := f.infos[name]; ok {
			willNeed(f.data[t.Begin:t.End])
		}
	}
}
