//go:build !linux

package pagecache

func memfd([]byte) (int, bool) { return -1, false }

func closeFD(int) {}

func maxFiles() int64 { return 0 }
