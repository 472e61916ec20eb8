package pagecache

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// A storeMaker returns a new store for one test.
type storeMaker = func(t *testing.T) Store

func TestCacheMemory(t *testing.T) { testCache(t, memoryStore) }

// TestCacheMemcache runs the suite against the test memcached; each test's
// keys start with a prefix of its own, so tests may share the server.
func TestCacheMemcache(t *testing.T) { testCache(t, memcacheStore) }

// TestCacheBehindTwemproxy runs the same protocol through twemproxy
// (Debian's nutcracker) in front of two memcached servers, set up as
// docs/memcached-pools.md's "Behind twemproxy instead" says: the proxy is
// the Cache's only server. Every operation the Cache pipelines (a lookup's
// multi-key get, a new URL's adds, gets and set in one write, a purge's
// increments) goes through the proxy, which splits multi-key gets.
func TestCacheBehindTwemproxy(t *testing.T) {
	bin := pagecachetest.Nutcracker(t)
	proxy := startNutcracker(t, bin, []string{pagecachetest.Start(t).Addr, pagecachetest.Start(t).Addr})
	testCache(t, memcacheAt(proxy))
}

func memoryStore(t *testing.T) Store {
	m, err := NewMemory(MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func memcacheStore(t *testing.T) Store { return memcacheAt(pagecachetest.Memcached(t))(t) }

// memcacheAt makes, for each test, a Memcache client of the server at
// addr, closed when the test ends. A protocol test, not a timeout test: a
// loaded machine under -race can take longer than the daemon's 100ms for
// one operation.
func memcacheAt(addr string) storeMaker {
	return func(t *testing.T) Store {
		m, err := NewMemcache(MemcacheOptions{Servers: []string{addr}, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
}

// testCache checks the page protocol of Cache (see its doc comment), step
// by step and without HTTP, over stores newStore makes: one per test.
func testCache(t *testing.T, newStore storeMaker) {
	tests := []struct {
		name string
		test func(t *testing.T, newStore storeMaker)
	}{
		{"round trips of a miss, a fill and a hit", testRoundTrips},
		{"freshness and grace", testFreshness},
		{"purge by URL", testPurgeURL},
		{"purge by URL under both schemes", testPurgeURLSchemes},
		{"purge of a URL that has no key", testPurgeUnkeyable},
		{"purge by key", testPurgeKey},
		{"purge of everything", testPurgeAll},
		{"purges reach every instance", testSharedStore},
		{"purge between fence and put", testPurgeBetweenFenceAndPut},
		{"purge by key racing put", testPurgeKeyRacingPut},
		{"a new URL's put racing a purge or another fill", testNewURLPutRaces},
		{"uncacheable marker", testMarkUncacheable},
		{"a missing counter counts as purged", testMissingCounter},
		{"tag hint", testTagHint},
		{"a known URL's tags fence its fill", testKnownTagsFence},
		{"a new URL's keys seen or created fence its fill", testNewURLTagsFence},
		{"counters kept in process", testTagCacheTTL},
		{"damaged value", testDamaged},
		{"store failures in a lookup", testLookupStoreDown},
		{"a slow failing store costs one delay", testSlowStore},
		{"put failures", testPutFailures},
		{"fence failure", testFenceFails},
		{"unfenced put", testUnfencedPut},
		{"long URL", testLongURL},
		{"raw: values another program wrote", testRawForeignValue},
		{"raw: fill, hit, purge", testRawFill},
		{"raw: a purge racing the fill", testRawPurgeRace},
		{"raw: no purge by key or of everything", testRawURLOnly},
		{"raw: what put refuses", testRawPutRefusals},
		{"raw: store failure in a lookup", testRawStoreDown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, newStore) })
	}
}

// t0 is when the test pages are stored; lookups are made at times after it,
// so no test sleeps for a page's freshness to pass.
var t0 = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// page is a fill stored at t0: fresh for a minute, then stale for one more.
func page(body string, tags ...string) Fill {
	return Fill{
		Status:   200,
		Headers:  []Header{{Name: []byte("Content-Type"), Value: []byte("text/html")}},
		Body:     []byte(body),
		Tags:     tags,
		StoredAt: t0,
		TTL:      time.Minute,
		Grace:    time.Minute,
	}
}

// A cacheEnv is a Cache over a faultStore, and what its callbacks were told.
type cacheEnv struct {
	t           *testing.T
	store       *faultStore
	keys        *KeyTemplate
	prefix      string // the counters'
	c           *Cache
	storeErrors []error
	damaged     int
	sc          Scratch
	e           Entry
}

// newEnv returns a Cache with options o over a new store. Its page keys and
// counters start with a prefix of the test's own; template is the key
// template after it ("{host}{uri}" when empty).
func newEnv(t *testing.T, newStore storeMaker, o CacheOptions, template string) *cacheEnv {
	t.Helper()
	prefix := pagecachetest.Prefix()
	if template == "" {
		template = "{host}{uri}"
	}
	keys, err := NewKeyTemplate(KeyOptions{Template: prefix + template, HashPrefix: prefix + "h:", SortQuery: true})
	if err != nil {
		t.Fatal(err)
	}
	o.Store, o.Keys, o.Prefix = newFaultStore(newStore(t)), keys, prefix+"g:"
	return newInstance(t, o)
}

// another returns a Cache with options o on v's store, keys and counters,
// as another userrouter instance would have.
func (v *cacheEnv) another(o CacheOptions) *cacheEnv {
	v.t.Helper()
	o.Store, o.Keys, o.Prefix = v.store, v.keys, v.prefix
	return newInstance(v.t, o)
}

func newInstance(t *testing.T, o CacheOptions) *cacheEnv {
	t.Helper()
	v := &cacheEnv{t: t, store: o.Store.(*faultStore), keys: o.Keys, prefix: o.Prefix}
	o.Store = withAddGetSet(v.store)
	o.OnStoreError = func(err error) { v.storeErrors = append(v.storeErrors, err) }
	o.OnDamaged = func() { v.damaged++ }
	c, err := NewCache(o)
	if err != nil {
		t.Fatal(err)
	}
	v.c = c
	return v
}

// combined reports whether the Cache writes a new URL's page in the round
// trip that creates its counter (its store is an AddGetSetter).
func (v *cacheEnv) combined() bool {
	_, ok := v.c.store.(AddGetSetter)
	return ok
}

// newPageWrite is the operation that writes the page of a URL never
// filled, and has no tags: AddGetSet, or Set.
func (v *cacheEnv) newPageWrite() op {
	if v.combined() {
		return opAddGetSet
	}
	return opSet
}

// input is the key input of an absolute URL.
func input(url string) *KeyInput {
	scheme, rest, _ := strings.Cut(url, "://")
	host := rest
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		host = rest[:i]
	}
	p, q := SplitURI([]byte(url))
	return &KeyInput{Scheme: []byte(scheme), Host: []byte(host), Path: p, Query: q}
}

// base is the key the template builds for url.
func (v *cacheEnv) base(url string) []byte {
	v.t.Helper()
	b, ok := v.keys.Append(nil, input(url), nil)
	if !ok {
		v.t.Fatalf("%s has no key", url)
	}
	return b
}

// lookup looks url up at now: v.e holds the entry, the ticket is cloned.
func (v *cacheEnv) lookup(url string, now time.Time) (State, Ticket) {
	v.t.Helper()
	s, tk := v.c.Lookup(v.base(url), &v.sc, &v.e, now)
	return s, tk.Clone()
}

// wantState looks url up at now and checks what it finds.
func (v *cacheEnv) wantState(what, url string, now time.Time, want State) Ticket {
	v.t.Helper()
	got, tk := v.lookup(url, now)
	if got != want {
		v.t.Errorf("%s: lookup of %s: got %s; want %s", what, url, stateName(got), stateName(want))
	}
	return tk
}

// wantPage looks url up at now and checks it finds body, in state want.
func (v *cacheEnv) wantPage(what, url string, now time.Time, want State, body string) {
	v.t.Helper()
	got, _ := v.lookup(url, now)
	if got != want || string(v.e.Body) != body || v.e.Status != 200 {
		v.t.Errorf("%s: lookup of %s: got %s, status %d, body %q; want %s, 200, %q",
			what, url, stateName(got), v.e.Status, v.e.Body, stateName(want), body)
	}
}

// fill looks url up at f.StoredAt, fences the ticket and puts f.
func (v *cacheEnv) fill(url string, f Fill) Reason {
	v.t.Helper()
	_, tk := v.lookup(url, f.StoredAt)
	if err := v.c.Fence(&tk); err != nil {
		v.t.Fatalf("fence for %s: %v", url, err)
	}
	r, _ := v.c.Put(&tk, &f)
	return r
}

// mustFill fills url with f and checks that it was stored.
func (v *cacheEnv) mustFill(url string, f Fill) {
	v.t.Helper()
	if r := v.fill(url, f); r != Storable {
		v.t.Fatalf("fill of %s: got %s; want stored", url, r)
	}
}

func (v *cacheEnv) purgeURL(url string, soft bool) {
	v.t.Helper()
	if err := v.c.PurgeURL(input(url), soft); err != nil {
		v.t.Fatalf("purge of %s: %v", url, err)
	}
}

func (v *cacheEnv) purgeKey(tag string, soft bool) {
	v.t.Helper()
	if err := v.c.PurgeKey(tag, soft); err != nil {
		v.t.Fatalf("purge of key %s: %v", tag, err)
	}
}

func (v *cacheEnv) purgeAll() {
	v.t.Helper()
	if err := v.c.PurgeAll(); err != nil {
		v.t.Fatalf("purge of everything: %v", err)
	}
}

// wantStoreErrors checks that OnStoreError was told of n injected
// failures since the last check.
func (v *cacheEnv) wantStoreErrors(what string, n int) {
	v.t.Helper()
	injected := 0
	for _, err := range v.storeErrors {
		if errors.Is(err, errInjected) {
			injected++
		}
	}
	if len(v.storeErrors) != n || injected != n {
		v.t.Errorf("%s: OnStoreError got %v; want %d injected failure(s)", what, v.storeErrors, n)
	}
	v.storeErrors = nil
}

// stored returns what the store itself holds under key, uncounted.
func (v *cacheEnv) stored(key string) (Item, error) { return v.store.Store.Get(key) }

func stateName(s State) string {
	switch s {
	case PageMissing:
		return "missing"
	case PageFresh:
		return "fresh"
	case PageStale:
		return "stale"
	case PageUncacheable:
		return "uncacheable"
	case PageExpired:
		return "expired"
	case PageVariants:
		return "variants"
	}
	return fmt.Sprintf("State(%d)", s)
}

const url1, url2, url3 = "http://example.com/one", "http://example.com/two?b=2&a=1", "http://example.org/three"

// testRoundTrips counts the store operations of each step once the
// namespace and purge sequence exist.
func testRoundTrips(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{}, "")
	v.mustFill(url1, page("one"))
	v.store.reset()
	st, tk := v.lookup(url2, t0)
	if st != PageMissing {
		t.Errorf("first lookup of %s: got %s; want missing", url2, stateName(st))
	}
	v.store.wantCalls(t, "a miss (page and counters in one read)", map[op]int{opGetMulti: 1})
	if err := v.c.Fence(&tk); err != nil {
		t.Fatal(err)
	}
	v.store.wantCalls(t, "the fence (the sequence came with the lookup; the new URL's counter is left to the put)", nil)
	f := page("two")
	if r, env := v.c.Put(&tk, &f); r != Storable || env == nil {
		t.Errorf("put: got %s and %d bytes; want stored and the envelope", r, len(env))
	}
	// The URL counter is created with the fence's value and read back,
	// and the page written: in one AddGetSet on memcached, so that a new
	// URL's miss costs two round trips in all; in three calls on a store
	// that is no AddGetSetter.
	if v.combined() {
		v.store.wantCalls(t, "the put of a page without tags", map[op]int{opAddGetSet: 1})
	} else {
		v.store.wantCalls(t, "the put of a page without tags", map[op]int{opAdd: 1, opGetMulti: 1, opSet: 1})
	}
	v.wantPage("the hit", url2, t0, PageFresh, "two")
	v.store.wantCalls(t, "the hit", map[op]int{opGetMulti: 1})
	v.wantPage("the other page", url1, t0, PageFresh, "one")
	v.wantStoreErrors("no failure", 0)
}

func testFreshness(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{}, "")
	v.mustFill(url1, page("one"))
	noGrace := page("two")
	noGrace.Grace = 0
	v.mustFill(url2, noGrace)
	for _, tc := range []struct {
		name  string
		url   string
		after time.Duration
		want  State
	}{
		{"just stored", url1, 0, PageFresh},
		{"within its TTL", url1, 59 * time.Second, PageFresh},
		{"at its TTL", url1, time.Minute, PageStale},
		{"within grace", url1, 119 * time.Second, PageStale},
		{"at the end of grace", url1, 2 * time.Minute, PageMissing},
		{"long after", url1, time.Hour, PageMissing},
		{"without grace, within its TTL", url2, 59 * time.Second, PageFresh},
		{"without grace, at its TTL", url2, time.Minute, PageMissing},
	} {
		if got, _ := v.lookup(tc.url, at(tc.after)); got != tc.want {
			t.Errorf("%s: lookup %v after the store: got %s; want %s", tc.name, tc.after, stateName(got), stateName(tc.want))
		}
	}
}

