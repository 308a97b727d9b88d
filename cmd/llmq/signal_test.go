//go:build unix

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"llmq/checkpoint"
	"llmq/internal/shared"
)

// buildBinary compiles llmq into a temporary folder.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "llmq")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// tempEntries lists the atomic writers' temporary paths in dir.
func tempEntries(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if _, ok := checkpoint.IsTemp(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out
}

// interruptDuringSave starts the command, waits until its temporary output
// appears in dir, sends sig and returns the exit status and stderr. ok is
// false when the command finished before the output appeared.
func interruptDuringSave(t *testing.T, bin, dir string, sig syscall.Signal, args ...string) (status int, stderr string, ok bool) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case <-done:
			return 0, errBuf.String(), false
		default:
		}
		if len(tempEntries(dir)) > 0 {
			cmd.Process.Signal(sig)
			err := <-done
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("after %v: %v", sig, err)
			}
			return ee.ExitCode(), errBuf.String(), true
		}
		time.Sleep(time.Millisecond)
	}
}

// SIGTERM or SIGINT during the save of export and quantize removes the
// temporary output; a leftover of a killed process is swept by the next run
// into the same folder, which says so.
func TestSignalDuringSave(t *testing.T) {
	llama := shared.Path(t, "models", "wiki-llama-25m")
	bin := buildBinary(t)
	runs := []struct {
		sig  syscall.Signal
		args func(dir string) []string
	}{
		{syscall.SIGTERM, func(dir string) []string {
			return []string{"export", "--model", llama, "--format", "gguf", "--type", "f32", "--out", filepath.Join(dir, "m.gguf")}
		}},
		{syscall.SIGINT, func(dir string) []string {
			return []string{"quantize", "--model", llama, "--recipe", "w8a8", "--out", filepath.Join(dir, "q")}
		}},
	}
	for _, r := range runs {
		caught := false
		for attempt := 0; attempt < 3 && !caught; attempt++ {
			dir := t.TempDir()
			status, stderr, ok := interruptDuringSave(t, bin, dir, r.sig, r.args(dir)...)
			if !ok {
				continue // finished before the output appeared; try again
			}
			caught = true
			if status != 128+int(r.sig) || !strings.Contains(stderr, "interrupted") || !strings.Contains(stderr, "removed the partial output") {
				t.Errorf("llmq %s after %v: exit %d, stderr %q", r.args(dir)[0], r.sig, status, stderr)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("llmq %s after %v left %v", r.args(dir)[0], r.sig, entries)
			}
		}
		if !caught {
			t.Errorf("llmq %s: never caught during its save", r.args("")[0])
		}
	}

	// A leftover of a process that no longer runs (pid above pid_max).
	dir := t.TempDir()
	stale := filepath.Join(dir, ".old.gguf.llmq-tmp-999999999-42")
	os.WriteFile(stale, make([]byte, 1<<20), 0o644)
	tiny := shared.Path(t, "models", "tiny-llama")
	cmd := exec.Command(bin, "export", "--model", tiny, "--format", "gguf", "--type", "f32", "--out", filepath.Join(dir, "t.gguf"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := os.Stat(stale); err == nil || !strings.Contains(string(out), "removed "+stale) || !strings.Contains(string(out), "999999999") {
		t.Errorf("stale temporary file not swept, or not reported: %s", out)
	}
}
