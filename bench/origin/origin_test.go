package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/sessioncheck"
)

// start runs an origin with a SQLite session store on loopback.
func start(t *testing.T, o Options) (*Origin, string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db.sqlite3")
	db, err := OpenSessionDB("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	o.DB = db
	g := New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: g.Handle}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return g, "http://" + ln.Addr().String(), path
}

func do(t *testing.T, method, url, cookie string) *fasthttp.Response {
	t.Helper()
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp := &fasthttp.Response{}
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp
}

// sessionCookie posts to url and returns "sessionid=KEY" from its answer.
func sessionCookie(t *testing.T, url string) string {
	t.Helper()
	resp := do(t, "POST", url, "")
	var c fasthttp.Cookie
	c.SetKey("sessionid")
	if resp.StatusCode() != 200 || !resp.Header.Cookie(&c) {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode(), resp.Body())
	}
	if !c.HTTPOnly() || string(c.Path()) != "/" || c.Expire().Before(time.Now().Add(13*24*time.Hour)) {
		t.Errorf("session cookie %s: want HttpOnly, Path=/ and two weeks", c.String())
	}
	return "sessionid=" + string(c.Value())
}

func TestOriginPagesAndSessions(t *testing.T) {
	g, base, path := start(t, Options{Size: 4096, MaxAge: time.Minute})

	pub := do(t, "GET", base+"/page/17?tags=2", "")
	if pub.StatusCode() != 200 || len(pub.Body()) != 4096 || !strings.Contains(string(pub.Body()), "<title>/page/17</title>") {
		t.Errorf("public page: %d, %d bytes", pub.StatusCode(), len(pub.Body()))
	}
	if got := string(pub.Header.Peek("Surrogate-Key")); got != "all section-page page-17 tag-0 tag-1" {
		t.Errorf("Surrogate-Key %q", got)
	}
	if got := string(pub.Header.Peek("Cache-Control")); got != "max-age=60" {
		t.Errorf("Cache-Control %q", got)
	}
	if len(pub.Header.PeekCookie("csrftoken")) != 0 {
		t.Error("a Set-Cookie without ?set-cookie")
	}
	if len(do(t, "GET", base+"/?set-cookie=1", "").Header.PeekCookie("csrftoken")) == 0 {
		t.Error("no Set-Cookie with ?set-cookie")
	}
	if got := do(t, "GET", base+"/gone?status=410", "").StatusCode(); got != 410 {
		t.Errorf("?status=410 answered %d", got)
	}

	login := sessionCookie(t, base+"/login")
	cart := sessionCookie(t, base+"/cart")
	mine := do(t, "GET", base+"/page/17", login)
	if string(mine.Header.Peek("Cache-Control")) != "private" || !strings.Contains(string(mine.Body()), "Signed in") || len(mine.Header.Peek("Surrogate-Key")) != 0 {
		t.Errorf("signed-in page: %s\n%.200s", mine.Header.String(), mine.Body())
	}
	withCart := do(t, "GET", base+"/page/17", cart)
	if string(withCart.Header.Peek("Cache-Control")) != "max-age=60" || string(withCart.Header.Peek("Vary")) != "Cookie" {
		t.Errorf("cart page: %s", withCart.Header.String())
	}
	if got := do(t, "GET", base+"/login", "").StatusCode(); got != 405 {
		t.Errorf("GET /login: %d; want 405", got)
	}
	if g.Stats.Logins.Load() != 1 || g.Stats.Carts.Load() != 1 || g.Stats.Personal.Load() != 1 {
		t.Errorf("stats: %s", do(t, "GET", base+"/stats", "").Body())
	}

	// userrouter's SQLite driver reads what origin wrote, as it reads
	// Django's own db.sqlite3: the login is identified, the cart anonymous.
	db, err := sessioncheck.OpenSQLite(path, 2, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	store, err := sessioncheck.NewSQLStore(db, sessioncheck.SQLOptions{
		Query:       "SELECT session_data FROM django_session WHERE session_key = :key AND expire_date > :now",
		Placeholder: sessioncheck.QuestionMark,
	})
	if err != nil {
		t.Fatal(err)
	}
	rule, _ := sessioncheck.NewRule("django", &sessioncheck.DjangoSigner{Secrets: []string{"userrouter-origin-not-secret"}})
	s, err := sessioncheck.New(sessioncheck.Options{Store: store, Rule: rule})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for cookie, want := range map[string]string{login: "identified", cart: "anonymous"} {
		v, err := s.Check(context.Background(), []byte(strings.TrimPrefix(cookie, "sessionid=")))
		if err != nil || v.String() != want {
			t.Errorf("%s: %v, %v; want %s", cookie, v, err, want)
		}
	}
}

// TestOriginWorkers: with 2 workers and 50ms renders, 6 requests at once
// take three rounds, as they would on a gunicorn with 2 workers.
func TestOriginWorkers(t *testing.T) {
	_, base, _ := start(t, Options{Size: 100, Render: 50 * time.Millisecond, Workers: 2})
	begin := time.Now()
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { do(t, "GET", base+"/", "") })
	}
	wg.Wait()
	if took := time.Since(begin); took < 150*time.Millisecond {
		t.Errorf("6 pages on 2 workers took %v; want at least 3 renders of 50ms", took)
	}
}

func TestOriginFlags(t *testing.T) {
	var out strings.Builder
	for _, args := range [][]string{{"-workers", "0"}, {"-sqlite", "a", "-mysql", "b"}, {"extra"}, {"-nope"}} {
		out.Reset()
		if code := run(args, &out); code != 2 {
			t.Errorf("%v: exit %d; want 2", args, code)
		}
	}
	if code := run([]string{"-sqlite", filepath.Join(t.TempDir(), "no", "such", "dir", "db")}, &out); code != 1 {
		t.Errorf("unopenable -sqlite: exit %d; want 1", code)
	}
}