func testPurgeURL(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name string
		soft bool
		want State
	}{
		{"hard", false, PageMissing},
		{"soft", true, PageStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, "")
			v.mustFill(url1, page("one"))
			v.mustFill(url2, page("two"))
			v.purgeURL(url1, tc.soft)
			v.wantState("the purged page", url1, at(time.Second), tc.want)
			v.wantPage("another page", url2, at(time.Second), PageFresh, "two")
			v.mustFill(url1, page("one again"))
			v.wantPage("the purged page, filled again", url1, at(time.Second), PageFresh, "one again")
		})
	}
}

// testPurgeURLSchemes purges a URL under both schemes when the key has
// {scheme}, and only once when it has not.
func testPurgeURLSchemes(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		template string
		bumps    int
	}{
		{"{host}{uri}", 1},
		{"{scheme}://{host}{uri}", 2},
	} {
		t.Run(tc.template, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, tc.template)
			v.mustFill("http://example.com/p", page("http"))
			v.mustFill("https://example.com/p", page("https"))
			v.store.reset()
			v.purgeURL("https://example.com/p", false)
			v.store.wantCalls(t, "the purge", map[op]int{opIncr: tc.bumps})
			v.wantState("the http page", "http://example.com/p", at(time.Second), PageMissing)
			v.wantState("the https page", "https://example.com/p", at(time.Second), PageMissing)
		})
	}
}

