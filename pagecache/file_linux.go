package pagecache

import (
	"sync"

	"golang.org/x/sys/unix"
)

// memfd makes a sealed memory file holding b.
func memfd(b []byte) (int, bool) {
	fd, err := unix.MemfdCreate("userrouter-page", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, false
	}
	for off := 0; off < len(b); {
		n, err := unix.Pwrite(fd, b[off:], int64(off))
		if err != nil && err != unix.EINTR {
			unix.Close(fd)
			return -1, false
		}
		off += max(n, 0)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS,
		unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return -1, false
	}
	return fd, true
}

func closeFD(fd int) { unix.Close(fd) }

// maxFiles is how many Files the process keeps open at most: a quarter of
// its descriptor limit (Go raises the soft limit to the hard one at
// start), leaving the rest to connections. Beyond it values are kept on
// the heap only and their hits copied.
var maxFiles = sync.OnceValue(func() int64 {
	var l unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &l) != nil || l.Cur == unix.RLIM_INFINITY {
		return 4096
	}
	return int64(l.Cur / 4)
})
