package pagecache

import (
	"cmp"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// MemoryOptions configures a Memory store.
type MemoryOptions struct {
	// MaxBytes bounds the keys and values held (each entry also counts a
	// fixed overhead); the least valuable entries (W-TinyLFU) are evicted
	// beyond it. Default 64 MiB.
	MaxBytes int64
	// MaxItemSize refuses larger items, as memcached's -I. Default 1 MiB.
	MaxItemSize int
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
	maxItem int
	ops     atomic.Uint64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store.
func NewMemory(o MemoryOptions) (*Memory, error) {
	c, err := otter.New(&otter.Options[string, memItem]{
		MaximumWeight: uint64(cmp.Or(o.MaxBytes, 64<<20)),
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
	return &Memory{cache: c, maxItem: cmp.Or(o.MaxItemSize, 1<<20)}, nil
}

// Get returns the item under key. It does not keep key.
func (m *Memory) Get(key string) (Item, error) {
	m.ops.Add(1)
	v, ok := m.cache.GetIfPresent(key)
	if !ok || !time.Now().Before(v.expires) {
		return Item{}, ErrMiss
	}
	return v.item, nil
}

// GetMulti returns the items present among keys.
func (m *Memory) GetMulti(keys []string) (map[string]Item, error) {
	out := make(map[string]Item, len(keys))
	for _, k := range keys {
		if it, err := m.Get(k); err == nil {
			out[k] = it
		}
	}
	return out, nil
}

// Set stores it under key for ttl.
func (m *Memory) Set(key string, it Item, ttl time.Duration) error {
	if len(key)+len(it.Value)+64 > m.maxItem {
		return ErrTooLarge
	}
	m.ops.Add(1)
	ttl = max(ttl.Round(time.Second), time.Second) // whole seconds, as memcached
	m.cache.Set(key, memItem{item: it, expires: time.Now().Add(ttl)})
	return nil
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