func testPurgeUnkeyable(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{}, "")
	var q []string
	for i := range maxQueryParams + 1 {
		q = append(q, fmt.Sprintf("p%d=1", i))
	}
	err := v.c.PurgeURL(input("http://example.com/p?"+strings.Join(q, "&")), false)
	if !errors.Is(err, ErrUnkeyable) {
		t.Errorf("purge of a URL with %d query parameters: got %v; want ErrUnkeyable", len(q), err)
	}
	v.store.wantCalls(t, "that purge", nil)
}

// testPurgeKey purges a tag: the pages carrying it are purged, seen both
// through the tag hint and by an instance that has none.
func testPurgeKey(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name string
		soft bool
		want State
	}{
		{"hard", false, PageMissing},
		{"soft", true, PageStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, "")
			v.mustFill(url1, page("one", "x", "y"))
			v.mustFill(url2, page("two", "y"))
			v.mustFill(url3, page("three"))
			for _, u := range []string{url1, url2, url3} {
				v.wantState("before the purge", u, t0, PageFresh) // the hints are made
			}
			v.purgeKey("x", tc.soft)
			for _, inst := range []struct {
				name string
				v    *cacheEnv
			}{{"through the hint", v}, {"without a hint", v.another(CacheOptions{})}} {
				inst.v.wantState(inst.name+": a page with the key", url1, at(time.Second), tc.want)
				inst.v.wantPage(inst.name+": a page with another key", url2, at(time.Second), PageFresh, "two")
				inst.v.wantPage(inst.name+": a page without keys", url3, at(time.Second), PageFresh, "three")
			}
		})
	}
}

func testPurgeAll(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{}, "")
	v.mustFill(url1, page("one"))
	v.mustFill(url2, page("two", "x"))
	v.purgeAll()
	v.wantState("a page", url1, at(time.Second), PageMissing)
	v.wantState("a page with a key", url2, at(time.Second), PageMissing)
	v.mustFill(url1, page("one again"))
	v.wantPage("a page filled again", url1, at(time.Second), PageFresh, "one again")
}

// testSharedStore: two instances on one store see each other's fills
// and purges at once.
func testSharedStore(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{}, "")
	w := v.another(CacheOptions{})
	v.mustFill(url1, page("one"))
	v.mustFill(url2, page("two", "x"))
	v.mustFill(url3, page("three"))
	for _, u := range []string{url1, url2, url3} {
		w.wantState("the other instance, before any purge", u, t0, PageFresh)
	}
	v.purgeURL(url1, false)
	w.wantState("the other instance, after a purge of the URL", url1, t0, PageMissing)
	w.wantState("the other instance, another page", url2, t0, PageFresh)
	v.purgeKey("x", false)
	w.wantState("the other instance, after a purge of its key", url2, t0, PageMissing)
	w.wantState("the other instance, another page", url3, t0, PageFresh)
	v.purgeAll()
	w.wantState("the other instance, after a purge of everything", url3, t0, PageMissing)
	w.mustFill(url3, page("three again"))
	v.wantPage("a page the other instance filled", url3, t0, PageFresh, "three again")
}

// testPurgeBetweenFenceAndPut purges while the fill request is out: the
// answer may predate the purge.
func testPurgeBetweenFenceAndPut(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name    string
		known   bool // the URL has a counter before the lookup
		tags    []string
		purge   func(v *cacheEnv)
		wantPut Reason
		want    State
	}{
		// The page records the URL generation of the fence: it is purged.
		{"by URL, hard", true, nil, func(v *cacheEnv) { v.purgeURL(url1, false) }, Storable, PageMissing},
		{"by URL, soft", true, nil, func(v *cacheEnv) { v.purgeURL(url1, true) }, Storable, PageStale},
		// A new URL: the purge creates its counter before the put could,
		// with another value than the fence's: nothing is stored.
		{"by URL, hard, a new URL", false, nil, func(v *cacheEnv) { v.purgeURL(url1, false) }, ReasonPurged, PageMissing},
		{"by URL, soft, a new URL", false, nil, func(v *cacheEnv) { v.purgeURL(url1, true) }, ReasonPurged, PageMissing},
		{"by URL, a new URL with keys", false, []string{"x"}, func(v *cacheEnv) { v.purgeURL(url1, false) }, ReasonPurged, PageMissing},
		// The purge sequence moved: nothing is stored. (On an
		// AddGetSetter the put first creates the key's counter in its
		// write, which the purge had created: the write is checked, it
		// fails, and the put then reads the sequence.)
		{"by the page's key", false, []string{"x"}, func(v *cacheEnv) { v.purgeKey("x", false) }, ReasonPurged, PageMissing},
		{"by the page's key, soft", false, []string{"x"}, func(v *cacheEnv) { v.purgeKey("x", true) }, ReasonPurged, PageMissing},
		// On an AddGetSetter the write checks the page's own keys, which
		// no purge touched: the page is stored.
		{"by another key", false, []string{"x"}, func(v *cacheEnv) { v.purgeKey("other", false) }, ReasonPurged, PageMissing},
		{"by a key, of a page without keys", false, nil, func(v *cacheEnv) { v.purgeKey("x", false) }, Storable, PageFresh},
		// The page goes under the old namespace.
		{"of everything", false, nil, func(v *cacheEnv) { v.purgeAll() }, Storable, PageMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, "")
			v.mustFill(url2, page("two")) // the counters exist
			if tc.known {
				v.purgeURL(url1, false) // creates its counter
			}
			_, tk := v.lookup(url1, t0)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			tc.purge(v)
			if tc.name == "by another key" && v.combined() {
				tc.wantPut, tc.want = Storable, PageFresh
			}
			f := page("one", tc.tags...)
			if r, _ := v.c.Put(&tk, &f); r != tc.wantPut {
				t.Errorf("put after the purge: got %s; want %s", r, tc.wantPut)
			}
			v.wantState("after the put", url1, at(time.Second), tc.want)
		})
	}
}

