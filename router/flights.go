package router

import (
	"sync"
	"time"
)

// flights coalesces cache fills per key: while one fill of a key runs,
// others either wait for its result (a visitor's miss) or are not started
// at all (a background fill). x/sync/singleflight offers the first only.
// flights is safe for concurrent use.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	res  *fillResult
}

// do runs fn for key unless a fill of key is running, in which case it
// waits for that one, at most wait (0: no bound); leader reports whether fn
// ran here. A waiter that gave up gets a nil result: a slow fill stalls its
// waiters no longer than wait, after which each goes its own way.
func (f *flights) do(key string, wait time.Duration, fn func() *fillResult) (res *fillResult, leader bool) {
	f.mu.Lock()
	if fl, ok := f.m[key]; ok {
		f.mu.Unlock()
		if wait <= 0 {
			<-fl.done
			return fl.res, false
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-fl.done:
			return fl.res, false
		case <-t.C:
			return nil, false
		}
	}
	fl := f.start(key)
	f.mu.Unlock()
	defer f.finish(key, fl)
	fl.res = fn()
	return fl.res, true
}

// tryGo starts fn for key in a new goroutine unless a fill of key is
// running; it reports whether it started one.
func (f *flights) tryGo(key string, fn func() *fillResult) bool {
	f.mu.Lock()
	if _, ok := f.m[key]; ok {
		f.mu.Unlock()
		return false
	}
	fl := f.start(key)
	f.mu.Unlock()
	go func() {
		defer f.finish(key, fl)
		fl.res = fn()
	}()
	return true
}

// running reports whether a fill of key is in flight.
func (f *flights) running(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.m[key]
	return ok
}

func (f *flights) start(key string) *flight {
	if f.m == nil {
		f.m = map[string]*flight{}
	}
	fl := &flight{done: make(chan struct{})}
	f.m[key] = fl
	return fl
}

func (f *flights) finish(key string, fl *flight) {
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
	close(fl.done)
}
