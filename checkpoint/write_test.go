package checkpoint

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// WriteDirAtomic leaves nothing behind when fill fails, and creates the
// folder with what fill wrote when it succeeds.
func TestWriteDirAtomic(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "model")
	err := WriteDirAtomic(out, func(dir string) error {
		if err := os.WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o644); err != nil {
			return err
		}
		return errors.New("interrupted")
	})
	if err == nil || err.Error() != "interrupted" {
		t.Fatalf("err = %v, want the fill's error", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("a failed write left %v", entries)
	}
	if err := WriteDirAtomic(out, func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "a")); err != nil || string(b) != "x" {
		t.Fatalf("written folder: %q, %v", b, err)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o755 {
		t.Errorf("folder mode %v, want 0755", st.Mode().Perm())
	}
}

// Temporary names carry the writer's pid; IsTemp reads them back and
// rejects look-alikes.
func TestIsTemp(t *testing.T) {
	cases := map[string]int{
		".model.llmq-tmp-123-456":            123,
		".a.gguf.llmq-tmp-7-0":               7,
		".x.llmq-tmp-1-2.llmq-tmp-99-3":      99,
		"model.llmq-tmp-123-456":             0, // not hidden
		".model.llmq-tmp-123-":               0,
		".model.llmq-tmp-abc-456":            0,
		".model.llmq-tmp-0123-456":           0,
		".model.tmp123":                      0,
		".llmq-tmp-1-2":                      0, // no output name
		".model.llmq-tmp-12-3x":              0,
		".model.safetensors.llmq-tmp-42-777": 42,
	}
	for name, want := range cases {
		pid, ok := IsTemp(name)
		if ok != (want != 0) || pid != want {
			t.Errorf("IsTemp(%q) = %d, %v; want %d", name, pid, ok, want)
		}
	}
}

// A write into a folder sweeps the temporary paths that dead processes left
// there, says so, and leaves those of live processes and other files alone.
func TestSweepStale(t *testing.T) {
	parent := t.TempDir()
	dead := filepath.Join(parent, ".old.llmq-tmp-999999999-1") // above any pid_max
	if err := os.MkdirAll(filepath.Join(dead, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dead, "sub", "model.safetensors"), make([]byte, 1<<20), 0o644)
	deadFile := filepath.Join(parent, ".x.gguf.llmq-tmp-999999998-5")
	os.WriteFile(deadFile, []byte("x"), 0o644)
	live := filepath.Join(parent, ".live.llmq-tmp-"+fmt.Sprint(os.Getppid())+"-1")
	os.Mkdir(live, 0o755)
	other := filepath.Join(parent, ".keep.tmp123")
	os.Mkdir(other, 0o755)
	var notes []string
	Notify = func(msg string) { notes = append(notes, msg) }
	defer func() { Notify = nil }()
	if err := WriteFileAtomic(filepath.Join(parent, "out"), func(w *bufio.Writer) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dead, deadFile} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was not swept", p)
		}
	}
	for _, p := range []string{live, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	if len(notes) != 2 || !strings.Contains(strings.Join(notes, "\n"), "999999999") || !strings.Contains(notes[0]+notes[1], "1.0 MiB") {
		t.Errorf("notes %q, want one per swept path with its size and pid", notes)
	}
}

// RemoveTemps (what a signal handler calls) removes the temporary folder
// and file of writes under way; later writes fail instead of leaving more.
func TestRemoveTemps(t *testing.T) {
	defer func() { temps.Lock(); temps.removing = false; temps.Unlock() }()
	parent := t.TempDir()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- WriteDirAtomic(filepath.Join(parent, "model"), func(dir string) error {
			return WriteFileAtomic(filepath.Join(dir, "model.safetensors"), func(w *bufio.Writer) error {
				w.WriteString("partial")
				w.Flush()
				close(started)
				<-release
				return nil
			})
		})
	}()
	<-started
	if entries, _ := os.ReadDir(parent); len(entries) != 1 || !strings.Contains(entries[0].Name(), tempMarker) {
		t.Fatalf("during the write the folder holds %v, want one temporary folder", entries)
	}
	removed := RemoveTemps()
	if len(removed) != 2 {
		t.Errorf("RemoveTemps removed %v, want the folder and the file in it", removed)
	}
	close(release)
	<-done
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("after RemoveTemps the folder holds %v", entries)
	}
	if err := WriteFileAtomic(filepath.Join(parent, "late"), func(w *bufio.Writer) error { return nil }); err == nil {
		t.Error("a write after RemoveTemps succeeded")
	}
}

// Writing a file over an existing folder says so in the user's terms.
func TestWriteFileAtomicOverFolder(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "dir")
	os.Mkdir(out, 0o755)
	err := WriteFileAtomic(out, func(w *bufio.Writer) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("err = %v, want one saying the output is a folder", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Errorf("left %v", entries)
	}
	if err := WriteDirAtomic(out, func(string) error { return nil }); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("WriteDirAtomic over an existing folder: %v", err)
	}
}
