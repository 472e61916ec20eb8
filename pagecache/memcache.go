package pagecache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
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
	// operation that gets no slot within Timeout fails with ErrBusy. Idle
	// connections are kept for as many. Default DefaultMaxInFlight.
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

// Memcache is a Store on memcached servers (bradfitz/gomemcache). It is
// safe for concurrent use.
type Memcache struct {
	client   *memcache.Client
	servers  memcache.ServerSelector
	ring     *ring                    // nil under Modula
	slots    map[string]chan struct{} // by server address
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
	_ Store  = (*Memcache)(nil)
	_ Pinger = (*Memcache)(nil)
)

// NewMemcache returns a store on o.Servers; it does not connect yet.
func NewMemcache(o MemcacheOptions) (*Memcache, error) {
	if len(o.Servers) == 0 {
		return nil, errors.New("pagecache: no memcached servers")
	}
	m := &Memcache{
		slots:    map[string]chan struct{}{},
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
		m.slots[a.String()] = make(chan struct{}, inFlight)
		return nil
	})
	m.client = memcache.NewFromSelector(m.servers)
	m.client.Timeout = m.timeout
	m.client.MaxIdleConns = inFlight // its default of 2 churns connections under load
	m.client.DialContext = dialBuffered
	return m, nil
}

// acquire takes an operation slot on the server holding key.
func (m *Memcache) acquire(key string) (addr net.Addr, release func(), err error) {
	addr, err = m.servers.PickServer(key)
	if err != nil {
		return nil, nil, err
	}
	slots := m.slots[addr.String()]
	select {
	case slots <- struct{}{}:
		return addr, func() { <-slots }, nil
	default:
	}
	t := time.NewTimer(m.timeout)
	defer t.Stop()
	select {
	case slots <- struct{}{}:
		return addr, func() { <-slots }, nil
	case <-t.C:
		m.Stats.Busy.Add(1)
		return nil, nil, ErrBusy
	}
}

// do runs one operation under a slot and accounts for it.
func (m *Memcache) do(key string, op func() error) error {
	addr, release, err := m.acquire(key)
	if err != nil {
		m.Stats.Errors.Add(1)
		return err
	}
	defer release()
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
		if isTimeout(err) {
			m.Stats.Timeouts.Add(1)
		}
	}
	return err
}

func isTimeout(err error) bool {
	var ct *memcache.ConnectTimeoutError
	var ne net.Error
	return errors.As(err, &ct) || errors.As(err, &ne) && ne.Timeout()
}

// Get returns the item under key.
func (m *Memcache) Get(key string) (Item, error) {
	var it *memcache.Item
	err := m.do(key, func() (err error) {
		it, err = m.client.Get(key)
		return err
	})
	if err != nil {
		return Item{}, err
	}
	return Item{Value: it.Value, Flags: it.Flags}, nil
}

// GetMulti sets items[i] to the item under keys[i], if any, in one round
// trip per server, each under a slot of its server and concurrently. When
// a server fails, the items of the others are still set.
func (m *Memcache) GetMulti(keys []string, items []Item) error {
	clear(items)
	if len(keys) == 0 {
		return nil
	}
	byServer := map[net.Addr][]string{}
	for _, k := range keys {
		a, err := m.servers.PickServer(k)
		if err != nil {
			m.Stats.Errors.Add(1)
			return err
		}
		byServer[a] = append(byServer[a], k)
	}
	var (
		mu    sync.Mutex
		found = make(map[string]*memcache.Item, len(keys))
		first error
	)
	get := func(keys []string) {
		var got map[string]*memcache.Item
		err := m.do(keys[0], func() (err error) {
			got, err = m.client.GetMulti(keys)
			return err
		})
		mu.Lock()
		defer mu.Unlock()
		maps.Copy(found, got)
		if first == nil {
			first = err
		}
	}
	if len(byServer) == 1 {
		get(keys)
	} else {
		var wg sync.WaitGroup
		for _, ks := range byServer {
			wg.Go(func() { get(ks) })
		}
		wg.Wait()
	}
	for i, k := range keys {
		if it, ok := found[k]; ok {
			items[i] = Item{Value: it.Value, Flags: it.Flags}
		}
	}
	return first
}

// Set stores it under key for ttl; an item over the size limit is refused
// with ErrTooLarge before anything is sent.
func (m *Memcache) Set(key string, it Item, ttl time.Duration) error {
	// memcached counts the key and about 50 bytes of item header too.
	if len(key)+len(it.Value)+64 > m.maxItem {
		m.Stats.TooLarge.Add(1)
		return ErrTooLarge
	}
	return m.do(key, func() error {
		return m.client.Set(&memcache.Item{Key: key, Value: it.Value, Flags: it.Flags, Expiration: expiration(ttl, time.Now())})
	})
}

// Add stores it under key unless key holds something.
func (m *Memcache) Add(key string, it Item, ttl time.Duration) error {
	return m.do(key, func() error {
		return m.client.Add(&memcache.Item{Key: key, Value: it.Value, Flags: it.Flags, Expiration: expiration(ttl, time.Now())})
	})
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

// Close closes the idle connections.
func (m *Memcache) Close() error { return m.client.Close() }
