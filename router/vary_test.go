package router

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// varySite renders pages that vary: /lang on Accept-Language, /ua on
// User-Agent, /cookie on Cookie, /auth on Authorization, /star on
// everything (Vary: *). A body names what the request carried and counts
// the renders of its path; the site records what each request carried.
type varySite struct {
	*httptest.Server
	mu       sync.Mutex
	renders  map[string]int
	requests []varyRequest
}

type varyRequest struct {
	path, lang, ua string
	credentials    bool // a Cookie or Authorization
}

func newVarySite(t *testing.T) *varySite {
	s := &varySite{renders: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests = append(s.requests, varyRequest{path: r.URL.Path, lang: r.Header.Get("Accept-Language"), ua: r.UserAgent(),
			credentials: r.Header.Get("Cookie") != "" || r.Header.Get("Authorization") != ""})
		s.renders[r.URL.Path]++
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("Cache-Control", "max-age=60")
		var seen string
		switch r.URL.Path {
		case "/lang":
			h.Set("Vary", "Accept-Language")
			seen = "lang=" + r.Header.Get("Accept-Language")
		case "/ua":
			h.Set("Vary", "Accept-Encoding, User-Agent")
			seen = "ua=" + r.UserAgent()
		case "/cookie":
			h.Set("Vary", "Cookie")
			seen = "cookie=" + r.Header.Get("Cookie")
		case "/auth":
			h.Set("Vary", "Authorization")
			seen = "authorization=" + r.Header.Get("Authorization")
		case "/star":
			h.Set("Vary", "*")
		}
		w.Write([]byte(seen + " render " + strconv.Itoa(s.renders[r.URL.Path])))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *varySite) rendered(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renders[path]
}

// all returns the requests the site got, in order.
func (s *varySite) all() []varyRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func varyRouter(t *testing.T, s *varySite, store pagecache.Store, maxVariants int) string {
	t.Helper()
	prefix := pagecachetest.Prefix()
	keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: prefix + "{host}{uri}", HashPrefix: prefix + "h:"})
	if err != nil {
		t.Fatal(err)
	}
	return startRouter(t, Options{
		Cache: &CacheOptions{Store: store, Keys: keys, Prefix: prefix, MaxBodySize: 1 << 20, MaxVariants: maxVariants,
			Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})},
		PurgeAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}, testBackendOptions(backendAddr(s.Server)))
}

// TestVaryVariants: a page that varies on Accept-Language is stored once
// per value, each served on hits to the visitors whose value (normalised:
// case, spaces) selects it, and a request without the header gets a
// variant of its own; fills carry the value and no credentials; a purge of
// the URL removes every variant.
func TestVaryVariants(t *testing.T) {
	staleStores(t, func(t *testing.T, store func(*testing.T) pagecache.Store) {
		s := newVarySite(t)
		base := varyRouter(t, s, store(t), 0)
		get := func(what, lang, wantStatus, wantBody string) {
			t.Helper()
			var h []string
			if lang != "-" {
				h = []string{"Accept-Language", lang}
			}
			a := fetch(t, "GET", base+"/lang", h...)
			if a.status != 200 || a.cacheStatus != wantStatus || a.body != wantBody || a.header.Get("Vary") != "Accept-Language" {
				t.Errorf("%s: %d %q %q Vary %q; want 200 %q %q Vary Accept-Language", what, a.status, a.cacheStatus, a.body, a.header.Get("Vary"), wantStatus, wantBody)
			}
		}
		// The first fill knows no variant: it carries no Accept-Language,
		// its answer is the variant of none, and the en visitor is served a
		// fill of their own.
		get("en, first", "en", statusMissStored, "lang=en render 2")
		get("fr, first", "fr", statusMissStored, "lang=fr render 3")
		get("en, again", "EN ", statusHit, "lang=en render 2")
		get("fr, again", "fr", statusHit, "lang=fr render 3")
		get("no Accept-Language", "-", statusHit, "lang= render 1")
		get("de", "de", statusMissStored, "lang=de render 4")
		if n := s.rendered("/lang"); n != 4 {
			t.Errorf("the backend rendered /lang %d times; want 4", n)
		}
		for _, r := range s.all() {
			if r.credentials || r.ua != fillUserAgent {
				t.Errorf("a fill carried credentials %v, User-Agent %q", r.credentials, r.ua)
			}
		}

		req, _ := http.NewRequest("PURGE", base+"/lang", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("PURGE: %d", resp.StatusCode)
		}
		for _, lang := range []string{"en", "fr", "de", "-"} {
			var h []string
			if lang != "-" {
				h = []string{"Accept-Language", lang}
			}
			// Each is rendered anew: the first fill after the purge writes
			// the marker and the variant of none again, which "-" then hits.
			a := fetch(t, "GET", base+"/lang", h...)
			_, render, _ := strings.Cut(a.body, " render ")
			if n, _ := strconv.Atoi(render); n <= 4 {
				t.Errorf("after the purge, %s: %q %q; want a render since the purge", lang, a.cacheStatus, a.body)
			}
		}
	})
}

