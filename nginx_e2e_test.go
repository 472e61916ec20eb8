package main

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// TestNginxEndToEnd runs nginx → userrouter → backend on loopback, nginx
// configured with the shipped contrib/nginx/userrouter.conf (addresses
// replaced: nginx listens on a port other than 80, and clients send it in
// Host as a browser does) and userrouter with the README's example
// [cache] hosts, and checks hits, identified forwards, the client address,
// large uploads and downloads, PURGE, and ten SIGHUP reloads of userrouter
// during 20 seconds of load without one failed request.
func TestNginxEndToEnd(t *testing.T) {
	bin := binary(t) // first: it skips in -short mode
	nginx := sessiontest.Env(t, "USERROUTER_TEST_NGINX")
	mc := sessiontest.Env(t, "USERROUTER_TEST_MEMCACHED")
	dsn := sessiontest.MySQLDSN(t)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fx := sessiontest.DjangoTable(t, db, sessiontest.MySQLDDL)

	// 20 MB: the race detector slows the in-test backend and client; the
	// router's own test streams 100 MB and checks memory.
	const download = 20 << 20
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ip":
			w.Header().Set("Cache-Control", "no-store")
			fmt.Fprintf(w, "real-ip=%s xff=%s proto=%s", r.Header.Get("X-Real-IP"), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"))
		case "/upload":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/download":
			w.Header().Set("Content-Length", fmt.Sprint(download))
			block := bytes.Repeat([]byte("0123456789abcdef"), 4096)
			for sent := 0; sent < download; sent += len(block) {
				w.Write(block)
			}
		default:
			fmt.Fprintf(w, "page %s for cookie=[%s] at %d", r.URL.Path, r.Header.Get("Cookie"), time.Now().UnixNano())
		}
	}))
	defer backend.Close()

	dir := t.TempDir()
	urAddr, urAdmin := freeAddr(t), freeAddr(t)
	prefix := fmt.Sprintf("ng%d:", rand.Uint32())
	cfgPath := filepath.Join(dir, "userrouter.toml")
	writeConfig := func(ttl string) {
		cfg := fmt.Sprintf(`[listen]
addr = %q
admin_addr = %q
[backend]
addrs = [%q]
[session]
driver = "mysql"
dsn = %q
[cache]
%s
servers = [%q]
prefix = %q
key = "%spage:{host}{uri}"
default_ttl = %q
`, urAddr, urAdmin, strings.TrimPrefix(backend.URL, "http://"), dsn, readmeHosts(t), mc, prefix, prefix, ttl)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("1h")
	ur, urLog := startDaemon(t, bin, cfgPath)

	nginxAddr, ngLog := startNginx(t, nginx, urAddr)
	// What a browser sends to nginx on that port.
	_, port, _ := strings.Cut(nginxAddr, ":")
	host := "example.com:" + port

	client := &http.Client{Timeout: 30 * time.Second}
	get := func(path string, header ...string) (*http.Response, string, error) {
		req, _ := http.NewRequest("GET", "http://"+nginxAddr+path, nil)
		req.Host = host
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b), err
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if resp, _, err := get("/ready"); err == nil && resp.StatusCode == 200 {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("nginx → userrouter not answering\nuserrouter:\n%s\nnginx:\n%s", urLog.String(), ngLog.String())
		}
	}

	t.Run("hits", func(t *testing.T) {
		_, first, _ := get("/article/1")
		resp, second, err := get("/article/1")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Cache-Status") != "userrouter; hit" || second != first {
			t.Errorf("second request: %q %q", resp.Header.Get("Cache-Status"), second)
		}
		if strings.Contains(urLog.String(), "Host not in cache.hosts") {
			t.Errorf("a Host was refused:\n%s", urLog.String())
		}
	})
	t.Run("identified visitors are forwarded", func(t *testing.T) {
		cookie := "sessionid=" + fx.Row("identified").SessionKey
		resp, body, err := get("/article/1", "Cookie", cookie)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Cache-Status") != "userrouter; fwd=bypass; detail=identified" || !strings.Contains(body, cookie) {
			t.Errorf("identified: %q %q", resp.Header.Get("Cache-Status"), body)
		}
		// What was made for them is never served to anyone else: an
		// anonymous visitor of a page an identified one saw first gets a
		// page of their own.
		if _, _, err := get("/article/personal", "Cookie", cookie); err != nil {
			t.Fatal(err)
		}
		resp, body, err = get("/article/personal")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(body, cookie) || strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
			t.Errorf("anonymous after identified: %q %q", resp.Header.Get("Cache-Status"), body)
		}
	})
	t.Run("client address", func(t *testing.T) {
		// An anonymous miss is a fill: it carries the client's address as
		// nginx's X-Real-IP gives it, one IP, never the chain a client can
		// write into. A forwarded request keeps nginx's headers as they are.
		_, body, err := get("/ip", "X-Forwarded-For", "203.0.113.9")
		if want := "real-ip=127.0.0.1 xff=127.0.0.1 proto=http"; err != nil || body != want {
			t.Errorf("fill: backend saw %q (%v); want %q", body, err, want)
		}
		_, body, err = get("/ip", "X-Forwarded-For", "203.0.113.9", "Cookie", "sessionid="+fx.Row("identified").SessionKey)
		if want := "real-ip=127.0.0.1 xff=203.0.113.9, 127.0.0.1 proto=http"; err != nil || body != want {
			t.Errorf("forward: backend saw %q (%v); want %q", body, err, want)
		}
	})
	t.Run("large upload", func(t *testing.T) {
		body := bytes.Repeat([]byte("upload-"), 3<<20) // 21 MB
		req, _ := http.NewRequest("POST", "http://"+nginxAddr+"/upload", bytes.NewReader(body))
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d %x", len(body), sha256.Sum256(body)); string(got) != want {
			t.Errorf("backend got %q; want %q", got, want)
		}
	})
	t.Run("large download", func(t *testing.T) {
		resp, body, err := get("/download")
		if err != nil || resp.StatusCode != 200 || len(body) != download || body[:16] != "0123456789abcdef" {
			t.Errorf("download: %v, %d bytes", err, len(body))
		}
	})
	t.Run("purge from loopback", func(t *testing.T) {
		req, _ := http.NewRequest("PURGE", "http://"+nginxAddr+"/article/1", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("PURGE: %v %v", resp, err)
		}
		resp.Body.Close()
		resp, _, err = get("/article/1")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
			t.Errorf("after PURGE: %q", resp.Header.Get("Cache-Status"))
		}
	})

	t.Run("reload under load", func(t *testing.T) {
		var served, failed atomic.Int64
		var mu sync.Mutex
		var failures []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		paths := []string{"/article/1", "/article/2", "/ip", "/article/3"}
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					header := []string{}
					if i%5 == 0 {
						header = []string{"Cookie", "sessionid=" + fx.Row("identified").SessionKey}
					}
					resp, _, err := get(paths[(w+i)%len(paths)], header...)
					served.Add(1)
					if err != nil || resp.StatusCode >= 400 {
						failed.Add(1)
						mu.Lock()
						if err != nil {
							failures = append(failures, err.Error())
						} else {
							failures = append(failures, resp.Status)
						}
						mu.Unlock()
					}
				}
			})
		}
		for i := range 10 {
			time.Sleep(1800 * time.Millisecond)
			writeConfig([]string{"30s", "1h"}[i%2])
			ur.Process.Signal(syscall.SIGHUP)
		}
		// Keep the load on until the last reload is done, 20 s in all.
		for deadline := time.Now().Add(5 * time.Second); strings.Count(urLog.String(), `msg=reloaded`) < 10 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		close(stop)
		wg.Wait()
		if n := strings.Count(urLog.String(), `msg=reloaded`); n != 10 {
			t.Errorf("userrouter logged %d reloads; want 10\n%s", n, urLog.String())
		}
		if failed.Load() != 0 {
			t.Errorf("%d of %d requests failed during 10 reloads; first: %s", failed.Load(), served.Load(), failures[0])
		}
		t.Logf("%d requests through nginx during 20 s and 10 reloads, %d failed", served.Load(), failed.Load())
	})
}

