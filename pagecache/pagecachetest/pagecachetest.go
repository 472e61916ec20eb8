// Package pagecachetest provides memcached servers for tests: the one
// `make test` starts, or private ones a test may stop, restart and scan.
package pagecachetest

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Memcached returns the address of the test memcached
// (USERROUTER_TEST_MEMCACHED). Without it the test skips, or fails under
// `make test` (USERROUTER_REQUIRE_INTEGRATION=1).
func Memcached(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv("USERROUTER_TEST_MEMCACHED"); addr != "" {
		return addr
	}
	if os.Getenv("USERROUTER_REQUIRE_INTEGRATION") != "" {
		t.Fatal("USERROUTER_TEST_MEMCACHED is unset although USERROUTER_REQUIRE_INTEGRATION is set")
	}
	t.Skip("USERROUTER_TEST_MEMCACHED is unset: run `make test` to run the tests against real memcached")
	return ""
}

// Prefix returns a key prefix no other test uses, so tests can share the
// test memcached.
func Prefix() string { return fmt.Sprintf("t%x:", rand.Uint64()) }

// A Server is a memcached process of the test's own.
type Server struct {
	Addr string
	args []string
	cmd  *exec.Cmd
	t    testing.TB
}

// Start runs a memcached of the test's own on a free loopback port; it is
// stopped when the test ends. args are extra memcached flags ("-I", "2m").
// It needs the memcached binary, which `make test` installs.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	Memcached(t) // the same skip rules: no test memcached, no binary either
	if _, err := exec.LookPath("memcached"); err != nil {
		t.Fatalf("memcached binary: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), args: args, t: t}
	ln.Close()
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// StartAt is Start on a given loopback address, such as
// "127.0.0.2:11211" (the port clients hash differently). It skips the test
// when something else holds the address.
func StartAt(t testing.TB, addr string, args ...string) *Server {
	t.Helper()
	Memcached(t)
	if _, err := exec.LookPath("memcached"); err != nil {
		t.Fatalf("memcached binary: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("%s is taken: %v", addr, err)
	}
	ln.Close()
	s := &Server{Addr: addr, args: args, t: t}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start (re)starts the server on its address.
func (s *Server) Start() {
	s.t.Helper()
	host, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{"-l", host, "-p", port, "-U", "0", "-m", "64", "-t", "2"}, s.args...)
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root")
	}
	for try := 0; ; try++ {
		s.cmd = exec.Command("memcached", args...)
		if err := s.cmd.Start(); err != nil {
			s.t.Fatalf("start memcached: %v", err)
		}
		for i := 0; i < 100; i++ {
			if c, err := net.Dial("tcp", s.Addr); err == nil {
				c.Close()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		s.cmd.Process.Kill()
		s.cmd.Wait()
		if try == 5 {
			s.t.Fatalf("memcached did not come up on %s", s.Addr)
		}
	}
}

// Stop kills the server: connections are refused until Start.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Keys lists every key the server holds (lru_crawler metadump).
func (s *Server) Keys() []string {
	s.t.Helper()
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "lru_crawler metadump all\r\n")
	var keys []string
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "END" {
			break
		}
		if strings.HasPrefix(line, "ERROR") || strings.HasPrefix(line, "BUSY") {
			s.t.Fatalf("metadump: %s", line)
		}
		for _, f := range strings.Fields(line) {
			if k, ok := strings.CutPrefix(f, "key="); ok {
				if dk, err := url.QueryUnescape(k); err == nil {
					k = dk
				}
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// Pylibmc returns a python3 that imports pylibmc (USERROUTER_TEST_PYTHON,
// which `make test` sets and provides pylibmc for), to check what an
// application writing through libmemcached does. Without it the test
// skips, or fails under `make test`.
func Pylibmc(t testing.TB) string {
	t.Helper()
	py := os.Getenv("USERROUTER_TEST_PYTHON")
	why := "USERROUTER_TEST_PYTHON is unset"
	if py != "" {
		out, err := exec.Command(py, "-c", "import pylibmc").CombinedOutput()
		if err == nil {
			return py
		}
		why = fmt.Sprintf("%s cannot import pylibmc (%v: %s)", py, err, strings.TrimSpace(string(out)))
	}
	if os.Getenv("USERROUTER_REQUIRE_INTEGRATION") != "" {
		t.Fatalf("%s although USERROUTER_REQUIRE_INTEGRATION is set", why)
	}
	t.Skipf("%s: run `make test` to check key placement against pylibmc", why)
	return ""
}

// Nutcracker returns the path of twemproxy's binary (USERROUTER_TEST_NUTCRACKER,
// which `make test` sets), to check key placement against it. Without it
// the test skips, or fails under `make test`.
func Nutcracker(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("USERROUTER_TEST_NUTCRACKER"); p != "" {
		return p
	}
	if os.Getenv("USERROUTER_REQUIRE_INTEGRATION") != "" {
		t.Fatal("USERROUTER_TEST_NUTCRACKER is unset although USERROUTER_REQUIRE_INTEGRATION is set")
	}
	t.Skip("USERROUTER_TEST_NUTCRACKER is unset: run `make test` to check key placement against twemproxy")
	return ""
}
