package pagecache

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
)

// DefaultMemorySize is what a zero MemoryOptions.MaxBytes means: 128 MiB.
const DefaultMemorySize = 128 << 20

// MemoryOptions configures a Memory store.
type MemoryOptions struct {
	// MaxBytes bounds the memory the entries hold: each is charged what it
	// costs in the Go heap (see entryCost), not its value's length alone;
	// the least valuable entries (W-TinyLFU) are evicted beyond it.
	// Default DefaultMemorySize.
	MaxBytes int64
	// MaxItemSize refuses larger items, as memcached's -I.
	// Default DefaultMaxItemSize.
	MaxItemSize int
}

// A Sizer is a Store in this process that can tell how much it holds.
type Sizer interface {
	// Size returns the bytes held: what the keys, values and the
	// store's own structures for them cost in the heap.
	Size() uint64
	// Len returns the entries held, pages and counters.
	Len() int
}

// entryOverhead is what the store spends per entry besides the key's and
// the value's allocations: otter's node (key and value headers, expiry,
// list links, weight), its hash table's share and the sketch's, measured
// on Go 1.26 and otter 2.4 by TestMemoryEntryCost, which fails when it no
// longer covers them.
const entryOverhead = 224

// entryCost is what an entry costs in the heap: the key's bytes and the
// value's capacity, each rounded up as the allocator rounds (its size
// classes; a value the store is given whole is charged its capacity,
// which Encode's callers size to the class), and entryOverhead.
func entryCost(key string, value []byte) uint32 {
	return uint32(min(allocSize(len(key))+allocSize(cap(value))+entryOverhead, 1<<31))
}

// allocSize is n rounded up to the allocation Go makes for it: its size
// class up to 32 KiB (Go 1.26's internal/runtime/gc/sizeclasses.go), whole
// 8 KiB pages beyond.
func allocSize(n int) int {
	if n > sizeClasses[len(sizeClasses)-1] {
		return (n + 8<<10 - 1) &^ (8<<10 - 1)
	}
	i, _ := slices.BinarySearch(sizeClasses[:], n)
	return sizeClasses[i]
}

// sizeClasses are Go's small object sizes.
var sizeClasses = [...]int{0, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048,
	2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880,
	12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

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
	// watcher, when set, hears of every key whose value goes (see watch).
	watcher atomic.Pointer[func(key string)]
}

var (
	_ Store = (*Memory)(nil)
	_ Sizer = (*Memory)(nil)
)

// NewMemory returns an empty Memory store.
func NewMemory(o MemoryOptions) (*Memory, error) {
	m := &Memory{opts: o, maxItem: cmp.Or(o.MaxItemSize, DefaultMaxItemSize)}
	c, err := otter.New(&otter.Options[string, memItem]{
		MaximumWeight: uint64(cmp.Or(o.MaxBytes, DefaultMemorySize)),
		Weigher: func(k string, v memItem) uint32 {
			return entryCost(k, v.item.Value)
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, memItem]) time.Duration {
			return time.Until(e.Value.expires)
		}),
		// In the goroutine that removes the value, under its bucket's
		// lock: before a Set that replaced it or a Delete returns, and
		// as otter evicts or expires it (see watch).
		OnAtomicDeletion: func(e otter.DeletionEvent[string, memItem]) {
			if f := m.watcher.Load(); f != nil {
				(*f)(e.Key)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("pagecache: memory store: %w", err)
	}
	m.cache = c
	return m, nil
}

// holds reports whether key holds value itself: the very bytes, not
// equal ones.
func (m *Memory) holds(key string, value []byte) bool {
	v, ok := m.cache.GetIfPresent(key)
	return ok && len(v.item.Value) == len(value) && unsafe.SliceData(v.item.Value) == unsafe.SliceData(value)
}

// watch makes f hear of every key whose value goes: replaced, deleted,
// evicted or expired. f runs under the store's lock, before a Set that
// replaced the value or a Delete returns; it must not call m. One watcher
// at a time: the latest Cache built on m (a reload builds a new one).
func (m *Memory) watch(f func(key string)) { m.watcher.Store(&f) }

// Get returns the item under key. It does not keep key.
func (m *Memory) Get(key string) (Item, error) {
	m.ops.Add(1)
	// otter does not return an entry past the expiry it was given
	// (v.expires, see NewMemory): no clock read here.
	v, ok := m.cache.GetIfPresent(key)
	if !ok {
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

// InProcess reports that m keeps its values in this process: Get returns
// the very bytes Set was given (see CacheOptions.InProcess).
func (m *Memory) InProcess() bool { return true }

// Close does nothing.
func (m *Memory) Close() error { return nil }

// Size returns the bytes the entries held now cost (see entryCost).
func (m *Memory) Size() uint64 { return m.cache.WeightedSize() }

// Len returns the number of entries held now, pages and counters.
func (m *Memory) Len() int { return m.cache.EstimatedSize() }

// Options returns the options m was made with.
func (m *Memory) Options() MemoryOptions { return m.opts }
