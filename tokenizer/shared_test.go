package tokenizer

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedFile returns the path of a read-only shared input (see sharedRoot),
// skipping the test if it is missing.
func sharedFile(t testing.TB, rel string) string {
	t.Helper()
	root := sharedRoot()
	if root == "" {
		t.Skip("go.mod not found above the package directory; set LLMQ_SHARED")
	}
	p := filepath.Join(root, filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared input %s not available: %v", p, err)
	}
	return p
}

// sharedRoot is where the shared inputs should be: $LLMQ_SHARED, else
// ../shared next to the module root (the directory holding go.mod); "" if
// no go.mod is found.
func sharedRoot() string {
	if d := os.Getenv("LLMQ_SHARED"); d != "" {
		return d
	}
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
