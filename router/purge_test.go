package router

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// taggedSite renders pages tagged by their query: /news?tags=a,b answers
// with "Surrogate-Key: a b". A page's body counts its renders, so a stale
// copy is told from a fresh one. /slow waits for its release channel.
type taggedSite struct {
	*httptest.Server
	renders atomic.Int64
	mu      sync.Mutex
	release chan struct{}
}

func newTaggedSite(t *testing.T) *taggedSite {
	s := &taggedSite{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.renders.Add(1)
		if r.URL.Path == "/slow" {
			s.mu.Lock()
			ch := s.release
			s.mu.Unlock()
			if ch != nil {
				<-ch
			}
		}
		if tags := r.URL.Query().Get("tags"); tags != "" {
			w.Header().Set("Surrogate-Key", strings.ReplaceAll(tags, ",", " "))
		}
		if raw := r.URL.Query().Get("rawtags"); raw != "" {
			w.Header().Set("Surrogate-Key", raw)
		}
		if r.URL.Query().Get("bigtags") != "" { // 170 tags of 100 bytes: over 16 KiB
			var tags []string
			for i := range 170 {
				tags = append(tags, fmt.Sprintf("%099d", i))
			}
			w.Header().Set("Surrogate-Key", strings.Join(tags, " "))
		}
		fmt.Fprintf(w, "render %d of %s", n, r.URL.RequestURI())
	}))
	t.Cleanup(s.Close)
	return s
}

// purgeRouter is a Router with an admin handler, both served, on store.
type purgeRouter struct {
	base, admin string
	r           *Router
}

func newPurgeRouter(t *testing.T, s *taggedSite, store pagecache.Store, prefix string, tweak func(*Options)) *purgeRouter {
	t.Helper()
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: prefix + "{host}{uri}", HashPrefix: prefix + "h:"})
	o := Options{
		Keys: testKeys,
		Cache: &CacheOptions{Store: store, Keys: keys, Prefix: prefix, StripTagHeaders: true,
			Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Grace: 30 * time.Second, Default: pagecache.Rule{Cache: true, TTL: time.Hour, HonorCacheControl: true}})},
		PurgeAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}
	if tweak != nil {
		tweak(&o)
	}
	b, _ := NewBackends(testBackendOptions(backendAddr(s.Server)))
	o.Backends = b
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	admin := &Admin{Router: func() *Router { return r }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewAdminServer(admin, ServerOptions{ReadTimeout: 5 * time.Second})
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return &purgeRouter{base: serveHandler(t, r.Handle), admin: "http://" + ln.Addr().String(), r: r}
}

func (p *purgeRouter) get(t *testing.T, path string) answer {
	return fetch(t, "GET", p.base+path, "Host", "example.com")
}

