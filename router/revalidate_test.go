package router

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// staleSite is a backend for the revalidation and stale-if-error tests:
// pages with validators that answer conditional requests with 304, and a
// switch that makes it fail (503, or connections cut).
type staleSite struct {
	*httptest.Server
	mu          sync.Mutex
	renders     map[string]int // full answers, by path
	notModified map[string]int // 304 answers, by path
	conditional []string       // If-None-Match values of requests, in order
	cookies     int            // requests that carried a Cookie or Authorization
	fail        string         // "", "503" or "cut"
	hits        int            // every request, failures included
}

func newStaleSite(t *testing.T) *staleSite {
	s := &staleSite{renders: map[string]int{}, notModified: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *staleSite) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits++
	if r.Header.Get("Cookie") != "" || r.Header.Get("Authorization") != "" {
		s.cookies++
	}
	switch s.fail {
	case "503":
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	case "cut":
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html")
	etag := ""
	switch r.URL.Path {
	case "/etag":
		h.Set("Cache-Control", "max-age=1")
		etag = `"v1"`
	case "/no-cache":
		h.Set("Cache-Control", "no-cache")
		etag = `"nc"`
	case "/aged":
		h.Set("Cache-Control", "max-age=3600")
		h.Set("Age", "3600")
		etag = `"aged"`
	case "/short":
		h.Set("Cache-Control", "max-age=1")
	case "/must-revalidate":
		h.Set("Cache-Control", "max-age=1, must-revalidate")
	case "/sie-3":
		h.Set("Cache-Control", "max-age=1, stale-if-error=3")
	}
	if etag != "" {
		h.Set("ETag", etag)
		s.conditional = append(s.conditional, r.Header.Get("If-None-Match"))
		if r.Header.Get("If-None-Match") == etag {
			s.notModified[r.URL.Path]++
			h.Set("X-Refreshed", strconv.Itoa(s.notModified[r.URL.Path]))
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	s.renders[r.URL.Path]++
	h.Set("X-Render", strconv.Itoa(s.renders[r.URL.Path]))
	w.Write([]byte("<p>render " + strconv.Itoa(s.renders[r.URL.Path]) + " of " + r.URL.Path + "</p>"))
}

func (s *staleSite) counts(path string) (renders, notModified int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renders[path], s.notModified[path]
}

func (s *staleSite) setFail(mode string) {
	s.mu.Lock()
	s.fail = mode
	s.mu.Unlock()
}

// staleStores runs f against the memory store and real memcached.
func staleStores(t *testing.T, f func(t *testing.T, store func(t *testing.T) pagecache.Store)) {
	t.Run("memory", func(t *testing.T) {
		f(t, mustMemory)
	})
	t.Run("memcached", func(t *testing.T) {
		addr := pagecachetest.Memcached(t)
		f(t, func(t *testing.T) pagecache.Store { return memcachedStore(t, addr) })
	})
}

func staleRouter(t *testing.T, s *staleSite, store pagecache.Store, staleIfError time.Duration) string {
	t.Helper()
	keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: pagecachetest.Prefix() + "{host}{uri}"})
	if err != nil {
		t.Fatal(err)
	}
	return startRouter(t, Options{Cache: &CacheOptions{
		Store: store, Keys: keys, MaxBodySize: 1 << 20,
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{StaleIfError: staleIfError,
			Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}}),
	}}, testBackendOptions(backendAddr(s.Server)))
}

