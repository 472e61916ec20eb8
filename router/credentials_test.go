package router

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
	"github.com/userrouter/userrouter/sessioncheck"
)

// tokens is a credential Checker over a fixed table, for routing tests
// (the SQL store is tested against MariaDB in sessioncheck and end to
// end): a known token is valid; down makes every check a store error.
type tokens struct {
	mu    sync.Mutex
	valid map[string]bool
	down  bool
	asked atomic.Int64
}

func (c *tokens) Check(_ context.Context, key []byte) (sessioncheck.Verdict, error) {
	c.asked.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return sessioncheck.Anonymous, sessioncheck.ErrStore
	}
	if _, k := sessioncheck.SplitCredentialKey(string(key)); c.valid[k] {
		return sessioncheck.Identified, nil
	}
	return sessioncheck.Anonymous, nil
}

// apiSite is an API: /api/channels/ is the same for every caller
// (tagged "channels"), /api/mine/ answers for the token's user (tagged
// "user-<token>"). Each answer says what the request carried and counts
// renders; /api/private/ adds Cache-Control: private, /api/cookie/ a
// Set-Cookie, /api/vary/ Vary: Accept.
type apiSite struct {
	*httptest.Server
	renders atomic.Int64
	mu      sync.Mutex
	seen    []http.Header
}

func newAPISite(t *testing.T) *apiSite {
	s := &apiSite{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.renders.Add(1)
		s.mu.Lock()
		s.seen = append(s.seen, r.Header.Clone())
		s.mu.Unlock()
		user := strings.TrimPrefix(r.Header.Get("Authorization"), "Token ")
		if user == "" {
			user = r.URL.Query().Get("api_key")
		}
		switch r.URL.Path {
		case "/api/channels/":
			w.Header().Set("Surrogate-Key", "channels")
		case "/api/private/":
			w.Header().Set("Cache-Control", "private, max-age=60")
			fallthrough
		default:
			w.Header().Set("Surrogate-Key", "user-"+user+" channels")
		case "/api/cookie/":
			w.Header().Set("Set-Cookie", "csrftoken=x")
		case "/api/vary/":
			w.Header().Set("Vary", "Accept")
		}
		fmt.Fprintf(w, "render %d for %q cookie %q", n, user, r.Header.Get("Cookie"))
	}))
	t.Cleanup(s.Close)
	return s
}

// last returns the headers of the last request the site got.
func (s *apiSite) last() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[len(s.seen)-1]
}

var (
	tokenA = strings.Repeat("a", 40)
	tokenB = strings.Repeat("b", 40)
	tokenX = strings.Repeat("9", 40) // unknown
)

func apiRules() []pagecache.Rule {
	return []pagecache.Rule{
		{Path: regexp.MustCompile(`^/api/channels/`), Cache: true, TTL: time.Hour, HonorCacheControl: true, Credentials: pagecache.CredentialsShared},
		{Path: regexp.MustCompile(`^/api/bypass/`), Cache: true, TTL: time.Hour, HonorCacheControl: true},
		{Path: regexp.MustCompile(`^/api/private/`), Cache: true, TTL: time.Hour, HonorCacheControl: true, Credentials: pagecache.CredentialsPerCredential, StorePrivate: true},
		{Path: regexp.MustCompile(`^/api/`), Cache: true, TTL: time.Hour, HonorCacheControl: true, Credentials: pagecache.CredentialsPerCredential},
	}
}

// newAPIRouter is a Router in front of s over store, checking tokens.
func newAPIRouter(t *testing.T, s *apiSite, store pagecache.Store, prefix string, checker sessioncheck.Checker, finder sessioncheck.CredentialOptions) *purgeRouter {
	t.Helper()
	f, err := sessioncheck.NewCredentialFinder(finder)
	if err != nil {
		t.Fatal(err)
	}
	ts := &taggedSite{Server: s.Server}
	return newPurgeRouter(t, ts, store, prefix, func(o *Options) {
		o.Cache.Policy = pagecache.NewPolicy(pagecache.PolicyOptions{Rules: apiRules(), Default: pagecache.Rule{Cache: true, TTL: time.Hour, HonorCacheControl: true}})
		o.Cache.Keys, _ = pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: prefix + "{host}{uri}", HashPrefix: prefix + "h:", IgnoreQueryParams: []string{"api_key"}})
		o.Credentials = &CredentialOptions{Finder: f, Checker: checker, HashKey: []byte("0123456789abcdef-test-hash-key"), MaxPrivateFills: 5}
	})
}

func (p *purgeRouter) api(t *testing.T, path string, header ...string) answer {
	return fetch(t, "GET", p.base+path, append([]string{"Host", "example.com"}, header...)...)
}

