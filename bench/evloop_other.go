//go:build !linux

package main

import "sync"

// The event loop is Linux's (evloop_linux.go); elsewhere every run goes
// through one goroutine per connection.

type flight struct{}

func startEventLoops(*runSpec, *schedule, []*worker, *sync.WaitGroup) (func(), bool) {
	return nil, false
}

func (c *conn) closeFD() {}
