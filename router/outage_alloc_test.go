//go:build !race

package router

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// TestOutageHitAllocs guards the hit path while the page store is down:
// serving the page an outage fill kept in process allocates nothing.
func TestOutageHitAllocs(t *testing.T) {
	mem, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	store := &failingStore{Store: mem}
	r := cachingRouter(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(strings.Repeat("<p>page</p>\n", 1000)))
	}, store, func(o *CacheOptions) {
		o.OutageL1Size, o.L1TTL, o.StoreBreakerCooldown = 1<<20, time.Hour, time.Hour
	})
	req := wireRequest(t, "GET /page HTTP/1.1\r\nHost: example.com\r\nAccept-Encoding: gzip\r\n\r\n")
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	r.Handle(ctx)
	store.down.Store(true)
	for i := range DefaultStoreBreakerFailures + 2 {
		ctx.Response.Reset()
		r.Handle(ctx)
		if cs := string(ctx.Response.Header.Peek("Cache-Status")); i > 0 && cs != statusHitStoreDown {
			t.Fatalf("request %d of the outage: %q; want %q", i, cs, statusHitStoreDown)
		}
	}
	n := testing.AllocsPerRun(500, func() {
		ctx.Response.Reset()
		r.Handle(ctx)
		if cs := ctx.Response.Header.Peek("Cache-Status"); string(cs) != statusHitStoreDown {
			t.Fatalf("got %q; want %q", cs, statusHitStoreDown)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per hit from the outage tier; want 0", n)
	}
}
