package pagecache

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

func TestParseValueLine(t *testing.T) {
	for _, c := range []struct {
		line  string
		key   string
		flags uint32
		size  int
		ok    bool
	}{
		{"VALUE k 0 5\r\n", "k", 0, 5, true},
		{"VALUE ur:u:abc 4294967295 13000\r\n", "ur:u:abc", 1<<32 - 1, 13000, true},
		{"VALUE k 1 0 12345\r\n", "k", 1, 0, true}, // with a cas unique
		{"VALUE k 4294967296 5\r\n", "", 0, 0, false},
		{"VALUE k 0 2147483648\r\n", "", 0, 0, false},
		{"VALUE k 0 -1\r\n", "", 0, 0, false},
		{"VALUE k 0 5\n", "", 0, 0, false},
		{"VALUE k 0\r\n", "", 0, 0, false},
		{"VALUE  0 5\r\n", "", 0, 0, false},
		{"VALUE k 0 99999999999\r\n", "", 0, 0, false},
		{"VALUE k x 5\r\n", "", 0, 0, false},
		{"END\r\n", "", 0, 0, false},
		{"SERVER_ERROR out of memory\r\n", "", 0, 0, false},
	} {
		key, flags, size, ok := parseValueLine([]byte(c.line))
		if ok != c.ok || ok && (string(key) != c.key || flags != c.flags || size != c.size) {
			t.Errorf("%q: %q %d %d %v; want %q %d %d %v", c.line, key, flags, size, ok, c.key, c.flags, c.size, c.ok)
		}
	}
}

// readReply runs readValues on a canned reply to a get of keys, all on
// one server.
func readReply(reply string, keys []string, maxItem int) ([]Item, error) {
	m := &Memcache{maxItem: maxItem}
	c := &mcConn{r: bufio.NewReaderSize(strings.NewReader(reply), 64)}
	who := make([]int32, len(keys))
	items := make([]Item, len(keys))
	var slab []byte
	err := m.readValues(c, keys, who, 0, items, &slab)
	return items, err
}

func TestReadValues(t *testing.T) {
	keys := []string{"p", "a", "b", "a"}
	items, err := readReply("VALUE p 3 4\r\npage\r\nVALUE a 0 1\r\n1\r\nVALUE a 0 1\r\n1\r\nEND\r\n", keys, 100)
	if err != nil || string(items[0].Value) != "page" || items[0].Flags != 3 || string(items[1].Value) != "1" ||
		items[2].Found() || string(items[3].Value) != "1" {
		t.Fatalf("got %v, %v", items, err)
	}
	if cap(items[0].Value) != 4 {
		t.Errorf("a value's capacity runs into the next: %d", cap(items[0].Value))
	}
	// Out of order (a proxy may answer so), and an empty value.
	items, err = readReply("VALUE b 0 0\r\n\r\nVALUE p 0 1\r\nx\r\nEND\r\n", keys, 100)
	if err != nil || !items[2].Found() || len(items[2].Value) != 0 || string(items[0].Value) != "x" {
		t.Fatalf("out of order: %v, %v", items, err)
	}
	for _, c := range []struct {
		reply string
		want  error
	}{
		{"VALUE z 0 1\r\nx\r\nEND\r\n", errProtocol}, // not asked for
		{"VALUE p 0 101\r\n", errProtocol},           // over the item size
		{"VALUE p 0 4\r\npagexEND\r\n", errProtocol}, // no CRLF after the data
		{"VALUE p 0 4\r\npa", nil},                   // cut short
		{"SERVER_ERROR out of memory\r\n", memcache.ErrServerError},
		{"CLIENT_ERROR bad command line format\r\n", errServerReply},
		{"ERROR\r\n", errServerReply},
		{"HELLO\r\n", errProtocol},
		{"", nil},
		{strings.Repeat("x", 100) + "\r\n", errProtocol}, // a line longer than the buffer
	} {
		_, err := readReply(c.reply, keys, 100)
		if err == nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%q: %v; want %v", c.reply, err, c.want)
		}
	}
}

func FuzzReadValues(f *testing.F) {
	f.Add("VALUE p 3 4\r\npage\r\nVALUE a 0 1\r\n1\r\nEND\r\n")
	f.Add("VALUE b 0 0\r\n\r\nEND\r\n")
	f.Add("SERVER_ERROR x\r\n")
	f.Fuzz(func(t *testing.T, reply string) {
		keys := []string{"p", "a", "b", "a"}
		items, err := readReply(reply, keys, 1000)
		for i, it := range items {
			if it.Found() && err == nil && !strings.Contains(reply, "VALUE "+keys[i]+" ") {
				t.Errorf("%q found without being in the reply", keys[i])
			}
			if len(it.Value) > 1000 || cap(it.Value) != len(it.Value) {
				t.Errorf("value of %d bytes, capacity %d", len(it.Value), cap(it.Value))
			}
		}
	})
}