// testNewURLPutRaces runs a purge of a URL never filled, or another
// instance's fill of it, at each point of its put (a page without tags,
// whose counter the put creates): where the put's write may store the
// page before it learns it lost the counter (AddGetSet), the page must
// still never be served, by this instance, by its L1 or by another one.
func testNewURLPutRaces(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name    string
		wantPut Reason
		// race runs it at the right point of the put v.put makes.
		race func(v, w *cacheEnv, put func() Reason) Reason
		// theirs: w's page may be what a lookup finds afterwards.
		theirs bool
	}{
		{"purge between fence and put", ReasonPurged, func(v, w *cacheEnv, put func() Reason) Reason {
			w.purgeURL(url1, false)
			return put()
		}, false},
		{"purge in the put, before its write", ReasonPurged, func(v, w *cacheEnv, put func() Reason) Reason {
			v.store.inject(beforeNewURLWrite(v, func() { w.purgeURL(url1, false) }))
			return put()
		}, false},
		{"another instance's fill in the put, before its write", ReasonPurged, func(v, w *cacheEnv, put func() Reason) Reason {
			v.store.inject(beforeNewURLWrite(v, func() { w.mustFill(url1, page("theirs")) }))
			return put()
		}, true},
		{"purge after the put", Storable, func(v, w *cacheEnv, put func() Reason) Reason {
			r := put()
			v.purgeURL(url1, false) // through v: its L1 too
			return r
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{L1Size: 1 << 20}, "")
			w := v.another(CacheOptions{})
			v.mustFill(url2, page("two")) // the other counters exist
			_, tk := v.lookup(url1, t0)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			put := func() Reason {
				f := page("ours, fetched before")
				r, _ := v.c.Put(&tk, &f)
				return r
			}
			if got := tc.race(v, w, put); got != tc.wantPut {
				t.Errorf("put: got %s; want %s", got, tc.wantPut)
			}
			v.store.heal()
			for _, x := range []struct {
				name string
				env  *cacheEnv
			}{{"this instance (L1 on)", v}, {"another instance", w}, {"this instance again", v}} {
				st, _ := x.env.lookup(url1, at(time.Second))
				switch {
				case st == PageMissing:
				case tc.theirs && st == PageFresh && string(x.env.e.Body) == "theirs":
				default:
					t.Errorf("%s: lookup of %s: got %s, body %q; want missing", x.name, url1, stateName(st), x.env.e.Body)
				}
			}
			v.wantStoreErrors("the race", 0)
		})
	}
}

// beforeNewURLWrite is a fault that runs do at the first write of v's
// put of url1, a URL never filled: before its AddGetSet, or before the
// add of its counter on a store that is no AddGetSetter.
func beforeNewURLWrite(v *cacheEnv, do func()) fault {
	if v.combined() {
		return fault{op: opAddGetSet, nth: 1, do: do}
	}
	urlKey := string(v.c.gens.AppendURLKey(nil, v.base(url1)))
	return fault{op: opAdd, key: func(k string) bool { return k == urlKey }, nth: 1, do: do}
}

// testPurgeKeyRacingPut runs a put inside a purge by key, before each of
// the two counters it bumps: whatever the put returns, the page it was
// fetched for must not be served afterwards.
func testPurgeKeyRacingPut(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name string
		nth  int // the put runs before the purge's nth Incr
	}{
		{"put before the purge's first bump", 1},
		{"put between the purge's two bumps", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, "")
			v.mustFill(url2, page("two", "x")) // the counters exist
			_, tk := v.lookup(url1, t0)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			var put Reason
			v.store.inject(fault{op: opIncr, nth: tc.nth, do: func() {
				f := page("fetched before the purge", "x")
				put, _ = v.c.Put(&tk, &f)
			}})
			v.purgeKey("x", false)
			v.wantState(fmt.Sprintf("after the purge (the put returned %s)", put), url1, at(time.Second), PageMissing)
		})
	}
}

func testMarkUncacheable(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name  string
		purge func(v *cacheEnv)
		after time.Duration
		want  State
	}{
		{"within its TTL", nil, time.Second, PageUncacheable},
		{"past its TTL", nil, 2 * time.Minute, PageMissing},
		{"after a hard purge of the URL", func(v *cacheEnv) { v.purgeURL(url1, false) }, time.Second, PageMissing},
		{"after a soft purge of the URL", func(v *cacheEnv) { v.purgeURL(url1, true) }, time.Second, PageMissing},
		{"after a purge of everything", func(v *cacheEnv) { v.purgeAll() }, time.Second, PageMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, "")
			_, tk := v.lookup(url1, t0)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			v.c.MarkUncacheable(&tk, t0, time.Minute)
			if tc.purge != nil {
				tc.purge(v)
			}
			v.wantState("the marked URL", url1, at(tc.after), tc.want)
		})
	}
	t.Run("unfenced", func(t *testing.T) {
		v := newEnv(t, newStore, CacheOptions{}, "")
		_, tk := v.lookup(url1, t0) // no URL counter yet: not fenced
		v.store.reset()
		v.c.MarkUncacheable(&tk, t0, time.Minute)
		v.store.wantCalls(t, "marking an unfenced ticket", nil)
		v.wantState("the URL", url1, at(time.Second), PageMissing)
	})
}

// testMissingCounter deletes a counter a page depends on, as an eviction
// would: the page counts as purged, and a fill stores it again.
func testMissingCounter(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name string
		key  func(v *cacheEnv) string
	}{
		{"the URL's", func(v *cacheEnv) string { return string(v.c.gens.AppendURLKey(nil, v.base(url1))) }},
		{"a tag's", func(v *cacheEnv) string { return v.c.gens.TagKey("x") }},
		{"the namespace", func(v *cacheEnv) string { return v.c.gens.NSKey() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, "")
			v.mustFill(url1, page("one", "x"))
			v.wantState("before the counter is deleted", url1, t0, PageFresh)
			if err := v.store.Store.Delete(tc.key(v)); err != nil {
				t.Fatal(err)
			}
			v.wantState("once the counter is deleted", url1, t0, PageMissing)
			v.another(CacheOptions{}).wantState("an instance without the tag hint", url1, t0, PageMissing)
			v.mustFill(url1, page("one again", "x"))
			v.wantPage("filled again", url1, t0, PageFresh, "one again")
		})
	}
}

