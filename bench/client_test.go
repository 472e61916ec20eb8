package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// scriptConn is a net.Conn whose reads return the pieces of a scripted
// answer one by one, then EOF, and whose writes are recorded: it drives
// conn's parser through every split of an answer without a network.
type scriptConn struct {
	pieces  [][]byte
	written bytes.Buffer
	closed  bool
}

func (s *scriptConn) Read(p []byte) (int, error) {
	for len(s.pieces) > 0 && len(s.pieces[0]) == 0 {
		s.pieces = s.pieces[1:]
	}
	if len(s.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.pieces[0])
	s.pieces[0] = s.pieces[0][n:]
	return n, nil
}
func (s *scriptConn) Write(p []byte) (int, error)      { return s.written.Write(p) }
func (s *scriptConn) Close() error                     { s.closed = true; return nil }
func (s *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *scriptConn) SetDeadline(time.Time) error      { return nil }
func (s *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptConn) SetWriteDeadline(time.Time) error { return nil }
func (s *scriptConn) pending() bool {
	for _, p := range s.pieces {
		if len(p) > 0 {
			return true
		}
	}
	return false
}
func (s *scriptConn) script(answer string, piece int) {
	for b := []byte(answer); len(b) > 0; {
		n := min(piece, len(b))
		s.pieces = append(s.pieces, b[:n])
		b = b[n:]
	}
}

// scripted returns a conn reading answer in pieces of piece bytes.
func scripted(answer string, piece int, head bool) (*conn, *scriptConn) {
	sc := &scriptConn{}
	sc.script(answer, piece)
	c := newConn(endpoint{addr: "scripted"}, time.Minute, head)
	c.nc = sc
	return c, sc
}

