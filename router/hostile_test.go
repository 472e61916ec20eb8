package router

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"net"
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

// A hostile-input campaign, end to end: a real backend, a real memcached
// and the Router on a real connection. The backend reflects everything an
// attacker controls, so whatever reaches a stored page shows.

// mirror is a backend that renders every input an attacker controls: the
// method and target, Host, the headers applications are known to read
// without a Vary (X-Forwarded-Host, X-Original-URL, Accept-Language,
// User-Agent, forwarding headers), credentials, and a request body. Pages
// are cacheable for a minute. It records the targets it was asked for.
type mirror struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func newMirror(t *testing.T) *mirror {
	m := &mirror{}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m.mu.Lock()
		m.paths = append(m.paths, r.URL.Path)
		m.mu.Unlock()
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "<p>%s %s host=%s</p>", r.Method, r.RequestURI, r.Host)
		if strings.Contains(r.RequestURI, "EVIL-PATH") {
			fmt.Fprint(w, "<p>EVIL</p>")
		}
		for _, h := range []string{"X-Forwarded-Host", "X-Original-URL", "X-Rewrite-URL", "Accept-Language", "User-Agent",
			"X-Forwarded-For", "X-Real-IP", "X-Forwarded-Proto", "Cookie", "Authorization", "Accept", "X-Requested-With"} {
			fmt.Fprintf(w, "<p>%s=%s</p>", h, strings.Join(r.Header.Values(h), "|"))
		}
		// The body is summed up, not echoed: an echo of a smuggled request
		// would look like its answer.
		fmt.Fprintf(w, "<p>body: %d bytes, marked=%v</p>", len(body), strings.Contains(string(body), "EVIL"))
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *mirror) forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.paths = nil
}

func (m *mirror) saw(path string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.paths {
		if p == path {
			return true
		}
	}
	return false
}

// mirrorRouter serves a Router with a memcached page cache in front of m;
// the key is {host}{uri} with utm_* ignored, or template when given.
func mirrorRouter(t *testing.T, m *mirror, template string, o Options) string {
	t.Helper()
	if template == "" {
		template = "{host}{uri}"
	}
	keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: pagecachetest.Prefix() + template, IgnoreQueryParams: []string{"utm_*"}})
	if err != nil {
		t.Fatal(err)
	}
	o.Cache = &CacheOptions{
		Store:       memcachedStore(t, pagecachetest.Memcached(t)),
		Keys:        keys,
		Prefix:      pagecachetest.Prefix(), // its own counters: no other test's purge-all reaches them
		Policy:      pagecache.NewPolicy(pagecache.PolicyOptions{Grace: 30 * time.Second, Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}, VaryHeaders: keys.Headers()}),
		MaxBodySize: 1 << 20,
	}
	o.PurgeAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	return startRouter(t, o, testBackendOptions(backendAddr(m.Server)))
}

// exchange writes raw to addr on one connection and parses every response
// that comes back until the server closes or goes quiet for a moment.
func exchange(t *testing.T, addr, raw string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go io.WriteString(c, raw) // the server may answer (and close) before it has read it all
	br := bufio.NewReader(c)
	var out []*http.Response
	for {
		c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		resp.Header.Set("X-Test-Body", string(b))
		out = append(out, resp)
		if err != nil {
			return out
		}
	}
}

const (
	smuggled = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
	canary   = "GET /canary HTTP/1.1\r\nHost: h\r\n\r\n"
)

