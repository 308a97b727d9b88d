package sysinfo

import (
	"os"
	"strconv"
	"strings"
)

// Available returns the memory a new allocation can still get, in bytes:
// the kernel's MemAvailable, lowered to what the process's cgroup limit
// leaves (memory.max − memory.current) when that is smaller; 0 when
// neither can be read.
func Available() int64 {
	avail := meminfo("MemAvailable:")
	if limit, used := cgroupFile("memory.max"), cgroupFile("memory.current"); limit > 0 && used > 0 && limit > used {
		if left := limit - used; avail == 0 || left < avail {
			avail = left
		}
	}
	return avail
}

func meminfo(key string) int64 {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			if f := strings.Fields(rest); len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// cgroupFile reads a cgroup v2 value of the process's own group ("max"
// and unreadable files give 0).
func cgroupFile(name string) int64 {
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	path := ""
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			path = rest
		}
	}
	v, err := os.ReadFile("/sys/fs/cgroup" + path + "/" + name)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
	if err != nil {
		return 0
	}
	return n
}