func TestConnAnswers(t *testing.T) {
	body13k := strings.Repeat("b", 13<<10)
	tests := []struct {
		name        string
		answer      string
		head        bool
		status      int
		cacheStatus string
		closed      bool   // the connection is closed after the answer
		err         string // substring of the error; "" for none
		whole       bool   // the answer must arrive in one read
	}{
		{name: "content-length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200},
		{name: "13 KB body", answer: "HTTP/1.1 200 OK\r\nContent-Length: 13312\r\nCache-Status: userrouter; hit\r\n\r\n" + body13k, status: 200, cacheStatus: "userrouter; hit"},
		{name: "no reason phrase", answer: "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", status: 404},
		{name: "header names any case", answer: "HTTP/1.1 200 OK\r\ncontent-LENGTH: 2\r\nCACHE-STATUS:  c; fwd=miss \r\n\r\nok", status: 200, cacheStatus: "c; fwd=miss"},
		{name: "two Cache-Status fields", answer: "HTTP/1.1 200 OK\r\nCache-Status: origin; hit\r\nContent-Length: 0\r\nCache-Status: edge; fwd=uri-miss\r\n\r\n", status: 200, cacheStatus: "origin; hit, edge; fwd=uri-miss"},
		{name: "chunked", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a; ext=1\r\n" + strings.Repeat("c", 26) + "\r\n0\r\n\r\n", status: 200},
		{name: "chunked with trailer", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n", status: 200},
		{name: "chunked wins over length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", status: 200},
		{name: "body until close", answer: "HTTP/1.1 200 OK\r\n\r\n" + body13k, status: 200, closed: true},
		{name: "connection close", answer: "HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy", status: 503, closed: true},
		{name: "HTTP/1.0", answer: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, closed: true},
		{name: "HTTP/1.0 keep-alive", answer: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", status: 200},
		{name: "no content", answer: "HTTP/1.1 204 No Content\r\n\r\n", status: 204},
		{name: "not modified", answer: "HTTP/1.1 304 Not Modified\r\nContent-Length: 13312\r\n\r\n", status: 304},
		{name: "HEAD", answer: "HTTP/1.1 200 OK\r\nContent-Length: 13312\r\n\r\n", head: true, status: 200},
		{name: "interim answer", answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", status: 201},
		{name: "cut short", answer: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", err: "unexpected EOF"},
		{name: "chunked cut short", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", err: "unexpected EOF"},
		{name: "header cut short", answer: "HTTP/1.1 200 OK\r\nContent-Le", err: "unexpected EOF"},
		{name: "nothing", answer: "", err: errStaleConn.Error()},
		{name: "not HTTP", answer: "SSH-2.0-OpenSSH_9.2\r\n\r\n", err: "malformed"},
		{name: "bad status", answer: "HTTP/1.1 2x0 OK\r\n\r\n", err: "malformed"},
		{name: "bad length", answer: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: "malformed"},
		{name: "conflicting lengths", answer: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok", err: "malformed"},
		{name: "bad chunk size", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: "malformed"},
		{name: "no CRLF after chunk", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n", err: "malformed"},
		{name: "header line without colon", answer: "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", err: "malformed"},
		{name: "header too big", answer: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("x", readBufSize) + "\r\n\r\n", err: "larger than the read buffer"},
		{name: "unasked data", answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n", err: "unasked", whole: true},
	}
	for _, tt := range tests {
		for _, piece := range []int{1, 7, 1 << 20} {
			if tt.whole && piece < len(tt.answer) {
				continue
			}
			t.Run(fmt.Sprintf("%s/pieces of %d", tt.name, piece), func(t *testing.T) {
				c, sc := scripted(tt.answer, piece, tt.head)
				a, err := c.roundTrip([]byte("GET / HTTP/1.1\r\n\r\n"))
				if tt.err != "" {
					if err == nil || !strings.Contains(err.Error(), tt.err) {
						t.Fatalf("got error %v; want one saying %q", err, tt.err)
					}
					return
				}
				if err != nil {
					t.Fatalf("got error %v", err)
				}
				if a.status != tt.status || string(a.cacheStatus) != tt.cacheStatus {
					t.Errorf("got status %d, Cache-Status %q; want %d, %q", a.status, a.cacheStatus, tt.status, tt.cacheStatus)
				}
				if closed := c.nc == nil; closed != tt.closed || closed != sc.closed {
					t.Errorf("got connection closed %v (net.Conn closed %v); want %v", closed, sc.closed, tt.closed)
				}
				if sc.pending() {
					t.Errorf("answer not read to its end")
				}
				if sc.written.String() != "GET / HTTP/1.1\r\n\r\n" {
					t.Errorf("wrote %q", sc.written.String())
				}
			})
		}
	}
}

// TestConnKeepsAlive reads several answers on one connection, each split
// differently, and checks that the buffer starts afresh each time.
func TestConnKeepsAlive(t *testing.T) {
	c, sc := scripted("", 1, false)
	for i := range 50 {
		body := strings.Repeat("x", i*997)
		sc.script(fmt.Sprintf("HTTP/1.1 200 OK\r\nCache-Status: c; hit; n=%d\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body), 1+i*301)
		a, err := c.roundTrip([]byte("GET / HTTP/1.1\r\n\r\n"))
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if want := fmt.Sprintf("c; hit; n=%d", i); string(a.cacheStatus) != want {
			t.Fatalf("answer %d: got Cache-Status %q; want %q", i, a.cacheStatus, want)
		}
	}
}

// TestConnRedialsStaleConnection: a keep-alive connection the server
// closed while idle is redialled once; a fresh one that fails is an error.
func TestConnRedialsStaleConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The server answers one request per connection, then closes it
	// without saying so.
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			nc.Read(buf)
			nc.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
			nc.Close()
		}
	}()
	c := newConn(endpoint{addr: l.Addr().String()}, 5*time.Second, false)
	defer c.close()
	for i := range 3 {
		time.Sleep(20 * time.Millisecond) // the server's close arrives
		if a, err := c.exchange([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), time.Now()); err != nil || a.status != 200 {
			t.Fatalf("request %d: got %v, %v; want 200", i, a.status, err)
		}
	}
}

func FuzzConnAnswer(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Status: c; hit\r\n\r\nhello", 3)
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n", 1)
	f.Add("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nbody", 4)
	f.Fuzz(func(t *testing.T, answer string, piece int) {
		if piece <= 0 {
			piece = 1
		}
		c, sc := scripted(answer, piece, false)
		a, err := c.roundTrip([]byte("GET / HTTP/1.1\r\n\r\n"))
		if err != nil {
			return
		}
		if a.status < 100 || a.status > 999 || len(a.cacheStatus) > maxCacheStatus+2 {
			t.Errorf("got status %d, Cache-Status of %d bytes", a.status, len(a.cacheStatus))
		}
		if c.nc == nil || !sc.pending() {
			return
		}
		// Bytes still unread on a kept connection are either the rest of
		// this answer, a bug, or bytes the server sent past its end, which
		// the next request's answer will fail on. Told apart by reading the
		// same answer in one piece: then the bytes past its end are in the
		// buffer with it, and the answer is refused for them.
		whole, wsc := scripted(answer, len(answer), false)
		wa, err := whole.roundTrip([]byte("GET / HTTP/1.1\r\n\r\n"))
		if err == nil && whole.nc != nil && !wsc.pending() {
			t.Errorf("kept the connection with the answer not read to its end (status %d; read whole: %d)", a.status, wa.status)
		}
	})
}

// cannedServer serves answer to every request, on a listener of its own:
// a server that allocates nothing per request, so that a benchmark's
// allocations are the client's. It assumes each request arrives in one
// read, as bench's do.
func cannedServer(tb testing.TB, answer []byte) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := nc.Read(buf); err != nil {
						return
					}
					if _, err := nc.Write(answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + l.Addr().String() + "/static.html"
}

// page13k is an answer like nginx's for a 13 KB static file.
var page13k = []byte("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 23:23:55 GMT\r\n" +
	"Content-Type: text/html\r\nContent-Length: 13312\r\nLast-Modified: Sun, 06 Dec 2026 23:23:55 GMT\r\n" +
	"Connection: keep-alive\r\nETag: \"6b15ee8b-3400\"\r\nAccept-Ranges: bytes\r\nCache-Status: userrouter; hit\r\n\r\n" +
	strings.Repeat("x", 13312))

// loopWorker returns a worker of a closed-loop run against url, its
// recorder measuring from now.
func loopWorker(tb testing.TB, url string) *worker {
	spec := &runSpec{urls: []string{url}, conns: 1, method: "GET", timeout: 10 * time.Second}
	spec.targets, spec.endpoints = makeTargets(spec.urls, spec.method, nil)
	w := newWorker(0, spec, &schedule{})
	w.rec.start = time.Now()
	tb.Cleanup(w.closeConns)
	return w
}

// BenchmarkRequestLoop is the closed loop's work for one request against
// an in-process server answering 13 KB: send, read, record.
func BenchmarkRequestLoop(b *testing.B) {
	w := loopWorker(b, cannedServer(b, page13k))
	now := time.Now()
	now = w.do(now, now, true) // dial
	b.ReportAllocs()
	b.ResetTimer()
	cpu := selfCPU()
	for range b.N {
		now = w.do(now, now, true)
	}
	reportCPU(b, cpu)
	b.StopTimer()
	if w.rec.errs != [numErrKinds]uint64{} {
		b.Fatalf("errors: %v (%v)", w.rec.errs, w.rec.errSample)
	}
}

// BenchmarkRequestLoopFasthttp is the same loop through fasthttp's
// HostClient as bench used it before it had its own client (streamed
// body read through io.Copy): the figure that decided for conn.
func BenchmarkRequestLoopFasthttp(b *testing.B) {
	url := cannedServer(b, page13k)
	pool := newClientPool(1, 10*time.Second)
	client := pool.client(url)
	defer pool.closeIdle()
	var req fasthttp.Request
	var resp fasthttp.Response
	prepareRequest(&req, &runSpec{method: "GET"})
	req.SetRequestURI(url)
	rec := newRecorder(time.Now(), 0, 0)
	key := []byte("Cache-Status")
	one := func() {
		if err := exchange(client, &req, &resp, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		done := time.Now()
		rec.recordResponse(time.Millisecond, done, resp.StatusCode(), resp.Header.PeekCanonical(key))
	}
	one()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := selfCPU()
	for range b.N {
		one()
	}
	reportCPU(b, cpu)
}

// reportCPU reports the process's CPU time per operation since cpu, the
// in-process server's included (the same for both clients): a loop over
// one connection waits for each answer, so its ns/op is latency, not cost.
func reportCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(selfCPU()-cpu)/float64(b.N), "cpu-ns/op")
}