// TestVaryUserAgent: a variant on User-Agent is rendered for the visitor's
// User-Agent (normalised), not the fill's fixed one.
func TestVaryUserAgent(t *testing.T) {
	s := newVarySite(t)
	base := varyRouter(t, s, mustMemory(t), 0)
	first := fetch(t, "GET", base+"/ua", "User-Agent", "Mozilla/5.0 (Test;  X)")
	hit := fetch(t, "GET", base+"/ua", "User-Agent", "mozilla/5.0 (test; x)")
	if first.cacheStatus != statusMissStored || first.body != "ua=mozilla/5.0 (test;x) render 2" || hit.cacheStatus != statusHit || hit.body != first.body {
		t.Errorf("got %q %q, then %q %q; want the visitor's variant stored, then a hit", first.cacheStatus, first.body, hit.cacheStatus, hit.body)
	}
	if a := fetch(t, "GET", base+"/ua", "User-Agent", "Other"); a.cacheStatus != statusMissStored || a.body != "ua=other render 3" {
		t.Errorf("another User-Agent: %q %q; want its own variant", a.cacheStatus, a.body)
	}
}

// TestVaryStar: Vary: * is never stored.
func TestVaryStar(t *testing.T) {
	staleStores(t, func(t *testing.T, store func(*testing.T) pagecache.Store) {
		s := newVarySite(t)
		base := varyRouter(t, s, store(t), 0)
		for i := range 3 {
			if a := fetch(t, "GET", base+"/star"); a.cacheStatus == statusHit || a.cacheStatus == statusMissStored {
				t.Errorf("request %d: %q; want never stored", i, a.cacheStatus)
			}
		}
		if a := fetch(t, "GET", base+"/star"); a.cacheStatus != statusNotStored[pagecache.ReasonVary] && a.cacheStatus != statusBypass[bypassUncacheable] {
			t.Errorf("Cache-Status %q; want detail=vary or uncacheable", a.cacheStatus)
		}
	})
}

// TestVaryBound: with max_variants 2, a third value is forwarded and not
// stored; the two stored are still hits.
func TestVaryBound(t *testing.T) {
	staleStores(t, func(t *testing.T, store func(*testing.T) pagecache.Store) {
		s := newVarySite(t)
		base := varyRouter(t, s, store(t), 2)
		fetch(t, "GET", base+"/lang")
		fetch(t, "GET", base+"/lang", "Accept-Language", "en")
		for i := range 2 {
			if a := fetch(t, "GET", base+"/lang", "Accept-Language", "fr"); a.cacheStatus != statusNotStored[pagecache.ReasonVariants] || a.body != "lang=fr render "+strconv.Itoa(3+i) {
				t.Errorf("fr, request %d: %q %q; want forwarded, detail=variants", i, a.cacheStatus, a.body)
			}
		}
		if a := fetch(t, "GET", base+"/lang", "Accept-Language", "en"); a.cacheStatus != statusHit || a.body != "lang=en render 2" {
			t.Errorf("en: %q %q; want the stored variant", a.cacheStatus, a.body)
		}
		if a := fetch(t, "GET", base+"/lang"); a.cacheStatus != statusHit || a.body != "lang= render 1" {
			t.Errorf("no Accept-Language: %q %q; want the stored variant", a.cacheStatus, a.body)
		}
	})
}

