package router

import (
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// TestPurgeL1: two routers with an L1 share one memcached. A page served
// from B's L1 (detail=l1) stops being served within l1_ttl of a purge
// through A, never later, by URL, by key and of everything; the purging
// instance drops its own copies at once.
func TestPurgeL1(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newTaggedSite(t)
	prefix := pagecachetest.Prefix()
	const l1TTL = 500 * time.Millisecond
	l1 := func(o *Options) { o.Cache.L1Size, o.Cache.L1TTL = 1<<20, l1TTL }
	a := newPurgeRouter(t, s, memcachedStore(t, addr), prefix, l1)
	b := newPurgeRouter(t, s, memcachedStore(t, addr), prefix, l1)
	for _, tc := range []struct{ path, purge string }{
		{"/t?tags=l1", `{"keys": ["l1"]}`},
		{"/u", `{"urls": ["http://example.com/u"]}`},
		{"/v", `{"all": true}`},
	} {
		old := a.get(t, tc.path)
		b.get(t, tc.path) // from memcached, and copied to b's L1
		if got := b.get(t, tc.path); got.cacheStatus != statusHitL1 || got.body != old.body {
			t.Fatalf("%s: b's third answer %q; want a hit from its L1", tc.path, got.cacheStatus)
		}
		a.purge(t, tc.purge)
		purged := time.Now()
		for {
			got := b.get(t, tc.path)
			if got.body != old.body {
				break
			}
			if since := time.Since(purged); since > l1TTL+300*time.Millisecond {
				t.Fatalf("%s: b served the purged page %v after the purge (%q); the bound is l1_ttl, %v", tc.purge, since, got.cacheStatus, l1TTL)
			}
			time.Sleep(20 * time.Millisecond)
		}
		again := a.get(t, tc.path)
		a.get(t, tc.path) // a's L1 has it now
		if got := a.get(t, tc.path); got.cacheStatus != statusHitL1 {
			t.Fatalf("%s: a did not copy the page to its L1: %q", tc.path, got.cacheStatus)
		}
		a.purge(t, tc.purge)
		if got := a.get(t, tc.path); got.body == again.body {
			t.Errorf("%s: the purging instance served the purged page (%q)", tc.purge, got.cacheStatus)
		}
	}
}
