package router

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// newWriteSite is a site whose POST, PUT, PATCH and DELETE answer as the
// request asks: the status in X-Answer-Status (default 200), and the
// X-Answer-Location and X-Answer-Content-Location values as Location and
// Content-Location. They render nothing; GET and HEAD render pages as
// site does, counting renders.
func newWriteSite(t *testing.T) *site {
	s := &site{count: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" || r.Method == "HEAD" {
			s.serve(w, r)
			return
		}
		if v := r.Header.Get("X-Answer-Location"); v != "" {
			w.Header().Set("Location", v)
		}
		if v := r.Header.Get("X-Answer-Content-Location"); v != "" {
			w.Header().Set("Content-Location", v)
		}
		status := http.StatusOK
		if v := r.Header.Get("X-Answer-Status"); v != "" {
			status, _ = strconv.Atoi(v)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(s.Close)
	return s
}

// forEachStore runs test on the memory store and on the test memcached.
func forEachStore(t *testing.T, test func(t *testing.T, newStore func(*testing.T) pagecache.Store)) {
	t.Run("memory", func(t *testing.T) {
		test(t, func(t *testing.T) pagecache.Store {
			m, err := pagecache.NewMemory(pagecache.MemoryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return m
		})
	})
	t.Run("memcached", func(t *testing.T) {
		addr := pagecachetest.Memcached(t)
		test(t, func(t *testing.T) pagecache.Store { return memcachedStore(t, addr) })
	})
}

// invalidationRouter serves a cacheRouter in front of s with the given
// invalidation mode, and returns a function sending method to a path on
// host example.com, and the router's counters.
func invalidationRouter(t *testing.T, s *site, store pagecache.Store, mode Invalidation, tweak func(*CacheOptions)) (func(method, path string, header ...string) answer, *Stats) {
	st := new(Stats)
	base := cacheRouter(t, s, store, Options{Stats: st}, func(co *CacheOptions) {
		co.UnsafeInvalidation = mode
		if tweak != nil {
			tweak(co)
		}
	})
	return func(method, path string, header ...string) answer {
		t.Helper()
		return fetch(t, method, base+path, append([]string{"Host", "example.com"}, header...)...)
	}, st
}

// cached fetches path until it is a hit, and returns the hit.
func cached(t *testing.T, do func(method, path string, header ...string) answer, path string) answer {
	t.Helper()
	do("GET", path)
	a := do("GET", path)
	if a.cacheStatus != statusHit {
		t.Fatalf("GET %s: %q; want a hit before the write", path, a.cacheStatus)
	}
	return a
}

// TestUnsafeInvalidation: a 2xx or 3xx answer to a POST, PUT, PATCH or
// DELETE invalidates the page of its URL before it is relayed, so the GET
// right after re-renders; whoever sent it, identified visitors and
// requests bypassed for their cookies or Authorization too. An error
// answer invalidates nothing.
func TestUnsafeInvalidation(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) pagecache.Store) {
		s := newWriteSite(t)
		do, st := invalidationRouter(t, s, newStore(t), InvalidateHard, func(co *CacheOptions) { co.BypassCookies = []string{"messages"} })
		for i, tc := range []struct {
			name, method string
			header       []string
			invalidates  bool
		}{
			{"POST 200", "POST", nil, true},
			{"PUT 201", "PUT", []string{"X-Answer-Status", "201"}, true},
			{"PATCH 204", "PATCH", []string{"X-Answer-Status", "204"}, true},
			{"DELETE 200", "DELETE", nil, true},
			{"POST 303", "POST", []string{"X-Answer-Status", "303"}, true},
			{"POST, identified visitor", "POST", []string{"Cookie", "sessionid=" + strings.Repeat("a", 32)}, true},
			{"POST, bypass cookie", "POST", []string{"Cookie", "messages=hi"}, true},
			{"POST, Authorization", "POST", []string{"Authorization", "Basic YTpi"}, true},
			{"POST 400", "POST", []string{"X-Answer-Status", "400"}, false},
			{"POST 403", "POST", []string{"X-Answer-Status", "403"}, false},
			{"DELETE 404", "DELETE", []string{"X-Answer-Status", "404"}, false},
			{"POST 500", "POST", []string{"X-Answer-Status", "500"}, false},
			{"PUT 503", "PUT", []string{"X-Answer-Status", "503"}, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				path := "/item/" + strconv.Itoa(i)
				old := cached(t, do, path)
				before := st.UnsafeInvalidations.Load()
				w := do(tc.method, path, tc.header...)
				if want, _ := strconv.Atoi(headerValue(tc.header, "X-Answer-Status", "200")); w.status != want {
					t.Fatalf("%s: got status %d; want the backend's %d", tc.method, w.status, want)
				}
				got := do("GET", path)
				moved := st.UnsafeInvalidations.Load() - before
				switch {
				case tc.invalidates && (got.cacheStatus != statusMissStored || got.body == old.body || s.requests(path) != 2):
					t.Errorf("GET after it: %q %q with %d renders; want a fresh render", got.cacheStatus, got.body, s.requests(path))
				case !tc.invalidates && (got.cacheStatus != statusHit || got.body != old.body):
					t.Errorf("GET after it: %q %q; want the stored page", got.cacheStatus, got.body)
				}
				if want := map[bool]uint64{true: 1, false: 0}[tc.invalidates]; moved != want {
					t.Errorf("UnsafeInvalidations moved by %d; want %d", moved, want)
				}
			})
		}
		// A safe method leaves pages alone.
		old := cached(t, do, "/safe")
		do("OPTIONS", "/safe")
		if got := do("GET", "/safe"); got.cacheStatus != statusHit || got.body != old.body {
			t.Errorf("GET after OPTIONS: %q; want the stored page", got.cacheStatus)
		}
	})
}

