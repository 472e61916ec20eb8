package pagecache

import (
	"errors"
	"math"
	"time"
)

// A Store holds values by key: memcached, or memory for a single box.
// Implementations must be safe for concurrent use. Callers treat every
// error as a miss: a store that fails makes userrouter slower, never wrong.
type Store interface {
	// Get returns the item under key, or ErrMiss. It must not keep key,
	// which may alias a buffer the caller reuses.
	Get(key string) (Item, error)
	// GetMulti sets items[i] to the item under keys[i], in one round trip
	// per server; items of absent keys are left zero (a nil Value: a found
	// item's Value is never nil). items must be as long as keys.
	GetMulti(keys []string, items []Item) error
	// Set stores an item for ttl (rounded up to whole seconds).
	Set(key string, it Item, ttl time.Duration) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(key string) error
	// Add stores it only when key holds nothing, else returns
	// ErrNotStored. A ttl of 0 means no expiry (until evicted).
	Add(key string, it Item, ttl time.Duration) error
	// Incr adds delta to the decimal counter at key (wrapping at 2^64)
	// and returns the new value; ErrMiss when key holds nothing.
	Incr(key string, delta uint64) (uint64, error)
	// Close releases the store's connections.
	Close() error
}

// An AddGetter is a Store that can create missing values and read them
// back in the same round trip: generation counters are made so.
type AddGetter interface {
	// AddGetMulti first adds adds[i] under keys[i], with no expiry,
	// wherever adds[i].Value is not nil and keys[i] holds nothing, then
	// reads every key as GetMulti does: items show what the keys hold
	// after the adds (the value added, or what another writer put first).
	AddGetMulti(keys []string, adds, items []Item) error
}

// An AddGetSetter is an AddGetter that can also write a value in the
// same round trip: the fill of a URL never filled creates the URL's
// counter with its fence, and its tags' counters it has no fence for,
// reads them back and writes its page at once, rather than writing the
// page only once the counters' replies came.
type AddGetSetter interface {
	AddGetter
	// AddGetSet makes AddGetMulti(keys, adds, items), then sets it under
	// key for ttl: each server concerned is sent its part in one write,
	// before any reply is read, and one server's parts are done in that
	// order. items show what the keys hold after the adds (the value
	// added, or what another writer put first); an item is zero when its
	// key could not be read. The set is made whatever the adds and the
	// gets found: the caller's value must be invalid unless items show
	// that the counters hold what it records. An error says a part
	// failed (ErrTooLarge: a value is over the item size limit and
	// nothing was sent); items may still be set where gets were answered.
	AddGetSet(keys []string, adds, items []Item, key string, it Item, ttl time.Duration) error
}

// A BufferedGetter is a Store whose reads can put the values they find in
// memory the caller lends, rather than in new allocations: a page read
// from memcached then costs no allocation, and its memory can be reused
// once the response is written.
type BufferedGetter interface {
	// GetMultiBuf is GetMulti with values carved out of buf, from its
	// length up to its capacity, while they fit (values that do not are
	// allocated). The values found alias buf: the caller must not reuse
	// it while they are in use.
	GetMultiBuf(keys []string, items []Item, buf []byte) error
}

// AddGetMulti does s.AddGetMulti when s is an AddGetter, else an Add for
// each value to add, then a GetMulti.
func AddGetMulti(s Store, keys []string, adds, items []Item) error {
	if ag, ok := s.(AddGetter); ok {
		return ag.AddGetMulti(keys, adds, items)
	}
	for i, a := range adds {
		if a.Value == nil {
			continue
		}
		if err := s.Add(keys[i], a, 0); err != nil && !errors.Is(err, ErrNotStored) {
			clear(items)
			return err
		}
	}
	return s.GetMulti(keys, items)
}

// Found reports whether a GetMulti found the item.
func (it Item) Found() bool { return it.Value != nil }

// An Item is a stored value and its flags. A Get returns a Value the caller
// may keep, and must not modify (a memory store hands out its own copy).
type Item struct {
	Value []byte
	Flags uint32
}

var (
	// ErrMiss: nothing is stored under the key.
	ErrMiss = errors.New("pagecache: miss")
	// ErrTooLarge: the item exceeds the store's item size limit.
	ErrTooLarge = errors.New("pagecache: item too large")
	// ErrNotStored: Add found the key already held.
	ErrNotStored = errors.New("pagecache: not stored")
	// ErrBusy: every operation slot for the server was taken for the
	// whole timeout.
	ErrBusy = errors.New("pagecache: store busy")
)

// expiration converts a TTL to memcached's: seconds up to 30 days, a Unix
// time (at most 2^31-1) beyond; 0 (no expiry) stays 0.
func expiration(ttl time.Duration, now time.Time) int32 {
	if ttl == 0 {
		return 0
	}
	secs := int64(ttl / time.Second)
	if ttl%time.Second != 0 {
		secs++
	}
	if secs <= 0 {
		secs = 1
	}
	if secs > 30*24*3600 {
		// Capped at 2038, the latest memcached holds: wrapped to a
		// negative value it would mean "expired at once".
		return int32(min(now.Unix()+secs, math.MaxInt32))
	}
	return int32(secs)
}
