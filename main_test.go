package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// TestServices checks the test bed `make test` provides.
func TestServices(t *testing.T) {
	addr := sessiontest.Env(t, "USERROUTER_TEST_MEMCACHED")
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("memcached at %s: %v", addr, err)
	}
	fmt.Fprintf(c, "version\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(line, "VERSION ") {
		t.Errorf("memcached answered %q to version", line)
	}

	db, err := sql.Open("mysql", sessiontest.Env(t, "USERROUTER_TEST_MYSQL_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	name := fmt.Sprintf("userrouter_test_%d", time.Now().UnixNano())
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("MariaDB: %v", err)
	}
	if _, err := db.ExecContext(ctx, "DROP DATABASE "+name); err != nil {
		t.Fatalf("MariaDB: %v", err)
	}
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "userrouter.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckFlag(t *testing.T) {
	good := writeConfig(t, "[backend]\naddrs = [\"127.0.0.1:8000\"]\n[purge]\ntoken = \"hunter2\"\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-check", "-config", good}, &stdout, &stderr); code != 0 {
		t.Fatalf("got exit %d (%s); want 0", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "max_conns = 512") || !strings.Contains(stderr.String(), "test is successful") {
		t.Errorf("got stdout %q stderr %q; want the effective config and a success line", stdout.String(), stderr.String())
	}
	if strings.Contains(stdout.String(), "hunter2") {
		t.Errorf("the effective config shows the purge token")
	}

	// The memory limit in force, derived from the sizes.
	mem := writeConfig(t, "[backend]\naddrs = [\"127.0.0.1:8000\"]\n[cache]\nstore = \"memory\"\nmemory_size = \"64MiB\"\n")
	stdout.Reset()
	if code := run([]string{"-check", "-config", mem}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "memory_limit = '109MiB'") {
		t.Errorf("memory store of 64MiB: got exit %d and\n%s\nwant memory_limit = '109MiB'", code, stdout.String())
	}

	bad := writeConfig(t, "[backend]\naddrs = [\"127.0.0.1:8000\"]\nread_timout = \"1s\"\nmax_conns = -1\n")
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"-check", "-config", bad}, &stdout, &stderr); code != 1 {
		t.Fatalf("got exit %d; want 1", code)
	}
	for _, want := range []string{bad + ":3: backend.read_timout: unknown key", bad + ":4: backend.max_conns: must be at least 1", "test failed"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}

	stderr.Reset()
	if code := run([]string{"-check"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "-config FILE is required") {
		t.Errorf("without -config: got exit %d and %q; want 2 and a usage message", code, stderr.String())
	}
}

// TestSetMemoryLimit: listen.memory_limit becomes the runtime's soft
// memory limit; 0 gives back GOMEMLIMIT's.
func TestSetMemoryLimit(t *testing.T) {
	defer setMemoryLimit(0)
	setMemoryLimit(100 << 20)
	if got := debug.SetMemoryLimit(-1); got != 100<<20 {
		t.Errorf("got %d; want %d", got, 100<<20)
	}
	setMemoryLimit(0)
	if got := debug.SetMemoryLimit(-1); got != envMemoryLimit {
		t.Errorf("got %d; want GOMEMLIMIT's %d", got, envMemoryLimit)
	}
}

func TestVersionFlag(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"-version"}, &stdout, io.Discard); code != 0 || !strings.HasPrefix(stdout.String(), "userrouter ") {
		t.Errorf("got exit %d and %q", code, stdout.String())
	}
}

var (
	buildOnce sync.Once
	binPath   string
	binDir    string // the temporary directory binPath is in, when binary made one
	buildErr  error
)

