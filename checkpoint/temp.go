package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Temporary files and folders.
//
// The atomic writers (WriteFileAtomic, WriteDirAtomic) build their output
// under a hidden sibling name and rename it into place when complete:
//
//	.NAME.llmq-tmp-PID-RANDOM
//
// PID is the writing process, so a later run can tell a leftover of a
// killed process (kill -9, a power cut) from the work of a live one: before
// creating its own, each writer removes the leftovers of dead processes in
// the same folder (SweepStale) and reports them through Notify. While a
// write is under way its temporary path is registered, so a signal handler
// can remove it (RemoveTemps) before the process exits.

// tempMarker separates the output's name from the writer's pid.
const tempMarker = ".llmq-tmp-"

// Notify, if set, receives one line for each stale temporary path that
// SweepStale removes (the CLI prints them).
var Notify func(msg string)

var temps struct {
	sync.Mutex
	paths    map[string]bool
	removing bool // RemoveTemps ran: no new temporary paths
}

// tempPattern is the os.CreateTemp / os.MkdirTemp pattern for out.
func tempPattern(out string) string {
	return "." + filepath.Base(out) + tempMarker + strconv.Itoa(os.Getpid()) + "-*"
}

// createTemp makes a temporary file or folder for out (see the naming
// above) and registers it; release unregisters it.
func createTemp(out string, dir bool) (f *os.File, path string, err error) {
	parent := filepath.Dir(filepath.Clean(out))
	SweepStale(parent)
	temps.Lock()
	defer temps.Unlock()
	if temps.removing {
		return nil, "", fmt.Errorf("%s: interrupted", out)
	}
	if dir {
		path, err = os.MkdirTemp(parent, tempPattern(out))
	} else if f, err = os.CreateTemp(parent, tempPattern(out)); err == nil {
		path = f.Name()
	}
	if err != nil {
		return nil, "", err
	}
	if temps.paths == nil {
		temps.paths = map[string]bool{}
	}
	temps.paths[path] = true
	return f, path, nil
}

func releaseTemp(path string) {
	temps.Lock()
	delete(temps.paths, path)
	temps.Unlock()
}

// RemoveTemps removes every temporary file and folder the atomic writers of
// this process have under way and returns their paths; writers started
// afterwards fail. A signal handler calls it before exiting, so an
// interrupted save leaves nothing behind.
func RemoveTemps() []string {
	temps.Lock()
	defer temps.Unlock()
	temps.removing = true
	var out []string
	for p := range temps.paths {
		// A writer may still be adding files to a folder; retry until
		// the folder is gone.
		for i := 0; i < 10; i++ {
			if err := os.RemoveAll(p); err == nil {
				break
			}
		}
		out = append(out, p)
	}
	temps.paths = nil
	return out
}

// IsTemp reports whether name (a base name) is a temporary path of the
// atomic writers, and which process made it.
func IsTemp(name string) (pid int, ok bool) {
	if !strings.HasPrefix(name, ".") {
		return 0, false
	}
	i := strings.LastIndex(name, tempMarker)
	if i <= 1 {
		return 0, false
	}
	rest := name[i+len(tempMarker):]
	p, random, found := strings.Cut(rest, "-")
	if !found || random == "" {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 || p != strconv.Itoa(pid) {
		return 0, false
	}
	for _, c := range random {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	return pid, true
}

// SweepStale removes the temporary files and folders in dir that processes
// no longer running left behind (see the naming above), reports each
// through Notify, and returns their paths. Temporary paths of live
// processes, this one included, are left alone.
func SweepStale(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		pid, ok := IsTemp(e.Name())
		if !ok || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		size := diskUsage(p)
		if err := os.RemoveAll(p); err != nil {
			continue
		}
		removed = append(removed, p)
		if Notify != nil {
			Notify(fmt.Sprintf("removed %s (%.1f MiB), left by an interrupted write of process %d", p, float64(size)/(1<<20), pid))
		}
	}
	return removed
}

// diskUsage is the total size of the files under p.
func diskUsage(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