// TestHostileFraming: request smuggling forms against every path that may
// answer without reading a body (a hit, a 304, PURGE, an early error). Each
// attack is followed on the same connection by a canary request. Whatever
// happens, the smuggled request is never answered nor sent to the backend,
// and the connection either answers the canary (it was left on a request
// boundary) or closes.
func TestHostileFraming(t *testing.T) {
	m := newMirror(t)
	base := mirrorRouter(t, m, "", Options{MaxRequestBodySize: 1 << 20})
	// Prime the cache: every attack below targets a page that is a hit.
	for i := 0; i < 2; i++ {
		fetch(t, "GET", base+"/page", "Host", "h")
	}
	if a := fetch(t, "GET", base+"/page", "Host", "h"); a.cacheStatus != statusHit {
		t.Fatalf("priming: %q; want a hit", a.cacheStatus)
	}
	big := strings.Repeat(smuggled, 400) // ~14 KiB: beyond fasthttp's 8 KiB read-ahead
	huge := strings.Repeat(smuggled, 4000)
	chunk := func(s string) string { return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(s), s) }
	for _, tc := range []struct{ name, raw string }{
		{"GET hit with a long body", "GET /page HTTP/1.1\r\nHost: h\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big},
		{"GET hit with a short body", "GET /page HTTP/1.1\r\nHost: h\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"GET hit with a chunked body", "GET /page HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(big)},
		{"HEAD hit with a body", "HEAD /page HTTP/1.1\r\nHost: h\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big},
		{"304 with a body", "GET /page HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big},
		{"PURGE with a long body", "PURGE /other HTTP/1.1\r\nHost: h\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big},
		{"PURGE with a chunked body", "PURGE /other HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(big)},
		{"PURGE with a body beyond the drain", "PURGE /other HTTP/1.1\r\nHost: h\r\nContent-Length: " + fmt.Sprint(len(huge)) + "\r\n\r\n" + huge},
		{"CL.TE", "GET /page HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE.CL", "GET /page HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + chunk(smuggled)},
		{"two Content-Lengths", "GET /page HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"obs-fold", "GET /page HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n Content-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"chunk size overflow", "POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\n" + smuggled},
		{"bad chunk size", "PURGE /other HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + smuggled},
		{"chunked body over the limit", "POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(strings.Repeat("x", 2<<20)) + smuggled},
		{"declared body over the limit", "POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5000000\r\n\r\n" + big},
		{"unknown Transfer-Encoding", "POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunk(smuggled)},
		{"absolute form, other host", "GET http://evil.example/page HTTP/1.1\r\nHost: h\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"pipelined behind bodies", "GET /page HTTP/1.1\r\nHost: h\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big +
			"PURGE /other HTTP/1.1\r\nHost: h\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.forget()
			resps := exchange(t, base, tc.raw+canary)
			if len(resps) == 0 {
				t.Fatal("no response at all")
			}
			for i, resp := range resps {
				body := resp.Header.Get("X-Test-Body")
				if strings.Contains(body, "/smuggled") {
					t.Errorf("response %d answers the smuggled request: %.200q", i, body)
				}
				if i < len(resps)-1 && strings.Contains(body, "/canary") {
					t.Errorf("the canary was answered before the attack's own answers")
				}
			}
			if last := resps[len(resps)-1]; strings.Contains(last.Header.Get("X-Test-Body"), "/canary") && last.Close {
				t.Logf("canary answered, then closed")
			}
			if m.saw("/smuggled") {
				t.Errorf("the smuggled request reached the backend")
			}
		})
	}
	// A GET or HEAD with a body is never a hit, and fills nothing.
	resps := exchange(t, base, "GET /with-body HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nEVIL"+canary)
	if len(resps) < 1 || resps[0].Header.Get("Cache-Status") != statusBypass[bypassBody] {
		t.Fatalf("GET with a body: %d answers; want %q", len(resps), statusBypass[bypassBody])
	}
	if a := fetch(t, "GET", base+"/with-body", "Host", "h"); strings.Contains(a.body, "EVIL") {
		t.Errorf("a GET body reached a stored page: %q", a.body)
	}
}

// TestHostileCloseSticks: after a framing error the connection closes,
// even when a later step reset the response.
func TestHostileCloseSticks(t *testing.T) {
	m := newMirror(t)
	base := mirrorRouter(t, m, "", Options{MaxRequestBodySize: 1 << 10})
	for _, raw := range []string{
		"POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", 4096, strings.Repeat("x", 4096)),
		"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 4096\r\n\r\n" + strings.Repeat("x", 4096),
	} {
		resps := exchange(t, base, raw+canary)
		if len(resps) != 1 || !resps[0].Close {
			var got []string
			for _, r := range resps {
				got = append(got, r.Status+" close="+fmt.Sprint(r.Close))
			}
			t.Errorf("%.60q: got %v; want one answer and the connection closed", raw, got)
		}
	}
}

// TestHostilePoisoning: what a page reflects of the request reaches the
// stored copy only when the key includes it. The attacker's request fills
// the cache (no cookies: its own request is the fill), then a plain
// visitor's hit must show none of the attacker's inputs.
func TestHostilePoisoning(t *testing.T) {
	m := newMirror(t)
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tc := range []struct {
		name     string
		template string
		trusted  bool
		path     string
		header   []string
	}{
		{"X-Forwarded-Host", "", false, "/p-xfh", []string{"X-Forwarded-Host", "EVIL.example"}},
		{"X-Original-URL", "", false, "/p-xou", []string{"X-Original-URL", "/EVIL", "X-Rewrite-URL", "/EVIL"}},
		{"Accept-Language", "", false, "/p-lang", []string{"Accept-Language", "EVIL"}},
		{"User-Agent", "", false, "/p-ua", []string{"User-Agent", "EVIL-mobile"}},
		{"Accept", "", false, "/p-accept", []string{"Accept", "application/EVIL"}},
		{"X-Requested-With", "", false, "/p-xhr", []string{"X-Requested-With", "EVIL"}},
		{"forwarding headers, untrusted", "", false, "/p-fwd", []string{"X-Forwarded-For", "EVIL", "X-Real-IP", "EVIL", "X-Forwarded-Proto", "EVIL"}},
		{"forwarding headers, trusted proxy", "", true, "/p-fwd-trusted", []string{"X-Forwarded-For", "EVIL", "X-Real-IP", "EVIL"}},
		{"ignored query parameter", "", false, "/p-utm?utm_source=<script>EVIL</script>", nil},
		{"unkeyed query", "{host}{path}", false, "/p-unkeyed?q=EVIL", nil},
		{"fragment", "", false, "/p-frag#EVIL", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{}
			if tc.trusted {
				o.TrustedProxies = trusted
			}
			base := mirrorRouter(t, m, tc.template, o)
			h := append([]string{"Host", "h"}, tc.header...)
			if tc.path == "/p-frag#EVIL" {
				exchange(t, base, "GET /p-frag#EVIL HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
			} else {
				fetch(t, "GET", base+tc.path, h...)
			}
			clean, _, _ := strings.Cut(tc.path, "?")
			clean, _, _ = strings.Cut(clean, "#")
			if tc.template == "" && strings.Contains(tc.path, "utm_") {
				clean = tc.path // the key ignores utm_*: the visitor's own URL hits the clean page
			}
			a := fetch(t, "GET", base+clean, "Host", "h")
			if a.cacheStatus != statusHit {
				t.Fatalf("%s: %q; want the attacker's fill to be a hit", clean, a.cacheStatus)
			}
			if strings.Contains(a.body, "EVIL") {
				t.Errorf("the attacker's input reached the stored page:\n%.2000s", a.body)
			}
		})
	}
	t.Run("keyed header", func(t *testing.T) {
		base := mirrorRouter(t, m, "{host}{uri}|{header:Accept-Language}", Options{})
		fetch(t, "GET", base+"/p-keyed", "Host", "h", "Accept-Language", "fr")
		a := fetch(t, "GET", base+"/p-keyed", "Host", "h", "Accept-Language", "fr")
		b := fetch(t, "GET", base+"/p-keyed", "Host", "h", "Accept-Language", "de")
		if a.cacheStatus != statusHit || !strings.Contains(a.body, "Accept-Language=fr") || strings.Contains(b.body, "=fr") {
			t.Errorf("a keyed header is the fill's input and the key's: fr %q %q; de %q", a.cacheStatus, a.body, b.body)
		}
	})
}

// TestHostileAbsoluteForm: a target in absolute form is keyed and
// forwarded with one host; target and Host disagreeing is refused; PURGE
// in absolute form purges what it names.
func TestHostileAbsoluteForm(t *testing.T) {
	m := newMirror(t)
	base := mirrorRouter(t, m, "", Options{})
	fetch(t, "GET", base+"/abs", "Host", "h")
	resps := exchange(t, base, "GET http://H/abs HTTP/1.1\r\nHost: h\r\n\r\n"+
		"GET http://evil.example/abs HTTP/1.1\r\nHost: h\r\n\r\n")
	if len(resps) != 2 || resps[0].Header.Get("Cache-Status") != statusHit || resps[1].StatusCode != http.StatusBadRequest {
		t.Fatalf("got %d answers; want a hit for the matching host, then 400 for the other", len(resps))
	}
	if !resps[1].Close {
		t.Errorf("400 for a bad target kept the connection open")
	}
	purge := exchange(t, base, "PURGE http://h/abs HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if len(purge) != 1 || purge[0].StatusCode != 200 {
		t.Fatalf("PURGE in absolute form: %v", purge)
	}
	if a := fetch(t, "GET", base+"/abs", "Host", "h"); a.cacheStatus == statusHit {
		t.Errorf("PURGE http://h/abs did not purge /abs: %q", a.cacheStatus)
	}
}

// TestHostileCollapseBound: waiters on a slow fill stop waiting after
// collapse_timeout and go to the backend themselves.
func TestHostileCollapseBound(t *testing.T) {
	s := newSite(t) // /slow takes 300 ms
	base := cacheRouter(t, s, memcachedStore(t, pagecachetest.Memcached(t)), Options{},
		func(co *CacheOptions) { co.CollapseTimeout = 50 * time.Millisecond })
	var wg sync.WaitGroup
	statuses := make([]string, 4)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i > 0 {
				time.Sleep(30 * time.Millisecond)
			}
			statuses[i] = fetch(t, "GET", base+"/slow?collapse", "Host", "h").cacheStatus
		}()
	}
	wg.Wait()
	timedOut := 0
	for _, st := range statuses {
		if st == statusCollapseTimeout {
			timedOut++
		}
	}
	if timedOut == 0 {
		t.Errorf("got %q; want the waiters to give up after collapse_timeout", statuses)
	}
}

// TestHostileStoreValues: what memcached returns is input too. A stored
// page replaced by garbage, a truncated or altered envelope, a value
// flagged as a Python pickle, or a valid envelope whose gzip body is a
// bomb never crashes userrouter nor reaches a client as a page: the
// visitor is served from the backend instead.
func TestHostileStoreValues(t *testing.T) {
	mc := pagecachetest.Start(t)
	m := newMirror(t)
	prefix := pagecachetest.Prefix()
	keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: prefix + "{host}{uri}"})
	if err != nil {
		t.Fatal(err)
	}
	store := memcachedStore(t, mc.Addr)
	base := startRouter(t, Options{Cache: &CacheOptions{
		Store: store, Keys: keys, MaxBodySize: 64 << 10,
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}}),
	}}, testBackendOptions(backendAddr(m.Server)))
	fetch(t, "GET", base+"/tamper", "Host", "h")
	var pageKey string
	for _, k := range mc.Keys() {
		if strings.HasPrefix(k, prefix+"h/tamper|n") {
			pageKey = k
		}
	}
	orig, err := store.Get(pageKey)
	if pageKey == "" || err != nil {
		t.Fatalf("the filled page is not in memcached (%q, %v)", pageKey, err)
	}
	var e pagecache.Entry
	if err := pagecache.Decode(orig.Value, &e); err != nil {
		t.Fatal(err)
	}
	reencode := func(body []byte, headers ...pagecache.Header) []byte {
		p := pagecache.Page{Kind: e.Kind, Status: e.Status, StoredAt: e.StoredAt, FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil,
			URLGen: e.URLGen, Headers: headers, Body: body}
		b, err := pagecache.Encode(nil, &p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var bomb strings.Builder
	zw := gzip.NewWriter(&bomb)
	zw.Write(make([]byte, 50<<20))
	zw.Close()
	flipped := append([]byte(nil), orig.Value...)
	flipped[len(flipped)-3] ^= 0x20
	for _, tc := range []struct {
		name  string
		item  pagecache.Item
		wantH bool // the (tampered) page may still be served as a hit
	}{
		{"garbage", pagecache.Item{Value: []byte("\x00\xffnot an envelope at all")}, false},
		{"truncated", pagecache.Item{Value: orig.Value[:len(orig.Value)/2]}, false},
		{"one byte flipped", pagecache.Item{Value: flipped}, false},
		{"empty", pagecache.Item{Value: nil}, false},
		{"a valid envelope with the pickle flag", pagecache.Item{Value: orig.Value, Flags: 1}, true}, // the flag matters in raw mode only
		{"gzip bomb", pagecache.Item{Value: reencode([]byte(bomb.String()), pagecache.Header{Name: []byte("Content-Encoding"), Value: []byte("gzip")})}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := store.Set(pageKey, tc.item, time.Minute); err != nil {
				t.Fatal(err)
			}
			a := fetch(t, "GET", base+"/tamper", "Host", "h")
			if a.status != 200 || !strings.Contains(a.body, "GET /tamper") || len(a.body) > 1<<20 {
				t.Errorf("got %d %q, %d bytes; want the backend's page", a.status, a.cacheStatus, len(a.body))
			}
			if a.cacheStatus == statusHit && !tc.wantH {
				t.Errorf("a tampered value was served as a hit")
			}
		})
	}
}
