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

// TestAddGetSet: over three real servers, the add of a counter, its read
// and the set of a value take one operation per server concerned,
// whether the two keys share a server or not; a counter held keeps its
// value and the set is made all the same; a value over the item size
// sends nothing; a set memcached refuses is its error, with the counter
// read, and leaves the next operations working.
func TestAddGetSet(t *testing.T) {
	s := []*pagecachetest.Server{pagecachetest.Start(t), pagecachetest.Start(t), pagecachetest.Start(t)}
	m, err := NewMemcache(MemcacheOptions{Servers: []string{s[0].Addr, s[1].Addr, s[2].Addr}, Distribution: Ketama,
		Timeout: time.Second, MaxItemSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	keys := ketamaKeys(16)
	server := func(k string) string {
		a, err := m.servers.PickServer(k)
		if err != nil {
			t.Fatal(err)
		}
		return a.String()
	}
	same, apart := 0, 0
	page := bytes.Repeat([]byte("p\r\n"), 7000)
	for i := 0; i+1 < len(keys); i += 2 {
		counter, key := keys[i], keys[i+1]
		held := i%4 == 2
		if held {
			m.Set(counter, Item{Value: []byte("held")}, time.Minute)
		}
		want, servers := "new", 2
		if held {
			want = "held"
		}
		if server(counter) == server(key) {
			same++
			servers = 1
		} else {
			apart++
		}
		ops := m.Stats.Ops.Load()
		got, err := addGetSet1(m, counter, Item{Value: []byte("new")}, key, Item{Value: page, Flags: 5}, time.Minute)
		if err != nil || string(got.Value) != want {
			t.Errorf("%s then %s: got %q, %v; want %q", counter, key, got.Value, err, want)
		}
		if n := m.Stats.Ops.Load() - ops; n != uint64(servers) {
			t.Errorf("%s then %s: %d operations; want %d", counter, key, n, servers)
		}
		if it, err := m.Get(key); err != nil || !bytes.Equal(it.Value, page) || it.Flags != 5 {
			t.Errorf("%s: got %d bytes, flags %d, %v; want the page, flags 5", key, len(it.Value), it.Flags, err)
		}
	}
	if same == 0 || apart == 0 {
		t.Logf("keys sharing a server: %d pairs, apart: %d", same, apart)
	}

	p := pagecachetest.Prefix()
	ops := m.Stats.Ops.Load()
	if _, err := addGetSet1(m, p+"c", Item{Value: []byte("1")}, p+"big", Item{Value: make([]byte, 9<<20)}, time.Minute); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a value over the item size: got %v; want ErrTooLarge", err)
	}
	if n := m.Stats.Ops.Load() - ops; n != 0 {
		t.Errorf("a value over the item size: %d operations; want none", n)
	}
	if _, err := addGetSet1(m, p+"c", Item{Value: []byte("1")}, "a b", Item{Value: []byte("v")}, time.Minute); !errors.Is(err, memcache.ErrMalformedKey) {
		t.Errorf("illegal key: got %v; want ErrMalformedKey", err)
	}
	got, err := addGetSet1(m, p+"c", Item{Value: []byte("1")}, p+"refused", Item{Value: make([]byte, 2<<20)}, time.Minute)
	if !errors.Is(err, memcache.ErrServerError) {
		t.Errorf("set over memcached's item size: got %v; want its SERVER_ERROR", err)
	}
	if server(p+"c") == server(p+"refused") && string(got.Value) != "1" {
		t.Errorf("set over memcached's item size: the counter read %q; want \"1\"", got.Value)
	}
	if it, err := m.Get(p + "c"); err != nil || string(it.Value) != "1" {
		t.Errorf("after the refused set: got %q, %v; want \"1\"", it.Value, err)
	}
}

// TestAddGetSetCounters: several counters on three servers, some added,
// one held by another writer, one only read and missing, then the set:
// each item shows what its key holds after the adds, in one operation
// per server concerned.
func TestAddGetSetCounters(t *testing.T) {
	s := []*pagecachetest.Server{pagecachetest.Start(t), pagecachetest.Start(t), pagecachetest.Start(t)}
	m, err := NewMemcache(MemcacheOptions{Servers: []string{s[0].Addr, s[1].Addr, s[2].Addr}, Distribution: Ketama,
		Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	k := ketamaKeys(6)
	if err := m.Set(k[1], Item{Value: []byte("held")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	servers := map[string]bool{}
	for _, key := range k[:5] {
		a, err := m.servers.PickServer(key)
		if err != nil {
			t.Fatal(err)
		}
		servers[a.String()] = true
	}
	keys := k[:4]
	adds := []Item{{Value: []byte("a0")}, {Value: []byte("a1")}, {}, {Value: []byte("a3")}}
	items := make([]Item, 4)
	ops := m.Stats.Ops.Load()
	if err := m.AddGetSet(keys, adds, items, k[4], Item{Value: []byte("page")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"a0", "held", "", "a3"} {
		if string(items[i].Value) != want || items[i].Found() != (want != "") {
			t.Errorf("counter %d: got %q (found %v); want %q", i, items[i].Value, items[i].Found(), want)
		}
	}
	if n := m.Stats.Ops.Load() - ops; n != uint64(len(servers)) {
		t.Errorf("%d operations; want one per server, %d", n, len(servers))
	}
	if it, err := m.Get(k[4]); err != nil || string(it.Value) != "page" {
		t.Errorf("the set: got %q, %v", it.Value, err)
	}
	if err := m.AddGetSet(keys, adds[:2], items, k[4], Item{}, time.Minute); err == nil {
		t.Error("adds shorter than keys: no error")
	}
}

// addGetSet1 is AddGetSet with one counter.
func addGetSet1(m *Memcache, counter string, add Item, key string, it Item, ttl time.Duration) (Item, error) {
	var items [1]Item
	err := m.AddGetSet([]string{counter}, []Item{add}, items[:], key, it, ttl)
	return items[0], err
}
