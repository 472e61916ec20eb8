package pagecache

import (
	"strings"
	"testing"
	"time"
)

// purgeKinds are the ways to purge url1, filled with tags, that the
// in-process tiers must honor.
var purgeKinds = []struct {
	name  string
	tags  []string
	purge func(v *cacheEnv)
}{
	{"purge by URL", nil, func(v *cacheEnv) { v.purgeURL(url1, false) }},
	{"soft purge by URL", nil, func(v *cacheEnv) { v.purgeURL(url1, true) }},
	{"purge by key", []string{"k"}, func(v *cacheEnv) { v.purgeKey("k", false) }},
	{"purge of everything", nil, func(v *cacheEnv) { v.purgeAll() }},
}

func TestL1Memory(t *testing.T)   { testL1(t, memoryStore) }
func TestL1Memcache(t *testing.T) { testL1(t, memcacheStore) }

// testL1 checks the in-process tier: a copy serves hits without the store,
// a purge through the same Cache drops it at once (even one racing a fill),
// one through another instance within L1TTL, and only fresh pages are
// copied.
func testL1(t *testing.T, newStore storeMaker) {
	o := CacheOptions{L1Size: 1 << 20, L1TTL: time.Second}
	t.Run("hits without the store", func(t *testing.T) {
		v := newEnv(t, newStore, o, "")
		v.mustFill(url1, page("one"))
		v.store.reset()
		for i := range 3 {
			st, tk := v.lookup(url1, at(time.Duration(i)*100*time.Millisecond))
			if st != PageFresh || !tk.FromL1() || string(v.e.Body) != "one" || tk.Key() == "" {
				t.Fatalf("lookup %d: %v from L1 %v body %q; want the L1 copy", i, st, tk.FromL1(), v.e.Body)
			}
		}
		v.store.wantCalls(t, "three L1 hits", map[op]int{})
	})
	t.Run("past L1TTL, kept by its counters alone", func(t *testing.T) {
		for _, tags := range [][]string{nil, {"a", "b"}} {
			v := newEnv(t, newStore, o, "")
			v.mustFill(url1, page("one", tags...))
			v.wantPage("the hit that makes the hint", url1, at(0), PageFresh, "one")
			v.store.reset()
			// The page itself (its key ends in "|n" and the namespace) is
			// not read.
			v.store.inject(fault{op: opGetMulti, key: func(k string) bool { return strings.Contains(k, "|n") }, err: errInjected})
			v.store.inject(fault{op: opGet, key: func(k string) bool { return strings.Contains(k, "|n") }, err: errInjected})
			for _, after := range []time.Duration{1500 * time.Millisecond, 2000 * time.Millisecond} {
				st, tk := v.lookup(url1, at(after))
				if st != PageFresh || !tk.FromL1() || string(v.e.Body) != "one" {
					t.Errorf("tags %q, %v after the fill: %v from L1 %v body %q; want the copy", tags, after, st, tk.FromL1(), v.e.Body)
				}
			}
			// One read of the counters (namespace, URL, tags), then the
			// copy is good for another L1TTL.
			v.store.wantCalls(t, "a copy revalidated, then served", map[op]int{opGetMulti: 1})
		}
	})
	for _, tc := range purgeKinds {
		t.Run(tc.name+" through this instance: at once", func(t *testing.T) {
			v := newEnv(t, newStore, o, "")
			v.mustFill(url1, page("one", tc.tags...))
			if _, tk := v.lookup(url1, at(0)); !tk.FromL1() {
				t.Fatal("the fill was not copied to the L1")
			}
			tc.purge(v)
			if st, tk := v.lookup(url1, at(time.Millisecond)); tk.FromL1() || st == PageFresh {
				t.Errorf("after the purge: %v from L1 %v; want the store's verdict", st, tk.FromL1())
			}
		})
		t.Run(tc.name+" through another instance: within L1TTL", func(t *testing.T) {
			v := newEnv(t, newStore, o, "")
			w := v.another(CacheOptions{})
			v.mustFill(url1, page("one", tc.tags...))
			tc.purge(w)
			if st, tk := v.lookup(url1, at(900*time.Millisecond)); !tk.FromL1() || st != PageFresh {
				t.Errorf("within L1TTL: %v from L1 %v; want the copy (the documented bound)", st, tk.FromL1())
			}
			if st, tk := v.lookup(url1, at(time.Second)); tk.FromL1() || st == PageFresh {
				t.Errorf("at L1TTL: %v from L1 %v; want the purge seen", st, tk.FromL1())
			}
		})
		t.Run(tc.name+" between fence and put: no copy", func(t *testing.T) {
			v := newEnv(t, newStore, o, "")
			v.mustFill(url2, page("two")) // the counters exist
			_, tk := v.lookup(url1, t0)
			if err := v.c.Fence(&tk); err != nil {
				t.Fatal(err)
			}
			tc.purge(v)
			f := page("one", tc.tags...)
			v.c.Put(&tk, &f)
			if _, tk := v.lookup(url1, at(time.Millisecond)); tk.FromL1() {
				t.Error("a page fetched before the purge was copied to the L1")
			}
		})
	}
	t.Run("only fresh pages, never past freshness", func(t *testing.T) {
		v := newEnv(t, newStore, o, "")
		f := page("one")
		f.TTL = 500 * time.Millisecond
		v.mustFill(url1, f)
		if st, tk := v.lookup(url1, at(400*time.Millisecond)); !tk.FromL1() || st != PageFresh {
			t.Fatalf("fresh: %v from L1 %v", st, tk.FromL1())
		}
		if st, tk := v.lookup(url1, at(600*time.Millisecond)); tk.FromL1() || st != PageStale {
			t.Errorf("past freshness: %v from L1 %v; want stale, from the store", st, tk.FromL1())
		}
		if st, tk := v.lookup(url1, at(700*time.Millisecond)); tk.FromL1() || st != PageStale {
			t.Errorf("stale again: %v from L1 %v; a stale page is never copied", st, tk.FromL1())
		}
	})
}
