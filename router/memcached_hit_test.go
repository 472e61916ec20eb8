package router

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// memcachedHitRouter returns a Router whose page store is the test
// memcached, holding a page of size bytes, and a request context asking
// for it.
func memcachedHitRouter(tb testing.TB, size int) (*Router, *fasthttp.RequestCtx) {
	tb.Helper()
	page := strings.Repeat("<p>cached page</p>\n", size/19+1)[:size]
	m, err := pagecache.NewMemcache(pagecache.MemcacheOptions{Servers: []string{pagecachetest.Memcached(tb)}, Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	prefix := pagecachetest.Prefix()
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: prefix + "{host}{uri}"})
	r := cachingRouter(tb, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Surrogate-Key", "all section page-1")
		w.Write([]byte(page))
	}, m, func(o *CacheOptions) { o.Keys, o.Prefix = keys, prefix+"g:" })
	req := wireRequest(tb, "GET /page HTTP/1.1\r\nHost: example.com\r\nAccept-Encoding: gzip\r\n\r\n")
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	r.Handle(ctx) // the fill
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); cs != statusMissStored {
		tb.Fatalf("fill: %q", cs)
	}
	serveMemcachedHit(tb, r, ctx) // the first hit learns the page's tags
	return r, ctx
}

// serveMemcachedHit serves one hit and then, as the server does once the
// response is written, resets the request's user values (which gives the
// lookup's lent buffer back).
func serveMemcachedHit(tb testing.TB, r *Router, ctx *fasthttp.RequestCtx) {
	ctx.Response.Reset()
	r.Handle(ctx)
	if cs := ctx.Response.Header.Peek("Cache-Status"); string(cs) != statusHit {
		tb.Fatalf("got %q; want a hit", cs)
	}
	ctx.Request.ResetUserValues()
}

// BenchmarkMemcachedHit is the router's cost of a hit from memcached: the
// page and its 6 counters in one round trip to the test memcached, read
// into a lent buffer, decoded and answered.
func BenchmarkMemcachedHit(b *testing.B) {
	for _, s := range []struct {
		name string
		size int
	}{{"1KB", 1 << 10}, {"20KB", 20 << 10}, {"128KB", 128 << 10}} {
		b.Run(s.name, func(b *testing.B) {
			r, ctx := memcachedHitRouter(b, s.size)
			b.ReportAllocs()
			for b.Loop() {
				serveMemcachedHit(b, r, ctx)
			}
		})
	}
}
