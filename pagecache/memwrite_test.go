package pagecache

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// TestMemcacheStore: Set and Add on the store's own connections: values
// of several sizes round-trip with their flags, Add refuses a held key,
// a refused Set (over memcached's own item size, which MaxItemSize
// overstates here) is the server's error, and the connection it closed
// leaves the next operations working.
func TestMemcacheStore(t *testing.T) {
	m, err := NewMemcache(MemcacheOptions{Servers: []string{pagecachetest.Memcached(t)}, Timeout: time.Second, MaxItemSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prefix := pagecachetest.Prefix()
	for _, tc := range []struct {
		name  string
		size  int
		flags uint32
	}{{"empty", 0, 0}, {"small", 10, 7}, {"20KB", 20 << 10, 1 << 31}, {"600KB", 600 << 10, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			key := prefix + "set-" + tc.name
			v := bytes.Repeat([]byte("v\r\n"), tc.size/3+1)[:tc.size]
			if err := m.Set(key, Item{Value: v, Flags: tc.flags}, time.Minute); err != nil {
				t.Fatal(err)
			}
			it, err := m.Get(key)
			if err != nil || !bytes.Equal(it.Value, v) || it.Flags != tc.flags {
				t.Errorf("got %d bytes, flags %d, %v; want %d bytes, flags %d", len(it.Value), it.Flags, err, len(v), tc.flags)
			}
			if err := m.Add(key, Item{Value: []byte("other")}, time.Minute); !errors.Is(err, ErrNotStored) {
				t.Errorf("add of a held key: got %v; want ErrNotStored", err)
			}
		})
	}
	if err := m.Add(prefix+"added", Item{Value: []byte("1")}, 0); err != nil {
		t.Errorf("add of a free key: %v", err)
	}
	big := make([]byte, 2<<20)
	if err := m.Set(prefix+"big", Item{Value: big}, time.Minute); !errors.Is(err, memcache.ErrServerError) {
		t.Errorf("set over memcached's item size: got %v; want its SERVER_ERROR", err)
	}
	if it, err := m.Get(prefix + "added"); err != nil || string(it.Value) != "1" {
		t.Errorf("after the refused set: got %q, %v; want \"1\"", it.Value, err)
	}
}
