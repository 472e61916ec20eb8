//go:build !linux

package router

import "syscall"

// sendfile is never called where pagecache makes no Files.
func sendfile(int, int, *int64, int) (int, error) { return 0, syscall.ENOSYS }