// testTagHint: the tags a page had at its last lookup come with the
// page's read; when the page's tags changed, they cost one more read.
func testTagHint(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{}, "")
	v.mustFill(url1, page("one", "a", "b"))
	v.store.reset()
	v.wantPage("the first hit", url1, t0, PageFresh, "one")
	v.store.wantCalls(t, "the first hit (the fill made the hint: the tags' counters come with the page)", map[op]int{opGetMulti: 1})
	w := v.another(CacheOptions{})
	w.lookup(url2, t0) // it learns the namespace
	v.store.reset()
	w.wantPage("another instance's first hit", url1, t0, PageFresh, "one")
	v.store.wantCalls(t, "that hit (no hint yet: the tags' counters are read after the page)", map[op]int{opGetMulti: 2})
	w.wantPage("its second hit", url1, t0, PageFresh, "one")
	v.store.wantCalls(t, "that hit (the hint's counters come with the page)", map[op]int{opGetMulti: 1})

	// Another instance stores the page again with other tags, and one of
	// the new ones is purged: this one's hint (a, b) all say valid.
	w.mustFill(url1, page("two", "a", "c"))
	v.purgeKey("c", false)
	v.store.reset()
	v.wantState("a page whose tags are not the hint's, one purged", url1, t0, PageMissing)
	v.store.wantCalls(t, "that lookup", map[op]int{opGetMulti: 2})

	v.mustFill(url1, page("three", "a", "c"))
	v.store.reset()
	v.wantPage("the page filled again", url1, t0, PageFresh, "three")
	v.store.wantCalls(t, "that hit (the hint follows the page's tags)", map[op]int{opGetMulti: 1})
	v.purgeKey("a", false)
	v.store.reset()
	v.wantState("after a purge of a tag in the hint", url1, t0, PageMissing)
	v.store.wantCalls(t, "that lookup", map[op]int{opGetMulti: 1})
}

// testKnownTagsFence: the lookup of a known URL that finds no fresh page
// reads its tags' counters with it (the hint), before the fill's request,
// and they fence the fill as the URL counter does: its put is one write,
// and a purge by key while the request was out leaves the page stored
// invalid (hard) or stale (soft), never fresh. A fill whose tags are not
// the hint's reads their counters with the purge sequence, as a new
// URL's does.
func testKnownTagsFence(t *testing.T, newStore storeMaker) {
	later := at(3 * time.Minute) // past the page's freshness and grace
	for _, tc := range []struct {
		name    string
		tags    []string // the fill's
		purge   func(v *cacheEnv)
		wantPut Reason
		calls   map[op]int // the put's
		want    State
	}{
		{"no purge", []string{"x", "y"}, nil, Storable, map[op]int{opSet: 1}, PageFresh},
		{"the page's key, hard", []string{"x", "y"}, func(v *cacheEnv) { v.purgeKey("y", false) }, Storable, map[op]int{opSet: 1}, PageMissing},
		{"the page's key, soft", []string{"x", "y"}, func(v *cacheEnv) { v.purgeKey("x", true) }, Storable, map[op]int{opSet: 1}, PageStale},
		{"another key", []string{"x", "y"}, func(v *cacheEnv) { v.purgeKey("other", false) }, Storable, map[op]int{opSet: 1}, PageFresh},
		{"the URL", []string{"x", "y"}, func(v *cacheEnv) { v.purgeURL(url1, false) }, Storable, map[op]int{opSet: 1}, PageMissing},
		{"fewer keys, one purged", []string{"y"}, func(v *cacheEnv) { v.purgeKey("y", false) }, Storable, map[op]int{opSet: 1}, PageMissing},
		// The new key's counter is created (Add) as for any new key,
		// with the sequence read; on an AddGetSetter, in the write,
		// which checks x's counter is still what the lookup read: only
		// a purge of the page's keys keeps the page from being valid.
		{"a new key, no purge", []string{"x", "z"}, nil, Storable, map[op]int{opGetMulti: 1, opAdd: 1, opSet: 1}, PageFresh},
		{"a new key, another key purged", []string{"x", "z"}, func(v *cacheEnv) { v.purgeKey("other", false) }, ReasonPurged, map[op]int{opGetMulti: 1, opAdd: 1}, PageMissing},
		{"a new key, the old key purged", []string{"x", "z"}, func(v *cacheEnv) { v.purgeKey("x", false) }, ReasonPurged, map[op]int{opGetMulti: 1, opAdd: 1}, PageMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, "")
			v.mustFill(url1, page("old", "x", "y"))
			v.wantPage("the hit that makes the hint", url1, t0, PageFresh, "old")
			v.store.reset()
			v.wantState("the lookup past grace", url1, later, PageMissing)
			v.store.wantCalls(t, "that lookup (the tags' counters come with the page)", map[op]int{opGetMulti: 1})
			_, tk := v.lookup(url1, later)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			if tc.purge != nil {
				tc.purge(v)
			}
			v.store.reset()
			if slices.Contains(tc.tags, "z") && v.combined() {
				tc.calls = map[op]int{opAddGetSet: 1}
				if tc.wantPut == ReasonPurged && tc.name != "a new key, the old key purged" {
					tc.wantPut, tc.want = Storable, PageFresh
				}
				if tc.name == "a new key, the old key purged" {
					// x moved: the write is invalid; the sequence, read
					// then (with an add, as a counter this Cache has not
					// found yet), says a purge came.
					tc.calls = map[op]int{opAddGetSet: 1, opAdd: 1, opGetMulti: 1}
				}
			}
			f := page("new", tc.tags...)
			f.StoredAt = later
			if r, _ := v.c.Put(&tk, &f); r != tc.wantPut {
				t.Errorf("put: got %s; want %s", r, tc.wantPut)
			}
			v.store.wantCalls(t, "the put", tc.calls)
			v.wantState("after the put", url1, later.Add(time.Second), tc.want)
		})
	}
}

