package sessioncheck

import (
	"sync"
	"sync/atomic"
	"time"
)

// A Breaker stops asking a failing dependency: after threshold consecutive
// failures it opens for cooldown, then lets one probe through; the probe's
// success closes it, its failure opens it again. The session store has
// one; the router puts one in front of the page store. It is safe for
// concurrent use.
type Breaker struct {
	threshold int
	cooldown  time.Duration
	opens     *atomic.Uint64
	onChange  func(state string)

	mu       sync.Mutex
	failures int
	state    breakerState
	openedAt time.Time
}

type breakerState uint8

const (
	closed breakerState = iota
	open
	halfOpen
)

var breakerStates = [...]string{"closed", "open", "half-open"}

// NewBreaker returns a closed Breaker. opens, when not nil, counts the
// times it opens; onChange, when not nil, is told (outside the Breaker's
// lock) each time it opens or closes again: a log line per change.
func NewBreaker(threshold int, cooldown time.Duration, opens *atomic.Uint64, onChange func(state string)) *Breaker {
	if opens == nil {
		opens = new(atomic.Uint64)
	}
	return &Breaker{threshold: max(threshold, 1), cooldown: cooldown, opens: opens, onChange: onChange}
}

// Allow reports whether a call may go to the dependency, and whether it
// is the probe of a half-open breaker.
func (b *Breaker) Allow(now time.Time) (probe, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case closed:
		return false, true
	case open:
		if now.Sub(b.openedAt) < b.cooldown {
			return false, false
		}
		b.state = halfOpen
		return true, true
	}
	return false, false // a probe is in flight
}

// Success records a call that worked.
func (b *Breaker) Success() {
	b.mu.Lock()
	was := b.state
	b.failures, b.state = 0, closed
	b.mu.Unlock()
	if was != closed && b.onChange != nil {
		b.onChange(breakerStates[closed])
	}
}

// Failure records a call that failed at now.
func (b *Breaker) Failure(now time.Time) {
	b.mu.Lock()
	b.failures++
	opened := false
	if b.state == halfOpen || (b.state == closed && b.failures >= b.threshold) {
		opened = b.state == closed // a failed probe is no change to report
		b.state, b.openedAt = open, now
		b.opens.Add(1)
	}
	b.mu.Unlock()
	if opened && b.onChange != nil {
		b.onChange(breakerStates[open])
	}
}

// Release hands back a probe that never reached the dependency.
func (b *Breaker) Release(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	if b.state == halfOpen {
		b.state = open // openedAt unchanged: the next call probes again
	}
	b.mu.Unlock()
}

// String is "closed", "open" or "half-open".
func (b *Breaker) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return breakerStates[b.state]
}