func TestCredentialsShared(t *testing.T) {
	s := newAPISite(t)
	checker := &tokens{valid: map[string]bool{tokenA: true, tokenB: true}}
	p := newAPIRouter(t, s, newMemoryStore(t), "t:", checker, sessioncheck.CredentialOptions{Scheme: "Token"})
	cookie := "sessionid=" + strings.Repeat("c", 32) + "; other=1"

	first := p.api(t, "/api/channels/", "Authorization", "Token "+tokenA, "Cookie", cookie)
	if first.cacheStatus != "userrouter; fwd=miss; stored; detail=credential-shared" {
		t.Fatalf("first: got %q; want a miss stored", first.cacheStatus)
	}
	if h := s.last(); h.Get("Authorization") != "Token "+tokenA || h.Get("Cookie") != "" {
		t.Errorf("the fill carried Authorization %q, Cookie %q; want the token alone", h.Get("Authorization"), h.Get("Cookie"))
	}
	for _, tc := range []struct {
		name        string
		header      []string
		cacheStatus string
		served      bool
	}{
		{"another valid token", []string{"Authorization", "Token " + tokenB}, "userrouter; hit; detail=credential-shared", true},
		{"the same token", []string{"Authorization", "Token " + tokenA}, "userrouter; hit; detail=credential-shared", true},
		{"valid token, cookies", []string{"Authorization", "token " + tokenB, "Cookie", cookie}, "userrouter; hit; detail=credential-shared", true},
		{"no token", nil, "userrouter; fwd=bypass; detail=credential-invalid", false},
		{"unknown token", []string{"Authorization", "Token " + tokenX}, "userrouter; fwd=bypass; detail=credential-invalid", false},
		{"malformed token", []string{"Authorization", "Token a b"}, "userrouter; fwd=bypass; detail=credential-invalid", false},
		{"another scheme", []string{"Authorization", "Basic dXNlcjpwYXNz"}, "userrouter; fwd=bypass; detail=authorization", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.renders.Load()
			got := p.api(t, "/api/channels/", tc.header...)
			if got.cacheStatus != tc.cacheStatus {
				t.Errorf("got %q; want %q", got.cacheStatus, tc.cacheStatus)
			}
			if served := got.body == first.body; served != tc.served {
				t.Errorf("served the shared copy: %v; want %v (body %q)", served, tc.served, got.body)
			}
			if !tc.served && s.renders.Load() != before+1 {
				t.Errorf("not forwarded as is")
			}
		})
	}

	// The store down: every credential is forwarded, never served the copy.
	checker.mu.Lock()
	checker.down = true
	checker.mu.Unlock()
	if got := p.api(t, "/api/channels/", "Authorization", "Token "+tokenA); got.cacheStatus != "userrouter; fwd=bypass; detail=credential-doubt" || got.body == first.body {
		t.Errorf("store down: got %q %q; want the backend's answer, credential-doubt", got.cacheStatus, got.body)
	}
	if n := p.r.stats.CredentialDoubts[sessioncheck.ReasonIndex(sessioncheck.ErrStore)].Load(); n != 1 {
		t.Errorf("got %d store-error doubts counted; want 1", n)
	}
}

