package router

import (
	"errors"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// Defaults of the page store's circuit breaker (CacheOptions).
const (
	DefaultStoreBreakerFailures = 5
	DefaultStoreBreakerCooldown = time.Second
)

// errStoreOpen: the page store's breaker is open; nothing was asked.
var errStoreOpen = errors.New("router: page store skipped: its circuit breaker is open after repeated failures")

// breakerStore puts a circuit breaker in front of the page store: after
// consecutive failures (errors and timeouts, not misses) every operation
// fails at once with errStoreOpen for the cooldown, then one probes the
// store. A hung memcached then costs a request nothing instead of its
// timeout, and no fill is started for pages that could not be stored.
type breakerStore struct {
	pagecache.Store
	b *sessioncheck.Breaker
}

// probeTries bounds the attempts of a probe that fails at once.
const probeTries = 8

// guard runs op unless the breaker is open, and records how it went. A
// probe that fails at once, without a timeout, is tried again, probeTries
// in all: after a hang, the client's pool still holds the connections the
// outage left dead (each fails at once, and is dropped), and each would
// otherwise cost a cooldown more. A timeout is never tried again: one per
// request.
func (s *breakerStore) guard(op func() error) error {
	probe, ok := s.b.Allow(time.Now())
	if !ok {
		return errStoreOpen
	}
	err := op()
	for try := 1; probe && try < probeTries && failure(err) && !pagecache.IsTimeout(err); try++ {
		err = op()
	}
	s.record(err, probe)
	return err
}

// record tells the breaker how an operation went.
func (s *breakerStore) record(err error, probe bool) {
	switch {
	case errors.Is(err, pagecache.ErrBusy):
		s.b.Release(probe) // our own bound, not the store's failure
	case failure(err):
		s.b.Failure(time.Now())
	default:
		s.b.Success() // the store answered
	}
}

// failure reports whether err is the store's failure: not an answer
// (a miss, not stored, too large) nor our own bound (ErrBusy).
func failure(err error) bool {
	switch {
	case err == nil, errors.Is(err, pagecache.ErrMiss), errors.Is(err, pagecache.ErrNotStored), errors.Is(err, pagecache.ErrTooLarge), errors.Is(err, pagecache.ErrBusy):
		return false
	}
	return true
}

func (s *breakerStore) Get(key string) (it pagecache.Item, err error) {
	err = s.guard(func() error { it, err = s.Store.Get(key); return err })
	return it, err
}

func (s *breakerStore) GetMulti(keys []string, items []pagecache.Item) error {
	return s.guard(func() error { return s.Store.GetMulti(keys, items) })
}

// GetMultiBuf keeps the store's reads into lent memory
// (pagecache.BufferedGetter).
func (s *breakerStore) GetMultiBuf(keys []string, items []pagecache.Item, buf []byte) error {
	bg, ok := s.Store.(pagecache.BufferedGetter)
	if !ok {
		return s.GetMulti(keys, items)
	}
	return s.guard(func() error { return bg.GetMultiBuf(keys, items, buf) })
}

// AddGetMulti keeps the store's single round trip (pagecache.AddGetter).
func (s *breakerStore) AddGetMulti(keys []string, adds, items []pagecache.Item) error {
	return s.guard(func() error { return pagecache.AddGetMulti(s.Store, keys, adds, items) })
}

// addGetSetBreaker is a breakerStore over a store that is a
// pagecache.AddGetSetter, which it is too: a new URL's page keeps its
// single round trip (see newBreakerStore).
type addGetSetBreaker struct{ *breakerStore }

// newBreakerStore puts b in front of s: as an addGetSetBreaker when s is
// a pagecache.AddGetSetter, so that the Cache takes that path only when
// the store has it.
func newBreakerStore(s pagecache.Store, b *sessioncheck.Breaker) pagecache.Store {
	bs := &breakerStore{Store: s, b: b}
	if _, ok := s.(pagecache.AddGetSetter); ok {
		return addGetSetBreaker{bs}
	}
	return bs
}

// AddGetSet is one operation for the breaker, as the store makes it.
func (s addGetSetBreaker) AddGetSet(keys []string, adds, items []pagecache.Item, key string, it pagecache.Item, ttl time.Duration) error {
	ags := s.Store.(pagecache.AddGetSetter)
	return s.guard(func() error { return ags.AddGetSet(keys, adds, items, key, it, ttl) })
}

func (s *breakerStore) Set(key string, it pagecache.Item, ttl time.Duration) error {
	return s.guard(func() error { return s.Store.Set(key, it, ttl) })
}

func (s *breakerStore) Delete(key string) error {
	return s.guard(func() error { return s.Store.Delete(key) })
}

func (s *breakerStore) Add(key string, it pagecache.Item, ttl time.Duration) error {
	return s.guard(func() error { return s.Store.Add(key, it, ttl) })
}

// Incr, which only purges use, always asks the store, open breaker or
// not: a purge must reach it if it can, and fails loudly if it cannot.
func (s *breakerStore) Incr(key string, delta uint64) (n uint64, err error) {
	n, err = s.Store.Incr(key, delta)
	s.record(err, false)
	return n, err
}
