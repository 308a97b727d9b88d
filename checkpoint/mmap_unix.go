//go:build unix

package checkpoint

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapFile maps a whole file read-only. The mapping stays valid after the
// file is closed; release it with unmapFile.
func mapFile(f *os.File, size int64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	return unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
}

func unmapFile(b []byte) error {
	if b == nil {
		return nil
	}
	return unix.Munmap(b)
}

// evict tells the kernel the process no longer needs the pages of b (a
// sub-slice of a read-only file mapping): they leave the process's resident
// set (and stay in the page cache).
func evict(b []byte) {
	page := unix.Getpagesize()
	if len(b) < page {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	off := int((uintptr(page) - start%uintptr(page)) % uintptr(page))
	n := (len(b) - off) / page * page
	if n <= 0 {
		return
	}
	_ = unix.Madvise(b[off:off+n], unix.MADV_DONTNEED)
}
