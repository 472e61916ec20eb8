package pagecache

import (
	"errors"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// TestMemcacheInFlightBound takes every slot of the server: the next
// operation waits the timeout for one, then fails with ErrBusy without
// being sent.
func TestMemcacheInFlightBound(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	m, _ := NewMemcache(MemcacheOptions{Servers: []string{addr}, Timeout: 100 * time.Millisecond, MaxInFlight: 2})
	defer m.Close()
	for _, slots := range m.slots {
		slots <- struct{}{}
		slots <- struct{}{}
	}
	start := time.Now()
	if _, err := m.Get("k"); !errors.Is(err, ErrBusy) {
		t.Errorf("with every slot taken: %v; want ErrBusy", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 250*time.Millisecond || m.Stats.Busy.Load() != 1 || m.Stats.Ops.Load() != 0 {
		t.Errorf("after %v: busy %d, ops sent %d; want about the timeout, 1 busy, none sent", d, m.Stats.Busy.Load(), m.Stats.Ops.Load())
	}
	for _, slots := range m.slots {
		<-slots
	}
	if _, err := m.Get("k"); !errors.Is(err, ErrMiss) {
		t.Errorf("with a slot free: %v; want a miss", err)
	}
}
