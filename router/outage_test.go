package router

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// outageTTL is cache.l1_ttl in the outage tests: how long a page filled
// during the outage is served from the process.
const outageTTL = 500 * time.Millisecond

// withOutageL1 turns the outage tier on, as the daemon's default does.
func withOutageL1(o *CacheOptions) { o.OutageL1Size, o.L1TTL = 1<<20, outageTTL }

// TestOutageCoalesces: with memcached killed, identical anonymous misses
// still make one backend request; its answer goes to those that waited and
// is served from the process (detail=store-down) for l1_ttl, after which
// one more request renders it. Answers the policy would not store are
// neither shared nor kept; a logged-in visitor is forwarded; a visitor
// with other cookies is served the copy, which was rendered without them.
func TestOutageCoalesces(t *testing.T) {
	mc := pagecachetest.Start(t)
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, mc.Addr), Options{}, withOutageL1)
	fetch(t, "GET", base+"/page")
	mc.Stop()
	for i := range DefaultStoreBreakerFailures + 1 { // the breaker opens
		if a := fetch(t, "GET", base+"/other"); a.status != 200 {
			t.Fatalf("request %d of the outage: %d %q", i, a.status, a.cacheStatus)
		}
	}

	var wg sync.WaitGroup
	answers := make([]answer, 20)
	for i := range answers {
		wg.Go(func() { answers[i] = fetch(t, "GET", base+"/slow") })
	}
	wg.Wait()
	if n := s.requests("/slow"); n != 1 {
		t.Errorf("20 concurrent misses of /slow during the outage made %d backend requests; want 1", n)
	}
	counts := map[string]int{}
	for _, a := range answers {
		counts[a.cacheStatus]++
		if a.status != 200 || !strings.Contains(a.body, "/slow #1") || !strings.Contains(a.body, "cookie=[]") {
			t.Errorf("an answer of the burst: %d %q %q; want the one render, made without cookies", a.status, a.cacheStatus, a.body)
		}
	}
	if counts[statusStoreDown] != 1 || counts[statusStoreDown]+counts[statusCollapsedStoreDown]+counts[statusHitStoreDown] != 20 {
		t.Errorf("statuses of the burst: %v; want one %q, the others collapsed or hits from the copy", counts, statusStoreDown)
	}
	for i := range 5 {
		if a := fetch(t, "GET", base+"/slow"); a.cacheStatus != statusHitStoreDown || !strings.Contains(a.body, "/slow #1") {
			t.Fatalf("request %d after the burst: %q %q; want %q", i, a.cacheStatus, a.body, statusHitStoreDown)
		}
	}
	if a := fetch(t, "GET", base+"/slow", "Cookie", "theme=dark"); a.cacheStatus != statusHitStoreDown || !strings.Contains(a.body, "cookie=[]") {
		t.Errorf("a visitor with other cookies: %q %q; want the copy", a.cacheStatus, a.body)
	}
	const key = "abcdefghijklmnopqrstuvwxyz012345"
	if a := fetch(t, "GET", base+"/slow", "Cookie", "sessionid="+key); !strings.HasPrefix(a.cacheStatus, "userrouter; fwd=bypass") || !strings.Contains(a.body, key) {
		t.Errorf("a logged-in visitor: %q %q; want their own page, forwarded", a.cacheStatus, a.body)
	}
	time.Sleep(outageTTL + 50*time.Millisecond)
	if a := fetch(t, "GET", base+"/slow"); a.cacheStatus != statusStoreDown || !strings.Contains(a.body, "/slow #3") {
		t.Errorf("past l1_ttl: %q %q; want a new render (the logged-in visitor's was #2)", a.cacheStatus, a.body)
	}

	for _, path := range []string{"/private", "/set-cookie", "/no-store", "/vary-star", "/error"} {
		for i := range 3 {
			if a := fetch(t, "GET", base+path); strings.Contains(a.cacheStatus, "; hit") || strings.Contains(a.cacheStatus, "collapsed") {
				t.Errorf("%s, request %d: %q; an answer the policy does not store is not kept", path, i, a.cacheStatus)
			}
		}
		if n := s.requests(path); n != 3 {
			t.Errorf("%s: %d backend requests for 3; want each forwarded", path, n)
		}
	}
}

// TestOutageOff: with outage_l1_size "0", concurrent misses still share
// one fill, but nothing is kept: the next request renders again.
func TestOutageOff(t *testing.T) {
	mc := pagecachetest.Start(t)
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, mc.Addr), Options{}, nil)
	mc.Stop()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { fetch(t, "GET", base+"/slow") })
	}
	wg.Wait()
	if n := s.requests("/slow"); n != 1 {
		t.Errorf("10 concurrent misses made %d backend requests; want 1", n)
	}
	if a := fetch(t, "GET", base+"/slow"); a.cacheStatus == statusHitStoreDown || s.requests("/slow") != 2 {
		t.Errorf("next request: %q, %d renders; want a render, nothing kept", a.cacheStatus, s.requests("/slow"))
	}
}

// TestOutagePurge: a purge received while memcached is down fails (the
// store could not take it) but drops this instance's copies at once, by
// URL, by key and of everything.
func TestOutagePurge(t *testing.T) {
	mc := pagecachetest.Start(t)
	s := newTaggedSite(t)
	prefix := pagecachetest.Prefix()
	p := newPurgeRouter(t, s, memcachedStore(t, mc.Addr), prefix, func(o *Options) { withOutageL1(o.Cache) })
	p.get(t, "/warm")
	mc.Stop()
	for _, tc := range []struct{ path, purge string }{
		{"/u", `{"urls": ["http://example.com/u"]}`},
		{"/k?tags=k1", `{"keys": ["k1"]}`},
		{"/a", `{"all": true}`},
	} {
		first := p.get(t, tc.path)
		if a := p.get(t, tc.path); a.cacheStatus != statusHitStoreDown || a.body != first.body {
			t.Fatalf("%s: second request %q; want the copy", tc.path, a.cacheStatus)
		}
		if code, _ := p.purge(t, tc.purge); code == 200 {
			t.Errorf("%s: purge answered 200 with memcached down; want a failure", tc.purge)
		}
		if a := p.get(t, tc.path); a.cacheStatus == statusHitStoreDown || a.body == first.body {
			t.Errorf("%s: after the purge %q %q; want a new render", tc.purge, a.cacheStatus, a.body)
		}
	}
}

// failingStore fails every operation while down is set, at once.
type failingStore struct {
	pagecache.Store
	down atomic.Bool
}

var errFailing = errors.New("test: store down")

func (s *failingStore) Get(key string) (pagecache.Item, error) {
	if s.down.Load() {
		return pagecache.Item{}, errFailing
	}
	return s.Store.Get(key)
}

func (s *failingStore) GetMulti(keys []string, items []pagecache.Item) error {
	if s.down.Load() {
		return errFailing
	}
	return s.Store.GetMulti(keys, items)
}

func (s *failingStore) Set(key string, it pagecache.Item, ttl time.Duration) error {
	if s.down.Load() {
		return errFailing
	}
	return s.Store.Set(key, it, ttl)
}

func (s *failingStore) Add(key string, it pagecache.Item, ttl time.Duration) error {
	if s.down.Load() {
		return errFailing
	}
	return s.Store.Add(key, it, ttl)
}

func (s *failingStore) Incr(key string, delta uint64) (uint64, error) {
	if s.down.Load() {
		return 0, errFailing
	}
	return s.Store.Incr(key, delta)
}
