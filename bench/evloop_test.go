//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// framingServer answers each request on a connection with the next of a
// cycle of answers that exercise the parser across reads: a
// Content-Length body written in two pieces, a chunked body with
// extensions and a trailer, an interim 100 before the answer, and, every
// fifth answer, an answer followed by a close it does not announce (the
// next request finds a stale connection). Paths: /close answers with
// "Connection: close" and a body that ends with the connection.
func framingServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	body := strings.Repeat("y", 20000)
	answers := []string{
		"HTTP/1.1 200 OK\r\nCache-Status: c; hit\r\nContent-Length: 20000\r\n\r\n" + body[:7000] + "|" + body[7001:],
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Status: c; fwd=miss\r\n\r\n3;ext=1\r\nabc\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n", len(body), body) + "0\r\nX-Trailer: 1\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				buf := make([]byte, 4096)
				for i := 0; ; i++ {
					n, err := nc.Read(buf)
					if err != nil {
						return
					}
					if strings.HasPrefix(string(buf[:n]), "GET /close ") {
						nc.Write([]byte("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"))
						return
					}
					a := answers[i%len(answers)]
					if cut := strings.IndexByte(a, '|'); cut >= 0 {
						nc.Write([]byte(a[:cut]))
						time.Sleep(time.Millisecond)
						a = "y" + a[cut+1:]
					}
					if _, err := nc.Write([]byte(a)); err != nil || i%5 == 4 {
						return
					}
				}
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

// TestEventLoopAgreesWithNetpoll loads framingServer through the event
// loop and through goroutines (-netpoll): both must read every answer,
// redial stale connections without an error, and count the same
// Cache-Status values.
func TestEventLoopAgreesWithNetpoll(t *testing.T) {
	t.Parallel()
	base := framingServer(t)
	for _, path := range []string{"/", "/close"} {
		var got [2]runJSON
		for i, extra := range [][]string{nil, {"-netpoll"}} {
			args := append([]string{"-url", base + path, "-requests", "300", "-c", "3", "-warmup", "0"}, extra...)
			r := benchJSON(t, args...)
			if r.Requests != 300 || r.Errors != 0 || r.StatusCodes["200"] != 300 {
				t.Errorf("%s %v: requests %d, errors %d %v (%v), status %v; want 300 answered 200", path, extra, r.Requests, r.Errors, r.ErrorsByKind, r.ErrorSamples, r.StatusCodes)
			}
			got[i] = r
		}
		if fmt.Sprint(got[0].CacheStatus) != fmt.Sprint(got[1].CacheStatus) && path == "/" {
			// The cycle is per connection, and stale connections make
			// the counts vary a little; both must see both values.
			for _, r := range got {
				if r.CacheStatus["c; hit"] == 0 || r.CacheStatus["c; fwd=miss"] == 0 {
					t.Errorf("%s: Cache-Status %v; want both values", path, r.CacheStatus)
				}
			}
		}
	}
}

// TestEventLoopServes says which runs go through the event loop.
func TestEventLoopServes(t *testing.T) {
	spec := func(url string, rate float64, netpoll bool) *runSpec {
		s := &runSpec{urls: []string{url}, conns: 4, method: "GET", timeout: time.Second, rate: rate, netpoll: netpoll}
		s.targets, s.endpoints = makeTargets(s.urls, s.method, nil)
		return s
	}
	tests := []struct {
		name string
		spec *runSpec
		want bool
	}{
		{"closed loop, http", spec("http://127.0.0.1:1/", 0, false), true},
		{"closed loop, IPv6", spec("http://[::1]:1/", 0, false), true},
		{"open loop", spec("http://127.0.0.1:1/", 100, false), false},
		{"https", spec("https://127.0.0.1:1/", 0, false), false},
		{"-netpoll", spec("http://127.0.0.1:1/", 0, true), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var workers []*worker
			for i := range tt.spec.conns {
				workers = append(workers, newWorker(i, tt.spec, &schedule{}))
			}
			loops := newEventLoops(tt.spec, &schedule{}, workers)
			for _, l := range loops {
				l.closeEpoll()
			}
			if got := loops != nil; got != tt.want {
				t.Errorf("event loop: got %v; want %v", got, tt.want)
			}
		})
	}
}

// runLoop sends n measured requests of w through one event loop.
func runLoop(tb testing.TB, w *worker, n int64) {
	now := time.Now()
	s := &schedule{start: now, measureStart: now, end: now.Add(time.Hour), limit: n, stop: make(chan struct{})}
	w.s = s
	loops := newEventLoops(w.spec, s, []*worker{w})
	if len(loops) != 1 {
		tb.Fatalf("got %d event loops; want 1", len(loops))
	}
	loops[0].run()
}

// BenchmarkRequestLoopEventLoop is BenchmarkRequestLoop's work through
// the event loop: one connection, send, read a 13 KB answer, record.
// b.N requests are one run of the loop; the loop's setup (an epoll
// descriptor, a connection) is a handful of allocations per run.
func BenchmarkRequestLoopEventLoop(b *testing.B) {
	w := loopWorker(b, cannedServer(b, page13k))
	runLoop(b, w, 10)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := selfCPU()
	runLoop(b, w, int64(b.N))
	reportCPU(b, cpu)
	b.StopTimer()
	if w.rec.errs != [numErrKinds]uint64{} {
		b.Fatalf("errors: %v (%v)", w.rec.errs, w.rec.errSample)
	}
}

// TestEventLoopTwoHosts loads two servers from one run: each worker of
// the event loop holds a connection to each, idle while it sends to the
// other.
func TestEventLoopTwoHosts(t *testing.T) {
	t.Parallel()
	a, na := countingServer(t)
	b, nb := countingServer(t)
	urls := filepath.Join(t.TempDir(), "urls.txt")
	os.WriteFile(urls, []byte(a.URL+"/x\n"+b.URL+"/y\n"), 0o644)
	r := benchJSON(t, "-urls", urls, "-requests", "400", "-c", "4", "-warmup", "0")
	if r.Requests != 400 || r.Errors != 0 || r.StatusCodes["200"] != 400 {
		t.Errorf("requests %d, errors %d %v, status %v; want 400 answered 200", r.Requests, r.Errors, r.ErrorsByKind, r.StatusCodes)
	}
	if na.Load() < 100 || nb.Load() < 100 {
		t.Errorf("the servers got %d and %d requests; want both about 200", na.Load(), nb.Load())
	}
}