func TestCredentialsPerCredential(t *testing.T) {
	s := newAPISite(t)
	checker := &tokens{valid: map[string]bool{tokenA: true, tokenB: true}}
	p := newAPIRouter(t, s, newMemoryStore(t), "t:", checker, sessioncheck.CredentialOptions{Scheme: "Token"})
	a := p.api(t, "/api/mine/", "Authorization", "Token "+tokenA, "Cookie", "sessionid="+strings.Repeat("c", 32))
	if a.cacheStatus != "userrouter; fwd=miss; stored; detail=credential-private" || !strings.Contains(a.body, `for "`+tokenA+`" cookie ""`) {
		t.Fatalf("A: got %q %q; want A's answer stored, made without cookies", a.cacheStatus, a.body)
	}
	b := p.api(t, "/api/mine/", "Authorization", "Token "+tokenB)
	if b.cacheStatus != "userrouter; fwd=miss; stored; detail=credential-private" || !strings.Contains(b.body, tokenB) {
		t.Fatalf("B: got %q %q; want B's own answer", b.cacheStatus, b.body)
	}
	for range 2 {
		if got := p.api(t, "/api/mine/", "Authorization", "Token "+tokenA); got.cacheStatus != "userrouter; hit; detail=credential-private" || got.body != a.body {
			t.Errorf("A again: got %q %q; want A's copy", got.cacheStatus, got.body)
		}
		if got := p.api(t, "/api/mine/", "Authorization", "Token "+tokenB); got.cacheStatus != "userrouter; hit; detail=credential-private" || got.body != b.body {
			t.Errorf("B again: got %q %q; want B's copy", got.cacheStatus, got.body)
		}
	}
	if got := p.api(t, "/api/mine/"); got.body == a.body || got.body == b.body || got.cacheStatus != "userrouter; fwd=bypass; detail=credential-invalid" {
		t.Errorf("no token: got %q %q; want forwarded", got.cacheStatus, got.body)
	}

	// Not stored: private without store_private, Set-Cookie, Vary.
	for path, cs := range map[string]string{
		"/api/cookie/":  "userrouter; fwd=miss; detail=set-cookie",
		"/api/vary/":    "userrouter; fwd=miss; detail=vary",
		"/api/private/": "userrouter; fwd=miss; stored; detail=credential-private",
	} {
		if got := p.api(t, path, "Authorization", "Token "+tokenA); got.cacheStatus != cs {
			t.Errorf("%s: got %q; want %q", path, got.cacheStatus, cs)
		}
	}

	// Bounded: a credential fills MaxPrivateFills copies a minute (5: the
	// four above and the first below).
	for i := range 2 {
		want := "userrouter; fwd=miss; stored; detail=credential-private"
		if i == 1 {
			want = "userrouter; fwd=miss; detail=credential-limit"
		}
		if got := p.api(t, fmt.Sprintf("/api/page%d/", i), "Authorization", "Token "+tokenA); got.cacheStatus != want {
			t.Errorf("page %d: got %q; want %q", i, got.cacheStatus, want)
		}
	}
	if got := p.api(t, "/api/page1/", "Authorization", "Token "+tokenB); got.cacheStatus != "userrouter; fwd=miss; stored; detail=credential-private" {
		t.Errorf("another credential is not bounded by A's fills: got %q", got.cacheStatus)
	}
}

func TestCredentialsBypassRule(t *testing.T) {
	s := newAPISite(t)
	checker := &tokens{valid: map[string]bool{tokenA: true}}
	p := newAPIRouter(t, s, newMemoryStore(t), "t:", checker, sessioncheck.CredentialOptions{Scheme: "Token", QueryParam: "api_key"})
	for _, h := range [][]string{{"Authorization", "Token " + tokenA}, {"Authorization", "Basic x"}} {
		if got := p.api(t, "/api/bypass/", h...); got.cacheStatus != "userrouter; fwd=bypass; detail=authorization" {
			t.Errorf("%q: got %q; want bypass", h, got.cacheStatus)
		}
	}
	if got := p.api(t, "/api/bypass/?api_key="+tokenA); got.cacheStatus != "userrouter; fwd=bypass; detail=authorization" {
		t.Errorf("query parameter: got %q; want bypass", got.cacheStatus)
	}
	if checker.asked.Load() != 0 {
		t.Errorf("a bypass rule asked the checker %d times", checker.asked.Load())
	}
	if got := p.api(t, "/api/bypass/"); got.cacheStatus != "userrouter; fwd=miss; stored" {
		t.Errorf("no credential on a bypass rule: got %q; want an ordinary miss", got.cacheStatus)
	}
}

func TestCredentialsQueryParam(t *testing.T) {
	s := newAPISite(t)
	checker := &tokens{valid: map[string]bool{tokenA: true, tokenB: true}}
	p := newAPIRouter(t, s, newMemoryStore(t), "t:", checker, sessioncheck.CredentialOptions{Scheme: "Token", QueryParam: "api_key"})
	a := p.api(t, "/api/mine/?x=1&api_key="+tokenA)
	if a.cacheStatus != "userrouter; fwd=miss; stored; detail=credential-private" {
		t.Fatalf("got %q", a.cacheStatus)
	}
	if h := s.last(); h.Get("Authorization") != "" {
		t.Errorf("the fill carried Authorization %q", h.Get("Authorization"))
	}
	if !strings.Contains(a.body, tokenA) {
		t.Errorf("the fill did not carry the parameter: %q", a.body)
	}
	if got := p.api(t, "/api/mine/?x=1&api_key="+tokenA); got.cacheStatus != "userrouter; hit; detail=credential-private" || got.body != a.body {
		t.Errorf("A again: got %q %q; want A's copy", got.cacheStatus, got.body)
	}
	if got := p.api(t, "/api/mine/?x=1&api_key="+tokenB); got.body == a.body {
		t.Errorf("B was served A's copy")
	}
	if got := p.api(t, "/api/mine/?x=1&api_key="+tokenA, "Authorization", "Token "+tokenA); got.cacheStatus != "userrouter; fwd=bypass; detail=credential-doubt" {
		t.Errorf("header and parameter: got %q; want a doubt", got.cacheStatus)
	}
}

