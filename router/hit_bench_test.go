package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// cachingRouter returns a Router that caches in store what h answers (a
// real backend on loopback), under the default key template and a
// policy that caches for an hour unless Cache-Control says otherwise;
// tweak, when not nil, changes the cache options first.
func cachingRouter(tb testing.TB, h http.HandlerFunc, store pagecache.Store, tweak func(*CacheOptions)) *Router {
	tb.Helper()
	backend := httptest.NewServer(h)
	tb.Cleanup(backend.Close)
	b, _ := NewBackends(testBackendOptions(backendAddr(backend)))
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{})
	o := CacheOptions{Store: store, Keys: keys,
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Default: pagecache.Rule{Cache: true, TTL: time.Hour, HonorCacheControl: true}})}
	if tweak != nil {
		tweak(&o)
	}
	r, err := New(Options{Backends: b, Keys: testKeys, Cache: &o})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// wireRequest is the request head raw parsed from the wire, as the
// server parses it: setting a Cookie through the API would parse it,
// which the server never does.
func wireRequest(tb testing.TB, raw string) *fasthttp.Request {
	tb.Helper()
	req := new(fasthttp.Request)
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
	return req
}

// hitRouter returns a Router with a memory store holding a 20 KB page at
// http://example.com/page, and a request context asking for it.
func hitRouter(tb testing.TB, cookie string) (*Router, *fasthttp.RequestCtx) {
	r, ctx, _ := hitRouterSize(tb, cookie, 20<<10)
	return r, ctx
}

// hitSizes are the page sizes hits are measured at (issue 19).
var hitSizes = []struct {
	name string
	size int
}{{"1KB", 1 << 10}, {"16KB", 16 << 10}, {"128KB", 128 << 10}, {"512KB", 512 << 10}}

// hitRouterSize is hitRouter with a page of size bytes; it returns the
// store too.
func hitRouterSize(tb testing.TB, cookie string, size int) (*Router, *fasthttp.RequestCtx, *keptStore) {
	tb.Helper()
	page := strings.Repeat("<p>cached page</p>\n", size/19+1)[:size]
	mem, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	store := &keptStore{Memory: mem}
	r := cachingRouter(tb, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("ETag", `"p1"`)
		w.Write([]byte(page))
	}, store, nil)
	raw := "GET /page HTTP/1.1\r\nHost: example.com\r\nAccept-Encoding: gzip\r\n"
	if cookie != "" {
		raw += "Cookie: " + cookie + "\r\n"
	}
	req := wireRequest(tb, raw+"\r\n")
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	r.Handle(ctx) // the fill
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); cs != statusMissStored && cs != statusMissBackground {
		tb.Fatalf("fill: %q", cs)
	}
	time.Sleep(50 * time.Millisecond) // a background fill, for a visitor with cookies
	ctx.Response.Reset()
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	return r, ctx, store
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

// keptStore is a memory store that keeps what it was given to store.
type keptStore struct {
	*pagecache.Memory
	mu  sync.Mutex
	set [][]byte
}

func (s *keptStore) Set(key string, it pagecache.Item, ttl time.Duration) error {
	s.mu.Lock()
	s.set = append(s.set, it.Value)
	s.mu.Unlock()
	return s.Memory.Set(key, it, ttl)
}

// BenchmarkHitSize is a hit at each page size, its response written as
// the server writes it (through a 4 KiB bufio.Writer, here to
// io.Discard): the cost must not grow with the page, whose body is
// written from the stored value, never copied (beyond the bytes that
// complete the head's buffer; see serveEntry).
func BenchmarkHitSize(b *testing.B) {
	for _, s := range hitSizes {
		b.Run(s.name, func(b *testing.B) {
			r, ctx, _ := hitRouterSize(b, "", s.size)
			w := bufio.NewWriterSize(io.Discard, 4096)
			b.SetBytes(int64(s.size))
			b.ReportAllocs()
			for b.Loop() {
				serveHit(b, r, ctx)
				if err := ctx.Response.Write(w); err != nil {
					b.Fatal(err)
				}
				w.Flush()
			}
		})
	}
}

// TestHitBodyNotCopied: a hit's response body is the stored value's
// bytes, at every size: no copy is made to serve it.
func TestHitBodyNotCopied(t *testing.T) {
	for _, s := range hitSizes {
		t.Run(s.name, func(t *testing.T) {
			r, ctx, store := hitRouterSize(t, "", s.size)
			serveHit(t, r, ctx)
			body := ctx.Response.Body()
			if len(body) != s.size {
				t.Fatalf("got a body of %d bytes; want %d", len(body), s.size)
			}
			found := false
			for _, v := range store.set {
				start := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
				p := uintptr(unsafe.Pointer(unsafe.SliceData(body)))
				found = found || p >= start && p+uintptr(len(body)) <= start+uintptr(len(v))
			}
			if !found {
				t.Errorf("the response body is a copy; want the stored value's bytes")
			}
		})
	}
}
