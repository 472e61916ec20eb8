package router

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// flakyStore fails its next fails calls with err, at once, then answers
// misses; it counts calls.
type flakyStore struct {
	pagecache.Store
	fails, calls atomic.Int64
	err          error
}

func (s *flakyStore) Get(string) (pagecache.Item, error) {
	s.calls.Add(1)
	if s.fails.Add(-1) >= 0 {
		return pagecache.Item{}, s.err
	}
	return pagecache.Item{}, pagecache.ErrMiss
}

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// TestStoreBreakerProbe: once open, the breaker answers at once without
// asking; its probe tries again what fails at once (connections an outage
// left dead in the pool), up to probeTries, and closes on an answer; a
// probe that times out is not tried again.
func TestStoreBreakerProbe(t *testing.T) {
	dead := errors.New("write tcp: broken pipe")
	for _, tc := range []struct {
		name      string
		err       error
		fails     int64
		wantCalls int64
		closed    bool
	}{
		{"dead connections, then an answer", dead, 3, 4, true},
		{"more dead connections than tries", dead, probeTries + 5, probeTries, false},
		{"a timeout", timeoutError{}, 3, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const cooldown = 50 * time.Millisecond
			fs := &flakyStore{err: tc.err}
			s := &breakerStore{Store: fs, b: sessioncheck.NewBreaker(1, cooldown, nil, nil)}
			fs.fails.Store(1)
			if _, err := s.Get("k"); !errors.Is(err, tc.err) {
				t.Fatalf("first call: %v; want %v", err, tc.err)
			}
			if _, err := s.Get("k"); !errors.Is(err, errStoreOpen) || fs.calls.Load() != 1 {
				t.Fatalf("while open: %v after %d calls; want errStoreOpen without asking", err, fs.calls.Load())
			}
			time.Sleep(cooldown + 10*time.Millisecond)
			fs.fails.Store(tc.fails)
			fs.calls.Store(0)
			s.Get("k") // the probe
			if got := fs.calls.Load(); got != tc.wantCalls {
				t.Errorf("the probe asked the store %d times; want %d", got, tc.wantCalls)
			}
			if got := s.b.String() == "closed"; got != tc.closed {
				t.Errorf("after the probe the breaker is %s; want closed %v", s.b.String(), tc.closed)
			}
		})
	}
}

// TestBreakerStoreAddGetSet: the breaker is an AddGetSetter when its
// store is one (memcached), so a new URL's page keeps its single round
// trip, and not otherwise (the memory store keeps its two steps).
func TestBreakerStoreAddGetSet(t *testing.T) {
	b := sessioncheck.NewBreaker(1, time.Second, nil, nil)
	mc, err := pagecache.NewMemcache(pagecache.MemcacheOptions{Servers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if _, ok := newBreakerStore(mc, b).(pagecache.AddGetSetter); !ok {
		t.Error("over memcached: not an AddGetSetter")
	}
	mem, err := pagecache.NewMemory(pagecache.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := newBreakerStore(mem, b).(pagecache.AddGetSetter); ok {
		t.Error("over the memory store: an AddGetSetter")
	}
}
