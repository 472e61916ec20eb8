package pagecache

import (
	"strconv"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// TestLookupCreatesURLCounter: on a store that is an AddGetter (memcached),
// the lookup of a URL this process has no hint for creates its counter in
// its own round trip, so the fence asks the store nothing; a purge between
// that lookup and the put still keeps the page from being served, and a
// known URL's lookups create nothing.
func TestLookupCreatesURLCounter(t *testing.T) {
	m, err := NewMemcache(MemcacheOptions{Servers: []string{pagecachetest.Memcached(t)}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prefix := pagecachetest.Prefix()
	keys, err := NewKeyTemplate(KeyOptions{Template: prefix + "{host}{uri}", HashPrefix: prefix + "h:", SortQuery: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCache(CacheOptions{Store: m, Keys: keys, Prefix: prefix + "g:"})
	if err != nil {
		t.Fatal(err)
	}
	var sc Scratch
	var e Entry
	base := func(url string) []byte {
		b, _ := keys.Append(nil, input(url), nil)
		return b
	}
	ops := func() uint64 { return m.Stats.Ops.Load() }
	fill := func(url, body string) Reason {
		_, tk := c.Lookup(base(url), &sc, &e, t0)
		tk = tk.Clone()
		if err := c.Fence(&tk); err != nil {
			t.Fatal(err)
		}
		f := page(body)
		r, _ := c.Put(&tk, &f)
		return r
	}
	if r := fill(url1, "one"); r != Storable { // namespace and sequence
		t.Fatalf("first fill: %s", r)
	}

	n := ops()
	st, tk := c.Lookup(base(url2), &sc, &e, t0)
	tk = tk.Clone()
	if st != PageMissing || !tk.urlKnown || !tk.seqKnown {
		t.Fatalf("lookup of a new URL: %s, URL counter known %v, sequence %v", stateName(st), tk.urlKnown, tk.seqKnown)
	}
	if err := c.Fence(&tk); err != nil || ops()-n != 1 {
		t.Errorf("lookup and fence of a new URL: %d operations, %v; want 1", ops()-n, err)
	}
	if it, err := m.Get(tk.url); err != nil || string(it.Value) != formatUint(tk.urlGen) {
		t.Errorf("the URL counter after the lookup: %q, %v; want %d", it.Value, err, tk.urlGen)
	}

	// A purge between the lookup and the put: the page is stored under the
	// old generation, and never served.
	if err := c.PurgeURL(input(url2), false); err != nil {
		t.Fatal(err)
	}
	f := page("two, rendered before the purge")
	c.Put(&tk, &f)
	if st, _ := c.Lookup(base(url2), &sc, &e, t0); st != PageMissing {
		t.Errorf("after a purge between lookup and put: %s; want missing", stateName(st))
	}
	if r := fill(url2, "two"); r != Storable {
		t.Fatalf("refill: %s", r)
	}
	for i := range 2 {
		n = ops()
		if st, _ := c.Lookup(base(url2), &sc, &e, t0); st != PageFresh || string(e.Body) != "two" || ops()-n != 1 {
			t.Errorf("hit %d: %s %q in %d operations; want fresh \"two\" in 1", i, stateName(st), e.Body, ops()-n)
		}
	}
	if _, hinted := c.hints.GetIfPresent(string(base(url2))); !hinted {
		t.Error("no hint after a hit on a page without tags: its lookups would keep adding")
	}

	// A counter lost (evicted) while the page stays: the page counts as
	// purged, and the next fill stores it again.
	m.Delete(tk.url)
	if st, _ := c.Lookup(base(url2), &sc, &e, t0); st != PageMissing {
		t.Errorf("with its URL counter gone: %s; want missing", stateName(st))
	}
	if r := fill(url2, "two again"); r != Storable {
		t.Fatalf("fill after the counter was lost: %s", r)
	}
	if st, _ := c.Lookup(base(url2), &sc, &e, t0); st != PageFresh || string(e.Body) != "two again" {
		t.Errorf("after the refill: %s %q", stateName(st), e.Body)
	}
}

func formatUint(v uint64) string { return strconv.FormatUint(v, 10) }
