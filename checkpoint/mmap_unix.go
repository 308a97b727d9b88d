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

// willNeed asks the kernel to read the pages of b (a sub-slice of a
// read-only file mapping) ahead, in the background.
func willNeed(b []byte) {
	if len(b) == 0 {
		return
	}
	page := uintptr(unix.Getpagesize())
	p := unsafe.Pointer(unsafe.SliceData(b))
	off := int(uintptr(p) % page)
	// madvise wants a page-aligned start: round down (the mapping starts on
	// a page, so the page holding the first byte is part of it).
	_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, -off)), len(b)+off), unix.MADV_WILLNEED)
}