// readmeHosts returns the [cache] hosts line of the README's example for
// nginx (under "Placing it behind nginx"), so that the test runs what the
// README says.
func readmeHosts(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "\n## Placing it behind nginx\n")
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok := strings.Cut(section, "```toml\n[cache]\n")
	line, _, _ := strings.Cut(block, "\n")
	if !ok || !strings.HasPrefix(line, "hosts = [") {
		t.Fatal("README.md: no [cache] hosts example under \"Placing it behind nginx\"")
	}
	return line
}

// startNginx runs nginx (the binary at bin) on a free loopback port with
// the shipped contrib/nginx/userrouter.conf, its upstream replaced by
// upstream, until the test ends; it returns nginx's address and its log.
func startNginx(t *testing.T, bin, upstream string) (string, *syncBuffer) {
	t.Helper()
	nginx := bin
	dir := t.TempDir()
	urAddr, nginxAddr := upstream, freeAddr(t)
	// nginx with the shipped site snippet, addresses replaced.
	snippet, err := os.ReadFile("contrib/nginx/userrouter.conf")
	if err != nil {
		t.Fatal(err)
	}
	site := strings.NewReplacer("server 127.0.0.1:8090;", "server "+urAddr+";", "listen 80;", "listen "+nginxAddr+";").Replace(string(snippet))
	if site == string(snippet) {
		t.Fatal("the snippet's addresses were not found to replace")
	}
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`daemon off;
user root;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/site.conf;
}
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nginx, "-t", "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	ng := exec.Command(nginx, "-c", filepath.Join(dir, "nginx.conf"))
	ngLog := new(syncBuffer)
	ng.Stderr = ngLog
	if err := ng.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ng.Process.Signal(syscall.SIGQUIT); ng.Wait() })

	return nginxAddr, ngLog
}
