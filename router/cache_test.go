package router

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// site is a backend for cache tests. Every page it renders includes the
// Cookie header it received, so a page made for a visitor with cookies
// can be recognized wherever it ends up.
type site struct {
	*httptest.Server
	mu    sync.Mutex
	count map[string]int
}

func newSite(t *testing.T) *site {
	s := &site{count: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *site) requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[path]
}

func (s *site) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.count[r.URL.Path]++
	n := s.count[r.URL.Path]
	s.mu.Unlock()
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Backend-Only", "not stored")
	body := fmt.Sprintf("<p>%s #%d</p><p>cookie=[%s]</p>", r.URL.RequestURI(), n, r.Header.Get("Cookie"))
	switch p := r.URL.Path; {
	case p == "/cart":
		h.Set("Cache-Control", "private")
		body = "<p>your cart: " + r.Header.Get("Cookie") + "</p>"
	case p == "/account":
		if r.Header.Get("Cookie") != "" {
			body = "<p>personal page of " + r.Header.Get("Cookie") + "</p>"
		}
	case p == "/set-cookie":
		http.SetCookie(w, &http.Cookie{Name: "tracker", Value: "t1"})
	case p == "/csrf":
		http.SetCookie(w, &http.Cookie{Name: "csrftoken", Value: "c1"})
	case p == "/private":
		h.Set("Cache-Control", "private, max-age=60")
	case p == "/no-store":
		h.Set("Cache-Control", "no-store")
	case p == "/big":
		body = strings.Repeat("b", 2<<20)
	case p == "/error":
		w.WriteHeader(500)
	case p == "/redirect-302":
		h.Set("Location", "/page")
		w.WriteHeader(302)
	case p == "/moved":
		h.Set("Location", "/page")
		w.WriteHeader(301)
	case p == "/vary-star":
		h.Set("Vary", "*")
	case p == "/slow":
		time.Sleep(300 * time.Millisecond)
	case p == "/short":
		h.Set("Cache-Control", "max-age=1, stale-while-revalidate=30")
	case p == "/etag":
		h.Set("ETag", `"v1"`)
		h.Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
	case p == "/gzip":
		h.Set("Vary", "Accept-Encoding")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			h.Set("Content-Encoding", "gzip")
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			io.WriteString(zw, body)
			zw.Close()
			body = b.String()
		}
	}
	if r.Header.Get("Authorization") != "" {
		body += "<p>authorized</p>"
	}
	if v := r.Header.Get("X-Visitor"); v != "" {
		body += "<p>visitor " + v + "</p>"
	}
	io.WriteString(w, body)
}

// cacheRouter serves a Router with a page cache on store in front of s.
func cacheRouter(t *testing.T, s *site, store pagecache.Store, o Options, tweak func(*CacheOptions)) string {
	t.Helper()
	keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: pagecachetest.Prefix() + "{host}{uri}", IgnoreQueryParams: []string{"utm_*"}})
	if err != nil {
		t.Fatal(err)
	}
	co := &CacheOptions{
		Store: store,
		Keys:  keys,
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Grace: 30 * time.Second, Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true},
			StripSetCookies: []string{"csrftoken"}, DropHeaders: []string{"X-Backend-Only"}}),
		MaxBodySize: 1 << 20,
	}
	if tweak != nil {
		tweak(co)
	}
	o.Cache = co
	return startRouter(t, o, testBackendOptions(backendAddr(s.Server)))
}

