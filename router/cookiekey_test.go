package router

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// TestCacheKeyCookie: with {cookie:lang} in the key, each language has its
// page, rendered by a fill that carries that one cookie and no other (the
// visitor's session cookie, tracking cookies stay out); a visitor without
// the cookie, or with it empty, shares the page rendered without it; a
// value the key refuses is forwarded, never cached (detail=key-cookie).
func TestCacheKeyCookie(t *testing.T) {
	stores := map[string]func(t *testing.T) pagecache.Store{
		"memory":    func(*testing.T) pagecache.Store { m, _ := pagecache.NewMemory(pagecache.MemoryOptions{}); return m },
		"memcached": func(t *testing.T) pagecache.Store { return memcachedStore(t, pagecachetest.Memcached(t)) },
	}
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var fills []string // the Cookie header of each fill
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.UserAgent() == fillUserAgent {
					mu.Lock()
					fills = append(fills, r.Header.Get("Cookie"))
					mu.Unlock()
				}
				lang := "default"
				if c, err := r.Cookie("lang"); err == nil {
					lang = c.Value
				}
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Vary", "Cookie")
				fmt.Fprintf(w, "page in %s; cookies=[%s]", lang, r.Header.Get("Cookie"))
			}))
			t.Cleanup(backend.Close)
			keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: pagecachetest.Prefix() + "{host}{uri}|{cookie:lang}"})
			if err != nil {
				t.Fatal(err)
			}
			base := startRouter(t, Options{PurgeAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Cache: &CacheOptions{
				Store:       store(t),
				Keys:        keys,
				Policy:      pagecache.NewPolicy(pagecache.PolicyOptions{Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}}),
				MaxBodySize: 1 << 20,
			}}, testBackendOptions(backendAddr(backend)))

			// hitFor waits for the background fill a visitor with cookies
			// starts, then returns the hit another visitor gets.
			hitFor := func(path string, header ...string) answer {
				t.Helper()
				var a answer
				for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					if a = fetch(t, "GET", base+path, header...); a.cacheStatus == "userrouter; hit" || time.Now().After(deadline) {
						return a
					}
				}
			}
			// A visitor with a session cookie the store does not know
			// (anonymous), a tracker and lang=fr: forwarded as they are,
			// and a fill that carries lang=fr alone.
			first := fetch(t, "GET", base+"/a", "Cookie", "sessionid=zz; tracker=t1; lang=fr")
			if !strings.Contains(first.body, "page in fr") {
				t.Errorf("first visitor: %q", first.body)
			}
			fr := hitFor("/a", "Cookie", `lang="fr"; other=1`)
			if fr.cacheStatus != "userrouter; hit" || fr.body != "page in fr; cookies=[lang=fr]" {
				t.Errorf("French visitor: %q %q; want a hit on the page rendered with lang=fr alone", fr.cacheStatus, fr.body)
			}
			en := hitFor("/a", "Cookie", "lang=en-GB")
			if en.cacheStatus != "userrouter; hit" || en.body != "page in en-GB; cookies=[lang=en-GB]" {
				t.Errorf("English visitor: %q %q", en.cacheStatus, en.body)
			}
			fetch(t, "GET", base+"/a")
			for _, cookie := range []string{"", "lang=", "tracker=t2"} {
				var h []string
				if cookie != "" {
					h = []string{"Cookie", cookie}
				}
				if a := hitFor("/a", h...); a.cacheStatus != "userrouter; hit" || a.body != "page in default; cookies=[]" {
					t.Errorf("visitor with %q: %q %q; want the page rendered without cookies", cookie, a.cacheStatus, a.body)
				}
			}
			for _, cookie := range []string{"lang=fr<script>", "lang=fr; lang=en", "lang=" + strings.Repeat("x", 65)} {
				if a := fetch(t, "GET", base+"/a", "Cookie", cookie); a.cacheStatus != "userrouter; fwd=bypass; detail=key-cookie" {
					t.Errorf("%q: %q; want detail=key-cookie", cookie, a.cacheStatus)
				}
			}
			// A purge by URL reaches the page of every cookie value.
			if a := fetch(t, "PURGE", base+"/a"); a.status != 200 {
				t.Fatalf("PURGE: %d %q", a.status, a.body)
			}
			for _, cookie := range []string{"lang=fr", "lang=en-GB", ""} {
				var h []string
				if cookie != "" {
					h = []string{"Cookie", cookie}
				}
				if a := fetch(t, "GET", base+"/a", h...); a.cacheStatus == "userrouter; hit" {
					t.Errorf("%q after a purge of the URL: %q; want a miss", cookie, a.cacheStatus)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, c := range fills {
				if c != "" && c != "lang=fr" && c != "lang=en-GB" {
					t.Errorf("a fill carried Cookie %q; want lang alone, or nothing", c)
				}
			}
			if len(fills) < 3 {
				t.Errorf("%d fills (%q); want one per language and one without", len(fills), fills)
			}
		})
	}
}

// TestCacheKeyCookieNotSession: a key template naming the session cookie
// is refused.
func TestCacheKeyCookieNotSession(t *testing.T) {
	keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: "page:{host}{uri}|{cookie:sessionid}"})
	if err != nil {
		t.Fatal(err)
	}
	store, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	b, _ := NewBackends(testBackendOptions("127.0.0.1:1"))
	_, err = New(Options{Backends: b, Keys: testKeys, Cache: &CacheOptions{Store: store, Keys: keys, Policy: pagecache.NewPolicy(pagecache.PolicyOptions{})}})
	if err == nil || !strings.Contains(err.Error(), "session cookie") {
		t.Errorf("got %v; want an error about the session cookie", err)
	}
}
