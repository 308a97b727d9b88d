package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Tensors is a read-only collection of named tensors, whatever file format
// they came from. Model loaders bind weights through it.
type Tensors interface {
	Names() []string
	Info(name string) (TensorInfo, bool)
	Float32(name string) ([]float32, TensorInfo, error)
	Close() error
}

// Store joins the shards of a Hugging Face checkpoint into one Tensors.
type Store struct {
	Dir    string
	files  []*File
	byName map[string]*File
	names  []string
}

// IndexFile is the name of the shard index Hugging Face writes for sharded checkpoints.
const IndexFile = "model.safetensors.index.json"

// OpenDir opens the safetensors weights of a model folder: model.safetensors,
// or the shards listed in model.safetensors.index.json.
func OpenDir(dir string) (*Store, error) {
	s := &Store{Dir: dir, byName: map[string]*File{}}
	index := filepath.Join(dir, IndexFile)
	single := filepath.Join(dir, "model.safetensors")
	switch {
	case fileExists(index):
		if err := s.openSharded(index); err != nil {
			s.Close()
			return nil, err
		}
	case fileExists(single):
		f, err := OpenSafetensors(single)
		if err != nil {
			return nil, err
		}
		s.add(f, nil)
	default:
		return nil, fmt.Errorf("%s: no model.safetensors or %s in the folder", dir, IndexFile)
	}
	sort.Strings(s.names)
	return s, nil
}

func (s *Store) openSharded(index string) error {
	raw, err := os.ReadFile(index)
	if err != nil {
		return err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return fmt.Errorf("%s: invalid JSON: %w", index, err)
	}
	if len(idx.WeightMap) == 0 {
		return fmt.Errorf("%s: weight_map is missing or empty", index)
	}
	want := map[string][]string{} // shard file -> tensors the index puts there
	for name, shard := range idx.WeightMap {
		if shard == "" || filepath.Base(shard) != shard {
			return fmt.Errorf("%s: tensor %q: shard name %q must be a plain file name", index, name, shard)
		}
		want[shard] = append(want[shard], name)
	}
	shards := make([]string, 0, len(want))
	for sh := range want {
		shards = append(shards, sh)
	}
	sort.Strings(shards)
	for _, sh := range shards {
		f, err := OpenSafetensors(filepath.Join(s.Dir, sh))
		if err != nil {
			return err
		}
		if err := s.add(f, want[sh]); err != nil {
			return fmt.Errorf("%s: %w", index, err)
		}
	}
	return nil
}

// add registers a shard; expected, when not nil, lists what the index says
// the shard holds, and each of those must be there.
func (s *Store) add(f *File, expected []string) error {
	s.files = append(s.files, f)
	for _, name := range expected {
		if _, ok := f.infos[name]; !ok {
			return fmt.Errorf("tensor %q is listed in shard %s but missing from it", name, filepath.Base(f.Path))
		}
	}
	for _, name := range f.names {
		if other, dup := s.byName[name]; dup {
			return fmt.Errorf("tensor %q appears in both %s and %s", name, filepath.Base(other.Path), filepath.Base(f.Path))
		}
		s.byName[name] = f
		s.names = append(s.names, name)
	}
	return nil
}

// Names lists every tensor of the checkpoint, sorted.
func (s *Store) Names() []string { return s.names }

// Info describes a tensor.
func (s *Store) Info(name string) (TensorInfo, bool) {
	f, ok := s.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Info(name)
}

// Float32 reads a tensor converted to float32.
func (s *Store) Float32(name string) ([]float32, TensorInfo, error) {
	f, ok := s.byName[name]
	if !ok {
		return nil, TensorInfo{}, fmt.Errorf("%s: tensor %q not found in the checkpoint", s.Dir, name)
	}
	return f.Float32(name)
}

// Evict drops a tensor's pages from resident memory (see File.Evict).
func (s *Store) Evict(name string) {
	if f, ok := s.byName[name]; ok {
		f.Evict(name)
	}
}

// Close unmaps every shard.
func (s *Store) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Metadata merges the __metadata__ of every shard (later shards win on
// conflicting keys, in shard-name order).
func (s *Store) Metadata() map[string]string {
	out := map[string]string{}
	for _, f := range s.files {
		for k, v := range f.Metadata {
			out[k] = v
		}
	}
	return out
}

// Raw returns a tensor's stored bytes without conversion (a view into the
// mapping, valid until Close).
func (s *Store) Raw(name string) ([]byte, TensorInfo, error) {
	f, ok := s.byName[name]
	if !ok {
		return nil, TensorInfo{}, fmt.Errorf("%s: tensor %q not found in the checkpoint", s.Dir, name)
	}
	return f.Raw(name)
}