// testNewURLTagsFence: on an AddGetSetter, a new URL's fill records the
// counters of its keys as this Cache found them before the fence (x,
// which another page's fill read) or creates them (y), and is written in
// the round trip that checks them: a purge of one of its keys since,
// through any instance, keeps it from being valid, and the put then reads
// the purge sequence as without that check; a purge of another key does
// not. On other stores the put reads the sequence first, and any purge by
// key stops it.
func testNewURLTagsFence(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name      string
		seenFirst bool // x read before the fence, by url2's fill
		between   func(v *cacheEnv)
		wantPut   Reason
		calls     map[op]int // the put's on an AddGetSetter, if checked
		want      State
	}{
		{"no purge", true, nil, Storable, map[op]int{opAddGetSet: 1}, PageFresh},
		{"the seen key purged here", true, func(v *cacheEnv) { v.purgeKey("x", false) }, ReasonPurged, nil, PageMissing},
		{"the seen key purged elsewhere", true, func(v *cacheEnv) { v.another(CacheOptions{}).purgeKey("x", false) }, ReasonPurged, nil, PageMissing},
		{"the seen key soft-purged elsewhere", true, func(v *cacheEnv) { v.another(CacheOptions{}).purgeKey("x", true) }, ReasonPurged, nil, PageMissing},
		{"the created key purged elsewhere", true, func(v *cacheEnv) { v.another(CacheOptions{}).purgeKey("y", false) }, ReasonPurged, nil, PageMissing},
		{"another key purged", true, func(v *cacheEnv) { v.purgeKey("other", false) }, Storable, map[op]int{opAddGetSet: 1}, PageFresh},
		{"the seen key's counter lost", true, func(v *cacheEnv) {
			if err := v.store.Store.Delete(v.c.gens.TagKey("x")); err != nil {
				t.Fatal(err)
			}
		}, Storable, nil, PageFresh},
		// Read after the fence: not a fence. The write creates no counter
		// (x exists), its check fails, and the put reads x and the
		// sequence, which has not moved.
		{"the key read after the fence", false, func(v *cacheEnv) { v.mustFill(url2, page("two", "x")) }, Storable, nil, PageFresh},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, "")
			if tc.seenFirst {
				v.mustFill(url2, page("two", "x"))
			}
			_, tk := v.lookup(url1, t0)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			if tc.between != nil {
				tc.between(v)
			}
			switch {
			case tc.name == "another key purged" && !v.combined():
				tc.wantPut, tc.want = ReasonPurged, PageMissing // the sequence moved
			case tc.name == "the seen key soft-purged elsewhere" && v.combined():
				// What the checked write left records x's counter from
				// before the soft purge: stale, as a soft purge makes
				// every page of x.
				tc.want = PageStale
			}
			v.store.reset()
			f := page("one", "x", "y")
			if r, _ := v.c.Put(&tk, &f); r != tc.wantPut {
				t.Errorf("put: got %s; want %s", r, tc.wantPut)
			}
			if tc.calls != nil && v.combined() {
				v.store.wantCalls(t, "the put", tc.calls)
			}
			v.wantState("after the put", url1, at(time.Second), tc.want)
			if tc.want == PageFresh {
				v.another(CacheOptions{}).purgeKey("y", false)
				v.wantState("after a purge of its new key", url1, at(time.Second), PageMissing)
			}
		})
	}
}

// testTagCacheTTL: with counters kept in process, a hit reads the page
// alone, and this instance's purges show at once.
func testTagCacheTTL(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{TagCacheTTL: time.Minute}, "")
	v.mustFill(url1, page("one", "x"))
	v.mustFill(url2, page("two"))
	v.store.reset()
	v.wantPage("a hit", url1, t0, PageFresh, "one")
	v.store.wantCalls(t, "a hit with every counter in process", map[op]int{opGet: 1})
	v.purgeKey("x", false)
	v.wantState("after this instance purged the page's key", url1, t0, PageMissing)
	v.purgeURL(url2, false)
	v.wantState("after this instance purged the URL", url2, t0, PageMissing)
	v.mustFill(url2, page("two again"))
	v.purgeAll()
	v.wantState("after this instance purged everything", url2, t0, PageMissing)
}

func testDamaged(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name   string
		damage func(env []byte) []byte
	}{
		{"not an envelope", func([]byte) []byte { return []byte("<html>") }},
		{"empty", func([]byte) []byte { return []byte{} }},
		{"cut short", func(env []byte) []byte { return env[:len(env)-10] }},
		{"a flipped byte", func(env []byte) []byte {
			b := bytes.Clone(env)
			b[len(b)-6] ^= 1 // in the body
			return b
		}},
		{"another version", func(env []byte) []byte {
			b := bytes.Clone(env)
			b[2] = envelopeVersion + 1
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, "")
			_, tk := v.lookup(url1, t0)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			f := page("one")
			r, env := v.c.Put(&tk, &f)
			if r != Storable {
				t.Fatalf("put: got %s; want stored", r)
			}
			if err := v.store.Store.Set(tk.Key(), Item{Value: tc.damage(env)}, time.Minute); err != nil {
				t.Fatal(err)
			}
			v.wantState("the damaged page", url1, t0, PageMissing)
			if v.damaged != 1 {
				t.Errorf("OnDamaged: got %d calls; want 1", v.damaged)
			}
			v.mustFill(url1, page("one again"))
			v.wantPage("filled again", url1, t0, PageFresh, "one again")
		})
	}
}

// testLookupStoreDown fails each operation a lookup may make: the ticket
// says StoreDown, OnStoreError hears of it once, and the lookup asks the
// store nothing more.
func testLookupStoreDown(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name  string
		o     CacheOptions
		warm  bool // the page is stored, with its counters
		fault fault
		calls map[op]int
	}{
		{"the read of page and counters", CacheOptions{}, true, fault{op: opGetMulti, err: errInjected},
			map[op]int{opGetMulti: 1}},
		{"the creation of the namespace", CacheOptions{}, false, fault{op: opAdd, err: errInjected},
			map[op]int{opGetMulti: 1, opAdd: 1}},
		{"the read of the page under a new namespace", CacheOptions{}, false, fault{op: opGet, err: errInjected},
			map[op]int{opGetMulti: 1, opAdd: 1, opGet: 1}},
		{"the read of the tags' counters", CacheOptions{}, true, fault{op: opGetMulti, nth: 2, err: errInjected},
			map[op]int{opGetMulti: 2}},
		{"the read of the page, counters in process", CacheOptions{TagCacheTTL: time.Minute}, true, fault{op: opGet, err: errInjected},
			map[op]int{opGet: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, tc.o, "")
			switch {
			case tc.warm && tc.o.TagCacheTTL > 0:
				v.mustFill(url1, page("one", "x")) // the counters are in process
			case tc.warm:
				// By another instance: this one has no hint of the tags.
				v.another(CacheOptions{}).mustFill(url1, page("one", "x"))
				v.lookup(url2, t0) // this one learns the namespace
			}
			v.store.reset()
			v.store.inject(tc.fault)
			st, tk := v.lookup(url1, t0)
			if st != PageMissing || !tk.StoreDown() {
				t.Errorf("lookup: got %s, store down %v; want missing, store down", stateName(st), tk.StoreDown())
			}
			v.wantStoreErrors("lookup", 1)
			v.store.wantCalls(t, "lookup", tc.calls)
			v.store.heal()
			if tc.warm {
				v.wantPage("once the store is back", url1, t0, PageFresh, "one")
			}
		})
	}
}