// TestRevalidation: a stale page with a validator is refreshed with a
// conditional request that carries no credentials; the 304 updates the
// stored headers and freshness (RFC 9111 sections 4.3.1, 4.3.4) and the
// page is not rendered again.
func TestRevalidation(t *testing.T) {
	staleStores(t, func(t *testing.T, store func(*testing.T) pagecache.Store) {
		s := newStaleSite(t)
		base := staleRouter(t, s, store(t), time.Hour)
		first := fetch(t, "GET", base+"/etag")
		if first.cacheStatus != statusMissStored {
			t.Fatalf("first request: %q", first.cacheStatus)
		}
		time.Sleep(1100 * time.Millisecond) // max-age=1 is over
		re := fetch(t, "GET", base+"/etag", "Cookie", "cart=3")
		if !statusIs(re.cacheStatus, statusRevalidated) || re.body != first.body || re.header.Get("X-Refreshed") != "1" || re.header.Get("X-Render") != "1" {
			t.Fatalf("stale: %q %q X-Refreshed %q X-Render %q; want the stored body, revalidated, with the 304's header",
				re.cacheStatus, re.body, re.header.Get("X-Refreshed"), re.header.Get("X-Render"))
		}
		hit := fetch(t, "GET", base+"/etag")
		if hit.cacheStatus != statusHit || hit.header.Get("X-Refreshed") != "1" || hit.header.Get("ETag") != `"v1"` {
			t.Errorf("after the 304: %q X-Refreshed %q; want a hit with the updated headers", hit.cacheStatus, hit.header.Get("X-Refreshed"))
		}
		if renders, revalidated := s.counts("/etag"); renders != 1 || revalidated != 1 {
			t.Errorf("backend: %d renders, %d 304s; want 1 and 1", renders, revalidated)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cookies != 0 || len(s.conditional) != 2 || s.conditional[0] != "" || s.conditional[1] != `"v1"` {
			t.Errorf("backend saw %d requests with credentials, If-None-Match %q; want none, then the stored ETag", s.cookies, s.conditional)
		}
	})
}

// TestNoCacheIsRevalidatedEachTime: a no-cache response with a validator
// is stored, but every use asks the backend first (RFC 9111 section
// 5.2.2.4): never a hit, one render; and a response as old as its
// lifetime (Age: 3600, max-age=3600) is never a hit either.
func TestNoCacheIsRevalidatedEachTime(t *testing.T) {
	s := newStaleSite(t)
	base := staleRouter(t, s, mustMemory(t), time.Hour)
	for _, path := range []string{"/no-cache", "/aged"} {
		first := fetch(t, "GET", base+path)
		for i := range 3 {
			a := fetch(t, "GET", base+path)
			if !statusIs(a.cacheStatus, statusRevalidated) || a.body != first.body {
				t.Errorf("%s request %d: %q %q; want revalidated, never a hit", path, i+2, a.cacheStatus, a.body)
			}
		}
		if renders, revalidated := s.counts(path); renders != 1 || revalidated != 3 {
			t.Errorf("%s: %d renders, %d 304s; want 1 and 3", path, renders, revalidated)
		}
	}
}

// TestStaleIfError: while the backend fails (5xx, or connections cut), an
// expired page is served stale within stale_if_error, to visitors with
// cookies too; not once the response's own stale-if-error is over, and
// never a must-revalidate page (RFC 5861 section 4, RFC 9111 section
// 4.2.4).
func TestStaleIfError(t *testing.T) {
	staleStores(t, func(t *testing.T, store func(*testing.T) pagecache.Store) {
		s := newStaleSite(t)
		base := staleRouter(t, s, store(t), time.Hour)
		pages := map[string]string{}
		filled := time.Now()
		for _, p := range []string{"/short", "/must-revalidate", "/sie-3", "/etag"} {
			pages[p] = fetch(t, "GET", base+p).body
		}
		time.Sleep(1100 * time.Millisecond)
		for _, mode := range []string{"503", "cut"} {
			s.setFail(mode)
			for _, p := range []string{"/short", "/sie-3", "/etag"} {
				for _, cookie := range []string{"", "cart=3"} {
					a := fetch(t, "GET", base+p, "Cookie", cookie)
					if a.status != 200 || !strings.HasPrefix(a.cacheStatus, statusStaleIfError+"; ttl=-") || a.body != pages[p] {
						t.Errorf("%s, backend %s, cookie %q: %d %q %q; want the stale page", p, mode, cookie, a.status, a.cacheStatus, a.body)
					}
					if age, _ := strconv.Atoi(a.header.Get("Age")); age < 1 {
						t.Errorf("%s: stale with Age %q", p, a.header.Get("Age"))
					}
				}
			}
			if a := fetch(t, "GET", base+"/must-revalidate"); a.status < 500 || statusIs(a.cacheStatus, statusStaleIfError) {
				t.Errorf("must-revalidate, backend %s: %d %q; want the backend's failure, never stale", mode, a.status, a.cacheStatus)
			}
		}
		time.Sleep(time.Until(filled.Add(4200 * time.Millisecond))) // max-age=1 and stale-if-error=3 are over for /sie-3
		s.setFail("503")
		if a := fetch(t, "GET", base+"/sie-3"); a.status != 503 {
			t.Errorf("past the response's stale-if-error: %d %q; want the 503", a.status, a.cacheStatus)
		}
		if a := fetch(t, "GET", base+"/short"); !statusIs(a.cacheStatus, statusStaleIfError) {
			t.Errorf("within stale_if_error: %q; want stale", a.cacheStatus)
		}
		s.setFail("")
		if a := fetch(t, "GET", base+"/short"); !statusIs(a.cacheStatus, statusStaleStored) || a.body == pages["/short"] {
			t.Errorf("backend back: %q %q; want a new render stored", a.cacheStatus, a.body)
		}
	})
}

// TestStaleIfErrorOff: with stale_if_error "0s" and no directive, a failing
// backend's answer is what the visitor gets.
func TestStaleIfErrorOff(t *testing.T) {
	s := newStaleSite(t)
	base := staleRouter(t, s, mustMemory(t), 0)
	fetch(t, "GET", base+"/short")
	time.Sleep(1100 * time.Millisecond)
	s.setFail("503")
	if a := fetch(t, "GET", base+"/short"); a.status != 503 {
		t.Errorf("stale_if_error off: %d %q; want the 503", a.status, a.cacheStatus)
	}
}

func mustMemory(t *testing.T) pagecache.Store {
	m, err := pagecache.NewMemory(pagecache.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// statusIs reports whether a Cache-Status is want, with or without RFC
// 9211's ttl parameter.
func statusIs(got, want string) bool {
	return got == want || strings.HasPrefix(got, want+"; ttl=")
}

// TestRefreshBackoff: while the backend fails, stale hits in grace do not
// each start a refresh: after a refresh fails, the page's next one waits
// (1 s, doubling), so a burst of stale hits costs the backend one request.
func TestRefreshBackoff(t *testing.T) {
	s := newStaleSite(t)
	keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: "{host}{uri}"})
	if err != nil {
		t.Fatal(err)
	}
	base := startRouter(t, Options{Cache: &CacheOptions{
		Store: mustMemory(t), Keys: keys, MaxBodySize: 1 << 20,
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Grace: time.Minute,
			Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}}),
	}}, testBackendOptions(backendAddr(s.Server)))
	fetch(t, "GET", base+"/short")
	time.Sleep(1100 * time.Millisecond)
	s.setFail("503")
	start := backendHits(s)
	for range 40 {
		if a := fetch(t, "GET", base+"/short"); a.cacheStatus != statusStale {
			t.Fatalf("in grace: %q; want the stale page", a.cacheStatus)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if failing := backendHits(s) - start; failing > 2 {
		t.Errorf("40 stale hits in 0.4 s with the backend failing: %d refreshes reached it; want 1 (2 at most)", failing)
	}
}

// backendHits counts every request the stale site answered, failures
// included.
func backendHits(s *staleSite) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}