// TestGetMultiServers reads keys spread over three real servers in one
// call; with one of them stopped, the others' items are still set, and
// the call fails.
func TestGetMultiServers(t *testing.T) {
	s := []*pagecachetest.Server{pagecachetest.Start(t), pagecachetest.Start(t), pagecachetest.Start(t)}
	m, err := NewMemcache(MemcacheOptions{Servers: []string{s[0].Addr, s[1].Addr, s[2].Addr}, Distribution: Ketama, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	keys := ketamaKeys(40)
	on := map[string]int{}
	for i, k := range keys {
		if err := m.Set(k, Item{Value: []byte(k), Flags: uint32(i)}, time.Minute); err != nil {
			t.Fatal(err)
		}
		a, _ := m.servers.PickServer(k)
		for j := range s {
			if s[j].Addr == a.String() {
				on[k] = j
			}
		}
	}
	keys = append(keys, "absent")
	items := make([]Item, len(keys))
	ops := m.Stats.Ops.Load()
	if err := m.GetMulti(keys, items); err != nil {
		t.Fatal(err)
	}
	if n := m.Stats.Ops.Load() - ops; n != 3 {
		t.Errorf("%d operations for 41 keys on 3 servers; want 3", n)
	}
	for i, k := range keys[:40] {
		if string(items[i].Value) != k || items[i].Flags != uint32(i) {
			t.Errorf("%s: %q flags %d", k, items[i].Value, items[i].Flags)
		}
	}
	if items[40].Found() {
		t.Errorf("absent key found: %q", items[40].Value)
	}

	s[1].Stop()
	if err := m.GetMulti(keys, items); err == nil {
		t.Error("with a server stopped: no error")
	}
	for i, k := range keys[:40] {
		if (on[k] == 1) == items[i].Found() {
			t.Errorf("%s on server %d, stopped 1: found %v", k, on[k], items[i].Found())
		}
	}
}

// TestGetRefusesIllegalKeys: a key that could end the command early is
// never sent.
func TestGetRefusesIllegalKeys(t *testing.T) {
	m, _ := NewMemcache(MemcacheOptions{Servers: []string{pagecachetest.Memcached(t)}})
	defer m.Close()
	p := pagecachetest.Prefix()
	m.Set(p+"kept", Item{Value: []byte("x")}, time.Minute)
	for _, k := range []string{"", "a b", p + "x\r\ndelete " + p + "kept", strings.Repeat("k", 251), "k\x7f"} {
		if _, err := m.Get(k); !errors.Is(err, memcache.ErrMalformedKey) {
			t.Errorf("Get(%q): %v; want ErrMalformedKey", k, err)
		}
		if err := m.GetMulti([]string{p + "kept", k}, make([]Item, 2)); !errors.Is(err, memcache.ErrMalformedKey) {
			t.Errorf("GetMulti(%q): %v; want ErrMalformedKey", k, err)
		}
	}
	if it, err := m.Get(p + "kept"); err != nil || string(it.Value) != "x" {
		t.Errorf("after the illegal keys: %q %v", it.Value, err)
	}
	if m.Stats.Ops.Load() != 2 {
		t.Errorf("%d operations sent; want 2 (the set and the last get)", m.Stats.Ops.Load())
	}
}

// hitKeys stores what a hit reads: a 13 KB page and three counters.
func hitKeys(tb testing.TB, m *Memcache) []string {
	p := pagecachetest.Prefix()
	keys := []string{p + "page|n1", p + "ns", p + "u:abc", p + "seq"}
	m.Set(keys[0], Item{Value: bytes.Repeat([]byte("x"), 13000)}, time.Minute)
	for _, k := range keys[1:] {
		m.Set(k, Item{Value: []byte("4294967296")}, time.Minute)
	}
	return keys
}

// BenchmarkMemcacheGetMulti reads a hit's keys from a real memcached:
// through the store's own read path, and through gomemcache's GetMulti
// as it was read before.
func BenchmarkMemcacheGetMulti(b *testing.B) {
	m, err := NewMemcache(MemcacheOptions{Servers: []string{pagecachetest.Memcached(b)}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	keys := hitKeys(b, m)
	b.Run("own", func(b *testing.B) {
		b.ReportAllocs()
		items := make([]Item, len(keys))
		for b.Loop() {
			if err := m.GetMulti(keys, items); err != nil || !items[0].Found() {
				b.Fatal(err)
			}
		}
	})
	b.Run("gomemcache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			got, err := m.client.GetMulti(keys)
			if err != nil || len(got) != len(keys) {
				b.Fatal(err)
			}
		}
	})
	b.Run("own-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			items := make([]Item, len(keys))
			for pb.Next() {
				if err := m.GetMulti(keys, items); err != nil || !items[0].Found() {
					panic(fmt.Sprint(err))
				}
			}
		})
	})
	b.Run("gomemcache-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.client.GetMulti(keys); err != nil {
					panic(err)
				}
			}
		})
	})
}

