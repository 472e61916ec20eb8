//go:build !race

package router

import (
	"net"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// TestVariantHitAllocs guards a variant's hit: the marker's lookup, the
// variant's and serving it allocate nothing in userrouter.
func TestVariantHitAllocs(t *testing.T) {
	store, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	r := cachingRouter(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept-Language")
		w.Write([]byte("page for " + r.Header.Get("Accept-Language")))
	}, store, nil)
	req := wireRequest(t, "GET /page HTTP/1.1\r\nHost: example.com\r\nAccept-Language: fr-FR, fr;q=0.9\r\n\r\n")
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	r.Handle(ctx) // the marker, then the fr variant
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); cs != statusMissStored {
		t.Fatalf("fill: %q", cs)
	}
	ctx.Response.Reset()
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	serveHit(t, r, ctx)
	if body := string(ctx.Response.Body()); body != "page for fr-fr,fr;q=0.9" {
		t.Fatalf("hit: %q; want the fr variant", body)
	}
	if n := testing.AllocsPerRun(500, func() { serveHit(t, r, ctx) }); n != 0 {
		t.Errorf("%v allocations per variant hit; want 0", n)
	}
}
