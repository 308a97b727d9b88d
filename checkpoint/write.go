package checkpoint

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
)

// WriteTensor is one tensor to be written: its raw little-endian bytes.
type WriteTensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// WriteSafetensors writes tensors (sorted by name, laid out contiguously) and
// optional metadata to path. It writes a temporary file beside path and
// renames it into place, so an interrupted write never leaves a partial file.
func WriteSafetensors(path string, tensors []WriteTensor, metadata map[string]string) error {
	ts := append([]WriteTensor(nil), tensors...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	plan := make([]PlannedTensor, len(ts))
	for i, t := range ts {
		plan[i] = PlannedTensor{Name: t.Name, DType: t.DType, Shape: t.Shape}
		if plan[i].Bytes() != int64(len(t.Data)) || t.DType.Size() == 0 {
			return fmt.Errorf("%s: tensor %q: %d bytes do not match shape %v of %s", path, t.Name, len(t.Data), t.Shape, t.DType)
		}
	}
	hj, err := encodeHeader(plan, metadata)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return WriteFileAtomic(path, func(w *bufio.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hj)))
		w.Write(n[:])
		w.Write(hj)
		for _, t := range ts {
			if _, err := w.Write(t.Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// WriteFileAtomic creates path by writing a temporary file in the same
// directory with fill, syncing it, and renaming it over path. On any error
// the temporary file is removed and path is left untouched. The temporary
// file is named as temp.go describes: a signal handler can remove it
// (RemoveTemps), and the next write into the folder sweeps it if this
// process is killed.
func WriteFileAtomic(path string, fill func(w *bufio.Writer) error) (err error) {
	tmp, name, err := createTemp(path, false)
	if err != nil {
		return err
	}
	defer releaseTemp(name)
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(name)
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err = fill(w); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = w.Flush(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// CreateTemp makes the file private (0600); give it the usual
	// read permissions of a model file.
	if err = os.Chmod(name, 0o644); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if st, serr := os.Stat(path); serr == nil && st.IsDir() {
		return fmt.Errorf("%s is a folder; the output is a file: give a file name", path)
	}
	if err = os.Rename(name, path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// WriteDirAtomic creates the folder out (which must not exist) by letting
// fill write into a temporary sibling folder and renaming it into place
// once fill succeeds, so an interrupted or failed write leaves nothing
// behind (a killed process's folder is swept by the next write into the
// same parent, see temp.go). The folder gets the usual 0755 permissions.
func WriteDirAtomic(out string, fill func(dir string) error) error {
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s already exists; choose a new output folder", out)
	}
	_, tmp, err := createTemp(out, true)
	if err != nil {
		return err
	}
	defer releaseTemp(tmp)
	defer os.RemoveAll(tmp) // no-op after the rename
	if err := fill(tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		if _, serr := os.Lstat(out); serr == nil {
			return fmt.Errorf("%s already exists; choose a new output folder", out)
		}
		return err
	}
	return nil
}
