package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// TestNginxFraming: through the shipped nginx snippet (upstream
// keepalive), one client's unread request body must never become another
// visitor's request on a shared upstream connection. Each attack sends a
// request that userrouter answers without needing its body (a hit, a 304,
// PURGE) with a smuggled request inside the body; victims on other client
// connections then fetch their own pages through the same upstream pool.
// The smuggled request never reaches the backend and every victim gets the
// page it asked for.
func TestNginxFraming(t *testing.T) {
	bin := binary(t)
	nginx := sessiontest.Env(t, "USERROUTER_TEST_NGINX")
	mc := sessiontest.Env(t, "USERROUTER_TEST_MEMCACHED")

	var mu sync.Mutex
	var seen []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "page %s", r.URL.Path)
	}))
	defer backend.Close()

	urAddr, urAdmin := freeAddr(t), freeAddr(t)
	prefix := fmt.Sprintf("nf%d:", rand.Uint32())
	cfg := writeConfig(t, fmt.Sprintf(`[listen]
addr = %q
admin_addr = %q
[backend]
addrs = [%q]
[cache]
servers = [%q]
prefix = %q
key = "%spage:{host}{uri}"
[purge]
allow = ["127.0.0.0/8"]
`, urAddr, urAdmin, strings.TrimPrefix(backend.URL, "http://"), mc, prefix, prefix))
	_, urLog := startDaemon(t, bin, cfg)
	nginxAddr, ngLog := startNginx(t, nginx, urAddr)

	get := func(path string) (string, error) {
		req, _ := http.NewRequest("GET", "http://"+nginxAddr+path, nil)
		req.Host = "example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.Header.Get("Cache-Status") + " " + string(b), err
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if _, err := get("/ready"); err == nil {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("nginx → userrouter not answering\nuserrouter:\n%s\nnginx:\n%s", urLog.String(), ngLog.String())
		}
	}
	get("/page")
	if got, _ := get("/page"); !strings.HasPrefix(got, "userrouter; hit") {
		t.Fatalf("priming: %q; want a hit", got)
	}

	smuggled := "GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
	body := strings.Repeat(smuggled, 500) // beyond fasthttp's 8 KiB read-ahead
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	for _, tc := range []struct{ name, raw string }{
		{"hit with a body", "GET /page HTTP/1.1\r\nHost: example.com\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body},
		{"hit with a chunked body", "GET /page HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked},
		{"304 with a body", "GET /page HTTP/1.1\r\nHost: example.com\r\nIf-None-Match: *\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body},
		{"PURGE with a body", "PURGE /other HTTP/1.1\r\nHost: example.com\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body},
		{"HEAD with a body", "HEAD /page HTTP/1.1\r\nHost: example.com\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", nginxAddr)
			if err != nil {
				t.Fatal(err)
			}
			go io.WriteString(c, tc.raw)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: strings.Fields(tc.raw)[0]})
			if err != nil {
				t.Fatalf("the attacker got no answer: %v", err)
			}
			resp.Body.Close()
			c.Close()
			// Victims: enough requests, in parallel, to use every pooled
			// upstream connection nginx holds.
			var wg sync.WaitGroup
			for i := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					path := fmt.Sprintf("/victim-%d", i)
					got, err := get(path)
					if err != nil || !strings.HasSuffix(got, "page "+path) {
						t.Errorf("victim %s got %q (%v)", path, got, err)
					}
				}()
			}
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			for _, p := range seen {
				if p == "/smuggled" {
					t.Fatalf("the smuggled request reached the backend")
				}
			}
		})
	}
}