func headerValue(h []string, name, def string) string {
	for i := 0; i+1 < len(h); i += 2 {
		if h[i] == name {
			return h[i+1]
		}
	}
	return def
}

// TestUnsafeInvalidationLocations: the URLs an answer names in Location
// and Content-Location are invalidated too when they are on the request's
// host (relative references resolved against the request URL; absolute
// ones whose host, case aside, is the request's); another host's, another
// port's or another scheme's are not.
func TestUnsafeInvalidationLocations(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) pagecache.Store) {
		s := newWriteSite(t)
		do, st := invalidationRouter(t, s, newStore(t), InvalidateHard, nil)
		for _, tc := range []struct {
			name, post, location, contentLocation string
			gone, kept                            []string // pages invalidated, and left
		}{
			{"relative", "/forms/new", "/articles/1", "../articles/2?b=1&a=2", []string{"/forms/new", "/articles/1", "/articles/2?b=1&a=2"}, nil},
			{"relative to the directory", "/blog/post/comment", "edit", "", []string{"/blog/post/edit"}, []string{"/blog/edit"}},
			{"query only", "/search?q=old", "?q=new", "", []string{"/search?q=old", "/search?q=new"}, nil},
			{"absolute, same host", "/f1", "http://EXAMPLE.com/abs1", "https://example.com/abs2", []string{"/abs1", "/abs2"}, nil},
			{"scheme-relative, same host", "/f2", "//example.com/abs3", "", []string{"/abs3"}, nil},
			{"another host", "/f3", "http://other.example/x1", "//evil.example/x2", []string{"/f3"}, []string{"/x1", "/x2"}},
			{"another port", "/f4", "http://example.com:8080/x3", "", nil, []string{"/x3"}},
			{"another scheme", "/f5", "ftp://example.com/x4", "javascript:alert(1)", nil, []string{"/x4"}},
			{"too long", "/f6", "/x5?" + strings.Repeat("a", 2100), "/x6#" + strings.Repeat("f", 2100), nil, []string{"/x5", "/x6"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				old := map[string]answer{}
				for _, p := range append(append([]string{tc.post}, tc.gone...), tc.kept...) {
					if _, ok := old[p]; !ok {
						old[p] = cached(t, do, p)
					}
				}
				before := st.UnsafeInvalidations.Load()
				w := do("POST", tc.post, "X-Answer-Status", "303", "X-Answer-Location", tc.location, "X-Answer-Content-Location", tc.contentLocation)
				if w.status != 303 || w.header.Get("Location") != tc.location {
					t.Fatalf("POST: %d %q; want the backend's answer relayed", w.status, w.header.Get("Location"))
				}
				for _, p := range tc.gone {
					if got := do("GET", p); got.cacheStatus != statusMissStored || got.body == old[p].body {
						t.Errorf("GET %s: %q; want it re-rendered", p, got.cacheStatus)
					}
				}
				for _, p := range tc.kept {
					if got := do("GET", p); got.cacheStatus != statusHit || got.body != old[p].body {
						t.Errorf("GET %s: %q; want the stored page", p, got.cacheStatus)
					}
				}
				want := len(tc.gone)
				if !slices.Contains(tc.gone, tc.post) {
					want++ // the request's own URL, whose page the test did not look at again
				}
				if moved := st.UnsafeInvalidations.Load() - before; moved != uint64(want) {
					t.Errorf("UnsafeInvalidations moved by %d; want %d", moved, want)
				}
			})
		}
		// A Location equal to the request URL is invalidated once.
		cached(t, do, "/same")
		before := st.UnsafeInvalidations.Load()
		do("POST", "/same", "X-Answer-Location", "/same", "X-Answer-Content-Location", "http://example.com/same")
		if moved := st.UnsafeInvalidations.Load() - before; moved != 1 {
			t.Errorf("a Location naming the request URL: UnsafeInvalidations moved by %d; want 1", moved)
		}
	})
}