func memcachedStore(t *testing.T, addr string) *pagecache.Memcache {
	m, err := pagecache.NewMemcache(pagecache.MemcacheOptions{Servers: []string{addr}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// plainClient sends requests as they are and returns answers as they come:
// no transparent gzip, no following redirects.
var plainClient = &http.Client{
	Transport:     &http.Transport{DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

type answer struct {
	status      int
	cacheStatus string
	header      http.Header
	body        string
}

func fetch(t *testing.T, method, url string, header ...string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
		if header[i] == "Host" {
			req.Host = header[i+1]
		}
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return answer{resp.StatusCode, resp.Header.Get("Cache-Status"), resp.Header, string(b)}
}

// TestCacheFillStripHeaders: the operator's fill_strip_headers never reach
// the backend on a fill, whether the fill is the visitor's own request (no
// cookies) or the background twin of a visitor with cookies, so a page
// rendered for what they carry is never stored.
func TestCacheFillStripHeaders(t *testing.T) {
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, pagecachetest.Memcached(t)), Options{},
		func(co *CacheOptions) { co.FillStripHeaders = []string{"X-Visitor"} })
	for _, tc := range []struct{ path, cookie string }{{"/strip-own", ""}, {"/strip-twin", "csrftoken=abc"}} {
		h := []string{"X-Visitor", "alice"}
		if tc.cookie != "" {
			h = append(h, "Cookie", tc.cookie)
		}
		fetch(t, "GET", base+tc.path, h...)
		var hit answer
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if hit = fetch(t, "GET", base+tc.path); hit.cacheStatus == "userrouter; hit" || time.Now().After(deadline) {
				break
			}
		}
		if hit.cacheStatus != "userrouter; hit" || strings.Contains(hit.body, "alice") {
			t.Errorf("%s: %q %q; want a stored page rendered without X-Visitor", tc.path, hit.cacheStatus, hit.body)
		}
	}
}

func TestCacheFillsOnceThenHits(t *testing.T) {
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, pagecachetest.Memcached(t)), Options{}, nil)
	first := fetch(t, "GET", base+"/page")
	if first.cacheStatus != "userrouter; fwd=miss; stored" {
		t.Fatalf("first: %q", first.cacheStatus)
	}
	for i := range 10 {
		a := fetch(t, "GET", base+"/page")
		if a.cacheStatus != "userrouter; hit" || a.body != first.body || a.header.Get("Age") == "" {
			t.Fatalf("request %d: %q %q age %q; want a hit with the first body", i, a.cacheStatus, a.body, a.header.Get("Age"))
		}
		if a.header.Get("X-Frame-Options") != "DENY" || a.header.Get("Content-Type") != "text/html; charset=utf-8" || a.header.Get("X-Backend-Only") != "" {
			t.Errorf("hit headers: %v", a.header)
		}
	}
	if n := s.requests("/page"); n != 1 {
		t.Errorf("backend got %d requests; want 1", n)
	}
	// Tracking parameters share the entry.
	if a := fetch(t, "GET", base+"/page?utm_source=x&utm_medium=y"); a.cacheStatus != "userrouter; hit" {
		t.Errorf("with utm parameters: %q; want a hit", a.cacheStatus)
	}
	// A long URL gets a hashed key, and is cached all the same.
	long := "/page?q=" + strings.Repeat("x", 600)
	fetch(t, "GET", base+long)
	if a := fetch(t, "GET", base+long); a.cacheStatus != "userrouter; hit" {
		t.Errorf("long URL: %q; want a hit", a.cacheStatus)
	}
}

func TestCacheCollapsesConcurrentMisses(t *testing.T) {
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, pagecachetest.Memcached(t)), Options{}, nil)
	var wg sync.WaitGroup
	statuses := make([]string, 20)
	for i := range statuses {
		wg.Go(func() { statuses[i] = fetch(t, "GET", base+"/slow").cacheStatus })
	}
	wg.Wait()
	if n := s.requests("/slow"); n != 1 {
		t.Errorf("20 concurrent misses made %d backend requests; want 1", n)
	}
	counts := map[string]int{}
	for _, st := range statuses {
		counts[st]++
	}
	if counts["userrouter; fwd=miss; stored"] != 1 || counts["userrouter; fwd=miss; stored"]+counts["userrouter; fwd=miss; collapsed"]+counts["userrouter; hit"] != 20 {
		t.Errorf("statuses: %v", counts)
	}
}