// testSlowStore: a store that fails slowly, as one that times out does,
// costs a lookup one delay, not one per operation.
func testSlowStore(t *testing.T, newStore storeMaker) {
	const delay = 100 * time.Millisecond
	v := newEnv(t, newStore, CacheOptions{}, "")
	v.mustFill(url1, page("one", "x"))
	for _, o := range []op{opGet, opGetMulti, opSet, opAdd, opIncr, opDelete} {
		v.store.inject(fault{op: o, delay: delay, err: errInjected})
	}
	start := time.Now()
	st, tk := v.lookup(url1, t0)
	if d := time.Since(start); st != PageMissing || !tk.StoreDown() || d < delay || d >= 2*delay {
		t.Errorf("lookup on a store that fails after %v: got %s, store down %v after %v; want missing, store down, after one delay",
			delay, stateName(st), tk.StoreDown(), d)
	}
}

func testPutFailures(t *testing.T, newStore storeMaker) {
	headers := page("one")
	for i := range maxHeaders + 1 {
		headers.Headers = append(headers.Headers, Header{Name: fmt.Appendf(nil, "X-H%d", i), Value: []byte("v")})
	}
	large := page(strings.Repeat("x", 1<<20))
	for _, tc := range []struct {
		name  string
		fill  Fill
		fault fault // none when op is ""
		want  Reason
	}{
		{"the tags' counters cannot be read", page("one", "x"), fault{op: opGetMulti, err: errInjected}, ReasonStoreError},
		{"the write fails", page("one"), fault{op: opSet, err: errInjected}, ReasonStoreError},
		{"the store refuses the size", page("one"), fault{op: opSet, err: ErrTooLarge}, ReasonTooLarge},
		{"the write with tags fails", page("one", "x"), fault{op: opSet, err: errInjected}, ReasonStoreError},
		{"the page is over the store's item size", large, fault{}, ReasonTooLarge},
		{"too many headers", headers, fault{}, ReasonHeaders},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{}, "")
			_, tk := v.lookup(url1, t0)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.fault.op == opSet && len(tc.fill.Tags) == 0:
				tc.fault.op = v.newPageWrite() // a new URL's page
			case tc.fault.op != "" && len(tc.fill.Tags) > 0 && v.combined():
				// The tags' counters are read in the write.
				tc.fault.op = opAddGetSet
			}
			if tc.fault.op != "" {
				v.store.inject(tc.fault)
			}
			if r, env := v.c.Put(&tk, &tc.fill); r != tc.want || env != nil {
				t.Errorf("put: got %s and %d bytes; want %s and nothing", r, len(env), tc.want)
			}
			v.store.heal()
			v.wantState("after the failed put", url1, at(time.Second), PageMissing)
		})
	}
}

func testFenceFails(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{}, "")
	_, tk := v.lookup(url1, t0) // no URL counter or purge sequence yet
	v.store.inject(fault{op: opAdd, err: errInjected})
	if err := v.c.Fence(&tk); !errors.Is(err, errInjected) {
		t.Errorf("fence when counters cannot be created: got %v; want the store's error", err)
	}
	f := page("one")
	if r, _ := v.c.Put(&tk, &f); r != ReasonStoreError {
		t.Errorf("put on the ticket the fence failed on: got %s; want %s", r, ReasonStoreError)
	}
}

func testUnfencedPut(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{}, "")
	_, tk := v.lookup(url1, t0) // no URL counter or purge sequence yet
	v.store.reset()
	f := page("one")
	if r, _ := v.c.Put(&tk, &f); r != ReasonStoreError {
		t.Errorf("put on an unfenced ticket: got %s; want %s", r, ReasonStoreError)
	}
	if r, _ := v.c.Put(&Ticket{}, &f); r != ReasonStoreError {
		t.Errorf("put on a zero ticket: got %s; want %s", r, ReasonStoreError)
	}
	v.store.wantCalls(t, "those puts", nil)
	v.wantState("after them", url1, t0, PageMissing)

	// A lookup that read both counters fenced its ticket itself.
	v.mustFill(url2, page("two")) // the purge sequence
	v.purgeURL(url1, false)       // the URL counter
	_, tk = v.lookup(url1, t0)
	if r, _ := v.c.Put(&tk, &f); r != Storable {
		t.Errorf("put on the ticket of a lookup that read both counters: got %s; want stored", r)
	}
	v.wantPage("after that put", url1, t0, PageFresh, "one")
}

// testLongURL: a URL whose key is too long for memcached is stored and
// purged under hashed keys.
func testLongURL(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{}, "")
	u := "http://example.com/" + strings.Repeat("long/", 80) + "?q=1"
	v.mustFill(u, page("long", "x"))
	tk := v.wantState("the page", u, t0, PageFresh)
	if len(tk.Key()) > MaxKeyLength {
		t.Errorf("page key of %d bytes; want at most %d", len(tk.Key()), MaxKeyLength)
	}
	v.purgeURL(u, false)
	v.wantState("after a purge of the URL", u, t0, PageMissing)
}

// rawOptions are those of format raw, with gzip flag bit 2.
var rawOptions = CacheOptions{Raw: true, RawGzipFlag: 2}

func testRawForeignValue(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name  string
		flags uint32
		want  State
	}{
		{"a body", 0, PageFresh},
		{"a gzipped body", 2, PageFresh},
		{"a pickle", pickleFlag, PageMissing},
		{"a pickle with the gzip flag", pickleFlag | 2, PageMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, rawOptions, "")
			if err := v.store.Store.Set(string(v.base(url1)), Item{Value: []byte("<p>theirs"), Flags: tc.flags}, time.Minute); err != nil {
				t.Fatal(err)
			}
			v.store.reset()
			got, _ := v.lookup(url1, t0)
			v.store.wantCalls(t, "lookup", map[op]int{opGet: 1})
			wantDamaged := 0
			if tc.want == PageFresh {
				if got != tc.want || string(v.e.Body) != "<p>theirs" || v.e.Status != 200 || v.e.Flags != tc.flags || len(v.e.Headers) != 0 {
					t.Errorf("lookup: got %s, status %d, %d headers, flags %d, body %q; want fresh, 200, none, %d, %q",
						stateName(got), v.e.Status, len(v.e.Headers), v.e.Flags, v.e.Body, tc.flags, "<p>theirs")
				}
			} else {
				wantDamaged = 1
				if got != tc.want {
					t.Errorf("lookup: got %s; want %s", stateName(got), stateName(tc.want))
				}
			}
			if v.damaged != wantDamaged {
				t.Errorf("OnDamaged: got %d calls; want %d", v.damaged, wantDamaged)
			}
		})
	}
}