// TestUnsafeInvalidationSoft: in soft mode the page becomes stale: served
// (detail=stale) while one background request refreshes it.
func TestUnsafeInvalidationSoft(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) pagecache.Store) {
		s := newWriteSite(t)
		do, _ := invalidationRouter(t, s, newStore(t), InvalidateSoft, nil)
		old := cached(t, do, "/soft")
		do("POST", "/soft")
		if got := do("GET", "/soft"); got.cacheStatus != statusStale || got.body != old.body {
			t.Fatalf("GET after a POST: %q %q; want the old page, stale", got.cacheStatus, got.body)
		}
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got := do("GET", "/soft")
			if got.cacheStatus == statusHit && got.body != old.body {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no refreshed page; last %q %q", got.cacheStatus, got.body)
			}
		}
		if n := s.requests("/soft"); n != 2 {
			t.Errorf("%d renders; want 2 (one refresh)", n)
		}
	})
}

// TestUnsafeInvalidationOff: "off" invalidates nothing.
func TestUnsafeInvalidationOff(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) pagecache.Store) {
		s := newWriteSite(t)
		do, st := invalidationRouter(t, s, newStore(t), InvalidateOff, nil)
		old := cached(t, do, "/kept")
		cached(t, do, "/kept-too")
		do("POST", "/kept", "X-Answer-Location", "/kept-too")
		for _, p := range []string{"/kept", "/kept-too"} {
			if got := do("GET", p); got.cacheStatus != statusHit || (p == "/kept" && got.body != old.body) {
				t.Errorf("GET %s after a POST: %q; want the stored page", p, got.cacheStatus)
			}
		}
		if n := st.UnsafeInvalidations.Load(); n != 0 {
			t.Errorf("UnsafeInvalidations = %d; want 0", n)
		}
	})
}

// TestUnsafeInvalidationHosts: with cache.hosts, a write to a host the
// cache does not serve touches no page; one to a served host does.
func TestUnsafeInvalidationHosts(t *testing.T) {
	s := newWriteSite(t)
	store, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	do, st := invalidationRouter(t, s, store, InvalidateHard, func(co *CacheOptions) { co.Hosts = []string{"Example.com"} })
	cached(t, do, "/h")
	do("POST", "/h", "Host", "other.example")
	if n := st.UnsafeInvalidations.Load(); n != 0 {
		t.Errorf("a POST to another host: UnsafeInvalidations = %d; want 0", n)
	}
	do("POST", "/h", "Host", "EXAMPLE.COM")
	if got := do("GET", "/h"); got.cacheStatus != statusMissStored || st.UnsafeInvalidations.Load() != 1 {
		t.Errorf("GET after a POST to the cached host: %q, %d invalidations; want a re-render, 1", got.cacheStatus, st.UnsafeInvalidations.Load())
	}
}

// TestUnsafeInvalidationAcrossInstances: two routers share a memcached; a
// POST through one invalidates the page for the other, under both
// schemes when the key has {scheme}.
func TestUnsafeInvalidationAcrossInstances(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newWriteSite(t)
	prefix := pagecachetest.Prefix()
	keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: prefix + "{scheme}://{host}{uri}"})
	if err != nil {
		t.Fatal(err)
	}
	same := func(co *CacheOptions) { co.Keys, co.Prefix = keys, prefix }
	a, _ := invalidationRouter(t, s, memcachedStore(t, addr), InvalidateHard, same)
	b, _ := invalidationRouter(t, s, memcachedStore(t, addr), InvalidateHard, same)
	old := cached(t, a, "/shared")
	if got := b("GET", "/shared"); got.cacheStatus != statusHit || got.body != old.body {
		t.Fatalf("the other instance: %q; want the shared page", got.cacheStatus)
	}
	a("POST", "/shared")
	if got := b("GET", "/shared"); got.cacheStatus != statusMissStored || got.body == old.body {
		t.Errorf("the other instance after a POST: %q %q; want a re-render", got.cacheStatus, got.body)
	}
}

