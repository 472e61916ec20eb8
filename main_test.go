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
	"strings"
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

func TestVersionFlag(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"-version"}, &stdout, io.Discard); code != 0 || !strings.HasPrefix(stdout.String(), "userrouter ") {
		t.Errorf("got exit %d and %q", code, stdout.String())
	}
}

// TestBinary builds userrouter, runs it on a unix socket with a config
// file, talks to it, and stops it with SIGTERM.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "userrouter")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s", r.Host, r.URL.RequestURI())
	}))
	defer backend.Close()
	sock := filepath.Join(dir, "ur.sock")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	admin := ln.Addr().String()
	ln.Close()
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