func (p *purgeRouter) purge(t *testing.T, body string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", p.admin+"/purge", strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestPurgeAcrossInstances: two routers share one memcached; a purge by
// URL, by key and of everything sent to one is honored by both at their
// next request.
func TestPurgeAcrossInstances(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newTaggedSite(t)
	prefix := pagecachetest.Prefix()
	a := newPurgeRouter(t, s, memcachedStore(t, addr), prefix, nil)
	b := newPurgeRouter(t, s, memcachedStore(t, addr), prefix, nil)
	pages := []string{"/a?tags=post.1,posts", "/b?tags=post.2,posts", "/c?tags=post.3", "/d"}
	bodies := map[string]string{}
	for _, p := range pages {
		bodies[p] = a.get(t, p).body
		for _, r := range []*purgeRouter{a, b} {
			if got := r.get(t, p); got.cacheStatus != "userrouter; hit" || got.body != bodies[p] {
				t.Fatalf("%s: %q %q; want a hit of %q", p, got.cacheStatus, got.body, bodies[p])
			}
		}
	}
	if got := a.get(t, pages[0]); got.header.Get("Surrogate-Key") != "" {
		t.Errorf("the tag header reached the client: %q", got.header.Get("Surrogate-Key"))
	}
	fresh := func(r *purgeRouter, p string) bool {
		got := r.get(t, p)
		return got.cacheStatus == "userrouter; hit" && got.body == bodies[p]
	}

	// By URL, sent to a: b misses too.
	if code, body := a.purge(t, `{"urls": ["http://example.com/d"]}`); code != 200 || body != `{"urls":1,"keys":0,"all":false,"soft":false}` {
		t.Fatalf("purge by URL: %d %s", code, body)
	}
	if fresh(b, "/d") || fresh(a, pages[2]) == false {
		t.Error("after purging /d: b still serves it, or another page was purged")
	}
	bodies["/d"] = b.get(t, "/d").body

	// By key, sent to b: a misses both pages tagged "posts", keeps the other.
	if code, body := b.purge(t, `{"keys": ["posts"]}`); code != 200 || !strings.Contains(body, `"keys":1`) {
		t.Fatalf("purge by key: %d %s", code, body)
	}
	if fresh(a, pages[0]) || fresh(a, pages[1]) || !fresh(a, pages[2]) {
		t.Error("after purging key posts: wrong pages served fresh")
	}
	for _, p := range pages[:2] {
		bodies[p] = a.get(t, p).body
	}

	// Everything, sent to a, with the PURGE method for comparison after.
	if code, body := a.purge(t, `{"all": true}`); code != 200 || !strings.Contains(body, `"all":true`) {
		t.Fatalf("purge all: %d %s", code, body)
	}
	for _, p := range pages {
		if fresh(b, p) {
			t.Errorf("after purge all, b still serves %s", p)
		}
	}

	// PURGE /path on the main listener, the nginx convention.
	bodies["/d"] = a.get(t, "/d").body
	req, _ := http.NewRequest("PURGE", a.base+"/d", nil)
	req.Host = "example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || fresh(b, "/d") {
		t.Errorf("PURGE method: %d, and b still serves /d", resp.StatusCode)
	}
}

// TestPurgeRacingFill: a purge of a tag lands while a page carrying it is
// being fetched; the page fetched must not be served as fresh.
func TestPurgeRacingFill(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newTaggedSite(t)
	p := newPurgeRouter(t, s, memcachedStore(t, addr), pagecachetest.Prefix(), nil)
	s.mu.Lock()
	s.release = make(chan struct{})
	s.mu.Unlock()

	first := make(chan answer, 1)
	go func() { first <- p.get(t, "/slow?tags=post.9") }()
	for s.renders.Load() == 0 { // the backend has the request
		time.Sleep(5 * time.Millisecond)
	}
	if code, body := p.purge(t, `{"keys": ["post.9"]}`); code != 200 {
		t.Fatalf("purge: %d %s", code, body)
	}
	close(s.release)
	a := <-first
	if a.cacheStatus != "userrouter; fwd=miss; detail=purged" {
		t.Errorf("the overtaken fill: %q; want it not stored", a.cacheStatus)
	}
	s.mu.Lock()
	s.release = nil
	s.mu.Unlock()
	next := p.get(t, "/slow?tags=post.9")
	if strings.Contains(next.cacheStatus, "hit") || next.body == a.body {
		t.Errorf("after the race: %q %q; want a new render", next.cacheStatus, next.body)
	}
	if again := p.get(t, "/slow?tags=post.9"); again.cacheStatus != "userrouter; hit" || again.body != next.body {
		t.Errorf("the render after the purge was not cached: %q", again.cacheStatus)
	}
}