func TestCacheNotStored(t *testing.T) {
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, pagecachetest.Memcached(t)), Options{}, nil)
	for _, tc := range []struct {
		path, detail string
		marked       bool // the next visitor goes straight to the backend
	}{
		{"/set-cookie", "set-cookie", true},
		{"/private", "private", true},
		{"/no-store", "no-store", true},
		{"/big", "too-large", true},
		{"/redirect-302", "status", true},
		{"/vary-star", "vary", true},
		{"/error", "status", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			a := fetch(t, "GET", base+tc.path)
			if want := "userrouter; fwd=miss; detail=" + tc.detail; a.cacheStatus != want {
				t.Errorf("got %q; want %q", a.cacheStatus, want)
			}
			if tc.path == "/big" && len(a.body) != 2<<20 {
				t.Errorf("the large page arrived cut: %d bytes", len(a.body))
			}
			if tc.path == "/set-cookie" && a.header.Get("Set-Cookie") == "" {
				t.Error("the visitor lost their Set-Cookie")
			}
			next := fetch(t, "GET", base+tc.path)
			want := "userrouter; fwd=miss; detail=" + tc.detail
			if tc.marked {
				want = "userrouter; fwd=bypass; detail=uncacheable"
			}
			if next.cacheStatus != want {
				t.Errorf("next visitor: %q; want %q", next.cacheStatus, want)
			}
			if n := s.requests(tc.path); n != 2 {
				t.Errorf("backend got %d requests; want 2", n)
			}
		})
	}
	// A permanent redirect is cached, with its Location.
	fetch(t, "GET", base+"/moved")
	if a := fetch(t, "GET", base+"/moved"); a.status != 301 || a.header.Get("Location") != "/page" || a.cacheStatus != "userrouter; hit" {
		t.Errorf("301: %d %q %q", a.status, a.header.Get("Location"), a.cacheStatus)
	}
	// csrftoken is listed in strip_set_cookies: stored, without it.
	first := fetch(t, "GET", base+"/csrf")
	hit := fetch(t, "GET", base+"/csrf")
	if first.header.Get("Set-Cookie") == "" || hit.cacheStatus != "userrouter; hit" || hit.header.Get("Set-Cookie") != "" {
		t.Errorf("strip_set_cookies: first Set-Cookie %q, then %q with Set-Cookie %q", first.header.Get("Set-Cookie"), hit.cacheStatus, hit.header.Get("Set-Cookie"))
	}
}

func TestCacheHeadConditionalAndGzip(t *testing.T) {
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, pagecachetest.Memcached(t)), Options{}, nil)
	full := fetch(t, "GET", base+"/etag")
	head := fetch(t, "HEAD", base+"/etag")
	if head.cacheStatus != "userrouter; hit" || head.body != "" || head.header.Get("Content-Length") != fmt.Sprint(len(full.body)) {
		t.Errorf("HEAD hit: %q, %d body bytes, Content-Length %q; want headers only, length %d", head.cacheStatus, len(head.body), head.header.Get("Content-Length"), len(full.body))
	}
	for _, cond := range [][]string{{"If-None-Match", `"v1"`}, {"If-None-Match", `W/"v1", "v0"`}, {"If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"}} {
		if a := fetch(t, "GET", base+"/etag", cond...); a.status != 304 || a.body != "" || a.header.Get("ETag") != `"v1"` {
			t.Errorf("%v: got %d %q", cond, a.status, a.body)
		}
	}
	if a := fetch(t, "GET", base+"/etag", "If-None-Match", `"v2"`); a.status != 200 {
		t.Errorf("non-matching If-None-Match: got %d; want 200", a.status)
	}
	// "*" matches any stored page, one without an ETag too (RFC 9110
	// section 13.1.2).
	fetch(t, "GET", base+"/no-etag")
	for _, path := range []string{"/etag", "/no-etag"} {
		if a := fetch(t, "GET", base+path, "If-None-Match", "*"); a.status != 304 || a.body != "" || a.cacheStatus != "userrouter; hit" {
			t.Errorf("If-None-Match: * on %s: got %d %q %q; want 304, no body, a hit", path, a.status, a.body, a.cacheStatus)
		}
	}

	gz := fetch(t, "GET", base+"/gzip", "Accept-Encoding", "gzip, br")
	if gz.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("fill: Content-Encoding %q; want gzip", gz.header.Get("Content-Encoding"))
	}
	hit := fetch(t, "GET", base+"/gzip", "Accept-Encoding", "gzip")
	plain := fetch(t, "GET", base+"/gzip")
	refuses := fetch(t, "GET", base+"/gzip", "Accept-Encoding", "gzip;q=0, identity")
	zr, err := gzip.NewReader(strings.NewReader(hit.body))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, _ := io.ReadAll(zr)
	if hit.cacheStatus != "userrouter; hit" || hit.header.Get("Content-Encoding") != "gzip" {
		t.Errorf("gzip client: %q %q", hit.cacheStatus, hit.header.Get("Content-Encoding"))
	}
	for _, a := range []answer{plain, refuses} {
		if a.cacheStatus != "userrouter; hit" || a.header.Get("Content-Encoding") != "" || a.body != string(unzipped) {
			t.Errorf("client without gzip: %q %q %q; want the page decompressed", a.cacheStatus, a.header.Get("Content-Encoding"), a.body)
		}
	}
	if n := s.requests("/gzip"); n != 1 {
		t.Errorf("backend got %d requests; want 1", n)
	}
}

