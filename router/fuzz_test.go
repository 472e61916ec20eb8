package router

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"
)

// FuzzRequestFraming sends arbitrary bytes as a request, then a canary
// request whose path the input cannot guess, on one connection to a
// Router with a page cache. The Router must not panic, must answer in
// HTTP (or close), and must still answer a new connection properly.
func FuzzRequestFraming(f *testing.F) {
	for _, seed := range []string{
		"GET /page HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /page HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
		"GET /page HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"PURGE /page HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET /page HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
		"GET http://h/page HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /page HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
		"GET /page HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\nContent-Length: 2\r\n\r\nab",
	} {
		f.Add([]byte(seed))
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "page %s", r.URL.Path)
	}))
	f.Cleanup(backend.Close)
	b, err := NewBackends(testBackendOptions(backendAddr(backend)))
	if err != nil {
		f.Fatal(err)
	}
	r, err := New(Options{Backends: b, Keys: testKeys, Cache: memoryCache(f), MaxRequestBodySize: 64 << 10})
	if err != nil {
		f.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	srv := NewServer(r.Handle, ServerOptions{ReadTimeout: time.Second, IdleTimeout: time.Second, MaxHeaderSize: 16 << 10, MaxRequestBodySize: 64 << 10})
	go srv.Serve(ln)
	f.Cleanup(func() { srv.Shutdown() })

	f.Fuzz(func(t *testing.T, input []byte) {
		c, err := ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		canaryPath := fmt.Sprintf("/canary-%x", rand.Uint64())
		go func() {
			c.Write(input)
			io.WriteString(c, "GET "+canaryPath+" HTTP/1.1\r\nHost: h\r\n\r\n")
		}()
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		out, _ := io.ReadAll(io.LimitReader(c, 1<<20))
		if len(out) > 0 && !strings.HasPrefix(string(out), "HTTP/1.1 ") {
			t.Fatalf("the answer is not HTTP: %.100q", out)
		}
		// Whatever the input did, the server still answers a new
		// connection properly.
		c2, err := ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		go io.WriteString(c2, "GET "+canaryPath+"-2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
		if err != nil {
			t.Fatalf("a new connection after the input: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), canaryPath+"-2") {
			t.Fatalf("a new connection after the input got %q", body)
		}
	})
}