// TestPurgeRacingRawFill: with format "raw" and raw_fill, a purge by URL
// that lands while the page is being fetched leaves nothing stored: a raw
// value cannot record its URL generation, so the fill checks the counter
// again after writing and deletes what it wrote.
func TestPurgeRacingRawFill(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newTaggedSite(t)
	p := newPurgeRouter(t, s, memcachedStore(t, addr), pagecachetest.Prefix(), func(o *Options) {
		o.Cache.Raw = &RawOptions{Fill: true}
	})
	s.mu.Lock()
	s.release = make(chan struct{})
	s.mu.Unlock()
	first := make(chan answer, 1)
	go func() { first <- p.get(t, "/slow?raw") }()
	for s.renders.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if code, body := p.purge(t, `{"urls": ["http://example.com/slow?raw"]}`); code != 200 {
		t.Fatalf("purge: %d %s", code, body)
	}
	close(s.release)
	if a := <-first; a.cacheStatus != "userrouter; fwd=miss; detail=purged" {
		t.Errorf("the overtaken raw fill: %q; want it not stored", a.cacheStatus)
	}
	s.mu.Lock()
	s.release = nil
	s.mu.Unlock()
	if next := p.get(t, "/slow?raw"); strings.Contains(next.cacheStatus, "hit") {
		t.Errorf("after the race: %q; want the purged page gone", next.cacheStatus)
	}
	if again := p.get(t, "/slow?raw"); again.cacheStatus != "userrouter; hit" {
		t.Errorf("the raw render after the purge was not stored: %q", again.cacheStatus)
	}
}

// TestPurgeEvictedCounter: a tag counter deleted by hand (as memcached's
// LRU would) makes its pages miss, never serve stale.
func TestPurgeEvictedCounter(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newTaggedSite(t)
	prefix := pagecachetest.Prefix()
	store := memcachedStore(t, addr)
	p := newPurgeRouter(t, s, store, prefix, nil)
	first := p.get(t, "/e?tags=evicted")
	if hit := p.get(t, "/e?tags=evicted"); hit.cacheStatus != "userrouter; hit" {
		t.Fatalf("second request: %q", hit.cacheStatus)
	}
	if err := store.Delete(prefix + "t:evicted"); err != nil {
		t.Fatal(err)
	}
	if got := p.get(t, "/e?tags=evicted"); strings.Contains(got.cacheStatus, "hit") || got.body == first.body {
		t.Errorf("with the tag counter gone: %q %q; want a miss", got.cacheStatus, got.body)
	}
	// The same for the URL counter and the namespace.
	p.get(t, "/f")
	for _, k := range []string{prefix + "ns"} {
		store.Delete(k)
	}
	if got := p.get(t, "/f"); strings.Contains(got.cacheStatus, "hit") {
		t.Errorf("with the namespace gone: %q; want a miss", got.cacheStatus)
	}
}

