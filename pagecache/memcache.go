package pagecache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Defaults of MemcacheOptions (and, for DefaultMaxItemSize, of
// MemoryOptions): what their zero values mean.
const (
	// DefaultMemcacheTimeout bounds one memcached operation.
	DefaultMemcacheTimeout = 100 * time.Millisecond
	// DefaultMaxInFlight bounds the operations in flight to one server.
	DefaultMaxInFlight = 64
	// DefaultMaxItemSize is memcached's own default item size limit (-I).
	DefaultMaxItemSize = 1 << 20
)

// MemcacheOptions configures a Memcache store. Zero values mean the
// defaults given.
type MemcacheOptions struct {
	// Servers are "host:port" or "unix:/path" addresses; keys are spread
	// over them by Distribution.
	Servers []string
	// Distribution places keys on Servers. Default Modula (gomemcache's).
	Distribution Distribution
	// AutoEject takes a server off the ring after FailureLimit consecutive
	// failures (connection refused, reset or timed out), for RetryTimeout:
	// its keys go to the next server on the ring meanwhile, and the first
	// failure after its return ejects it again. It applies to the ketama
	// distributions only: under Modula, where ejecting a server would move
	// almost every key, it is ignored. Default false.
	AutoEject bool
	// FailureLimit is the consecutive failures that eject a server.
	// Default DefaultFailureLimit.
	FailureLimit int
	// RetryTimeout is how long an ejected server stays off the ring.
	// Default DefaultRetryTimeout.
	RetryTimeout time.Duration
	// OnServerEvent, when set, is told of each server ejected and of each
	// back and answering again: one call per change, not per retry. It
	// must not block or use the store.
	OnServerEvent func(ServerEvent)
	// Timeout bounds one operation, connecting included.
	// Default DefaultMemcacheTimeout.
	Timeout time.Duration
	// MaxInFlight bounds the operations in flight to each server; an
	// operation that gets no slot within Timeout fails with ErrBusy. As
	// many idle connections are kept for gets, sets and adds, and as many
	// for gomemcache's increments and deletes. Default DefaultMaxInFlight.
	MaxInFlight int
	// MaxItemSize is memcached's item size limit (its -I): larger items
	// are refused before being sent. Default DefaultMaxItemSize.
	MaxItemSize int
	// OpDuration, when set, observes the latency of each operation.
	OpDuration interface{ UpdateDuration(start time.Time) }
	// Stats, when set, is counted into (it may outlive the store: a
	// reload keeps the counters); nil means a new one.
	Stats *MemcacheStats
}

// MemcacheStats counts a Memcache store's operations.
type MemcacheStats struct {
	Ops      atomic.Uint64 // operations sent (a GetMulti counts once a server)
	Misses   atomic.Uint64 // gets that found nothing
	Errors   atomic.Uint64 // operations that failed, timeouts and busy included
	Timeouts atomic.Uint64 // operations that timed out
	Busy     atomic.Uint64 // operations that found no free slot
	TooLarge atomic.Uint64 // sets refused for the item size limit
	// Ejections counts servers taken off the ring (AutoEject); a server
	// that fails again on its return counts again.
	Ejections atomic.Uint64
}

// Memcache is a Store on memcached servers: gets, sets and adds go
// through a text-protocol path of its own (memread.go, memwrite.go);
// gomemcache does the rest (Incr, Delete, Ping). It is safe for
// concurrent use.
type Memcache struct {
	client   *memcache.Client // Incr, Delete and Ping; gets, sets, adds: memread.go, memwrite.go
	servers  memcache.ServerSelector
	ring     *ring                    // nil under Modula
	slots    map[string]chan struct{} // by server address
	byAddr   map[net.Addr]*mcServer   // as servers.PickServer returns them
	closed   atomic.Bool
	timeout  time.Duration
	maxItem  int
	observer interface{ UpdateDuration(start time.Time) }

	Stats *MemcacheStats
}

// A Pinger is a Store on servers that can tell whether they answer.
type Pinger interface {
	// Ping returns nil when every server answers before ctx is done.
	Ping(ctx context.Context) error
}

var (
	_ Store        = (*Memcache)(nil)
	_ AddGetSetter = (*Memcache)(nil)
	_ Pinger       = (*Memcache)(nil)
)

// NewMemcache returns a store on o.Servers; it does not connect yet.
func NewMemcache(o MemcacheOptions) (*Memcache, error) {
	if len(o.Servers) == 0 {
		return nil, errors.New("pagecache: no memcached servers")
	}
	m := &Memcache{
		slots:    map[string]chan struct{}{},
		byAddr:   map[net.Addr]*mcServer{},
		timeout:  cmp.Or(o.Timeout, DefaultMemcacheTimeout),
		maxItem:  cmp.Or(o.MaxItemSize, DefaultMaxItemSize),
		observer: o.OpDuration,
		Stats:    o.Stats,
	}
	if m.Stats == nil {
		m.Stats = new(MemcacheStats)
	}
	switch o.Distribution {
	case Modula:
		addrs := make([]string, len(o.Servers))
		for i, s := range o.Servers {
			// gomemcache takes a path with a slash for a unix socket.
			addrs[i] = strings.TrimPrefix(s, "unix:")
		}
		ss := new(memcache.ServerList)
		if err := ss.SetServers(addrs...); err != nil {
			return nil, fmt.Errorf("pagecache: memcached servers: %w", err)
		}
		m.servers = ss
	case Ketama, KetamaWeighted:
		limit := 0
		if o.AutoEject {
			limit = cmp.Or(o.FailureLimit, DefaultFailureLimit)
		}
		r, err := newRing(o.Distribution, o.Servers, limit, cmp.Or(o.RetryTimeout, DefaultRetryTimeout), o.OnServerEvent, m.Stats)
		if err != nil {
			return nil, fmt.Errorf("pagecache: memcached servers: %w", err)
		}
		m.servers, m.ring = r, r
	default:
		return nil, fmt.Errorf("pagecache: unknown distribution %d", o.Distribution)
	}
	inFlight := cmp.Or(o.MaxInFlight, DefaultMaxInFlight)
	m.servers.Each(func(a net.Addr) error {
		slots := make(chan struct{}, inFlight)
		m.slots[a.String()] = slots
		m.byAddr[a] = &mcServer{addr: a, slots: slots, idle: make(chan *mcConn, inFlight)}
		return nil
	})
	m.client = memcache.NewFromSelector(m.servers)
	m.client.Timeout = m.timeout
	m.client.MaxIdleConns = inFlight // its default of 2 churns connections under load
	m.client.DialContext = dialCoalesced
	return m, nil
}

// do runs one write (or Ping-like) operation through gomemcache under a
// slot of the server holding key, and accounts for it.
func (m *Memcache) do(key string, op func() error) error {
	addr, err := m.servers.PickServer(key)
	if err != nil {
		m.Stats.Errors.Add(1)
		return err
	}
	s := m.byAddr[addr]
	if err := m.take(s, time.Now().Add(m.timeout)); err != nil {
		return err
	}
	defer func() { <-s.slots }()
	m.Stats.Ops.Add(1)
	start := time.Now()
	err = op()
	if m.observer != nil {
		m.observer.UpdateDuration(start)
	}
	if m.ring != nil {
		m.ring.report(addr, err)
	}
	switch {
	case err == nil:
	case errors.Is(err, memcache.ErrCacheMiss):
		m.Stats.Misses.Add(1)
		return ErrMiss
	case errors.Is(err, memcache.ErrNotStored):
		return ErrNotStored
	default:
		m.Stats.Errors.Add(1)
		if IsTimeout(err) {
			m.Stats.Timeouts.Add(1)
		}
		m.dropIdle(s, err)
	}
	return err
}

// IsTimeout reports whether err, from a store, is a timeout: connecting
// (gomemcache's ConnectTimeoutError is no net.Error) or waiting.
func IsTimeout(err error) bool {
	var ct *memcache.ConnectTimeoutError
	var ne net.Error
	return errors.As(err, &ct) || errors.As(err, &ne) && ne.Timeout()
}

// Set stores it under key for ttl; an item over the size limit is refused
// with ErrTooLarge before anything is sent.
func (m *Memcache) Set(key string, it Item, ttl time.Duration) error {
	// memcached counts the key and about 50 bytes of item header too.
	if len(key)+len(it.Value)+64 > m.maxItem {
		m.Stats.TooLarge.Add(1)
		return ErrTooLarge
	}
	return m.store("set", key, it, expiration(ttl, time.Now()))
}

// Add stores it under key unless key holds something.
func (m *Memcache) Add(key string, it Item, ttl time.Duration) error {
	return m.store("add", key, it, expiration(ttl, time.Now()))
}

// Incr adds delta to the counter at key.
func (m *Memcache) Incr(key string, delta uint64) (uint64, error) {
	var n uint64
	err := m.do(key, func() (err error) {
		n, err = m.client.Increment(key, delta)
		return err
	})
	return n, err
}

// Delete removes key.
func (m *Memcache) Delete(key string) error {
	err := m.do(key, func() error { return m.client.Delete(key) })
	if errors.Is(err, ErrMiss) {
		return nil
	}
	return err
}

// Ping checks that every server answers, within the store's timeout per
// server and before ctx is done.
func (m *Memcache) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- m.client.Ping() }() // ends within the timeout per server
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes the idle connections; those in use are closed when their
// operation ends.
func (m *Memcache) Close() error {
	m.closed.Store(true)
	for _, s := range m.byAddr {
		s.closeIdle()
	}
	return m.client.Close()
}
