package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// TestCredentialsEndToEnd runs contrib/django/apiproject (Django REST
// framework, TokenAuthentication, on MariaDB) under gunicorn behind a real
// userrouter and memcached, the credentials checked against DRF's own
// authtoken_token table (issue 18's acceptance):
//
//   - /api/channels/ (credentials = "shared") is a hit for two different
//     valid tokens, and never served to a request with no token, an
//     unknown one, or while the credential store is down;
//   - /api/mychannels/ (credentials = "per-credential") gives each token
//     its own copy, never another's;
//   - a change to one user's data purges, through Django's signals and
//     userrouter's admin API, that user's copies only;
//   - every fill carries exactly one credential, the verified visitor's,
//     and no cookie.
func TestCredentialsEndToEnd(t *testing.T) {
	bin := binary(t) // first: it skips in -short mode
	python := sessiontest.Env(t, "USERROUTER_TEST_PYTHON")
	gunicorn := sessiontest.Env(t, "USERROUTER_TEST_GUNICORN")
	memcached := sessiontest.Env(t, "USERROUTER_TEST_MEMCACHED")
	dsn := sessiontest.MySQLDSN(t)
	db, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	dbHost, dbPort, _ := net.SplitHostPort(db.Addr)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	dir := t.TempDir()
	repo, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	contrib := filepath.Join(repo, "contrib", "django")
	project := filepath.Join(contrib, "apiproject")
	listen, admin, backend := freeAddr(t), freeAddr(t), freeAddr(t)
	env := append(os.Environ(),
		"PYTHONPATH="+contrib+string(os.PathListSeparator)+project,
		"PYTHONDONTWRITEBYTECODE=1",
		"DJANGO_SETTINGS_MODULE=apiproject.settings",
		"APIPROJECT_DB_NAME="+db.DBName, "APIPROJECT_DB_HOST="+dbHost, "APIPROJECT_DB_PORT="+dbPort,
		"APIPROJECT_DB_USER="+db.User, "APIPROJECT_DB_PASSWORD="+db.Passwd,
		"USERROUTER_PURGE_URL=http://"+admin+"/purge",
		"USERROUTER_PURGE_LOG_LEVEL=DEBUG",
	)
	manage := func(code string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, python, "manage.py", "shell", "-c", code)
		cmd.Dir, cmd.Env = project, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("manage.py shell -c %q: %v\n%s%s", code, err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}

	// Two users with a token each, two channels, alice subscribed to one.
	seed := strings.Fields(manage(`
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from tv.models import Channel, Subscription
one, two = Channel.objects.create(name="One"), Channel.objects.create(name="Two")
for name in ["alice", "bob"]:
    u = User.objects.create(username=name)
    print(u.pk, Token.objects.create(user=u).key)
Subscription.objects.create(user=User.objects.get(username="alice"), channel=one)
Subscription.objects.create(user=User.objects.get(username="bob"), channel=two)
`))
	if len(seed) != 4 {
		t.Fatalf("seeding printed %q; want two ids and tokens", seed)
	}
	aliceID, alice, bob := seed[0], seed[1], seed[3]
	unknown := strings.Repeat("0", 40)

	djangoStart(t, dir, "gunicorn", project, env, gunicorn,
		"--bind", backend, "--workers", "2", "--graceful-timeout", "2",
		"--access-logfile", "-", "apiproject.wsgi")

	// userrouter reaches the credential store through a proxy the test
	// can break; Django reaches MariaDB directly.
	proxy := newFaultProxy(t, "mariadb", db.Addr)
	credDB := *db
	credDB.Addr = proxy.addr
	cfg := filepath.Join(dir, "userrouter.toml")
	prefix := fmt.Sprintf("api%d:", rand.Uint32())
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[listen]
addr = %q
admin_addr = %q
[backend]
addrs = [%q]
[session]
driver = "mysql"
dsn = %q
[credentials]
scheme = "Token"
dsn = %q
query = "SELECT user_id FROM authtoken_token WHERE `+"`key`"+` = :key"
cache_ttl_valid = "1s"
breaker_failures = 2
hash_key = "${USERROUTER_TEST_HASH_KEY}"
[cache]
store = "memcached"
servers = [%q]
prefix = %q
key = "%spage:{host}{uri}"
default_ttl = "1h"
[[cache.rule]]
path = "^/api/channels/"
credentials = "shared"
[[cache.rule]]
path = "^/api/"
credentials = "per-credential"
[log]
level = "debug"
`, listen, admin, backend, dsn, credDB.FormatDSN(), memcached, prefix, prefix)), 0o600); err != nil {
		t.Fatal(err)
	}
	urEnv := append(os.Environ(), "USERROUTER_TEST_HASH_KEY=e2e-hash-key-0123456789abcdef")
	check := exec.CommandContext(ctx, bin, "-check", "-config", cfg)
	check.Env = urEnv
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("userrouter -check: %v\n%s", err, out)
	}
	djangoStart(t, dir, "userrouter", dir, urEnv, bin, "-config", cfg)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	t.Cleanup(client.CloseIdleConnections)
	djangoWaitFor(ctx, t, client, "http://"+admin+"/healthz")
	for start := time.Now(); ; { // gunicorn answers 401 without a token
		resp, err := client.Get("http://" + backend + "/api/channels/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("gunicorn did not answer within 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	base := "http://" + listen

	type apiAnswer struct {
		Render, Authorization, Cookie, User string
		Channels                            []string
	}
	// get sends path with token (none when "") and a session cookie, and
	// returns the status, Cache-Status and the decoded body (on a 200).
	get := func(path, token string) (int, string, apiAnswer) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Token "+token)
		}
		req.Header.Set("Cookie", "sessionid=0123456789abcdefghijklmnopqrstuv; csrftoken=x")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if v := resp.Header.Values("Surrogate-Key"); len(v) > 0 {
			t.Fatalf("GET %s: the client got Surrogate-Key %q", path, v)
		}
		var a apiAnswer
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatalf("GET %s: %v\n%s", path, err, b)
			}
		}
		return resp.StatusCode, resp.Header.Get("Cache-Status"), a
	}
	expect := func(path, token string, wantStatus int, wantCS string) apiAnswer {
		t.Helper()
		status, cs, a := get(path, token)
		if status != wantStatus || cs != wantCS {
			t.Fatalf("GET %s with token %.8s: %d %q; want %d %q", path, token, status, cs, wantStatus, wantCS)
		}
		return a
	}
	const (
		sharedMiss   = "userrouter; fwd=miss; stored; detail=credential-shared"
		sharedHit    = "userrouter; hit; detail=credential-shared"
		privateMiss  = "userrouter; fwd=miss; stored; detail=credential-private"
		privateHit   = "userrouter; hit; detail=credential-private"
		invalid      = "userrouter; fwd=bypass; detail=credential-invalid"
		doubt        = "userrouter; fwd=bypass; detail=credential-doubt"
		fillCarries1 = "the fill carried Authorization %q, Cookie %q; want Token %.8s… alone"
	)

	t.Log("shared: one copy for every valid token, filled with one of them")
	channels := expect("/api/channels/", alice, 200, sharedMiss)
	if channels.Authorization != "Token "+alice || channels.Cookie != "" {
		t.Errorf(fillCarries1, channels.Authorization, channels.Cookie, alice)
	}
	for _, token := range []string{bob, alice, bob} {
		if a := expect("/api/channels/", token, 200, sharedHit); a.Render != channels.Render {
			t.Fatalf("the shared copy was not served: render %s; want %s", a.Render, channels.Render)
		}
	}
	expect("/api/channels/", "", 401, invalid)
	expect("/api/channels/", unknown, 401, invalid)

	t.Log("per-credential: each token its own copy")
	mine := map[string]apiAnswer{}
	for _, token := range []string{alice, bob} {
		a := expect("/api/mychannels/", token, 200, privateMiss)
		if a.Authorization != "Token "+token || a.Cookie != "" {
			t.Errorf(fillCarries1, a.Authorization, a.Cookie, token)
		}
		mine[token] = a
	}
	if mine[alice].User != "alice" || mine[bob].User != "bob" {
		t.Fatalf("got users %q and %q; want alice and bob", mine[alice].User, mine[bob].User)
	}
	for _, token := range []string{alice, bob, alice} {
		if a := expect("/api/mychannels/", token, 200, privateHit); a.Render != mine[token].Render {
			t.Fatalf("%s was served render %s (%s's); want its own %s", mine[token].User, a.Render, a.User, mine[token].Render)
		}
	}
	expect("/api/mychannels/", "", 401, invalid)

	t.Log("a change to alice's data purges user-" + aliceID + ": her copies only")
	manage(`from django.contrib.auth.models import User
from tv.models import Channel, Subscription
Subscription.objects.create(user=User.objects.get(username="alice"), channel=Channel.objects.get(name="Two"))
`)
	a := expect("/api/mychannels/", alice, 200, privateMiss)
	if strings.Join(a.Channels, ",") != "One,Two" || a.Render == mine[alice].Render {
		t.Fatalf("alice after the purge: channels %q render %s; want a fresh One,Two", a.Channels, a.Render)
	}
	if b := expect("/api/mychannels/", bob, 200, privateHit); b.Render != mine[bob].Render {
		t.Fatalf("bob's copy was purged with alice's")
	}
	if c := expect("/api/channels/", bob, 200, sharedHit); c.Render != channels.Render {
		t.Fatalf("the shared copy was purged with alice's")
	}

	t.Log("the credential store down: every token forwarded, never served a copy")
	if err := proxy.Set(faultRefuse); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond) // the verdicts cached expire (cache_ttl_valid)
	for _, path := range []string{"/api/channels/", "/api/mychannels/"} {
		for _, token := range []string{alice, bob} {
			if got := expect(path, token, 200, doubt); got.Render == channels.Render || got.Render == mine[bob].Render || got.Render == a.Render {
				t.Fatalf("GET %s during the outage was served a stored copy", path)
			}
		}
	}
	if err := proxy.Set(faultPass); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, cs, got := get("/api/channels/", bob)
		if cs == sharedHit && got.Render == channels.Render {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage: %q; want the shared copy again", cs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
