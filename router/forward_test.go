package router

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/sessioncheck"
)

// testKeys finds Django session keys.
var testKeys, _ = sessioncheck.NewKeyFinder("sessionid", "^[a-z0-9]{32}$")

// testBackendOptions are short timeouts suited to loopback tests.
func testBackendOptions(addrs ...string) BackendOptions {
	return BackendOptions{
		Addrs:          addrs,
		ConnectTimeout: time.Second,
		ReadTimeout:    2 * time.Second,
		WriteTimeout:   2 * time.Second,
		IdleTimeout:    time.Second,
		FailTimeout:    10 * time.Second,
		MaxConns:       64,
		MaxHeaderSize:  16 << 10,
	}
}

// startRouter serves a Router over o on a loopback port until the test ends
// and returns its base URL.
func startRouter(t testing.TB, o Options, bo BackendOptions) string {
	t.Helper()
	if o.Backends == nil {
		b, err := NewBackends(bo)
		if err != nil {
			t.Fatal(err)
		}
		o.Backends = b
	}
	if o.Keys == nil {
		o.Keys = testKeys
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return serveHandler(t, r.Handle)
}

func serveHandler(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, ServerOptions{
		ReadTimeout:        5 * time.Second,
		IdleTimeout:        5 * time.Second,
		MaxHeaderSize:      16 << 10,
		MaxRequestBodySize: 64 << 20,
	})
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

// backendAddr returns the host:port of an httptest server.
func backendAddr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// rawExchange writes raw bytes to addr and returns everything read until
// the server closes or goes quiet.
func rawExchange(t *testing.T, addr, request string) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// captureBackend is a raw TCP backend recording each request's head
// exactly as received and answering with a fixed response.
type captureBackend struct {
	ln       net.Listener
	mu       sync.Mutex
	heads    []string
	response string
}

func newCaptureBackend(t *testing.T, response string) *captureBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &captureBackend{ln: ln, response: response}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *captureBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		if n := contentLength(head.String()); n > 0 {
			io.CopyN(io.Discard, br, int64(n))
		}
		b.mu.Lock()
		b.heads = append(b.heads, head.String())
		b.mu.Unlock()
		io.WriteString(c, b.response)
	}
}

func (b *captureBackend) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.heads) == 0 {
		return ""
	}
	return b.heads[len(b.heads)-1]
}

func contentLength(head string) int {
	for _, line := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func TestForwardMethodsAndBodies(t *testing.T) {
	var seen atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Body-Sha", fmt.Sprintf("%x", sha256.Sum256(body)))
		w.WriteHeader(201)
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.RequestURI(), len(body))
		}
	}))
	defer backend.Close()
	base := startRouter(t, Options{}, testBackendOptions(backendAddr(backend)))

	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"} {
		t.Run(m, func(t *testing.T) {
			body := strings.Repeat("x", 1000)
			req, _ := http.NewRequest(m, base+"/p?q=1", strings.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 201 || resp.Header.Get("X-Method") != m {
				t.Fatalf("got %d %q; want 201 %q", resp.StatusCode, resp.Header.Get("X-Method"), m)
			}
			if want := fmt.Sprintf("%x", sha256.Sum256([]byte(body))); resp.Header.Get("X-Body-Sha") != want {
				t.Errorf("backend got a different body")
			}
			want := fmt.Sprintf("%s /p?q=1 1000", m)
			if m == "HEAD" {
				want = ""
				if resp.ContentLength != int64(len(fmt.Sprintf("HEAD /p?q=1 %d", 1000))) && resp.ContentLength != -1 && resp.ContentLength != 0 {
					t.Errorf("HEAD Content-Length %d", resp.ContentLength)
				}
			}
			if string(got) != want {
				t.Errorf("got body %q; want %q", got, want)
			}
		})
	}
}

