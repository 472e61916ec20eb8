package router

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// mysqlSessions returns Sessions over the django_session table at dsn;
// tweaks adjust the options (counters, histograms) before it is made.
func mysqlSessions(t *testing.T, dsn string, tweaks ...func(*sessioncheck.Options)) *sessioncheck.Sessions {
	t.Helper()
	pool, err := sessioncheck.OpenMySQL(dsn, 4)
	if err != nil {
		t.Fatal(err)
	}
	store, err := sessioncheck.NewSQLStore(pool, sessioncheck.SQLOptions{
		Query:       "SELECT session_data FROM django_session WHERE session_key = :key AND expire_date > :now",
		Placeholder: sessioncheck.QuestionMark, QueryError: sessioncheck.MySQLQueryError,
	})
	if err != nil {
		t.Fatal(err)
	}
	rule, _ := sessioncheck.NewRule("django", nil)
	o := sessioncheck.Options{Store: store, Rule: rule, Timeout: 300 * time.Millisecond}
	for _, tweak := range tweaks {
		tweak(&o)
	}
	s, err := sessioncheck.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// memoryCache is a page cache in memory.
func memoryCache(t testing.TB) *CacheOptions {
	store, err := pagecache.NewMemory(pagecache.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{})
	return &CacheOptions{Store: store, Keys: keys,
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})}
}

// echoBackend answers with the Cookie header it received and counts requests.
func echoBackend(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.WriteString(w, "cookie="+strings.Join(r.Header.Values("Cookie"), "\n"))
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func get(t *testing.T, url, method, cookie string) (status int, cacheStatus, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if cookie != "" {
		req.Header["Cookie"] = strings.Split(cookie, "\n") // "\n": one Cookie line each
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Cache-Status"), string(b)
}

func TestRouterVerdicts(t *testing.T) {
	dsn, _, fx := sessiontest.MySQLDjango(t)
	sessions := mysqlSessions(t, dsn)
	backend, _ := echoBackend(t)
	base := startRouter(t, Options{Sessions: sessions, Cache: memoryCache(t)}, testBackendOptions(backendAddr(backend)))

	identified := "sessionid=" + fx.Row("identified").SessionKey
	anonymous := "sessionid=" + fx.Row("anonymous").SessionKey
	for _, tc := range []struct {
		name, method, cookie, cacheStatus string
		lookup                            bool
	}{
		{"identified", "GET", identified, "userrouter; fwd=bypass; detail=identified", true},
		{"identified, HEAD", "HEAD", identified, "userrouter; fwd=bypass; detail=identified", true},
		{"undecodable session", "GET", "sessionid=" + fx.Row("doubt").SessionKey, "userrouter; fwd=bypass; detail=doubt-undecodable", true},
		{"anonymous session", "GET", anonymous, "userrouter; fwd=miss; detail=background-fill", true},
		{"no cookie", "GET", "", "userrouter; fwd=miss; stored", false},
		{"duplicate cookie: the last wins, as in Django", "GET", identified + "; " + anonymous, "userrouter; fwd=miss; detail=background-fill", true},
		{"duplicate cookie, identified last", "GET", anonymous + "; " + identified, "userrouter; fwd=bypass; detail=identified", true},
		{"cookie split over two lines", "GET", "a=1\n" + identified, "userrouter; fwd=bypass; detail=doubt-ambiguous-cookie", false},
		{"upper-case key: the store's collation decides, as for Django", "GET", "sessionid=" + strings.ToUpper(strings.TrimPrefix(identified, "sessionid=")), "userrouter; fwd=bypass; detail=identified", true},
		{"key failing the pattern", "GET", "sessionid=' OR '1'='1", "userrouter; fwd=miss; detail=background-fill", false},
		{"POST is forwarded without a lookup", "POST", identified, "userrouter; fwd=bypass; detail=method", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := sessions.Stats.Lookups.Load()
			status, cs, body := get(t, base+"/"+strings.ReplaceAll(tc.name, " ", "-"), tc.method, tc.cookie)
			if status != 200 || cs != tc.cacheStatus {
				t.Errorf("got %d %q; want 200 %q", status, cs, tc.cacheStatus)
			}
			if tc.method == "GET" && body != "cookie="+tc.cookie {
				t.Errorf("backend got %q; want the visitor's own cookies", body)
			}
			if looked := sessions.Stats.Lookups.Load() > before; looked != tc.lookup {
				t.Errorf("session looked up: %v; want %v", looked, tc.lookup)
			}
		})
	}
}

func TestRouterDoubtsWithoutStore(t *testing.T) {
	backend, _ := echoBackend(t)
	key := "sessionid=" + strings.Repeat("a", 32)

	base := startRouter(t, Options{Cache: memoryCache(t)}, testBackendOptions(backendAddr(backend)))
	if _, cs, _ := get(t, base+"/", "GET", key); cs != "userrouter; fwd=bypass; detail=doubt-no-store" {
		t.Errorf("no store: got Cache-Status %q", cs)
	}

	// A store that cannot be reached: a doubt, forwarded, never anonymous.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.DBName = "root", "tcp", addr, "none"
	base = startRouter(t, Options{Sessions: mysqlSessions(t, cfg.FormatDSN()), Cache: memoryCache(t)}, testBackendOptions(backendAddr(backend)))
	status, cs, body := get(t, base+"/", "GET", key)
	if status != 200 || cs != "userrouter; fwd=bypass; detail=doubt-store-error" || body != "cookie="+key {
		t.Errorf("store down: got %d %q %q; want the backend's answer marked doubt-store-error", status, cs, body)
	}
}