// TestCredentialsPurgeAcrossInstances: two routers share one memcached;
// purging user-<A>'s surrogate key through one removes A's copies on
// both and nobody else's; purging the shared tag removes the shared copy;
// a purge by URL removes every credential's copy of it.
func TestCredentialsPurgeAcrossInstances(t *testing.T) {
	addr := pagecachetest.Memcached(t)
	s := newAPISite(t)
	prefix := pagecachetest.Prefix()
	checker := &tokens{valid: map[string]bool{tokenA: true, tokenB: true}}
	finder := sessioncheck.CredentialOptions{Scheme: "Token"}
	one := newAPIRouter(t, s, memcachedStore(t, addr), prefix, checker, finder)
	two := newAPIRouter(t, s, memcachedStore(t, addr), prefix, checker, finder)
	auth := map[string][]string{"A": {"Authorization", "Token " + tokenA}, "B": {"Authorization", "Token " + tokenB}}
	bodies := map[string]string{}
	for _, path := range []string{"/api/mine/", "/api/channels/"} {
		for _, who := range []string{"A", "B"} {
			got := one.api(t, path, auth[who]...)
			if bodies[path+who] = got.body; path == "/api/channels/" && who == "B" {
				bodies[path+who] = bodies[path+"A"]
			}
		}
	}
	hit := func(p *purgeRouter, path, who string) bool {
		got := p.api(t, path, auth[who]...)
		return strings.HasPrefix(got.cacheStatus, "userrouter; hit") && got.body == bodies[path+who]
	}
	for _, p := range []*purgeRouter{one, two} {
		for _, k := range []string{"/api/mine/A", "/api/mine/B", "/api/channels/A", "/api/channels/B"} {
			if !hit(p, k[:len(k)-1], k[len(k)-1:]) {
				t.Fatalf("%s: not a hit of its copy", k)
			}
		}
	}
	if code, res := one.purge(t, `{"keys": ["user-`+tokenA+`"]}`); code != 200 {
		t.Fatalf("purge: %d %s", code, res)
	}
	for _, p := range []*purgeRouter{two, one} {
		if hit(p, "/api/mine/", "A") {
			t.Errorf("A's copy survived the purge of user-A")
		}
		if !hit(p, "/api/mine/", "B") || !hit(p, "/api/channels/", "B") {
			t.Errorf("the purge of user-A took B's or the shared copy")
		}
	}
	two.purge(t, `{"keys": ["channels"]}`)
	if hit(one, "/api/channels/", "A") {
		t.Errorf("the shared copy survived the purge of its tag")
	}
	bodies["/api/mine/A"] = one.api(t, "/api/mine/", auth["A"]...).body
	bodies["/api/mine/B"] = one.api(t, "/api/mine/", auth["B"]...).body
	bodies["/api/channels/A"] = one.api(t, "/api/channels/", auth["A"]...).body
	if !hit(two, "/api/mine/", "A") || !hit(two, "/api/mine/", "B") {
		t.Fatalf("the copies filled again are not hits")
	}
	two.purge(t, `{"urls": ["http://example.com/api/mine/"]}`)
	for _, who := range []string{"A", "B"} {
		if hit(one, "/api/mine/", who) {
			t.Errorf("%s's copy survived the purge of its URL", who)
		}
	}
}

func newMemoryStore(t *testing.T) pagecache.Store {
	m, err := pagecache.NewMemory(pagecache.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCredentialsEmptyAuthorizationKeepsSession: an empty Authorization
// line on a bypass rule is no credential, and the visitor's session
// cookie is still read: fasthttp reuses PeekAll's buffer, and reading the
// Authorization lines once overwrote the Cookie lines read before, so a
// signed-in visitor passed for anonymous.
func TestCredentialsEmptyAuthorizationKeepsSession(t *testing.T) {
	s := newAPISite(t)
	session := strings.Repeat("a", 32)
	f, err := sessioncheck.NewCredentialFinder(sessioncheck.CredentialOptions{Scheme: "Token", QueryParam: "api_key"})
	if err != nil {
		t.Fatal(err)
	}
	p := newPurgeRouter(t, &taggedSite{Server: s.Server}, newMemoryStore(t), "e:", func(o *Options) {
		o.Sessions = &tokens{valid: map[string]bool{session: true}}
		o.Cache.Policy = pagecache.NewPolicy(pagecache.PolicyOptions{Rules: apiRules(), Default: pagecache.Rule{Cache: true, TTL: time.Hour, HonorCacheControl: true}})
		o.Credentials = &CredentialOptions{Finder: f, Checker: &tokens{}, HashKey: []byte("0123456789abcdef-test-hash-key")}
	})
	got := p.api(t, "/api/bypass/", "Cookie", "sessionid="+session, "Authorization", "")
	if got.cacheStatus != statusIdentified {
		t.Errorf("signed-in visitor with an empty Authorization line: %q; want %q", got.cacheStatus, statusIdentified)
	}
}
