package pagecache

import (
	"errors"
	"time"
)

// A Store holds values by key: memcached, or memory for a single box.
// Implementations must be safe for concurrent use. Callers treat every
// error as a miss: a store that fails makes userrouter slower, never wrong.
type Store interface {
	// Get returns the item under key, or ErrMiss. It must not keep key,
	// which may alias a buffer the caller reuses.
	Get(key string) (Item, error)
	// GetMulti returns the items present among keys.
	GetMulti(keys []string) (map[string]Item, error)
	// Set stores an item for ttl (rounded up to whole seconds).
	Set(key string, it Item, ttl time.Duration) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(key string) error
	// Close releases the store's connections.
	Close() error
}

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
	// ErrBusy: every operation slot for the server was taken for the
	// whole timeout.
	ErrBusy = errors.New("pagecache: store busy")
)

// expiration converts a TTL to memcached's: seconds up to 30 days, a Unix
// time beyond.
func expiration(ttl time.Duration, now time.Time) int32 {
	secs := int64((ttl + time.Second - 1) / time.Second)
	if secs <= 0 {
		secs = 1
	}
	if secs > 30*24*3600 {
		return int32(now.Unix() + secs)
	}
	return int32(secs)
}