// binary builds userrouter once for the package's tests.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	buildOnce.Do(func() {
		// Under `go test` the test binary runs from go's work directory
		// (go-build*), which the go command removes when the test ends,
		// even after a panic or a -timeout: the binary goes beside it, so
		// that no run leaves it behind. A test binary run directly gets a
		// temporary directory, which TestMain removes.
		if dir := filepath.Dir(os.Args[0]); strings.Contains(dir, string(filepath.Separator)+"go-build") {
			binPath = filepath.Join(dir, fmt.Sprintf("userrouter-%d", os.Getpid()))
		} else {
			dir, err := os.MkdirTemp("", "userrouter-bin")
			if err != nil {
				buildErr = err
				return
			}
			binDir = dir
			binPath = filepath.Join(dir, "userrouter")
		}
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestMain removes the userrouter binary that binary
// builds into a temporary directory, once every test of the package is
// done, so that no run leaves files in /tmp.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.Remove(binPath)
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		// The kernel may hand a port just closed out again: two servers
		// of one test (gunicorn and userrouter) once got the same one.
		if _, taken := addrsGiven.LoadOrStore(addr, true); !taken {
			return addr
		}
	}
}

// addrsGiven are the addresses freeAddr returned in this test process.
var addrsGiven sync.Map

// TestBinary builds userrouter, runs it on a unix socket with a config
// file, talks to it, and stops it with SIGTERM.
func TestBinary(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s", r.Host, r.URL.RequestURI())
	}))
	defer backend.Close()
	sock := filepath.Join(dir, "ur.sock")
	admin := freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf(`
[listen]
addr = "unix:%s"
socket_mode = "0600"
admin_addr = "%s"
[backend]
addrs = ["%s"]
[log]
format = "json"
`, sock, admin, strings.TrimPrefix(backend.URL, "http://")))

	var logs bytes.Buffer
	cmd := exec.Command(bin, "-config", cfg)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()

	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	var resp *http.Response
	var err error
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		if resp, err = client.Get("http://example.org/a?b=c"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no answer on %s: %v\nlog:\n%s", sock, err, logs.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello example.org /a?b=c" {
		t.Errorf("got %q; want the backend's answer", body)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v %v; want 0600", fi.Mode(), err)
	}
	if resp, err := http.Get("http://" + admin + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz: %v %v", resp, err)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\nlog:\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop within 10s of SIGTERM")
	}
	if !strings.Contains(logs.String(), `"msg":"userrouter stopped"`) {
		t.Errorf("log lacks the stop line:\n%s", logs.String())
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file is left behind: %v", err)
	}
}

