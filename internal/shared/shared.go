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
// file is not there (a checkout without the reference files), saying what
// was skipped. In CI (CI=true) a missing file fails the test instead, so
// a run without the reference files cannot pass for a green one.
func Path(tb testing.TB, elem ...string) string {
	tb.Helper()
	want := filepath.Join(elem...)
	d := Dir()
	if d == "" {
		missing(tb, "%s skipped: shared reference folder not found, so %s is not here (set LLMQ_SHARED, or put shared/ beside the checkout)", tb.Name(), want)
	}
	p := filepath.Join(d, want)
	if _, err := os.Stat(p); err != nil {
		missing(tb, "%s skipped: shared file missing: %v", tb.Name(), err)
	}
	return p
}

// missing skips the test, or fails it in CI.
func missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("CI=true: "+format, args...)
	}
	tb.Skipf(format, args...)
}
