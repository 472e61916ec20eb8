package router

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// syncBuffer is an io.WriteCloser tests can read while the log writes.
type syncBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	out chan struct{} // closed by Close
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Close() error { close(s.out); return nil }

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAccessLog(t *testing.T) {
	s := newSite(t)
	for _, format := range []string{"combined", "json"} {
		t.Run(format, func(t *testing.T) {
			buf := &syncBuffer{out: make(chan struct{})}
			log := NewAccessLog(buf, format, 64, nil)
			base := startRouter(t, Options{AccessLog: log, Cache: memoryCache(t)}, testBackendOptions(backendAddr(s.Server)))
			fetch(t, "GET", base+"/page?q=\"x\"", "User-Agent", "test \"agent\"", "Referer", "http://ref.example/")
			fetch(t, "GET", base+"/page?q=\"x\"", "User-Agent", "test \"agent\"")
			fetch(t, "POST", base+"/form")
			log.Close()
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 3 {
				t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
			}
			if format == "combined" {
				re := regexp.MustCompile(`^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /page\?q=\\x22x\\x22 HTTP/1\.1" 200 \d+ "http://ref\.example/" "test \\x22agent\\x22" cache="userrouter; fwd=miss; stored" verdict=anonymous rt=\d+\.\d{3} urt=\d+\.\d{3}$`)
				if !re.MatchString(lines[0]) {
					t.Errorf("first line:\n%s", lines[0])
				}
				if !strings.Contains(lines[1], `"-" "test \x22agent\x22" cache="userrouter; hit" verdict=anonymous`) || !strings.HasSuffix(lines[1], "urt=-") {
					t.Errorf("hit line:\n%s", lines[1])
				}
				if !strings.Contains(lines[2], `"POST /form HTTP/1.1" 200`) || !strings.Contains(lines[2], "detail=method\" verdict=-") {
					t.Errorf("POST line:\n%s", lines[2])
				}
				return
			}
			var rec struct {
				Remote, Method, URI, Cache, Verdict string
				UserAgent                           string `json:"user_agent"`
				Status, Bytes                       int
				RT                                  float64
				URT                                 *float64
			}
			for i, line := range lines {
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("line %d is not JSON: %v\n%s", i, err, line)
				}
			}
			json.Unmarshal([]byte(lines[1]), &rec)
			if rec.Remote != "127.0.0.1" || rec.URI != `/page?q="x"` || rec.Cache != "userrouter; hit" || rec.Status != 200 || rec.Bytes == 0 || rec.URT != nil || rec.UserAgent != `test "agent"` {
				t.Errorf("hit record: %+v", rec)
			}
		})
	}
}

// blockingWriter never returns from Write until released: a disk that
// cannot keep up.
type blockingWriter struct{ release chan struct{} }

func (b *blockingWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }
func (b *blockingWriter) Close() error                { return nil }

func TestAccessLogDropsUnderPressure(t *testing.T) {
	s := newSite(t)
	w := &blockingWriter{release: make(chan struct{})}
	log := NewAccessLog(w, "combined", 16, nil)
	base := startRouter(t, Options{AccessLog: log, Cache: memoryCache(t)}, testBackendOptions(backendAddr(s.Server)))
	start := time.Now()
	for range 1000 {
		fetch(t, "GET", base+"/page")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("1000 requests took %v with the log stuck", d)
	}
	// The writer's 64 KiB buffer takes some 400 lines before it blocks; the
	// queue 16 more: the rest are dropped, and requests went on.
	if log.Stats.Dropped.Load() < 400 {
		t.Errorf("dropped %d lines of 1000; want the ones that did not fit", log.Stats.Dropped.Load())
	}
	close(w.release)
	log.Close()
}

func TestReadiness(t *testing.T) {
	mc := pagecachetest.Start(t)
	s := newSite(t)
	b, _ := NewBackends(testBackendOptions(backendAddr(s.Server)))
	r, err := New(Options{Backends: b, Keys: testKeys, Cache: func() *CacheOptions {
		co := memoryCache(t)
		co.Store = memcachedStore(t, mc.Addr)
		return co
	}()})
	if err != nil {
		t.Fatal(err)
	}
	admin := &Admin{Router: func() *Router { return r }}
	base := serveHandler(t, admin.Handle)
	ready := func(query string) (int, Readiness) {
		resp, err := http.Get(base + "/readyz" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res Readiness
		body, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return resp.StatusCode, res
	}
	if code, res := ready(""); code != 200 || res.Status != "ok" || !res.Checks["page store"].OK || len(res.Checks) != 2 {
		t.Errorf("all up: %d %+v", code, res)
	}
	mc.Stop()
	if code, res := ready(""); code != 200 || res.Status != "degraded" || res.Checks["page store"].OK {
		t.Errorf("memcached down: %d %+v; want 200 degraded", code, res)
	}
	if code, _ := ready("?strict"); code != 503 {
		t.Errorf("memcached down, strict: %d; want 503", code)
	}
	s.Close()
	if code, res := ready(""); code != 503 || res.Status != "down" {
		t.Errorf("backend down: %d %+v; want 503 down", code, res)
	}
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz: %v %v", resp, err)
	}
}

func TestPprofOffByDefault(t *testing.T) {
	s := newSite(t)
	b, _ := NewBackends(testBackendOptions(backendAddr(s.Server)))
	r, _ := New(Options{Backends: b, Keys: testKeys})
	for _, on := range []bool{false, true} {
		admin := &Admin{Router: func() *Router { return r }, Pprof: on}
		base := serveHandler(t, admin.Handle)
		resp, err := http.Get(base + "/debug/pprof/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if (resp.StatusCode == 200) != on {
			t.Errorf("pprof %v: got %d", on, resp.StatusCode)
		}
	}
}