// TestBinaryReload sends SIGHUP ten times under load, switching backends
// each time, then once with a broken config: no request fails, each valid
// config takes over, the broken one leaves the last good one serving.
func TestBinaryReload(t *testing.T) {
	bin := binary(t)
	var backends [2]string
	for i, name := range []string{"A", "B"} {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		defer s.Close()
		backends[i] = strings.TrimPrefix(s.URL, "http://")
	}
	addr, admin := freeAddr(t), freeAddr(t)
	path := filepath.Join(t.TempDir(), "userrouter.toml")
	write := func(backend string) {
		cfg := fmt.Sprintf("[listen]\naddr = %q\nadmin_addr = %q\n[backend]\naddrs = [%q]\n[cache]\nstore = \"none\"\n", addr, admin, backend)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(backends[0])
	cmd, logs := startDaemon(t, bin, path)
	client := &http.Client{Timeout: 5 * time.Second}
	answer := func() (string, error) {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return string(b), nil
	}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if got, err := answer(); err == nil && got == "A" {
			break
		} else if time.Since(start) > 10*time.Second {
			t.Fatalf("not serving: %v\n%s", err, logs.String())
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	var served int
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := answer()
				mu.Lock()
				served++
				if err != nil {
					failures = append(failures, err.Error())
				}
				mu.Unlock()
			}
		})
	}
	for i := range 10 {
		want := []string{"B", "A"}[i%2]
		write(backends[(i+1)%2])
		cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(5 * time.Second)
		for got, _ := answer(); got != want; got, _ = answer() {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d: still %q; want %q\n%s", i, got, want, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Ten switches end on backend A; a broken config must leave it serving.
	os.WriteFile(path, []byte("[backend]\naddrs = [\"127.0.0.1:8000\"]\nbogus = 1\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if got, err := answer(); got != "A" || err != nil {
		t.Errorf("after a broken config: %q %v; want the previous config serving", got, err)
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the reloads; first: %s", len(failures), served, failures[0])
	}
	if !strings.Contains(logs.String(), "reload failed: the config has problems") || !strings.Contains(logs.String(), "backend.bogus: unknown key") {
		t.Errorf("the log does not say why the reload failed:\n%s", logs.String())
	}
	t.Logf("%d requests during 10 reloads, %d failed", served, len(failures))
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// startDaemon runs bin -config path, its log kept, killed when the test
// ends if it is still running.
func startDaemon(t *testing.T, bin, path string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	logs := new(syncBuffer)
	cmd := exec.Command(bin, "-config", path)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // not waited for by the test
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, logs
}

// syncBuffer collects a process's output for the test to read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBinaryEmbedded runs userrouter on its embedded defaults, with nothing
// but a SQLite file: the memory page store and Django sessions read from
// db.sqlite3. Anonymous visitors, with a session or not, are served from
// the cache; signed-in ones reach the backend; a reload keeps the memory
// store and its pages unless its size changes.
func TestBinaryEmbedded(t *testing.T) {
	bin := binary(t)
	dbPath := filepath.Join(t.TempDir(), "db.sqlite3")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fx := sessiontest.DjangoTable(t, db, sessiontest.SQLiteDDL)

	var mu sync.Mutex
	seen := map[string]int{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "page %s", r.URL.Path)
	}))
	defer backend.Close()
	backendHits := func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[path]
	}
	addr, admin := freeAddr(t), freeAddr(t)
	path := filepath.Join(t.TempDir(), "userrouter.toml")
	write := func(size string) {
		cfg := fmt.Sprintf("[listen]\naddr = %q\nadmin_addr = %q\n[backend]\naddrs = [%q]\n"+
			"[session]\ndriver = \"sqlite\"\ndsn = %q\nsecret_key = %q\n[cache]\nstore = \"memory\"\nmemory_size = %q\n",
			addr, admin, strings.TrimPrefix(backend.URL, "http://"), dbPath, fx.SecretKey, size)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("64MiB")
	cmd, logs := startDaemon(t, bin, path)
	get := func(p, cookie string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+p, nil)
		if cookie != "" {
			req.Header.Set("Cookie", "sessionid="+cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", p, err, logs.String())
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.Header.Get("Cache-Status")
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + admin + "/readyz"); err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		} else if time.Since(start) > 10*time.Second {
			t.Fatalf("not ready: %v\n%s", err, logs.String())
		}
	}

	get("/a", "")
	if cs := get("/a", ""); !strings.Contains(cs, "hit") {
		t.Errorf("second anonymous GET: Cache-Status %q; want a hit", cs)
	}
	if cs := get("/a", fx.Row("anonymous").SessionKey); !strings.Contains(cs, "hit") {
		t.Errorf("anonymous session: Cache-Status %q; want a hit", cs)
	}
	if cs := get("/a", fx.Row("identified").SessionKey); strings.Contains(cs, "hit") || backendHits("/a") != 2 {
		t.Errorf("signed in: Cache-Status %q, backend saw /a %d times; want a forward", cs, backendHits("/a"))
	}

	// A reload with the same store keeps the pages.
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logs, `msg=reloaded`, 1)
	if cs := get("/a", ""); !strings.Contains(cs, "hit") {
		t.Errorf("after a reload: Cache-Status %q; want the page kept", cs)
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^userrouter_memory_store_bytes [1-9]`).Match(metrics) {
		t.Errorf("/metrics lacks the memory store's size")
	}
	// A new size is a new store.
	write("32MiB")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logs, `msg=reloaded`, 2)
	if cs := get("/a", ""); strings.Contains(cs, "hit") || backendHits("/a") != 3 {
		t.Errorf("after resizing: Cache-Status %q; want a miss", cs)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// waitLog waits until the log holds n lines matching substr.
func waitLog(t *testing.T, logs *syncBuffer, substr string, n int) {
	t.Helper()
	for start := time.Now(); strings.Count(logs.String(), substr) < n; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no %q in the log:\n%s", substr, logs.String())
		}
	}
}