// TestAddGetMulti adds values over three real servers and reads them back
// in the same round trip: a key that held something keeps it, and two
// writers racing to create a key both read the one that won.
func TestAddGetMulti(t *testing.T) {
	s := []*pagecachetest.Server{pagecachetest.Start(t), pagecachetest.Start(t), pagecachetest.Start(t)}
	m, err := NewMemcache(MemcacheOptions{Servers: []string{s[0].Addr, s[1].Addr, s[2].Addr}, Distribution: Ketama, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	keys := ketamaKeys(12)
	for _, k := range keys[:6] {
		m.Set(k, Item{Value: []byte("held")}, time.Minute)
	}
	adds := make([]Item, len(keys))
	for i := range keys {
		if i%4 != 3 { // some keys only read
			adds[i] = Item{Value: []byte("new")}
		}
	}
	items := make([]Item, len(keys))
	ops := m.Stats.Ops.Load()
	if err := m.AddGetMulti(keys, adds, items); err != nil {
		t.Fatal(err)
	}
	if n := m.Stats.Ops.Load() - ops; n > 3 {
		t.Errorf("%d operations on 3 servers; want at most 3", n)
	}
	for i, k := range keys {
		want := "new"
		switch {
		case i < 6:
			want = "held"
		case i%4 == 3:
			want = ""
		}
		if string(items[i].Value) != want {
			t.Errorf("%s (%d): %q; want %q", k, i, items[i].Value, want)
		}
	}
	if _, err := m.Get(keys[7]); !errors.Is(err, ErrMiss) {
		t.Errorf("a key only read was created: %v", err)
	}

	// Racing creators agree.
	p := pagecachetest.Prefix()
	for round := range 20 {
		k := []string{fmt.Sprintf("%srace%d", p, round)}
		got := make(chan string, 2)
		for w := range 2 {
			go func() {
				items := make([]Item, 1)
				if err := m.AddGetMulti(k, []Item{{Value: []byte(fmt.Sprint(w))}}, items); err != nil {
					t.Error(err)
				}
				got <- string(items[0].Value)
			}()
		}
		if a, b := <-got, <-got; a != b || a == "" {
			t.Fatalf("racing creators read %q and %q", a, b)
		}
	}

	// An illegal key or a reply that is not STORED/NOT_STORED fails.
	if err := m.AddGetMulti([]string{"a b"}, []Item{{Value: []byte("1")}}, make([]Item, 1)); !errors.Is(err, memcache.ErrMalformedKey) {
		t.Errorf("illegal key: %v", err)
	}
	for _, c := range []string{"STORED\r\nNOT_STORED\r\n", "NOT_STORED\r\n"} {
		if err := readAdds(&mcConn{r: bufio.NewReader(strings.NewReader(c))}, 1); err != nil {
			t.Errorf("%q: %v", c, err)
		}
	}
	for _, c := range []string{"EXISTS\r\n", "SERVER_ERROR out of memory storing object\r\n", "STORED", ""} {
		if err := readAdds(&mcConn{r: bufio.NewReader(strings.NewReader(c))}, 1); err == nil {
			t.Errorf("%q: no error", c)
		}
	}
}

// TestAddGetMultiFallback: on a store that is no AddGetter, the adds are
// made one by one, then the read.
func TestAddGetMultiFallback(t *testing.T) {
	m, _ := NewMemory(MemoryOptions{})
	m.Set("held", Item{Value: []byte("held")}, time.Minute)
	items := make([]Item, 3)
	err := AddGetMulti(m, []string{"held", "new", "read"}, []Item{{Value: []byte("x")}, {Value: []byte("new")}, {}}, items)
	if err != nil || string(items[0].Value) != "held" || string(items[1].Value) != "new" || items[2].Found() {
		t.Errorf("got %q %q %q, %v", items[0].Value, items[1].Value, items[2].Value, err)
	}
}
