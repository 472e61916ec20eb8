package sessioncheck

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
	"golang.org/x/sync/singleflight"
)

// Defaults of Options: what its zero values mean.
const (
	DefaultTimeout         = 100 * time.Millisecond
	DefaultMaxQueries      = 8
	DefaultCacheEntries    = 100_000
	DefaultTTLIdentified   = 60 * time.Second
	DefaultTTLAnonymous    = 60 * time.Second
	DefaultTTLNoRow        = 5 * time.Second
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 2 * time.Second
)

// Options configures Sessions. Store and Rule are required; zero values
// elsewhere mean the defaults given (the Default constants).
type Options struct {
	Store Store
	Rule  Rule
	// Timeout bounds one Check that has to ask the store. Default 100ms.
	Timeout time.Duration
	// MaxQueries bounds the queries in flight at once; a lookup that gets
	// no slot within Timeout is a doubt (ErrBusy). Default 8.
	MaxQueries int
	// CacheEntries bounds the verdict cache. Keys are at most MaxKeyLength
	// bytes, so memory is bounded too (about 100 bytes an entry for
	// Django's 32-byte keys). Default 100,000.
	CacheEntries int
	// How long each kind of verdict is cached. Django, Rails and Laravel
	// give a session a new key when its user logs in or out, so a key's
	// verdict changes only when the key expires or is deleted: caching is
	// safe. No-row verdicts are kept briefly, in case a just-created
	// session has not reached the (replica) database yet. Each entry's TTL
	// varies by ±10%. Defaults 60s, 60s and 5s.
	TTLIdentified, TTLAnonymous, TTLNoRow time.Duration
	// BreakerFailures consecutive store failures open the circuit breaker;
	// for BreakerCooldown every lookup is then a doubt at once
	// (ErrBreakerOpen), after which one lookup probes the store.
	// Defaults 5 and 2s.
	BreakerFailures int
	BreakerCooldown time.Duration
	// OnBreaker, when set, is told each time the breaker opens ("open")
	// or closes again ("closed"): a log line per change.
	OnBreaker func(state string)
	// QueryDuration, when set, observes the latency of each query (a
	// Prometheus histogram, for instance).
	QueryDuration interface{ UpdateDuration(start time.Time) }
	// Stats, when set, is counted into (it may outlive the Sessions: a
	// reload keeps the counters); nil means a new one.
	Stats *Stats
}

// Stats counts what a Sessions did. Fields are safe to read at any time.
type Stats struct {
	Lookups      atomic.Uint64              // keys checked
	CacheHits    atomic.Uint64              // keys answered from the verdict cache
	Queries      atomic.Uint64              // queries sent to the store
	Identified   atomic.Uint64              // verdicts: a logged-in visitor
	Anonymous    atomic.Uint64              // verdicts: a session without a login
	NoRow        atomic.Uint64              // verdicts: an unknown or expired key (anonymous)
	Doubts       [len(doubts)]atomic.Uint64 // verdicts: doubt, by reason (see DoubtReasons)
	BreakerOpens atomic.Uint64              // times the circuit breaker opened
}

// kind is what the verdict cache holds for a key.
type kind uint8

const (
	kindAnonymous kind = iota
	kindIdentified
	kindNoRow
)

// Sessions is the Checker for a session store: a verdict cache in front of
// coalesced, bounded, breaker-guarded queries. Sessions is safe for
// concurrent use.
type Sessions struct {
	store   Store
	rule    Rule
	timeout time.Duration
	ttl     [3]time.Duration
	cache   *otter.Cache[string, kind]
	group   singleflight.Group
	slots   chan struct{}
	breaker *Breaker
	observe interface{ UpdateDuration(start time.Time) }

	Stats *Stats
}

var (
	_ Checker = (*Sessions)(nil)
	_ Pinger  = (*Sessions)(nil)
)