func testRawFill(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, rawOptions, "")
	st, tk := v.lookup(url1, t0)
	if st != PageMissing || tk.StoreDown() {
		t.Errorf("first lookup: got %s, store down %v; want missing, up", stateName(st), tk.StoreDown())
	}
	f := page("one")
	if r, _ := v.c.Put(&tk, &f); r != ReasonStoreError {
		t.Errorf("put before the fence: got %s; want %s", r, ReasonStoreError)
	}
	v.store.reset()
	if err := v.c.Fence(&tk); err != nil {
		t.Fatal(err)
	}
	v.store.wantCalls(t, "the raw fence (the URL counter alone: raw pages have no tags to guard)", map[op]int{opAdd: 1})
	v.store.reset()
	v.c.MarkUncacheable(&tk, t0, time.Minute)
	v.store.wantCalls(t, "a marker, in format raw", nil)
	if r, env := v.c.Put(&tk, &f); r != Storable || env != nil {
		t.Errorf("put: got %s and %d bytes; want stored and nothing", r, len(env))
	}
	v.store.wantCalls(t, "put (the write, then the fence read again)", map[op]int{opSet: 1, opGet: 1})
	if it, err := v.stored(string(v.base(url1))); err != nil || string(it.Value) != "one" || it.Flags != 0 {
		t.Errorf("the store holds %q, flags %d, %v; want the body alone, flags 0", it.Value, it.Flags, err)
	}
	v.wantPage("the hit", url1, t0, PageFresh, "one")
	v.purgeURL(url1, false)
	v.wantState("after a purge", url1, t0, PageMissing)
	if it, err := v.stored(string(v.base(url1))); !errors.Is(err, ErrMiss) {
		t.Errorf("after a purge the store holds %q, %v; want nothing", it.Value, err)
	}
}

// testRawPurgeRace runs a purge of the URL at each point of a raw put, and
// a put at each point of the purge: nothing is left stored.
func testRawPurgeRace(t *testing.T, newStore storeMaker) {
	type race struct {
		v            *cacheEnv
		base, urlKey string
		put          func() Reason
		purge        func()
	}
	is := func(k string) func(string) bool { return func(key string) bool { return key == k } }
	for _, tc := range []struct {
		name    string
		wantPut Reason
		run     func(r *race) Reason
	}{
		{"purge between fence and put", ReasonPurged, func(r *race) Reason {
			r.purge()
			return r.put()
		}},
		{"purge in the put, before its write", ReasonPurged, func(r *race) Reason {
			r.v.store.inject(fault{op: opSet, key: is(r.base), nth: 1, do: r.purge})
			return r.put()
		}},
		{"purge in the put, between its write and its read of the counter", ReasonPurged, func(r *race) Reason {
			r.v.store.inject(fault{op: opGet, key: is(r.urlKey), nth: 1, do: r.purge})
			return r.put()
		}},
		{"put in the purge, between its bump and its delete", ReasonPurged, func(r *race) Reason {
			var got Reason
			r.v.store.inject(fault{op: opDelete, key: is(r.base), nth: 1, do: func() { got = r.put() }})
			r.purge()
			return got
		}},
		{"put in the purge, before its bump", Storable, func(r *race) Reason {
			var got Reason
			r.v.store.inject(fault{op: opIncr, nth: 1, do: func() { got = r.put() }})
			r.purge()
			return got
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, rawOptions, "")
			_, tk := v.lookup(url1, t0)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			r := &race{v: v, base: string(v.base(url1)), urlKey: string(v.c.gens.AppendURLKey(nil, v.base(url1)))}
			r.put = func() Reason {
				f := page("fetched before the purge")
				got, _ := v.c.Put(&tk, &f)
				return got
			}
			r.purge = func() { v.purgeURL(url1, false) }
			if got := tc.run(r); got != tc.wantPut {
				t.Errorf("put: got %s; want %s", got, tc.wantPut)
			}
			if it, err := v.stored(r.base); !errors.Is(err, ErrMiss) {
				t.Errorf("after both, the store holds %q, %v; want nothing", it.Value, err)
			}
			v.wantState("after both", url1, t0, PageMissing)
		})
	}
}

func testRawURLOnly(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, rawOptions, "")
	if v.c.KeepsTags() {
		t.Error("KeepsTags in format raw: got true; want false")
	}
	if err := v.c.PurgeKey("x", false); !errors.Is(err, ErrURLOnly) {
		t.Errorf("purge by key in format raw: got %v; want ErrURLOnly", err)
	}
	if err := v.c.PurgeAll(); !errors.Is(err, ErrURLOnly) {
		t.Errorf("purge of everything in format raw: got %v; want ErrURLOnly", err)
	}
	v.store.wantCalls(t, "those purges", nil)
}

func testRawPutRefusals(t *testing.T, newStore storeMaker) {
	for _, tc := range []struct {
		name      string
		gzipFlag  uint32
		encoding  string
		tags      []string
		want      Reason
		wantFlags uint32
	}{
		{"no encoding", 2, "", nil, Storable, 0},
		{"gzip", 2, "gzip", nil, Storable, 2},
		{"gzip in capitals", 2, "GZip", nil, Storable, 2},
		{"brotli", 2, "br", nil, ReasonEncoding, 0},
		{"gzip without a gzip flag", 0, "gzip", nil, ReasonEncoding, 0},
		{"tags", 2, "", []string{"x"}, ReasonTags, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, newStore, CacheOptions{Raw: true, RawGzipFlag: tc.gzipFlag}, "")
			_, tk := v.lookup(url1, t0)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			f := page("one", tc.tags...)
			f.ContentEncoding = []byte(tc.encoding)
			if r, _ := v.c.Put(&tk, &f); r != tc.want {
				t.Errorf("put: got %s; want %s", r, tc.want)
			}
			it, err := v.stored(string(v.base(url1)))
			switch {
			case tc.want == Storable && (err != nil || it.Flags != tc.wantFlags):
				t.Errorf("the store holds flags %d, %v; want flags %d", it.Flags, err, tc.wantFlags)
			case tc.want != Storable && !errors.Is(err, ErrMiss):
				t.Errorf("the store holds %q, %v; want nothing", it.Value, err)
			}
		})
	}
}

func testRawStoreDown(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, rawOptions, "")
	v.store.inject(fault{op: opGet, err: errInjected})
	st, tk := v.lookup(url1, t0)
	if st != PageMissing || !tk.StoreDown() {
		t.Errorf("lookup: got %s, store down %v; want missing, store down", stateName(st), tk.StoreDown())
	}
	v.wantStoreErrors("lookup", 1)
	v.store.wantCalls(t, "lookup", map[op]int{opGet: 1})
}
