package router

import "syscall"

func sendfile(out, in int, off *int64, n int) (int, error) {
	return syscall.Sendfile(out, in, off, n)
}
