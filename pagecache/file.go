package pagecache

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// FileThreshold is the smallest stored value the memory store and the L1
// tier also keep in a File, for the router to send its body with
// sendfile(2) instead of copying it into the socket on every hit. Below
// it a copy costs less than the extra write and the descriptor.
const FileThreshold = 64 << 10

// A File is a sealed, read-only copy of a stored value in an anonymous
// memory file (memfd_create(2)), made once when the value enters the
// memory store or the L1 tier: a hit sends the body from it with
// sendfile(2), and the kernel's socket buffers reference its pages
// rather than a copy of them. It is safe for concurrent use.
//
// Why a purge or an eviction never corrupts a response in flight: the
// file is never written after it is made (it is sealed against writes,
// growing and shrinking), so every byte a sendfile reads is the value it
// was made from. A sender holds a reference (Acquire) for as long as it
// uses the descriptor, so the descriptor is closed, and its number can be
// reused by another file, only after the last sender released it and the
// store dropped the value (Release). Pages already queued in socket
// buffers stay valid after the close: the kernel holds its own reference
// to them, as it does for a file nginx unlinks while sending it.
type File struct {
	st  *fileState
	src []byte // the value it copies: its heap copy, for Offset
}

type fileState struct {
	fd   int
	refs atomic.Int64 // the holder's reference and one per sender
	size int64
}

// open counts the Files whose descriptor is open, against maxFiles.
var open atomic.Int64

// newFile returns a File holding a copy of value, or nil when the
// platform has none, the process has as many open as it allows itself
// (maxFiles), or the kernel refuses.
func newFile(value []byte) *File {
	if open.Add(1) > maxFiles() {
		open.Add(-1)
		return nil
	}
	fd, ok := memfd(value)
	if !ok {
		open.Add(-1)
		return nil
	}
	f := &File{st: &fileState{fd: fd, size: int64(len(value))}, src: value}
	f.st.refs.Store(1)
	// A File dropped without Release (a store nobody closed) closes its
	// descriptor when collected; nobody can Acquire it by then.
	runtime.AddCleanup(f, func(st *fileState) {
		if st.refs.Swap(0) > 0 {
			closeFD(st.fd)
			open.Add(-1)
		}
	}, f.st)
	return f
}

// Acquire takes a reference to f's descriptor for a send; ok is false
// when f was released meanwhile (the caller copies the body instead).
// Each successful Acquire must be paired with a Release.
func (f *File) Acquire() (fd int, ok bool) {
	for {
		n := f.st.refs.Load()
		if n <= 0 {
			return -1, false
		}
		if f.st.refs.CompareAndSwap(n, n+1) {
			return f.st.fd, true
		}
	}
}

// Release drops a reference: a sender's, or the store's own when it lets
// the value go. The last one closes the descriptor.
func (f *File) Release() {
	if f == nil {
		return
	}
	if f.st.refs.Add(-1) == 0 {
		closeFD(f.st.fd)
		open.Add(-1)
	}
}

// Offset returns where b, a slice of the value f copies, starts in the
// file; ok is false when b is not such a slice (a decompressed body).
func (f *File) Offset(b []byte) (off int64, ok bool) {
	if f == nil || len(b) == 0 || len(f.src) == 0 {
		return 0, false
	}
	d := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(f.src)))
	if d > uintptr(len(f.src)) || uintptr(len(b)) > uintptr(len(f.src))-d {
		return 0, false
	}
	return int64(d), true
}

// fileCost is what a File costs besides its value's heap copy: its pages
// (shared memory, counted in the process's resident size once written).
func fileCost(f *File) int {
	if f == nil {
		return 0
	}
	return int((f.st.size + 4095) &^ 4095)
}

// OpenFiles returns the number of Files whose descriptor is open.
func OpenFiles() int64 { return open.Load() }