func TestCacheBypassRules(t *testing.T) {
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, pagecachetest.Memcached(t)), Options{}, func(c *CacheOptions) {
		c.Hosts = []string{"example.com"}
		c.BypassPaths = []string{"/admin/"}
		c.BypassPathRegexps = []*regexp.Regexp{regexp.MustCompile(`\.json$`)}
		c.BypassCookies = []string{"messages"}
		c.BypassQueryParams = []string{"preview"}
		c.Policy = pagecache.NewPolicy(pagecache.PolicyOptions{
			Rules:   []pagecache.Rule{{Path: regexp.MustCompile("^/live/"), Cache: false}},
			Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true},
		})
	})
	for _, tc := range []struct {
		method, path string
		header       []string
		detail       string
	}{
		{"POST", "/page", nil, "method"},
		{"GET", "/admin/users", nil, "path"},
		{"GET", "/%61dmin/users", nil, "path"},
		{"GET", "//admin/users", nil, "path"},
		{"GET", "/static/../admin/users", nil, "path"},
		{"GET", "/api/items.json", nil, "path"},
		{"GET", "/page", []string{"Cookie", "a=1; messages=hello"}, "cookie"},
		{"GET", "/page?x=1&preview=1", nil, "query"},
		{"GET", "/page", []string{"Authorization", "Basic dTpw"}, "authorization"},
		{"GET", "/page", []string{"Range", "bytes=0-10"}, "range"},
		{"GET", "/live/scores", nil, "rule"},
		{"GET", "/page", []string{"Host", "evil.example"}, "host"},
		{"GET", "/page", []string{"Host", "bad host"}, "host"},
	} {
		if tc.header != nil && tc.header[0] == "Host" {
			a := fetch(t, tc.method, base+tc.path, tc.header...)
			if a.cacheStatus != "userrouter; fwd=bypass; detail=host" && a.status != 400 {
				t.Errorf("Host %q: got %d %q", tc.header[1], a.status, a.cacheStatus)
			}
			continue
		}
		for range 2 {
			req, _ := http.NewRequest(tc.method, base+tc.path, nil)
			req.Host = "example.com"
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			if !strings.HasPrefix(tc.path, "//") {
				req.URL.Opaque = tc.path // send the path as written
			}
			resp, err := plainClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got, want := resp.Header.Get("Cache-Status"), "userrouter; fwd=bypass; detail="+tc.detail; got != want {
				t.Errorf("%s %s %v: got %q; want %q", tc.method, tc.path, tc.header, got, want)
			}
		}
	}
}

func TestCacheServesStaleWhileRefreshing(t *testing.T) {
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, pagecachetest.Memcached(t)), Options{}, nil)
	first := fetch(t, "GET", base+"/short")
	time.Sleep(2100 * time.Millisecond) // max-age=1 is over; stale-while-revalidate=30 is not
	stale := fetch(t, "GET", base+"/short")
	if stale.cacheStatus != "userrouter; hit; detail=stale" || stale.body != first.body {
		t.Fatalf("past max-age: %q %q; want the stale page", stale.cacheStatus, stale.body)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.requests("/short") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	fresh := fetch(t, "GET", base+"/short")
	if fresh.cacheStatus != "userrouter; hit" || fresh.body == first.body || s.requests("/short") != 2 {
		t.Errorf("after the refresh: %q %q with %d backend requests; want the refreshed page, one refresh", fresh.cacheStatus, fresh.body, s.requests("/short"))
	}
}