func TestForwardHeaders(t *testing.T) {
	backend := newCaptureBackend(t, "HTTP/1.1 200 OK\r\n"+
		"Set-Cookie: a=1; Path=/\r\nSet-Cookie: a=2; Path=/x\r\nSet-Cookie: b=3\r\n"+
		"X-Multi: 1\r\nX-Multi: 2\r\n"+
		"Connection: keep-alive, X-Hop-Resp\r\nX-Hop-Resp: secret\r\nKeep-Alive: timeout=5\r\n"+
		"Proxy-Authenticate: Basic\r\nUpgrade: h2c\r\n"+
		"Content-Length: 2\r\n\r\nok")
	base := startRouter(t, Options{}, testBackendOptions(backend.ln.Addr().String()))

	resp := rawExchange(t, base, "POST /x HTTP/1.1\r\nHost: Example.COM:8080\r\n"+
		"Connection: close, X-Hop-Req\r\nX-Hop-Req: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nUpgrade: websocket\r\n"+
		"X-Dup: 1\r\nX-Dup: 2\r\nCookie: a=1\r\nAuthorization: Bearer t\r\n"+
		"Content-Length: 3\r\n\r\nabc")
	head := backend.last()

	for _, want := range []string{"POST /x HTTP/1.1\r\n", "Host: Example.COM:8080\r\n", "X-Dup: 1\r\nX-Dup: 2\r\n",
		"Cookie: a=1\r\n", "Authorization: Bearer t\r\n", "Content-Length: 3\r\n"} {
		if !strings.Contains(head, want) {
			t.Errorf("backend request lacks %q:\n%s", want, head)
		}
	}
	for _, bad := range []string{"Connection", "X-Hop-Req", "Keep-Alive", "Te:", "Proxy-Authorization", "Proxy-Connection",
		"Upgrade", "Content-Type", "User-Agent"} {
		if strings.Contains(head, bad) {
			t.Errorf("backend request has %q:\n%s", bad, head)
		}
	}
	for _, want := range []string{"HTTP/1.1 200 OK\r\n", "Set-Cookie: a=1; Path=/\r\n", "Set-Cookie: a=2; Path=/x\r\n",
		"Set-Cookie: b=3\r\n", "X-Multi: 1\r\nX-Multi: 2\r\n", "Content-Length: 2\r\n", "\r\n\r\nok"} {
		if !strings.Contains(resp, want) {
			t.Errorf("client response lacks %q:\n%s", want, resp)
		}
	}
	for _, bad := range []string{"X-Hop-Resp", "Keep-Alive", "Proxy-Authenticate", "Upgrade", "Server:", "Date:", "Content-Type"} {
		if strings.Contains(resp, bad) {
			t.Errorf("client response has %q:\n%s", bad, resp)
		}
	}
	// The client asked to close: the router answers and closes.
	if !strings.Contains(resp, "Connection: close\r\n") {
		t.Errorf("client asked for Connection: close and got:\n%s", resp)
	}
}

func TestForwardKeepsBackendDateAndServer(t *testing.T) {
	backend := newCaptureBackend(t, "HTTP/1.1 200 OK\r\nDate: Tue, 01 Jan 2030 00:00:00 GMT\r\nServer: gunicorn\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n")
	base := startRouter(t, Options{}, testBackendOptions(backend.ln.Addr().String()))
	resp := rawExchange(t, base, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	for _, want := range []string{"Date: Tue, 01 Jan 2030 00:00:00 GMT\r\n", "Server: gunicorn\r\n", "Content-Type: text/html\r\n"} {
		if !strings.Contains(resp, want) {
			t.Errorf("response lacks %q:\n%s", want, resp)
		}
	}
	if strings.Count(resp, "Date:") != 1 || strings.Count(resp, "Server:") != 1 {
		t.Errorf("duplicated headers:\n%s", resp)
	}
}

func TestForwardKeepsClientConnectionOpen(t *testing.T) {
	for _, response := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
	} {
		backend := newCaptureBackend(t, response)
		base := startRouter(t, Options{}, testBackendOptions(backend.ln.Addr().String()))
		got := rawExchange(t, base, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		status, _, _ := strings.Cut(response, "\r\n")
		if strings.Count(got, status) != 2 || strings.Count(got, "Connection: close") != 1 {
			t.Errorf("backend answer %q: got\n%s\nwant two answers on one connection, closed only after the second", status, got)
		}
	}
}

func TestForwardRawURI(t *testing.T) {
	backend := newCaptureBackend(t, "HTTP/1.1 204 No Content\r\n\r\n")
	base := startRouter(t, Options{}, testBackendOptions(backend.ln.Addr().String()))
	for _, uri := range []string{
		"/a//b/../c%2f%zz?x=1&y=%ZZ",
		"/?",
		"/path?a=b?c&&d=;e",
		"/caf\xc3\xa9/%E2%82%AC?q=%20+%2B",
		"/%00",
		"//double//slash/",
		"/./dot/%2e%2E/",
		"*",
	} {
		rawExchange(t, base, "OPTIONS "+uri+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		want := "OPTIONS " + uri + " HTTP/1.1\r\n"
		if got, _, _ := strings.Cut(backend.last(), "Host:"); got != want {
			t.Errorf("got request line %q; want %q", got, want)
		}
	}
}

func TestForwardXForwardedFor(t *testing.T) {
	backend := newCaptureBackend(t, "HTTP/1.1 204 No Content\r\n\r\n")
	addr := backend.ln.Addr().String()
	req := "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"

	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	rawExchange(t, startRouter(t, Options{TrustedProxies: loopback}, testBackendOptions(addr)), req)
	head := backend.last()
	for _, want := range []string{"X-Forwarded-For: 203.0.113.7\r\n", "X-Real-Ip: 203.0.113.7\r\n", "X-Forwarded-Proto: https\r\n"} {
		if !strings.Contains(head, want) {
			t.Errorf("trusted peer: backend request lacks %q:\n%s", want, head)
		}
	}

	rawExchange(t, startRouter(t, Options{}, testBackendOptions(addr)), req)
	head = backend.last()
	for _, want := range []string{"X-Forwarded-For: 127.0.0.1\r\n", "X-Real-Ip: 127.0.0.1\r\n", "X-Forwarded-Proto: http\r\n"} {
		if !strings.Contains(head, want) {
			t.Errorf("untrusted peer: backend request lacks %q:\n%s", want, head)
		}
	}
	if strings.Contains(head, "203.0.113.7") || strings.Contains(head, "https") {
		t.Errorf("untrusted peer: its own forwarding headers reached the backend:\n%s", head)
	}
}

func TestForwardChunkedStreams(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first chunk\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second chunk\n")
	}))
	defer backend.Close()
	base := startRouter(t, Options{}, testBackendOptions(backendAddr(backend)))

	resp, err := http.Get(base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("got Transfer-Encoding %v; want chunked", resp.TransferEncoding)
	}
	br := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() { line, _ := br.ReadString('\n'); first <- line }()
	select {
	case line := <-first:
		if line != "first chunk\n" {
			t.Errorf("got %q; want the first chunk", line)
		}
	case <-time.After(time.Second):
		t.Fatal("the first chunk did not arrive while the backend was still writing: the response is buffered")
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "second chunk\n" {
		t.Errorf("got %q; want the second chunk", rest)
	}
}

