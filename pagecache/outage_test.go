package pagecache

import (
	"testing"
	"time"
)

// TestOutageTier: while the store fails, Remember keeps a fill's page in
// the outage tier for L1TTL at most and Lookup serves it; a purge through
// this Cache drops it at once even when the store refuses the purge, and
// one racing the fill keeps it out; once the store answers, its verdict
// wins; with the tier off, Remember still encodes the page for the waiters.
func TestOutageTier(t *testing.T) {
	o := CacheOptions{OutageL1Size: 1 << 20, L1TTL: time.Second}
	down := func(v *cacheEnv) {
		for _, o := range []op{opGet, opGetMulti, opSet, opAdd, opIncr, opDelete} {
			v.store.inject(fault{op: o, err: errInjected})
		}
	}
	remember := func(t *testing.T, v *cacheEnv, now time.Time, body string) []byte {
		t.Helper()
		st, tk := v.lookup(url1, now)
		if st != PageMissing || !tk.StoreDown() || tk.FromOutage() {
			t.Fatalf("lookup with the store down: %v, down %v, from the outage tier %v; want a missing page, store down", st, tk.StoreDown(), tk.FromOutage())
		}
		f := page(body)
		f.StoredAt = now
		return v.c.Remember(&tk, &f)
	}

	t.Run("kept for L1TTL, then the store's verdict", func(t *testing.T) {
		v := newEnv(t, memoryStore, o, "")
		down(v)
		env := remember(t, v, t0, "one")
		var e Entry
		if env == nil || Decode(env, &e) != nil || string(e.Body) != "one" {
			t.Fatalf("Remember: %q; want the page encoded for the waiters", env)
		}
		st, tk := v.lookup(url1, at(900*time.Millisecond))
		if st != PageFresh || !tk.FromOutage() || string(v.e.Body) != "one" {
			t.Errorf("within L1TTL: %v from the outage tier %v %q; want the copy", st, tk.FromOutage(), v.e.Body)
		}
		if st, tk := v.lookup(url1, at(time.Second)); st == PageFresh || tk.FromOutage() {
			t.Errorf("at L1TTL: %v from the outage tier %v; want it gone", st, tk.FromOutage())
		}
		remember(t, v, at(2*time.Second), "two")
		v.store.heal()
		if st, tk := v.lookup(url1, at(2100*time.Millisecond)); st != PageMissing || tk.FromOutage() || tk.StoreDown() {
			t.Errorf("the store back: %v from the outage tier %v; want the store's verdict (missing)", st, tk.FromOutage())
		}
	})
	t.Run("a private copy is encoded for its waiters, never kept", func(t *testing.T) {
		v := newEnv(t, memoryStore, o, "")
		down(v)
		base := v.base(url1)
		_, tk := v.c.LookupPrivate(base, base, []byte("|c:alice"), &v.sc, &v.e, t0)
		if !tk.StoreDown() {
			t.Fatal("LookupPrivate with the store down: want the store down")
		}
		tk = tk.Clone()
		f := page("alice's")
		f.StoredAt = t0
		if env := v.c.Remember(&tk, &f); env == nil {
			t.Fatal("Remember of a private copy: nil; want it encoded for the waiters")
		}
		var e Entry
		if v.c.outage.lookup(tk.Key(), &e, at(100*time.Millisecond).UnixMilli()) {
			t.Error("a private copy is in the outage tier; want it never kept in process")
		}
		if st, tk := v.lookup(url1, at(100*time.Millisecond)); st == PageFresh || tk.FromOutage() {
			t.Errorf("the shared page: %v from the outage tier %v; want no copy", st, tk.FromOutage())
		}
	})
	for _, tc := range []struct {
		name  string
		purge func(c *Cache) error
	}{
		{"purge by URL", func(c *Cache) error { return c.PurgeURL(input(url1), false) }},
		{"purge by key", func(c *Cache) error { return c.PurgeKey("k", false) }},
		{"purge of everything", func(c *Cache) error { return c.PurgeAll() }},
	} {
		t.Run(tc.name+" the store refuses: the copy goes", func(t *testing.T) {
			v := newEnv(t, memoryStore, o, "")
			down(v)
			remember(t, v, t0, "one")
			if err := tc.purge(v.c); err == nil {
				t.Fatal("the purge succeeded with the store down")
			}
			if st, tk := v.lookup(url1, at(time.Millisecond)); st == PageFresh || tk.FromOutage() {
				t.Errorf("after the purge: %v from the outage tier %v; want the copy gone", st, tk.FromOutage())
			}
		})
		t.Run(tc.name+" racing the fill: not kept", func(t *testing.T) {
			v := newEnv(t, memoryStore, o, "")
			down(v)
			_, tk := v.lookup(url1, t0)
			tc.purge(v.c)
			f := page("one")
			if env := v.c.Remember(&tk, &f); env != nil {
				t.Error("Remember gave the waiters an answer a purge may have overtaken")
			}
			if st, tk := v.lookup(url1, at(time.Millisecond)); st == PageFresh || tk.FromOutage() {
				t.Errorf("after: %v from the outage tier %v; want nothing kept", st, tk.FromOutage())
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		v := newEnv(t, memoryStore, CacheOptions{}, "")
		down(v)
		if env := remember(t, v, t0, "one"); env == nil {
			t.Fatal("Remember with the tier off: nil; want the page for the waiters")
		}
		if st, tk := v.lookup(url1, at(time.Millisecond)); st == PageFresh || tk.FromOutage() {
			t.Errorf("with the tier off: %v from the outage tier %v; want nothing kept", st, tk.FromOutage())
		}
	})
}