func TestCacheMemcachedOutage(t *testing.T) {
	mc := pagecachetest.Start(t)
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, mc.Addr), Options{}, nil)
	fetch(t, "GET", base+"/page")
	if a := fetch(t, "GET", base+"/page"); a.cacheStatus != "userrouter; hit" {
		t.Fatalf("before the outage: %q", a.cacheStatus)
	}
	mc.Stop()
	var last answer
	for i := range 8 {
		last = fetch(t, "GET", base+"/page")
		if last.status != 200 || !strings.Contains(last.body, "/page") {
			t.Fatalf("request %d during the outage: %d %q", i, last.status, last.body)
		}
	}
	// Past DefaultStoreBreakerFailures failures the store is not asked.
	if last.cacheStatus != statusStoreDown {
		t.Errorf("the 8th request of the outage: %q; want %q (breaker open)", last.cacheStatus, statusStoreDown)
	}
	mc.Start() // empty again
	deadline := time.Now().Add(DefaultStoreBreakerCooldown + 2*time.Second)
	for {
		fetch(t, "GET", base+"/page")
		a := fetch(t, "GET", base+"/page")
		if a.cacheStatus == statusHit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after recovery: %q; want a hit once the breaker's probe succeeded", a.cacheStatus)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCacheRawFormat(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newSite(t)
	prefix := pagecachetest.Prefix()
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: prefix + "{uri}"})
	base := startRouter(t, Options{Cache: &CacheOptions{
		Store: memcachedStore(t, addr), Keys: keys, Hosts: []string{"example.com"},
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Default: pagecache.Rule{Cache: true, TTL: time.Minute}}),
		Raw:    &RawOptions{ContentType: "text/html; charset=utf-8"},
	}}, testBackendOptions(backendAddr(s.Server)))

	// Another program writes the body alone, as nginx's memcached module reads it.
	mc := memcache.New(addr)
	mc.Set(&memcache.Item{Key: prefix + "/prerendered", Value: []byte("<h1>prerendered</h1>")})
	mc.Set(&memcache.Item{Key: prefix + "/pickled", Value: []byte("\x80\x04\x95pickle"), Flags: 1})
	a := fetch(t, "GET", base+"/prerendered", "Host", "example.com")
	if a.cacheStatus != "userrouter; hit" || a.body != "<h1>prerendered</h1>" || a.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("raw page: %q %q %q", a.cacheStatus, a.body, a.header.Get("Content-Type"))
	}
	if a := fetch(t, "GET", base+"/pickled", "Host", "example.com"); strings.Contains(a.body, "\x80\x04") || a.cacheStatus != "userrouter; fwd=miss; detail=raw-no-fill" {
		t.Errorf("a pickled value was served: %q %q", a.cacheStatus, a.body)
	}
	// In raw mode without raw_fill, userrouter does not write.
	fetch(t, "GET", base+"/not-there", "Host", "example.com")
	if _, err := mc.Get(prefix + "/not-there"); err != memcache.ErrCacheMiss {
		t.Errorf("raw mode filled the cache: %v", err)
	}
}