func TestForwardLargeUpload(t *testing.T) {
	const size = 40 << 20
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	}))
	defer backend.Close()
	base := startRouter(t, Options{}, testBackendOptions(backendAddr(backend)))

	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	for _, chunked := range []bool{false, true} {
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // hides the length: net/http sends chunked
		}
		resp, err := http.Post(base+"/upload", "application/octet-stream", r)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d %x", size, sha256.Sum256(body)); string(got) != want {
			t.Errorf("chunked=%v: backend got %q; want %q", chunked, got, want)
		}
	}
}

func TestForwardRejectsOversizedUpload(t *testing.T) {
	var seen atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen.Add(1) }))
	defer backend.Close()
	b, _ := NewBackends(testBackendOptions(backendAddr(backend)))
	r, _ := New(Options{Backends: b, Keys: testKeys, MaxRequestBodySize: 1 << 20})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := NewServer(r.Handle, ServerOptions{ReadTimeout: 5 * time.Second, MaxHeaderSize: 16 << 10, MaxRequestBodySize: 1 << 20})
	go srv.Serve(ln)
	defer srv.Shutdown()

	for _, chunked := range []bool{false, true} {
		var body io.Reader = bytes.NewReader(make([]byte, 2<<20))
		if chunked {
			body = io.MultiReader(body)
		}
		resp, err := http.Post("http://"+ln.Addr().String()+"/upload", "text/plain", body)
		if err != nil {
			// The router answers 413 and closes without reading the rest;
			// a client still writing may see the reset before the answer.
			if seen.Load() != 0 {
				t.Errorf("chunked=%v: %v, and the backend saw the request", chunked, err)
			}
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || seen.Load() != 0 {
			t.Errorf("chunked=%v: got %d with %d backend requests; want 413 and none", chunked, resp.StatusCode, seen.Load())
		}
	}
}

