package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// TestReloadWaitsForSessionStore: a SIGHUP whose new session query cannot
// be verified because MariaDB refuses connections is not applied: the
// running session checker stays, the reload is tried again, and once the
// database answers a rejected query is an error (the old one stays) and
// an accepted one takes over. Messages say "at reload".
func TestReloadWaitsForSessionStore(t *testing.T) {
	bin := binary(t)
	dsn, db, fx := sessiontest.MySQLDjango(t)
	key := faultKey()
	sessiontest.InsertSession(t, db, key, fx.Row("identified").SessionData, time.Now().Add(time.Hour))
	dbCfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	dbProxy := newFaultProxy(t, "mariadb", dbCfg.Addr)
	dbCfg.Addr = dbProxy.addr
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "page")
	}))
	t.Cleanup(backend.Close)

	addr, admin := freeAddr(t), freeAddr(t)
	path := filepath.Join(t.TempDir(), "userrouter.toml")
	write := func(query string) {
		cfg := fmt.Sprintf(`
[listen]
addr = %q
admin_addr = %q
[backend]
addrs = [%q]
[session]
driver = "mysql"
dsn = %q
secret_key = %q
query = %q
timeout = "200ms"
cache_ttl_identified = "100ms"
cache_ttl_anonymous = "100ms"
cache_ttl_no_row = "100ms"
[cache]
store = "memory"
[log]
level = "info"
`, addr, admin, strings.TrimPrefix(backend.URL, "http://"), dbCfg.FormatDSN(), fx.SecretKey, query)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const good = "SELECT session_data FROM django_session WHERE session_key = :key AND expire_date > :now"
	write(good)
	cmd, logs := startDaemon(t, bin, path)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("userrouter log:\n%s", logs.String())
		}
	})
	waitLog(t, logs, "userrouter started", 1)
	identified := func() string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/p", nil)
		req.AddCookie(&http.Cookie{Name: "sessionid", Value: key})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Cache-Status")
	}
	if cs := identified(); cs != "userrouter; fwd=bypass; detail=identified" {
		t.Fatalf("before: %q", cs)
	}

	// A query the database will reject, sent while it is unreachable.
	if err := dbProxy.Set(faultRefuse); err != nil {
		t.Fatal(err)
	}
	write("SELECT session_data FROM no_such_table WHERE session_key = :key")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logs, "reload waits", 1)
	if strings.Contains(logs.String(), "at startup") {
		t.Error(`a reload's message says "at startup"`)
	}
	if err := dbProxy.Set(faultPass); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "session.query is rejected by the database", 1)
	time.Sleep(150 * time.Millisecond) // past the verdict TTL
	if cs := identified(); cs != "userrouter; fwd=bypass; detail=identified" {
		t.Errorf("after the rejected reload: %q; want the running checker's verdict", cs)
	}
	if strings.Contains(logs.String(), "msg=reloaded") {
		t.Error("the rejected config was applied")
	}

	// An accepted change, sent while the database is unreachable, takes
	// over once it answers.
	if err := dbProxy.Set(faultRefuse); err != nil {
		t.Fatal(err)
	}
	write(good + " LIMIT 1")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logs, "reload waits", 2)
	if err := dbProxy.Set(faultPass); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "msg=reloaded", 1)
	time.Sleep(150 * time.Millisecond)
	if cs := identified(); cs != "userrouter; fwd=bypass; detail=identified" {
		t.Errorf("after the accepted reload: %q", cs)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// TestConfigErrorsAreNotOutages: at startup, a DSN the database refuses
// (wrong password 1045, unknown database 1049) or a query it rejects (no
// such table) stops the daemon with the config key named; a refused
// connection is an outage, and the daemon runs on.
func TestConfigErrorsAreNotOutages(t *testing.T) {
	bin := binary(t)
	dsn := sessiontest.Env(t, "USERROUTER_TEST_MYSQL_DSN")
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	wrongPassword, unknownDB, refused := *cfg, *cfg, *cfg
	wrongPassword.User, wrongPassword.Passwd = "userrouter_nobody", "wrong"
	unknownDB.DBName = "userrouter_no_such_database"
	refused.Addr = freeAddr(t) // nothing listens there
	for _, tc := range []struct {
		name, dsn, query, want string
		stops                  bool
	}{
		{"wrong password", wrongPassword.FormatDSN(), "", "session.dsn is refused by the database", true},
		{"unknown database", unknownDB.FormatDSN(), "", "session.dsn is refused by the database", true},
		{"missing table", cfg.FormatDSN(), "SELECT session_data FROM no_such_table WHERE session_key = :key", "session.query is rejected", true},
		{"refused connection", refused.FormatDSN(), "", "session store unreachable at startup", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			query := ""
			if tc.query != "" {
				query = fmt.Sprintf("query = %q\n", tc.query)
			}
			path := writeConfig(t, fmt.Sprintf(`
[listen]
addr = %q
admin_addr = %q
[backend]
addrs = ["127.0.0.1:9"]
[session]
driver = "mysql"
dsn = %q
%s[cache]
store = "memory"
`, freeAddr(t), freeAddr(t), tc.dsn, query))
			cmd, logs := startDaemon(t, bin, path)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if !tc.stops {
					t.Fatalf("the daemon stopped (%v); want it running:\n%s", err, logs.String())
				}
				if err == nil || !strings.Contains(logs.String(), tc.want) {
					t.Errorf("exit %v; want a failure saying %q:\n%s", err, tc.want, logs.String())
				}
			case <-time.After(3 * time.Second):
				if tc.stops {
					t.Fatalf("still running after 3s; want it stopped saying %q:\n%s", tc.want, logs.String())
				}
				if !strings.Contains(logs.String(), tc.want) {
					t.Errorf("running, but the log does not say %q:\n%s", tc.want, logs.String())
				}
				cmd.Process.Signal(syscall.SIGTERM)
				<-done
			}
		})
	}
}

