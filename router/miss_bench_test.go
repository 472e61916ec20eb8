package router

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// BenchmarkMiss is the router's cost of a miss of a URL nobody asked
// for, filled into the memory store from a real backend (net/http on
// loopback) and relayed: lookup, fill request, policy, envelope, store
// and the response. The 20 KB page carries three surrogate keys, as
// bench's origin sends; the store is soon full, and evicts. The figures
// include the backend's own (net/http's allocations among them).
func BenchmarkMiss(b *testing.B) {
	page := strings.Repeat("<p>a page</p>\n", 20<<10/14+1)[:20<<10]
	mem, _ := pagecache.NewMemory(pagecache.MemoryOptions{MaxBytes: 32 << 20}) // full after 1,500 misses
	r := cachingRouter(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Surrogate-Key", "all section-p "+r.URL.Path)
		w.Write([]byte(page))
	}, mem, nil)
	req := wireRequest(b, "GET /p/0 HTTP/1.1\r\nHost: example.com\r\nAccept-Encoding: gzip\r\n\r\n")
	ctx := new(fasthttp.RequestCtx)
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	uri := make([]byte, 0, 32)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		uri = strconv.AppendInt(append(uri[:0], "/p/"...), int64(i), 10)
		req.SetRequestURIBytes(uri)
		ctx.Init(req, addr, nil)
		r.Handle(ctx)
		if cs := string(ctx.Response.Header.Peek("Cache-Status")); cs != statusMissStored {
			b.Fatalf("miss %d: Cache-Status %q", i, cs)
		}
		ctx.Response.Reset()
	}
}
