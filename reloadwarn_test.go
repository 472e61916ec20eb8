package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/userrouter/userrouter/conf"
)

func TestRestartOnly(t *testing.T) {
	base := conf.Default()
	tests := []struct {
		name   string
		change func(c *conf.Config)
		want   []string
	}{
		{"nothing", func(c *conf.Config) {}, nil},
		{"read timeout", func(c *conf.Config) { c.Listen.ReadTimeout = conf.Duration(7 * time.Minute) }, []string{"listen.read_timeout"}},
		{"address and format", func(c *conf.Config) { c.Listen.Addr = "127.0.0.1:1"; c.Log.Format = "json" }, []string{"listen.addr", "log.format"}},
		{"applied by the router", func(c *conf.Config) {
			c.Listen.MaxRequestBodySize = 1
			c.Listen.TrustedProxies = nil
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := conf.Default()
			tt.change(next)
			if got := restartOnly(base.Listen, base.Log.Format, next); !slices.Equal(got, tt.want) {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

// TestReloadWarnsAgainstRunningListeners: a reload that changes a listener
// setting warns and names it; one that reverts it says nothing more.
func TestReloadWarnsAgainstRunningListeners(t *testing.T) {
	bin := binary(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(backend.Close)
	addr, admin := freeAddr(t), freeAddr(t)
	path := filepath.Join(t.TempDir(), "userrouter.toml")
	write := func(readTimeout string) {
		cfg := fmt.Sprintf(`
[listen]
addr = %q
admin_addr = %q
read_timeout = %q
[backend]
addrs = [%q]
[cache]
store = "memory"
hosts = ["example.com"]
`, addr, admin, readTimeout, strings.TrimPrefix(backend.URL, "http://"))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("10s")
	cmd, logs := startDaemon(t, bin, path)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("userrouter log:\n%s", logs.String())
		}
	})
	waitLog(t, logs, "userrouter started", 1)
	const warning = "applied at restart only"
	write("20s")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logs, "reloaded", 1)
	if n := strings.Count(logs.String(), warning); n != 1 || !strings.Contains(logs.String(), "listen.read_timeout") {
		t.Fatalf("after a change: %d warnings, or without the key", n)
	}
	write("10s")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logs, "reloaded", 2)
	if n := strings.Count(logs.String(), warning); n != 1 {
		t.Errorf("after the change was reverted: %d warnings; want none more", n-1)
	}
}