// New returns a Sessions over o.Store.
func New(o Options) (*Sessions, error) {
	if o.Store == nil || o.Rule == nil {
		return nil, errors.New("sessioncheck: a store and a rule are required")
	}
	s := &Sessions{
		store:   o.Store,
		rule:    o.Rule,
		timeout: cmp.Or(o.Timeout, DefaultTimeout),
		slots:   make(chan struct{}, cmp.Or(o.MaxQueries, DefaultMaxQueries)),
		observe: o.QueryDuration,
		Stats:   o.Stats,
	}
	if s.Stats == nil {
		s.Stats = new(Stats)
	}
	s.ttl[kindIdentified] = cmp.Or(o.TTLIdentified, DefaultTTLIdentified)
	s.ttl[kindAnonymous] = cmp.Or(o.TTLAnonymous, DefaultTTLAnonymous)
	s.ttl[kindNoRow] = cmp.Or(o.TTLNoRow, DefaultTTLNoRow)
	s.breaker = NewBreaker(cmp.Or(o.BreakerFailures, DefaultBreakerFailures), cmp.Or(o.BreakerCooldown, DefaultBreakerCooldown), &s.Stats.BreakerOpens, o.OnBreaker)
	cache, err := otter.New(&otter.Options[string, kind]{
		MaximumSize: cmp.Or(o.CacheEntries, DefaultCacheEntries),
		// ±10% jitter: keys first seen together (after a restart) do not all
		// expire, and get asked about, together.
		ExpiryCalculator: otter.ExpiryCreatingFunc(func(e otter.Entry[string, kind]) time.Duration {
			ttl := s.ttl[e.Value]
			return ttl - ttl/10 + rand.N(ttl/5+1)
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("sessioncheck: verdict cache: %w", err)
	}
	s.cache = cache
	return s, nil
}

// Check returns the verdict for a session key; an error is a doubt. A key
// seen recently is answered from the cache without allocating; otherwise
// the store is asked, within the timeout.
func (s *Sessions) Check(ctx context.Context, key []byte) (Verdict, error) {
	s.Stats.Lookups.Add(1)
	if len(key) == 0 || len(key) > MaxKeyLength {
		return Anonymous, s.doubt(fmt.Errorf("%w: key of %d bytes", ErrUndecodable, len(key)))
	}
	// The cache does not keep the key it is asked for, so it may alias key.
	if k, ok := s.cache.GetIfPresent(unsafe.String(&key[0], len(key))); ok {
		s.Stats.CacheHits.Add(1)
		return s.verdict(k), nil
	}
	return s.lookup(ctx, string(key))
}

func (s *Sessions) lookup(ctx context.Context, key string) (Verdict, error) {
	ch := s.group.DoChan(key, func() (any, error) { return s.query(key) })
	// query ends by its own deadline and says why (busy, timeout); this
	// timer, a little later, is only a safety net.
	timer := time.NewTimer(s.timeout + s.timeout/8)
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return Anonymous, s.doubt(res.Err)
		}
		return s.verdict(res.Val.(kind)), nil
	case <-timer.C:
		return Anonymous, s.doubt(ErrTimeout)
	case <-ctx.Done():
		return Anonymous, s.doubt(fmt.Errorf("%w: %v", ErrTimeout, ctx.Err()))
	}
}

// query asks the store about key, once for every caller waiting on it, and
// caches the answer. It runs on its own deadline: a caller giving up does
// not cancel it, so its answer still reaches the cache.
func (s *Sessions) query(key string) (kind, error) {
	probe, ok := s.breaker.Allow(time.Now())
	if !ok {
		return 0, ErrBreakerOpen
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		s.breaker.Release(probe)
		return 0, ErrBusy
	}
	defer func() { <-s.slots }()

	s.Stats.Queries.Add(1)
	start := time.Now()
	row, err := s.store.Lookup(ctx, key, start.UTC())
	if s.observe != nil {
		s.observe.UpdateDuration(start)
	}
	switch {
	case errors.Is(err, ErrNoRow):
		s.breaker.Success()
		s.cache.Set(key, kindNoRow)
		return kindNoRow, nil
	case errors.Is(err, ErrUndecodable):
		// The store answered with a value it cannot read (too large,
		// flags no session has): the value is wrong, not the store.
		s.breaker.Success()
		return 0, err
	case err != nil:
		s.breaker.Failure(time.Now())
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%w: %v", ErrTimeout, err)
		}
		return 0, fmt.Errorf("%w: %v", ErrStore, err)
	}
	s.breaker.Success()
	v, err := s.rule(row)
	if err != nil {
		return 0, err // the store answered; the row is what is wrong
	}
	k := kindAnonymous
	if v == Identified {
		k = kindIdentified
	}
	s.cache.Set(key, k)
	return k, nil
}

func (s *Sessions) verdict(k kind) Verdict {
	switch k {
	case kindIdentified:
		s.Stats.Identified.Add(1)
		return Identified
	case kindNoRow:
		s.Stats.NoRow.Add(1)
	default:
		s.Stats.Anonymous.Add(1)
	}
	return Anonymous
}

func (s *Sessions) doubt(err error) error {
	s.Stats.Doubts[ReasonIndex(err)].Add(1)
	return err
}

// BreakerState is "closed", "open" or "half-open".
func (s *Sessions) BreakerState() string { return s.breaker.String() }

// Ping checks the store, when it can be checked, and reports an open
// circuit breaker.
func (s *Sessions) Ping(ctx context.Context) error {
	if p, ok := s.store.(Pinger); ok {
		if err := p.Ping(ctx); err != nil {
			return err
		}
	}
	if st := s.breaker.String(); st != "closed" {
		return fmt.Errorf("sessioncheck: circuit breaker %s: recent lookups failed", st)
	}
	return nil
}

// Close closes the store.
func (s *Sessions) Close() error { return s.store.Close() }