// TestForwardLargeDownloadBoundedMemory streams 100 MB through the router
// and checks the heap never grows by more than a few megabytes.
func TestForwardLargeDownloadBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB transfer")
	}
	const size = 100 << 20
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := bytes.Repeat([]byte{'z'}, 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer backend.Close()
	base := startRouter(t, Options{}, testBackendOptions(backendAddr(backend)))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseline := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	resp, err := http.Get(base + "/big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(stop)
	<-sampled
	if err != nil || n != size {
		t.Fatalf("read %d bytes (%v); want %d", n, err, size)
	}
	growth := int64(peak.Load()) - int64(baseline)
	t.Logf("heap in use grew by at most %.1f MiB while streaming 100 MiB", float64(growth)/(1<<20))
	if growth > 24<<20 {
		t.Errorf("heap grew by %d MiB streaming 100 MiB: the response is buffered", growth>>20)
	}
}

func TestForwardBackendFailures(t *testing.T) {
	// A port nothing listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := ln.Addr().String()
	ln.Close()

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond)
	}))
	defer slow.Close()

	garbage := newRawBackend(t, func(c net.Conn) { io.WriteString(c, "this is not HTTP\r\n\r\n") })
	closesEarly := newRawBackend(t, func(c net.Conn) {}) // reads the request, closes
	cut := newRawBackend(t, func(c net.Conn) {           // a small body, cut short
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
		io.WriteString(c, strings.Repeat("a", 100))
	})
	cutLarge := newRawBackend(t, func(c net.Conn) { // a streamed body, cut short
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
		io.WriteString(c, strings.Repeat("a", 1<<20))
	})

	for _, tc := range []struct {
		name   string
		addr   string
		status int
	}{
		{"down", down, 502},
		{"slow", backendAddr(slow), 504},
		{"garbage", garbage, 502},
		{"closes before answering", closesEarly, 502},
		{"closes mid-body", cut, 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testBackendOptions(tc.addr)
			o.ReadTimeout = 300 * time.Millisecond
			base := startRouter(t, Options{}, o)
			resp, err := http.Get(base + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("got %d %q; want %d", resp.StatusCode, body, tc.status)
			}
			if !strings.HasPrefix(string(body), strconv.Itoa(tc.status)) && !strings.Contains(string(body), http.StatusText(tc.status)) {
				t.Errorf("got body %q; want a short explanation", body)
			}
		})
	}

	t.Run("closes mid-stream", func(t *testing.T) {
		base := startRouter(t, Options{}, testBackendOptions(cutLarge))
		// The head may or may not have left the router's buffer before the
		// body failed; either way the client must see an error, never a
		// complete-looking response.
		resp, err := http.Get(base + "/")
		if err != nil {
			return
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil || n >= 10000000 {
			t.Errorf("read %d bytes, err %v; want a truncated body and an error", n, err)
		}
	})
}

