package router

import (
	"bufio"
	"bytes"
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

// BenchmarkRelay is relay alone: a backend's 20 KB answer, its head parsed
// and its body a stream (as HostClient leaves it), copied into the
// client's response.
func BenchmarkRelay(b *testing.B) {
	const size = 20 << 10
	raw := []byte("HTTP/1.1 200 OK\r\nDate: Mon, 07 Dec 2026 02:00:00 GMT\r\n" +
		"Content-Type: text/html; charset=utf-8\r\nContent-Length: 20480\r\n" +
		"Cache-Control: private\r\nVary: Cookie\r\nSet-Cookie: csrftoken=abc; Path=/\r\n" +
		"Connection: keep-alive\r\nX-Frame-Options: DENY\r\n\r\n" + strings.Repeat("x", size))
	var rd bytes.Reader
	br := bufio.NewReaderSize(&rd, 32<<10)
	var dst fasthttp.Response
	dst.Header.SetNoDefaultContentType(true)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(raw)
		br.Reset(&rd)
		src := fasthttp.AcquireResponse()
		src.StreamBody = true
		if err := src.Read(br); err != nil {
			b.Fatal(err)
		}
		dst.ResetBody()
		if err := relay(&dst, src, nil, nil); err != nil || len(dst.Body()) != size {
			b.Fatalf("relay: %v, %d bytes", err, len(dst.Body()))
		}
	}
}
