// Package shared locates the read-only reference models and data the tests
// and benchmarks use: $LLMQ_SHARED if set, else ../shared beside the module
// root. Those files are never part of the repository.
package shared

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the shared directory, or "" if it cannot be found.
func Dir() string {
	if d := os.Getenv("LLMQ_SHARED"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			s := filepath.Join(filepath.Dir(d), "shared")
			if _, err := os.Stat(s); err == nil {
				return s
			}
			return ""
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Path joins elements onto the shared directory and skips the test when the
// file is not there (a checkout without the reference files).
func Path(tb testing.TB, elem ...string) string {
	tb.Helper()
	d := Dir()
	if d == "" {
		tb.Skip("shared reference files not found (set LLMQ_SHARED)")
	}
	p := filepath.Join(append([]string{d}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("shared file missing: %v", err)
	}
	return p
}
