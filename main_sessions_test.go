package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/userrouter/userrouter/sessioncheck"
	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// sessionDaemon runs userrouter with a [session] section in front of a
// backend that counts its requests, and returns a GET that reports the
// Cache-Status of a request carrying the session cookie value.
func sessionDaemon(t *testing.T, session string) (get func(path, cookie string) string, backendHits func() int64) {
	t.Helper()
	bin := binary(t)
	var hits atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "page")
	}))
	t.Cleanup(backend.Close)
	addr, admin := freeAddr(t), freeAddr(t)
	path := writeConfig(t, fmt.Sprintf("[listen]\naddr = %q\nadmin_addr = %q\n[backend]\naddrs = [%q]\n[session]\n%s\n[cache]\nstore = \"memory\"\n",
		addr, admin, strings.TrimPrefix(backend.URL, "http://"), session))
	cmd, logs := startDaemon(t, bin, path)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("userrouter log:\n%s", logs.String())
		}
		cmd.Process.Signal(syscall.SIGTERM)
	})
	waitLog(t, logs, "userrouter started", 1)
	get = func(p, cookie string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+p, nil)
		if cookie != "" {
			req.Header.Set("Cookie", "csrftoken=x; sessionid="+cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		resp.Body.Close()
		return resp.Header.Get("Cache-Status")
	}
	return get, hits.Load
}

// TestBinaryPostgres: driver = "postgres" with the default query tells
// Django's sessions apart.
func TestBinaryPostgres(t *testing.T) {
	dsn, _, fx := sessiontest.PostgresDjango(t)
	get, hits := sessionDaemon(t, fmt.Sprintf("driver = \"postgres\"\ndsn = %q\nsecret_key = %q", dsn, fx.SecretKey))
	get("/a", "")
	if cs := get("/a", fx.Row("anonymous").SessionKey); !strings.Contains(cs, "hit") {
		t.Errorf("anonymous session: Cache-Status %q; want a hit", cs)
	}
	before := hits()
	if cs := get("/a", fx.Row("identified").SessionKey); strings.Contains(cs, "hit") || hits() != before+1 {
		t.Errorf("signed in: Cache-Status %q; want a forward", cs)
	}
}

// TestBinarySignedCookies: driver = "signed_cookies" reads the session
// from the cookie, long cookies included; a cookie that does not verify
// is anonymous, as Django reads it.
func TestBinarySignedCookies(t *testing.T) {
	const secret = "binary-signed-cookies-secret"
	signer := &sessioncheck.DjangoSigner{Secrets: []string{secret}, Salt: sessioncheck.SignedCookieSalt}
	other := &sessioncheck.DjangoSigner{Secrets: []string{"another"}, Salt: sessioncheck.SignedCookieSalt}
	noise := make([]byte, 300)
	rand.Read(noise)
	cookie := func(s *sessioncheck.DjangoSigner, session map[string]any) string {
		c, err := s.Encode(session, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	anonymous := cookie(signer, map[string]any{"cart": []int{1, 2}})
	identified := cookie(signer, map[string]any{"_auth_user_id": "1", "token": hex.EncodeToString(noise)})
	forged := cookie(other, map[string]any{"_auth_user_id": "1"})
	if len(identified) <= sessioncheck.MaxKeyLength {
		t.Fatalf("the signed-in cookie is %d bytes; want one longer than a database key may be", len(identified))
	}
	get, hits := sessionDaemon(t, fmt.Sprintf("driver = \"signed_cookies\"\nsecret_key = %q", secret))
	get("/a", "")
	for name, c := range map[string]string{"anonymous": anonymous, "signed with another key": forged, "not a signed cookie": "abc"} {
		if cs := get("/a", c); !strings.Contains(cs, "hit") {
			t.Errorf("%s: Cache-Status %q; want a hit", name, cs)
		}
	}
	before := hits()
	if cs := get("/a", identified); strings.Contains(cs, "hit") || hits() != before+1 {
		t.Errorf("signed in, a %d-byte cookie: Cache-Status %q; want a forward", len(identified), cs)
	}
	if cs := get("/a", strings.Repeat("a", 5000)+":0:"+strings.Repeat("A", 43)); !strings.Contains(cs, "doubt-undecodable") {
		t.Errorf("a 5 KB cookie: Cache-Status %q; want a doubt", cs)
	}
}

// TestPostgresConfigErrorsAreNotOutages is TestConfigErrorsAreNotOutages
// for PostgreSQL: SQLSTATE 28P01 (wrong password), 28000 (unknown role),
// 3D000 (unknown database) and 42P01 (missing table) stop the daemon with
// the config key named; a refused connection does not.
func TestPostgresConfigErrorsAreNotOutages(t *testing.T) {
	bin := binary(t)
	dsn := sessiontest.PostgresDSN(t)
	for _, tc := range []struct {
		name, dsn, query, want string
		stops                  bool
	}{
		{"wrong password", "postgres://django:wrong@" + fakePostgres(t, "28P01") + "/app?sslmode=disable", "", "session.dsn is refused by the database", true},
		{"unknown role", sessiontest.PostgresWithParam(dsn, "user", "userrouter_nobody"), "", "session.dsn is refused by the database", true},
		{"unknown database", sessiontest.PostgresWithDatabase(t, dsn, "userrouter_no_such_database"), "", "session.dsn is refused by the database", true},
		{"missing table", dsn, "", "session.query is rejected", true},
		{"refused connection", "postgres://postgres@" + freeAddr(t) + "/app?sslmode=disable", "", "session store unreachable at startup", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, fmt.Sprintf(`
[listen]
addr = %q
admin_addr = %q
[backend]
addrs = ["127.0.0.1:9"]
[session]
driver = "postgres"
dsn = %q
[cache]
store = "memory"
`, freeAddr(t), freeAddr(t), tc.dsn))
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
				if strings.Contains(logs.String(), "wrong") {
					t.Errorf("the log shows the password:\n%s", logs.String())
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

// fakePostgres refuses every login with a FATAL error of the given
// SQLSTATE, as a server that wants another password does.
func fakePostgres(t *testing.T, code string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				be := pgproto3.NewBackend(c, c)
				if _, err := be.ReceiveStartupMessage(); err != nil {
					return
				}
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: "password authentication failed"})
				be.Flush()
			}()
		}
	}()
	return ln.Addr().String()
}
