package pagecache

import (
	"cmp"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// DefaultMemorySize is what a zero MemoryOptions.MaxBytes means: 128 MiB.
const DefaultMemorySize = 128 << 20

// MemoryOptions configures a Memory store.
type MemoryOptions struct {
	// MaxBytes bounds the keys and values held (each entry also counts a
	// fixed overhead); the least valuable entries (W-TinyLFU) are evicted
	// beyond it. Default DefaultMemorySize.
	MaxBytes int64
	// MaxItemSize refuses larger items, as memcached's -I.
	// Default DefaultMaxItemSize.
	MaxItemSize int
}

// A Sizer is a Store in this process that can tell how much it holds.
type Sizer interface {
	// Size returns the bytes held: keys, values and per-entry overhead.
	Size() uint64
	// Len returns the entries held, pages and counters.
	Len() int
}

// entryOverhead approximates what the cache spends per entry besides the
// key and value bytes.
const entryOverhead = 96

type memItem struct {
	item    Item
	expires time.Time
}

// Memory is a Store in the process's memory, for a single box and the
// demo: purges reach only this process. It is safe for concurrent use.
// A Get returns the stored slice itself: callers must not modify it.
type Memory struct {
	cache   *otter.Cache[string, memItem]
	opts    MemoryOptions
	maxItem int
	ops     atomic.Uint64
	counter sync.Mutex // makes Add and Incr atomic
}

var (
	_ Store = (*Memory)(nil)
	_ Sizer = (*Memory)(nil)
)

// NewMemory returns an empty Memory store.
func NewMemory(o MemoryOptions) (*Memory, error) {
	c, err := otter.New(&otter.Options[string, memItem]{
		MaximumWeight: uint64(cmp.Or(o.MaxBytes, DefaultMemorySize)),
		Weigher: func(k string, v memItem) uint32 {
			return uint32(min(len(k)+len(v.item.Value)+entryOverhead, 1<<31))
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, memItem]) time.Duration {
			return time.Until(e.Value.expires)
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("pagecache: memory store: %w", err)
	}
	return &Memory{cache: c, opts: o, maxItem: cmp.Or(o.MaxItemSize, DefaultMaxItemSize)}, nil
}

// Get returns the item under key. It does not keep key.
func (m *Memory) Get(key string) (Item, error) {
	m.ops.Add(1)
	v, ok := m.cache.GetIfPresent(key)
	if !ok || !time.Now().Before(v.expires) {
		return Item{}, ErrMiss
	}
	if v.item.Value == nil {
		v.item.Value = []byte{}
	}
	return v.item, nil
}

// GetMulti sets items[i] to the item under keys[i], if any.
func (m *Memory) GetMulti(keys []string, items []Item) error {
	for i, k := range keys {
		items[i], _ = m.Get(k)
	}
	return nil
}

// Set stores it under key for ttl.
func (m *Memory) Set(key string, it Item, ttl time.Duration) error {
	if len(key)+len(it.Value)+64 > m.maxItem {
		return ErrTooLarge
	}
	m.ops.Add(1)
	m.cache.Set(key, memItem{item: it, expires: expiresAt(ttl)})
	return nil
}

// expiresAt rounds ttl to whole seconds, as memcached does; 0 is never.
func expiresAt(ttl time.Duration) time.Time {
	if ttl == 0 {
		return time.Now().AddDate(100, 0, 0)
	}
	return time.Now().Add(max(ttl.Round(time.Second), time.Second))
}

// Add stores it under key unless key holds something.
func (m *Memory) Add(key string, it Item, ttl time.Duration) error {
	m.counter.Lock()
	defer m.counter.Unlock()
	if _, err := m.Get(key); err == nil {
		return ErrNotStored
	}
	return m.Set(key, it, ttl)
}

// Incr adds delta to the counter at key.
func (m *Memory) Incr(key string, delta uint64) (uint64, error) {
	m.counter.Lock()
	defer m.counter.Unlock()
	v, ok := m.cache.GetIfPresent(key)
	if !ok || !time.Now().Before(v.expires) {
		return 0, ErrMiss
	}
	n, err := strconv.ParseUint(string(v.item.Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("pagecache: incr of a non-numeric value at %q", key)
	}
	n += delta
	v.item.Value = strconv.AppendUint(nil, n, 10)
	m.ops.Add(1)
	m.cache.Set(key, v)
	return n, nil
}

// Delete removes key.
func (m *Memory) Delete(key string) error {
	m.ops.Add(1)
	m.cache.Invalidate(key)
	return nil
}

// Close does nothing.
func (m *Memory) Close() error { return nil }

// Size returns the weight (bytes, with overhead) held now.
func (m *Memory) Size() uint64 { return m.cache.WeightedSize() }

// Len returns the number of entries held now, pages and counters.
func (m *Memory) Len() int { return m.cache.EstimatedSize() }

// Options returns the options m was made with.
func (m *Memory) Options() MemoryOptions { return m.opts }
