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

// forwardOnce forwards ctx's request, writes the answer as the server
// does (through a 32 KiB write buffer, to w), and checks it.
func forwardOnce(tb testing.TB, r *Router, ctx *fasthttp.RequestCtx, w *countWriter, size int) {
	ctx.Response.Reset()
	r.Handle(ctx)
	if ctx.Response.StatusCode() != fasthttp.StatusOK {
		tb.Fatalf("got %d; want 200", ctx.Response.StatusCode())
	}
	w.n = 0
	if err := ctx.Response.Write(w.bw); err != nil || w.bw.Flush() != nil {
		tb.Fatalf("write: %v", err)
	}
	if w.n < size || w.n > size+1024 {
		tb.Fatalf("wrote %d bytes; want the %d of the body and a head", w.n, size)
	}
}

// countWriter counts what its bufio.Writer writes.
type countWriter struct {
	n  int
	bw *bufio.Writer
}

func newCountWriter() *countWriter {
	w := &countWriter{}
	w.bw = bufio.NewWriterSize(w, ioBufferSize)
	return w
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

// BenchmarkForward is an identified visitor's request forwarded to a
// backend on loopback and its 20 KB answer relayed: classification, the
// backend round trip (the backend's own cost included), the relay, and
// the answer written into a write buffer as the server writes it, without
// the client connection's own reads and writes.
func BenchmarkForward(b *testing.B) {
	const size = 20 << 10
	r, ctx := forwardRouter(b, size)
	w := newCountWriter()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		forwardOnce(b, r, ctx, w, size)
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
