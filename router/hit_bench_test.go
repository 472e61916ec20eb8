package router

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// hitRouter returns a Router with a memory store holding a 20 KB page at
// http://example.com/page, and a request context asking for it.
func hitRouter(tb testing.TB, cookie string) (*Router, *fasthttp.RequestCtx) {
	tb.Helper()
	page := strings.Repeat("<p>cached page</p>\n", 20<<10/19)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("ETag", `"p1"`)
		w.Write([]byte(page))
	}))
	tb.Cleanup(backend.Close)
	b, _ := NewBackends(testBackendOptions(backendAddr(backend)))
	store, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{})
	r, err := New(Options{Backends: b, Keys: testKeys, Cache: &CacheOptions{Store: store, Keys: keys,
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Default: pagecache.Rule{Cache: true, TTL: time.Hour, HonorCacheControl: true}})}})
	if err != nil {
		tb.Fatal(err)
	}
	// Parsed from the wire, as the server does: setting a Cookie through
	// the API would parse it, which the server never does.
	raw := "GET /page HTTP/1.1\r\nHost: example.com\r\nAccept-Encoding: gzip\r\n"
	if cookie != "" {
		raw += "Cookie: " + cookie + "\r\n"
	}
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw + "\r\n"))); err != nil {
		tb.Fatal(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	r.Handle(ctx) // the fill
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); cs != statusMissStored && cs != statusMissBackground {
		tb.Fatalf("fill: %q", cs)
	}
	time.Sleep(50 * time.Millisecond) // a background fill, for a visitor with cookies
	ctx.Response.Reset()
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	return r, ctx
}

func serveHit(tb testing.TB, r *Router, ctx *fasthttp.RequestCtx) {
	ctx.Response.Reset()
	r.Handle(ctx)
	if cs := ctx.Response.Header.Peek("Cache-Status"); string(cs) != statusHit {
		tb.Fatalf("got %q; want a hit", cs)
	}
}

// BenchmarkHit is the router's own cost of a cache hit: classification,
// key, store lookup (in memory), envelope decode, response headers.
func BenchmarkHit(b *testing.B) {
	for _, tc := range []struct{ name, cookie string }{
		{"no-cookie", ""},
		{"other-cookies", "csrftoken=abc; _ga=GA1.2.3"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r, ctx := hitRouter(b, tc.cookie)
			b.ReportAllocs()
			for b.Loop() {
				serveHit(b, r, ctx)
			}
		})
	}
}
