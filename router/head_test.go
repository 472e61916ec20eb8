package router

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// TestHitHeadPerValue: hits reuse the response head built for the stored
// page (see head), and only for a page of the same status and headers:
// after a purge and a refill under the same key, hits show the new
// value's headers; a 304 and a client's Connection: close still apply.
func TestHitHeadPerValue(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) pagecache.Store
		tweak func(*Options)
		hit   string
	}{
		{"memory", func(t *testing.T) pagecache.Store {
			m, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
			return m
		}, nil, statusHit},
		{"memcached", func(t *testing.T) pagecache.Store {
			return memcachedStore(t, pagecachetest.Memcached(t))
		}, nil, statusHit},
		{"memcached+l1", func(t *testing.T) pagecache.Store {
			return memcachedStore(t, pagecachetest.Memcached(t))
		}, func(o *Options) { o.Cache.L1Size, o.Cache.L1TTL = 1<<20, time.Minute }, statusHitL1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var renders atomic.Int64
			site := &taggedSite{Server: httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := renders.Add(1)
				w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, n))
				w.Header().Set("X-Render", fmt.Sprint(n))
				w.Header().Set("Date", fmt.Sprintf("Mon, %02d Jan 2026 00:00:00 GMT", n))
				w.Header().Set("Content-Type", "text/html")
				fmt.Fprintf(w, "render %d", n)
			}))}
			t.Cleanup(site.Close)
			p := newPurgeRouter(t, site, tc.store(t), pagecachetest.Prefix(), tc.tweak)
			check := func(n int) {
				t.Helper()
				for range 3 {
					got := p.get(t, "/p")
					want := fmt.Sprint(n)
					if got.cacheStatus != tc.hit || got.header.Get("X-Render") != want || got.header.Get("ETag") != `"v`+want+`"` ||
						got.header.Get("Date") != fmt.Sprintf("Mon, %02d Jan 2026 00:00:00 GMT", n) || got.body != "render "+want ||
						got.header.Get("Age") == "" || len(got.header.Values("Cache-Status")) != 1 {
						t.Fatalf("got %q, X-Render %q, ETag %q, Date %q, Age %q, body %q; want a hit of render %d",
							got.cacheStatus, got.header.Get("X-Render"), got.header.Get("ETag"), got.header.Get("Date"), got.header.Get("Age"), got.body, n)
					}
				}
			}
			p.get(t, "/p") // the fill
			if tc.hit == statusHitL1 {
				p.get(t, "/p") // from memcached, copied to the L1
			}
			check(1)
			if p.r.cache.heads.EstimatedSize() == 0 {
				t.Fatal("no head kept for the stored page")
			}
			if got := fetch(t, "GET", p.base+"/p", "Host", "example.com", "If-None-Match", `"v1"`); got.status != http.StatusNotModified || got.body != "" {
				t.Fatalf("If-None-Match: got %d %q; want 304", got.status, got.body)
			}
			for _, close := range []bool{true, false} {
				raw := "GET /p HTTP/1.1\r\nHost: example.com\r\n"
				if close {
					raw += "Connection: close\r\n"
				}
				c, err := net.Dial("tcp", strings.TrimPrefix(p.base, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte(raw + "\r\n"))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				c.Close()
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.Close != close || resp.Header.Get("Cache-Status") != tc.hit {
					t.Fatalf("Connection: close asked %v: got close %v, %q", close, resp.Close, resp.Header.Get("Cache-Status"))
				}
			}
			if code, body := p.purge(t, `{"urls": ["http://example.com/p"]}`); code != http.StatusOK {
				t.Fatalf("purge: %d %s", code, body)
			}
			p.get(t, "/p") // the refill
			if tc.hit == statusHitL1 {
				p.get(t, "/p")
			}
			check(2)
		})
	}
}

func TestMayBeConditional(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      bool
	}{
		{"none", "Host: a\r\nAccept: */*\r\n\r\n", false},
		{"if-none-match", "Host: a\r\nIf-None-Match: \"x\"\r\n\r\n", true},
		{"lower case", "Host: a\r\nif-modified-since: x\r\n\r\n", true},
		{"upper case, first line", "IF-MATCH: x\r\nHost: a\r\n\r\n", true},
		{"inside a value", "Host: a\r\nX-Note: If-None-Match\r\n\r\n", false},
		{"a name ending in if-", "Host: a\r\nX-If-None-Match: x\r\n\r\n", false},
		{"bare newlines", "Host: a\nIf-None-Match: x\n\n", true},
		{"not parsed", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mayBeConditional([]byte(tc.raw)); got != tc.want {
				t.Errorf("got %v; want %v", got, tc.want)
			}
		})
	}
}

// TestNotModifiedFromTheWire: conditional requests parsed as the server
// parses them still get their 304, whatever the case of the header name.
func TestNotModifiedFromTheWire(t *testing.T) {
	for _, tc := range []struct {
		name, header string
		want         bool
	}{
		{"etag", "if-none-match: \"p1\"", true},
		{"other etag", "If-None-Match: \"p2\"", false},
		{"date", "IF-MODIFIED-SINCE: Mon, 01 Jan 2026 00:00:00 GMT", true},
		{"none", "X-Other: 1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req fasthttp.Request
			raw := "GET / HTTP/1.1\r\nHost: a\r\n" + tc.header + "\r\n\r\n"
			if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Fatal(err)
			}
			if got := notModified(&req.Header, []byte(`"p1"`), []byte("Mon, 01 Jan 2026 00:00:00 GMT")); got != tc.want {
				t.Errorf("got %v; want %v", got, tc.want)
			}
		})
	}
}

// TestHitHeadKeysKept: the heads are kept under keys of their own, not
// the request's scratch memory the lookup built the key in. A key that
// changed under otter would never be found again, to serve or to evict,
// and the heads would outgrow maxHeads (they did: 110 MB under a working
// set of 30,000 pages). Hits on many pages, then every key kept must find
// its own head.
func TestHitHeadKeysKept(t *testing.T) {
	site := &taggedSite{Server: httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, "page %s", r.URL.Path)
	}))}
	t.Cleanup(site.Close)
	m, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	p := newPurgeRouter(t, site, m, pagecachetest.Prefix(), nil)
	const pages = 200
	for range 2 { // a fill, then a hit that builds the head
		for i := range pages {
			if got := p.get(t, fmt.Sprintf("/p/%d", i)); got.status != 200 {
				t.Fatalf("/p/%d: status %d", i, got.status)
			}
		}
	}
	heads := p.r.cache.heads
	n := 0
	for k := range heads.Keys() {
		n++
		if _, ok := heads.GetIfPresent(k); !ok {
			t.Errorf("head key %q does not find its head: it changed after it was kept", k)
		}
	}
	if n < pages/2 {
		t.Errorf("%d heads kept for %d pages hit; want about one each", n, pages)
	}
}
