package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
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
