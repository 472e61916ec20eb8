package router

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// forwardRouter returns a Router whose backend answers every request with
// a page of size bytes over loopback, and a request context carrying a
// session key, which the Router (without a session store) forwards as
// identified.
func forwardRouter(tb testing.TB, size int) (*Router, *fasthttp.RequestCtx) {
	tb.Helper()
	page := []byte(strings.Repeat("<p>personal page</p>\n", size/21+1)[:size])
	backend := serveHandler(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/html; charset=utf-8")
		ctx.Response.Header.Set("Cache-Control", "private")
		ctx.Response.SetBodyRaw(page)
	})
	b, err := NewBackends(testBackendOptions(strings.TrimPrefix(backend, "http://")))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := New(Options{Backends: b, Keys: testKeys})
	if err != nil {
		tb.Fatal(err)
	}
	raw := "GET /account HTTP/1.1\r\nHost: example.com\r\nAccept-Encoding: gzip\r\n" +
		"Cookie: sessionid=0123456789abcdefghijklmnopqrstuv\r\n\r\n"
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	return r, ctx
}

// forwardOnce forwards ctx's request and checks the answer.
func forwardOnce(tb testing.TB, r *Router, ctx *fasthttp.RequestCtx, size int) {
	ctx.Response.Reset()
	r.Handle(ctx)
	if ctx.Response.StatusCode() != fasthttp.StatusOK || len(ctx.Response.Body()) != size {
		tb.Fatalf("got %d with %d bytes; want 200 with %d", ctx.Response.StatusCode(), len(ctx.Response.Body()), size)
	}
}

// BenchmarkForward is an identified visitor's request forwarded to a
// backend on loopback and its 20 KB answer relayed: classification, the
// backend round trip (the backend's own cost included) and the relay,
// without the client connection's reads and writes.
func BenchmarkForward(b *testing.B) {
	const size = 20 << 10
	r, ctx := forwardRouter(b, size)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		forwardOnce(b, r, ctx, size)
	}
}