// newRawBackend accepts connections, reads one request head and calls
// answer, then closes the connection.
func newRawBackend(t *testing.T, answer func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				answer(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestForwardNoRetryAfterSend(t *testing.T) {
	var requests atomic.Int64
	addr := newRawBackend(t, func(c net.Conn) { requests.Add(1) })
	base := startRouter(t, Options{}, testBackendOptions(addr))
	resp, err := http.Post(base+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(50 * time.Millisecond)
	if resp.StatusCode != 502 || requests.Load() != 1 {
		t.Errorf("got %d after %d backend attempts; want 502 after exactly 1 (a POST is never retried once sent)", resp.StatusCode, requests.Load())
	}
}

func TestForwardRoundRobinSkipsDownBackend(t *testing.T) {
	var hits [2]atomic.Int64
	var backends []string
	for i := range 2 {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits[i].Add(1) }))
		defer s.Close()
		backends = append(backends, backendAddr(s))
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := ln.Addr().String()
	ln.Close()
	backends = append(backends, down)

	base := startRouter(t, Options{}, testBackendOptions(backends...))
	for i := range 30 {
		// POST too: a refused connection sent nothing, so any method moves on.
		method := []string{"GET", "POST"}[i%2]
		req, _ := http.NewRequest(method, base+"/", strings.NewReader("b"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: got %d; want 200 while two backends are up", i, resp.StatusCode)
		}
	}
	if hits[0].Load() < 10 || hits[1].Load() < 10 {
		t.Errorf("got %d and %d requests; want them spread over both live backends", hits[0].Load(), hits[1].Load())
	}
}

func TestForwardRecoversWhenOnlyBackendReturns(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	base := startRouter(t, Options{}, testBackendOptions(addr))
	if resp, err := http.Get(base + "/"); err != nil || resp.StatusCode != 502 {
		t.Fatalf("got %v %v; want 502 while the backend is down", resp, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(ln)
	defer srv.Close()
	// Marked failed for FailTimeout, but as the only backend it is tried anyway.
	if resp, err := http.Get(base + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %v %v; want 200 as soon as the backend is back", resp, err)
	}
}

// TestAppendIP: X-Forwarded-For and X-Real-IP carry the address as
// net.IP.String writes it.
func TestAppendIP(t *testing.T) {
	for _, tc := range []struct {
		name string
		ip   net.IP
	}{
		{"v4", net.IPv4(192, 0, 2, 7).To4()},
		{"v4 in 16 bytes", net.IPv4(192, 0, 2, 7)},
		{"v6", net.ParseIP("2001:db8::1")},
		{"v6 loopback", net.IPv6loopback},
		{"nil", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := string(appendIP(nil, tc.ip)), tc.ip.String(); got != want {
				t.Errorf("got %q; want %q", got, want)
			}
		})
	}
}

// TestDeadlineConnZeroReset: HostClient clears the deadlines before each
// request; a backend connection must still time out a read that waits
// longer than the read timeout, also after lying idle in the pool for
// longer than that (its renewed deadline then lies in the past and must
// be moved, not left to fail the read at once).
func TestDeadlineConnZeroReset(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &deadlineConn{Conn: a, read: 50 * time.Millisecond, write: 50 * time.Millisecond}
	defer c.Close()
	go func() { b.Write([]byte("x")) }()
	var buf [1]byte
	if _, err := c.Read(buf[:]); err != nil {
		t.Fatalf("first read: %v", err)
	}
	for _, idle := range []time.Duration{0, 80 * time.Millisecond} {
		time.Sleep(idle)
		c.SetReadDeadline(time.Time{})
		c.SetWriteDeadline(time.Time{})
		start := time.Now()
		_, err := c.Read(buf[:])
		took := time.Since(start)
		if !isTimeout(err) || took < 40*time.Millisecond || took > time.Second {
			t.Errorf("after %v idle: read gave %v after %v; want a timeout after about 50ms", idle, err, took)
		}
	}
	// A hard deadline set through the API still applies, and clearing it
	// goes back to the per-read timeout.
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	start := time.Now()
	if _, err := c.Read(buf[:]); !isTimeout(err) || time.Since(start) > 40*time.Millisecond {
		t.Errorf("hard deadline: got %v after %v; want a timeout after about 10ms", err, time.Since(start))
	}
}

// TestForwardReusesBackendConnections: whatever the answer's framing (no
// body, a body held in the read buffer, a longer one streamed with a
// length, chunked), once relayed its backend connection is used again.
func TestForwardReusesBackendConnections(t *testing.T) {
	var conns atomic.Int32
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		body := bytes.Repeat([]byte("b"), n)
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
			return
		case "/chunked":
			w.Write(body[:n/2])
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write(body[n/2:])
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(body)
	}))
	backend.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	backend.Start()
	defer backend.Close()
	base := startRouter(t, Options{}, testBackendOptions(backendAddr(backend)))
	for _, tc := range []struct {
		name, method, path string
		status, size       int
	}{
		{"no body", "GET", "/empty", 204, 0},
		{"HEAD", "HEAD", "/len?n=20000", 200, 0},
		{"small", "GET", "/len?n=100", 200, 100},
		{"20 KB, in the read buffer", "GET", "/len?n=20480", 200, 20480},
		{"a full read buffer", "GET", "/len?n=32768", 200, 32768},
		{"100 KB, buffered by the relay", "GET", "/len?n=102400", 200, 102400},
		{"1 MB, streamed", "GET", "/len?n=1048576", 200, 1048576},
		{"chunked", "GET", "/chunked?n=50000", 200, 50000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 5 {
				req, _ := http.NewRequest(tc.method, base+tc.path, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != tc.status || len(body) != tc.size {
					t.Fatalf("got %d with %d bytes (%v); want %d with %d", resp.StatusCode, len(body), err, tc.status, tc.size)
				}
			}
		})
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the backend saw %d connections; want 1, used again for every request", n)
	}
}

// TestForwardAccessLogKeepsStream: writing a forward's access log line
// neither reads its body (which would buffer a download in memory before
// the server writes it) nor misreports its size.
func TestForwardAccessLogKeepsStream(t *testing.T) {
	const size = 20 << 10
	r, ctx := forwardRouter(t, size)
	buf := &syncBuffer{out: make(chan struct{})}
	r.access = NewAccessLog(buf, "combined", 16, nil)
	ctx.Response.Reset()
	r.Handle(ctx)
	if !ctx.Response.IsBodyStream() {
		t.Errorf("the answer's body was read before the server could write it")
	}
	ctx.Response.Reset() // closes the stream: the backend connection goes back
	r.access.Close()
	if line := buf.String(); !strings.Contains(line, " 200 20480 ") {
		t.Errorf("got %q; want a line with status 200 and size 20480", line)
	}
}
