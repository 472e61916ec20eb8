package router

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// TestFillBuffersReused: concurrent misses of distinct pages read their
// bodies into pooled buffers (readBody) that go back to the pool once the
// leader's answer is relayed: every visitor still gets its own page, whole,
// and so does the next one, served from the store.
func TestFillBuffersReused(t *testing.T) {
	for _, format := range []string{"envelope", "raw"} {
		t.Run(format, func(t *testing.T) { testFillBuffersReused(t, format == "raw") })
	}
}

func testFillBuffersReused(t *testing.T, raw bool) {
	body := func(path string) string { return strings.Repeat(path+";", 20<<10/(len(path)+1)) }
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(body(r.URL.Path)))
	}))
	defer backend.Close()
	b, _ := NewBackends(testBackendOptions(backendAddr(backend)))
	store, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{})
	co := &CacheOptions{Store: store, Keys: keys,
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Default: pagecache.Rule{Cache: true, TTL: time.Hour}})}
	if raw {
		co.Raw = &RawOptions{Fill: true}
	}
	r, err := New(Options{Backends: b, Keys: testKeys, Cache: co})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (string, string) {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader("GET " + path + " HTTP/1.1\r\nHost: example.com\r\n\r\n"))); err != nil {
			t.Fatal(err)
		}
		ctx := new(fasthttp.RequestCtx)
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
		r.Handle(ctx)
		return string(ctx.Response.Body()), string(ctx.Response.Header.Peek("Cache-Status"))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				path := fmt.Sprintf("/g%d/page%d", g, i)
				for _, want := range []string{statusMissStored, statusHit} {
					got, status := get(path)
					if status != want || got != body(path) {
						t.Errorf("%s: %q, a body of %d bytes (%.20q); want %q and its own page", path, status, len(got), got, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