func TestPurgeSoft(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newTaggedSite(t)
	p := newPurgeRouter(t, s, memcachedStore(t, addr), pagecachetest.Prefix(), nil)
	for _, tc := range []struct{ path, body string }{
		{"/soft-key?tags=soft", `{"keys": ["soft"], "soft": true}`},
		{"/soft-url", `{"urls": ["http://example.com/soft-url"], "soft": true}`},
	} {
		old := p.get(t, tc.path)
		if code, body := p.purge(t, tc.body); code != 200 || !strings.Contains(body, `"soft":true`) {
			t.Fatalf("%s: %d %s", tc.path, code, body)
		}
		stale := p.get(t, tc.path)
		if stale.cacheStatus != "userrouter; hit; detail=stale" || stale.body != old.body {
			t.Errorf("%s after a soft purge: %q %q; want the old page, stale", tc.path, stale.cacheStatus, stale.body)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			got := p.get(t, tc.path)
			if got.cacheStatus == "userrouter; hit" && got.body != old.body {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no refreshed page; last %q %q", tc.path, got.cacheStatus, got.body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if code, body := p.purge(t, `{"all": true, "soft": true}`); code != 400 || !strings.Contains(body, "cannot be soft") {
		t.Errorf("soft purge all: %d %s; want 400", code, body)
	}
}

// TestPurgeTagCacheTTL: with tag_cache_ttl, another instance may serve a
// purged page for up to that long, never longer, even while it keeps
// serving the page (each hit must not extend the life of what it knows);
// the purging one stops at once. For each kind of purge.
func TestPurgeTagCacheTTL(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newTaggedSite(t)
	prefix := pagecachetest.Prefix()
	ttl := func(o *Options) { o.Cache.TagCacheTTL = time.Second }
	a := newPurgeRouter(t, s, memcachedStore(t, addr), prefix, ttl)
	b := newPurgeRouter(t, s, memcachedStore(t, addr), prefix, ttl)
	for _, tc := range []struct{ path, purge string }{
		{"/t?tags=ttl", `{"keys": ["ttl"]}`},
		{"/u", `{"urls": ["http://example.com/u"]}`},
		{"/v", `{"all": true}`},
	} {
		old := a.get(t, tc.path)
		b.get(t, tc.path)
		if got := b.get(t, tc.path); got.cacheStatus != "userrouter; hit" {
			t.Fatalf("%s: b did not cache the page: %q", tc.path, got.cacheStatus)
		}
		a.purge(t, tc.purge)
		purged := time.Now()
		// b, polled, must stop serving the page within the bound (a is not
		// asked meanwhile, so nobody refills it before b notices).
		for {
			got := b.get(t, tc.path)
			if got.body != old.body {
				break
			}
			if time.Since(purged) > 1500*time.Millisecond {
				t.Fatalf("%s: b served the purged page %v after the purge; the bound is 1s", tc.purge, time.Since(purged))
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The purging instance stops at once.
		again := a.get(t, tc.path)
		a.purge(t, tc.purge)
		if got := a.get(t, tc.path); got.body == again.body {
			t.Errorf("%s: the purging instance served the purged page", tc.purge)
		}
	}
}

func TestPurgeAccess(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newTaggedSite(t)
	only := func(o *Options) { o.PurgeAllow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }
	p := newPurgeRouter(t, s, memcachedStore(t, addr), pagecachetest.Prefix(), only)
	page := p.get(t, "/x?tags=acl")
	if code, body := p.purge(t, `{"keys": ["acl"]}`); code != 403 || !strings.Contains(body, "purge.allow") {
		t.Errorf("from 127.0.0.1 with 10.0.0.0/8 allowed: %d %s; want 403", code, body)
	}
	// Behind a trusted proxy the client is X-Real-IP: allowed when nginx says
	// it is 10.1.2.3, even though the peer is loopback.
	trustedProxy := func(o *Options) {
		only(o)
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	q := newPurgeRouter(t, s, memcachedStore(t, addr), pagecachetest.Prefix(), trustedProxy)
	for _, tc := range []struct {
		realIP string
		code   int
	}{{"10.1.2.3", 200}, {"192.0.2.1", 403}} {
		req, _ := http.NewRequest("PURGE", q.base+"/x", nil)
		req.Host = "example.com"
		req.Header.Set("X-Real-IP", tc.realIP)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("PURGE from X-Real-IP %s: %d; want %d", tc.realIP, resp.StatusCode, tc.code)
		}
	}

	withToken := func(o *Options) { o.PurgeToken = "s3cret" }
	r := newPurgeRouter(t, s, memcachedStore(t, addr), pagecachetest.Prefix(), withToken)
	page = r.get(t, "/y?tags=tok")
	for _, auth := range []string{"", "Bearer wrong", "s3cret", "Basic czNjcmV0"} {
		if code, _ := r.purge(t, `{"keys": ["tok"]}`, "Authorization", auth); code != 403 {
			t.Errorf("Authorization %q: %d; want 403", auth, code)
		}
	}
	if got := r.get(t, "/y?tags=tok"); got.body != page.body {
		t.Error("a refused purge purged")
	}
	if code, _ := r.purge(t, `{"keys": ["tok"]}`, "Authorization", "Bearer s3cret"); code != 200 {
		t.Errorf("with the token: %d; want 200", code)
	}
	if got := r.get(t, "/y?tags=tok"); got.body == page.body {
		t.Error("the allowed purge did not purge")
	}
	if n := r.r.Stats().PurgesRefused.Load(); n != 4 {
		t.Errorf("refused purges counted: %d; want 4", n)
	}
}

func TestPurgeBadInput(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newTaggedSite(t)
	p := newPurgeRouter(t, s, memcachedStore(t, addr), pagecachetest.Prefix(), nil)
	for _, tc := range []struct{ body, want string }{
		{`{"urls": ["http://example.com/a"]`, "not a purge request"},
		{`not json`, "not a purge request"},
		{`{"url": ["/a"]}`, "unknown field"},
		{`{"urls": ["/a"]}`, "write it in full"},
		{`{"urls": ["ftp://example.com/a"]}`, "neither"},
		{`{"urls": ["http:// bad host/a"]}`, "no valid host"},
		{`{"keys": ["has space"]}`, "not a surrogate key"},
		{`{"keys": ["ctl\u0001"]}`, "not a surrogate key"},
		{`{"keys": ["` + strings.Repeat("k", 2000) + `"]}`, "not a surrogate key"},
		{`{"keys": ["a"]}{"keys": ["b"]}`, "more than one"},
		{`{"keys": [` + strings.Repeat(`"k",`, maxPurgeItems) + `"k"]}`, "at most"},
	} {
		if code, body := p.purge(t, tc.body); code != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("%.60s: %d %s; want 400 saying %q", tc.body, code, body, tc.want)
		}
	}
	// An enormous body is refused by the admin listener's body limit.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	admin := &Admin{Router: func() *Router { return p.r }}
	srv := NewAdminServer(admin, ServerOptions{ReadTimeout: 5 * time.Second})
	go srv.Serve(ln)
	defer srv.Shutdown()
	resp, err := http.Post("http://"+ln.Addr().String()+"/purge", "application/json", strings.NewReader(`{"keys": ["`+strings.Repeat("k", 2<<20)+`"]}`))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("a 2 MiB body: %d; want 413", resp.StatusCode)
		}
	}
	if code, _ := p.purge(t, ""); code != 400 {
		t.Errorf("empty body: %d; want 400", code)
	}
}

// TestTagHeadersBadInput: tag headers that break the limits keep the page
// out of the cache, whole; duplicates are merged.
func TestTagHeadersBadInput(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newTaggedSite(t)
	p := newPurgeRouter(t, s, memcachedStore(t, addr), pagecachetest.Prefix(), nil)
	many := make([]string, pagecache.MaxTagsPerPage+1)
	for i := range many {
		many[i] = fmt.Sprintf("t%d", i)
	}
	for _, tc := range []struct {
		name, query, status string
	}{
		{"too many", "tags=" + strings.Join(many, ","), "userrouter; fwd=miss; detail=tags"},
		{"huge", "bigtags=1", "userrouter; fwd=miss; detail=tags"},
		{"long tag", "tags=" + strings.Repeat("l", 1025), "userrouter; fwd=miss; detail=tags"},
		{"non-ASCII", "rawtags=caf%C3%A9", "userrouter; fwd=miss; detail=tags"},
		{"duplicates", "tags=a,a,b,a,b", "userrouter; fwd=miss; stored"},
	} {
		got := p.get(t, "/tags?"+tc.query)
		if got.status != 200 || got.cacheStatus != tc.status {
			t.Errorf("%s: %d %q; want 200 %q", tc.name, got.status, got.cacheStatus, tc.status)
		}
	}
	if code, _ := p.purge(t, `{"keys": ["b"]}`); code != 200 {
		t.Fatal("purge b")
	}
	if got := p.get(t, "/tags?tags=a,a,b,a,b"); strings.Contains(got.cacheStatus, "hit") {
		t.Errorf("the deduplicated page escaped its tag's purge: %q", got.cacheStatus)
	}
}