// TestUnsafeInvalidationStoreDown: a store that fails does not fail the
// write: the backend's answer is relayed and the error counted.
func TestUnsafeInvalidationStoreDown(t *testing.T) {
	mc := pagecachetest.Start(t)
	s := newWriteSite(t)
	do, st := invalidationRouter(t, s, memcachedStore(t, mc.Addr), InvalidateHard, nil)
	cached(t, do, "/down")
	mc.Stop()
	w := do("POST", "/down", "X-Answer-Status", "201", "X-Answer-Location", "/down/1")
	if w.status != 201 || w.header.Get("Location") != "/down/1" {
		t.Errorf("POST with the store down: %d %q; want the backend's 201", w.status, w.header.Get("Location"))
	}
	if st.StoreErrors.Load() != 1 || st.UnsafeInvalidations.Load() != 0 {
		t.Errorf("%d store errors, %d invalidations; want 1 (the first failure ends the invalidation), 0", st.StoreErrors.Load(), st.UnsafeInvalidations.Load())
	}
}

func TestSameHostTarget(t *testing.T) {
	req := &pagecache.KeyInput{Host: []byte("example.com:8443"), Path: []byte("/a/b%20c/d"), Query: []byte("x=1")}
	for _, tc := range []struct {
		name, value string
		want        string // path?query, or "" for none
	}{
		{"absolute path", "/new", "/new"},
		{"relative", "e", "/a/b%20c/e"},
		{"dot segments", "../../f?g=2", "/f?g=2"},
		{"query only", "?y=2", "/a/b%20c/d?y=2"},
		{"fragment only", "#top", "/a/b%20c/d?x=1"},
		{"empty query kept out", "/p?", "/p"},
		{"escaped", "/caf%C3%A9/%2F", "/caf%C3%A9/%2F"},
		{"absolute", "https://Example.COM:8443/g", "/g"},
		{"absolute, no path", "http://example.com:8443", "/"},
		{"absolute with userinfo", "http://u:p@example.com:8443/h", "/h"},
		{"scheme-relative", "//example.com:8443/i", "/i"},
		{"default port differs", "http://example.com/j", ""},
		{"another host", "http://example.org:8443/k", ""},
		{"another scheme", "ftp://example.com:8443/l", ""},
		{"opaque", "mailto:a@example.com", ""},
		{"scheme without host", "http:/m", ""},
		{"bad host", "http://exa%6dple.com:8443/n", ""},
		{"does not parse", "http://[::1/o", ""},
		{"control character", "/p\x7fq", ""},
		{"empty", "", ""},
		{"too long", "/" + strings.Repeat("r", 2048), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, ok := sameHostTarget(req, []byte(tc.value))
			got := ""
			if ok {
				got = string(in.Path)
				if len(in.Query) > 0 {
					got += "?" + string(in.Query)
				}
				if string(in.Host) != string(req.Host) {
					t.Errorf("host %q; want the request's", in.Host)
				}
			}
			if got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
}

func TestParseInvalidation(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Invalidation
		ok   bool
	}{{"hard", InvalidateHard, true}, {"soft", InvalidateSoft, true}, {"off", InvalidateOff, true}, {"Hard", 0, false}, {"", 0, false}} {
		got, err := ParseInvalidation(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseInvalidation(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("%v.String() = %q; want %q", got, got.String(), tc.in)
		}
	}
}

// FuzzSameHostTarget: whatever a backend sends, a target is on the
// request's host and has an origin-form path.
func FuzzSameHostTarget(f *testing.F) {
	for _, s := range []string{"/a", "b/../c", "http://example.com/x?y", "//example.com", "?q", "#f", "http://[::1]:80/", "%zz", "/" + strings.Repeat("a", 3000)} {
		f.Add(s)
	}
	req := &pagecache.KeyInput{Host: []byte("example.com"), Path: []byte("/p/q"), Query: []byte("r")}
	f.Fuzz(func(t *testing.T, v string) {
		in, ok := sameHostTarget(req, []byte(v))
		if !ok {
			return
		}
		if len(v) > maxInvalidationURL {
			t.Fatalf("%d bytes accepted", len(v))
		}
		if string(in.Host) != "example.com" || len(in.Path) == 0 || in.Path[0] != '/' {
			t.Fatalf("%q: host %q path %q", v, in.Host, in.Path)
		}
	})
}

func BenchmarkSameHostTarget(b *testing.B) {
	req := &pagecache.KeyInput{Host: []byte("example.com"), Path: []byte("/blog/post/comment"), Query: []byte("page=2")}
	v := []byte("../edit?saved=1")
	b.ReportAllocs()
	for b.Loop() {
		sameHostTarget(req, v)
	}
}
