// Package sysinfo reads process resource figures for reports.
package sysinfo

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// PeakRSS returns the process's peak resident set size in bytes (VmHWM on
// Linux), or 0 where it is not available.
func PeakRSS() int64 { return statusField("VmHWM:") }

// RSS returns the current resident set size in bytes (VmRSS), or 0.
func RSS() int64 { return statusField("VmRSS:") }

func statusField(key string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			fields := strings.Fields(rest)
			if len(fields) >= 1 {
				kb, _ := strconv.ParseInt(fields[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