// TestStartupTellsTheStory: the startup line names the page store, its
// servers and L1, the session driver and the backends; an unreachable
// memcached is warned about at startup, like the session store.
func TestStartupTellsTheStory(t *testing.T) {
	bin := binary(t)
	mc := freeAddr(t) // nothing listens there
	path := writeConfig(t, fmt.Sprintf(`
[listen]
addr = %q
admin_addr = %q
[backend]
addrs = ["127.0.0.1:9"]
[cache]
store = "memcached"
servers = [%q]
l1_size = "8MiB"
`, freeAddr(t), freeAddr(t), mc))
	cmd, logs := startDaemon(t, bin, path)
	waitLog(t, logs, "userrouter started", 1)
	out := logs.String()
	for _, want := range []string{"page store unreachable at startup", "page_store=memcached", "memcached=[" + mc + "]", "l1_size=8388608", "session_driver=none", "backends=[127.0.0.1:9]"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// TestCheckConnect: -check -connect reaches every dependency, one line
// each, and fails when one does not answer; -check alone stays offline.
func TestCheckConnect(t *testing.T) {
	bin := binary(t)
	mc := sessiontest.Env(t, "USERROUTER_TEST_MEMCACHED")
	dsn, _, fx := sessiontest.MySQLDjango(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(backend.Close)
	write := func(backendAddr string) string {
		return writeConfig(t, fmt.Sprintf(`
[backend]
addrs = [%q]
probe = "/healthz"
[session]
driver = "mysql"
dsn = %q
secret_key = %q
[cache]
store = "memcached"
servers = [%q]
`, backendAddr, dsn, fx.SecretKey, mc))
	}
	run := func(args ...string) (int, string) {
		var out, errb strings.Builder
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return code, errb.String()
	}
	good := write(strings.TrimPrefix(backend.URL, "http://"))
	code, out := run("-check", "-connect", "-config", good)
	for _, want := range []string{"ok    memcached " + mc, "ok    session store (mysql), one lookup of a random key", "ok    backend " + strings.TrimPrefix(backend.URL, "http://") + ", probe GET /healthz"} {
		if !strings.Contains(out, want) {
			t.Errorf("-check -connect does not say %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("-check -connect, everything up: exit %d:\n%s", code, out)
	}
	if code, out := run("-check", "-config", good); code != 0 || strings.Contains(out, "ok    ") {
		t.Errorf("-check alone: exit %d, and it connected:\n%s", code, out)
	}
	code, out = run("-check", "-connect", "-config", write(freeAddr(t)))
	if code != 1 || !strings.Contains(out, "FAIL  backend ") {
		t.Errorf("-check -connect, backend down: exit %d:\n%s", code, out)
	}
}