// TestVaryCookieAndAuthorization: Vary: Cookie does not split the page by
// cookie: the stored copy, rendered without cookies, serves every
// anonymous visitor; Vary: Authorization neither, and requests with
// Authorization never reach the cache.
func TestVaryCookieAndAuthorization(t *testing.T) {
	staleStores(t, func(t *testing.T, store func(*testing.T) pagecache.Store) {
		s := newVarySite(t)
		base := varyRouter(t, s, store(t), 0)
		if a := fetch(t, "GET", base+"/cookie"); a.cacheStatus != statusMissStored {
			t.Fatalf("first: %q", a.cacheStatus)
		}
		for _, c := range []string{"csrftoken=a", "csrftoken=b; theme=dark"} {
			if a := fetch(t, "GET", base+"/cookie", "Cookie", c); a.cacheStatus != statusHit || a.body != "cookie= render 1" {
				t.Errorf("Cookie %q: %q %q; want the one stored copy", c, a.cacheStatus, a.body)
			}
		}
		fetch(t, "GET", base+"/auth")
		if a := fetch(t, "GET", base+"/auth"); a.cacheStatus != statusHit || a.body != "authorization= render 1" {
			t.Errorf("/auth: %q %q; want a hit", a.cacheStatus, a.body)
		}
		if a := fetch(t, "GET", base+"/auth", "Authorization", "Bearer x"); a.cacheStatus != statusBypass[bypassAuthorization] || a.body != "authorization=Bearer x render 2" {
			t.Errorf("/auth with Authorization: %q %q; want forwarded", a.cacheStatus, a.body)
		}
	})
}

// TestVaryFillsCarryNoCredentials: a visitor with cookies gets their own
// answer while a twin without credentials fills their variant in the
// background; only the visitors' own requests carried a Cookie or
// Authorization.
func TestVaryFillsCarryNoCredentials(t *testing.T) {
	s := newVarySite(t)
	base := varyRouter(t, s, mustMemory(t), 0)
	fetch(t, "GET", base+"/lang") // the marker
	a := fetch(t, "GET", base+"/lang", "Accept-Language", "it", "Cookie", "csrftoken=x")
	if a.cacheStatus != statusMissBackground || a.body != "lang=it render 2" && a.body != "lang=it render 3" {
		t.Fatalf("with cookies: %q %q; want forwarded, filled in the background", a.cacheStatus, a.body)
	}
	var hit answer
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if hit = fetch(t, "GET", base+"/lang", "Accept-Language", "it"); hit.cacheStatus == statusHit {
			break
		}
	}
	if hit.cacheStatus != statusHit || !strings.HasPrefix(hit.body, "lang=it render ") {
		t.Errorf("it, after the background fill: %q %q; want a hit on the variant", hit.cacheStatus, hit.body)
	}
	fetch(t, "GET", base+"/lang", "Accept-Language", "it", "Authorization", "Basic eDp5")
	own := 0
	for _, r := range s.all() {
		switch {
		case r.ua == fillUserAgent && r.credentials:
			t.Errorf("a fill carried credentials: %+v", r)
		case r.ua != fillUserAgent:
			own++
			if !r.credentials {
				t.Errorf("a visitor's own request without credentials reached the backend: %+v", r)
			}
		}
	}
	if own != 2 {
		t.Errorf("%d visitors' own requests; want 2 (the one with a cookie, the one with Authorization)", own)
	}
}
