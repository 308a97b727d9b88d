package shared

import (
	"testing"
)

// fakeTB records whether Path skipped or failed.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Name() string { return "TestX" }
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = true
	panic("skip")
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	panic("fatal")
}

func call(tb *fakeTB, elem ...string) {
	defer func() { recover() }()
	Path(tb, elem...)
}

// A missing shared file skips the test locally and fails it in CI.
func TestPathMissing(t *testing.T) {
	t.Setenv("LLMQ_SHARED", t.TempDir())
	t.Setenv("CI", "")
	local := &fakeTB{}
	call(local, "models", "nothing")
	if !local.skipped || local.failed {
		t.Errorf("locally: skipped %v, failed %v", local.skipped, local.failed)
	}
	t.Setenv("CI", "true")
	ci := &fakeTB{}
	call(ci, "models", "nothing")
	if ci.skipped || !ci.failed {
		t.Errorf("in CI: skipped %v, failed %v", ci.skipped, ci.failed)
	}
}