// TestCacheNeverStoresPersonalPages sends identified visitors, anonymous
// visitors with sessions and visitors in doubt at every URL, then reads
// every value memcached holds: none may contain a cookie value or a
// personal page.
func TestCacheNeverStoresPersonalPages(t *testing.T) {
	mc := pagecachetest.Start(t)
	dsn, _, fx := sessiontest.MySQLDjango(t)
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, mc.Addr), Options{Sessions: mysqlSessions(t, dsn)}, nil)

	visitors := map[string]string{
		"identified":        "sessionid=" + fx.Row("identified").SessionKey + "; secretcart=IDENTIFIED-CART-42",
		"anonymous session": "sessionid=" + fx.Row("anonymous").SessionKey + "; secretcart=ANON-CART-17",
		"doubt":             "sessionid=" + fx.Row("doubt").SessionKey + "; secretcart=DOUBT-CART-99",
		"unknown key":       "sessionid=" + strings.Repeat("z", 32) + "; secretcart=UNKNOWN-CART-5",
		"analytics only":    "_ga=GA1.2.ANALYTICS-77",
	}
	paths := []string{"/page", "/page2", "/account", "/cart", "/set-cookie", "/csrf", "/gzip", "/etag", "/moved"}
	for round := range 2 {
		for _, p := range paths {
			for name, cookie := range visitors {
				a := fetch(t, "GET", base+p, "Cookie", cookie, "Accept-Encoding", "gzip")
				if a.status >= 500 {
					t.Fatalf("%s %s: %d", name, p, a.status)
				}
				if name == "identified" && strings.Contains(a.cacheStatus, "hit") {
					t.Errorf("round %d: identified visitor served from the cache at %s", round, p)
				}
			}
		}
		time.Sleep(300 * time.Millisecond) // let background fills land
	}
	// The anonymous visitor with a session was served the shared pages...
	if a := fetch(t, "GET", base+"/page", "Cookie", visitors["anonymous session"]); a.cacheStatus != "userrouter; hit" {
		t.Errorf("anonymous session on /page: %q; want a hit", a.cacheStatus)
	}
	// ...and their own cart, which is never cached.
	if a := fetch(t, "GET", base+"/cart", "Cookie", visitors["anonymous session"]); !strings.Contains(a.body, "ANON-CART-17") {
		t.Errorf("anonymous session's cart: %q", a.body)
	}

	keys := mc.Keys()
	if len(keys) < 4 {
		t.Fatalf("only %d keys stored: %v", len(keys), keys)
	}
	client := memcache.New(mc.Addr)
	secrets := []string{"IDENTIFIED-CART-42", "ANON-CART-17", "DOUBT-CART-99", "UNKNOWN-CART-5", "ANALYTICS-77", "personal page", "your cart", "tracker", "csrftoken"}
	for _, cookie := range visitors {
		for _, part := range strings.Split(cookie, "; ") {
			_, v, _ := strings.Cut(part, "=")
			secrets = append(secrets, v)
		}
	}
	for _, k := range keys {
		it, err := client.Get(k)
		if err != nil {
			continue // expired meanwhile
		}
		value := it.Value
		var e pagecache.Entry
		if pagecache.Decode(value, &e) == nil {
			for _, h := range e.Headers {
				if bytes.EqualFold(h.Name, []byte("Content-Encoding")) && bytes.Equal(h.Value, []byte("gzip")) {
					if zr, err := gzip.NewReader(bytes.NewReader(e.Body)); err == nil {
						plain, _ := io.ReadAll(zr)
						value = append(append([]byte(nil), value...), plain...)
					}
				}
			}
		}
		for _, sec := range secrets {
			if bytes.Contains(value, []byte(sec)) {
				t.Errorf("key %q holds %q", k, sec)
			}
		}
	}
}

func TestCacheIdentifiedAlwaysForwarded(t *testing.T) {
	dsn, _, fx := sessiontest.MySQLDjango(t)
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, pagecachetest.Memcached(t)), Options{Sessions: mysqlSessions(t, dsn)}, nil)
	fetch(t, "GET", base+"/page") // cached for anonymous visitors
	cookie := "sessionid=" + fx.Row("identified").SessionKey
	for range 3 {
		a := fetch(t, "GET", base+"/page", "Cookie", cookie)
		if a.cacheStatus != "userrouter; fwd=bypass; detail=identified" || !strings.Contains(a.body, cookie) {
			t.Errorf("identified: %q %q; want the backend's page rendered for them", a.cacheStatus, a.body)
		}
	}
	if n := s.requests("/page"); n != 4 {
		t.Errorf("backend got %d requests; want 4", n)
	}
}

var _ = atomic.Int64{}
