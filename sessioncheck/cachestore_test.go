package sessioncheck

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// testPrefix is a KEY_PREFIX no other test or helper uses: the tests
// share the machine's Redis and delete only their own keys.
func testPrefix() string { return fmt.Sprintf("urtest%d%06d", time.Now().UnixNano(), rand.IntN(1e6)) }

// redisAddr is the test Redis (USERROUTER_TEST_REDIS, host:port).
func redisAddr(t testing.TB) string { return sessiontest.Env(t, "USERROUTER_TEST_REDIS") }

// newCacheSessions builds Sessions over a cache-backed store. Tests of
// what a lookup finds give it 2 s, not the default 100 ms: the machine
// may be loaded; the outage tests set the timeout they measure.
func newCacheSessions(t testing.TB, store Store, rule, key string, o Options) *Sessions {
	t.Helper()
	r, err := NewCacheRule(rule, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Store, o.Rule = store, r
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newRedisStore(t testing.TB, url, tmpl string, timeout time.Duration) *RedisStore {
	t.Helper()
	s, err := OpenRedis(RedisOptions{URL: url, KeyTemplate: tmpl, Timeout: timeout, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// redisClient is a plain client on the test Redis that deletes the keys
// under prefix when the test ends.
func redisClient(t testing.TB, prefix string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr(t), Protocol: 2})
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		c.Close()
	})
	return c
}

// runDjango runs a script with Debian's Django, giving it settings as JSON
// on stdin, and decodes the JSON it prints.
func runDjango(t testing.TB, script string, in, out any) {
	t.Helper()
	python := sessiontest.Env(t, "USERROUTER_TEST_PYTHON")
	stdin, _ := json.Marshal(in)
	cmd := exec.Command(python, "-c", djangoCacheScriptHead+script)
	cmd.Stdin = strings.NewReader(string(stdin))
	b, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("Django: %v\n%s", err, msg)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("Django printed %s: %v", b, err)
	}
}

// djangoCacheScriptHead configures Django from the JSON on stdin (CACHES,
// SESSION_ENGINE, the database) and defines session_after(view), which
// runs a request through SessionMiddleware and returns the session key
// the response sets, and the views cart and log_in.
const djangoCacheScriptHead = `
import json, sys
import django
from django.conf import settings
cfg = json.load(sys.stdin)
settings.configure(
    SECRET_KEY="userrouter-cache-test", USE_TZ=True, ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": cfg.get("db", ":memory:")}},
    CACHES={"default": cfg["cache"]},
    SESSION_ENGINE=cfg["engine"],
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
)
django.setup()
from django.contrib.auth import login
from django.contrib.auth.models import User
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.cache import cache
from django.core.management import call_command
from django.http import HttpResponse
from django.test import RequestFactory

call_command("migrate", verbosity=0, interactive=False)
alice = User.objects.create_user("alice", "alice@example.com", "pw")

def session_after(view):
    def handler(request):
        view(request)
        return HttpResponse("ok")
    response = SessionMiddleware(handler)(RequestFactory().get("/"))
    return response.cookies["sessionid"].value

def cart(request):
    request.session["cart"] = [{"sku": "SKU-1", "qty": 2, "price": 9.5, "gift": True, "note": None}]
    request.session["seen"] = (1, 2)

def log_in(request):
    login(request, alice, backend="django.contrib.auth.backends.ModelBackend")
`

// TestRedisDjango: sessions Django's cache engine wrote to the real Redis
// through django-redis (Debian's python3-django-redis 5.2: pickled with
// Python's default protocol, 4), read back and judged.
func TestRedisDjango(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix()
	rc := redisClient(t, prefix)
	var keys struct{ Anonymous, Identified, Logout, Int, Django string }
	runDjango(t, `
anonymous, identified = session_after(cart), session_after(log_in)
from django.contrib.auth import logout
from django.contrib.sessions.backends.cache import KEY_PREFIX
def log_in_out(request):
    login(request, alice, backend="django.contrib.auth.backends.ModelBackend")
    logout(request)
    request.session["after"] = "logout"
# django-redis stores an int as its digits, unpickled.
cache.set(KEY_PREFIX + "i" * 32, 7)
print(json.dumps({"anonymous": anonymous, "identified": identified, "logout": session_after(log_in_out),
                  "int": "i" * 32, "django": django.get_version()}))
`, map[string]any{
		"engine": "django.contrib.sessions.backends.cache",
		"cache":  map[string]any{"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://" + addr + "/0", "KEY_PREFIX": prefix},
	}, &keys)
	t.Logf("sessions written by Django %s through django-redis", keys.Django)

	raw, err := rc.Get(context.Background(), prefix+":1:django.contrib.sessions.cache"+keys.Identified).Bytes()
	if err != nil || len(raw) < 2 || raw[0] != 0x80 {
		t.Fatalf("the identified session in Redis: %q, %v; want a pickle", raw, err)
	}
	t.Logf("pickle protocol %d", raw[1])

	store := newRedisStore(t, "redis://"+addr+"/0", prefix+":1:django.contrib.sessions.cache{key}", time.Second)
	s := newCacheSessions(t, store, "django", "", Options{Timeout: 2 * time.Second})
	for _, tc := range []struct{ name, key, want string }{
		{"anonymous with a cart", keys.Anonymous, "anonymous"},
		{"logged in", keys.Identified, "identified"},
		// logout flushes the session: a new key, without the login.
		{"logged in then out", keys.Logout, "anonymous"},
		{"unknown key", strings.Repeat("z", 32), "anonymous"},
		{"an int, not a session", keys.Int, "doubt:undecodable"},
	} {
		if got := check(s, tc.key); got != tc.want {
			t.Errorf("%s: got %s; want %s", tc.name, got, tc.want)
		}
	}
	if n := s.Stats.NoRow.Load(); n != 1 {
		t.Errorf("%d lookups found no session; want 1", n)
	}
	// The verdicts are cached: no second query.
	q := s.Stats.Queries.Load()
	check(s, keys.Identified)
	if s.Stats.Queries.Load() != q {
		t.Error("a cached verdict asked Redis again")
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestRedisOtherFrameworks reads hand-made Rails (redis-session-store,
// JSON) and Laravel (cache session handler) values from the real Redis,
// under their own key shapes (see formats_test.go for each fixture's
// origin).
func TestRedisOtherFrameworks(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix()
	rc := redisClient(t, prefix)
	ctx := context.Background()
	sid := "7b0e8c7c2d3f4a5b6c7d8e9f0a1b2c3d"
	anon := "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	// redis-session-store 0.11+ writes Rack's private id, "2::" + the
	// SHA-256 of the cookie's session id, after its key_prefix.
	railsTmpl := prefix + ":session:2::{key_sha256}"
	kt, _ := ParseKeyTemplate(railsTmpl)
	rc.Set(ctx, kt.Key(sid), railsCases[0].value, time.Hour)
	rc.Set(ctx, kt.Key(anon), railsCases[1].value, time.Hour)
	rails := newCacheSessions(t, newRedisStore(t, "redis://"+addr+"/0", railsTmpl, time.Second), "rails_json", "", Options{Timeout: 2 * time.Second})
	for key, want := range map[string]string{sid: "identified", anon: "anonymous", strings.Repeat("9", 32): "anonymous"} {
		if got := check(rails, key); got != want {
			t.Errorf("rails %s: got %s; want %s", key[:4], got, want)
		}
	}

	// Laravel: the Redis connection's prefix, the cache prefix and ":".
	laravelTmpl := prefix + "laravel_database_laravel_cache_:{key}"
	lsid, lanon := strings.Repeat("aZ", 20), strings.Repeat("bY", 20)
	kt, _ = ParseKeyTemplate(laravelTmpl)
	rc.Set(ctx, kt.Key(lsid), phpString(laravelLogin), time.Hour)
	rc.Set(ctx, kt.Key(lanon), phpString(laravelError), time.Hour)
	laravel := newCacheSessions(t, newRedisStore(t, "redis://"+addr+"/0", laravelTmpl, time.Second), "laravel_php", "", Options{Timeout: 2 * time.Second})
	for key, want := range map[string]string{lsid: "identified", lanon: "anonymous"} {
		if got := check(laravel, key); got != want {
			t.Errorf("laravel %s: got %s; want %s", key[:4], got, want)
		}
	}
}

// TestRedisMaxValueSize: a value over the bound is a doubt, read no
// further than the bound.
func TestRedisMaxValueSize(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix()
	rc := redisClient(t, prefix)
	rc.Set(context.Background(), prefix+"big", strings.Repeat("x", 2000), time.Hour)
	store, err := OpenRedis(RedisOptions{URL: "redis://" + addr + "/0", KeyTemplate: prefix + "{key}", MaxValueSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	s := newCacheSessions(t, store, "django", "", Options{BreakerFailures: 1})
	if got := check(s, "big"); got != "doubt:undecodable" {
		t.Errorf("got %s; want doubt:undecodable", got)
	}
	rc.HSet(context.Background(), prefix+"hash", "a", "b")
	if got := check(s, "hash"); got != "doubt:undecodable" {
		t.Errorf("a hash: got %s; want doubt:undecodable", got)
	}
	if s.BreakerState() != "closed" {
		t.Errorf("an oversized value or a hash opened the breaker: Redis answered")
	}
}

// TestRedisBlackholed: a server that accepts and never answers costs each
// lookup its timeout, no more, and opens the breaker; a refused port too.
func TestRedisBlackholed(t *testing.T) {
	redisAddr(t)
	for name, addr := range map[string]string{"silent": blackhole(t), "refused": refusedAddr(t)} {
		t.Run(name, func(t *testing.T) {
			s := newCacheSessions(t, newRedisStore(t, "redis://"+addr+"/0", "", 200*time.Millisecond), "django", "", Options{
				Timeout: 200 * time.Millisecond, BreakerFailures: 3, BreakerCooldown: time.Minute,
			})
			checkOutage(t, s)
		})
	}
}

// TestRedisOutageAndRecovery: Redis stops (the proxy in front of it
// closes), lookups are doubts and the breaker opens; it comes back and
// lookups succeed again without a restart.
func TestRedisOutageAndRecovery(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix()
	rc := redisClient(t, prefix)
	d, _ := hexPickle(pickleCases[3].hex)
	rc.Set(context.Background(), prefix+"k", d, time.Hour)
	proxy := newTCPProxy(t, addr)
	s := newCacheSessions(t, newRedisStore(t, "redis://"+proxy.addr+"/0", prefix+"{key}", 200*time.Millisecond), "django", "", Options{
		Timeout: 200 * time.Millisecond, BreakerFailures: 3, BreakerCooldown: 300 * time.Millisecond,
		TTLIdentified: time.Nanosecond, TTLAnonymous: time.Nanosecond, TTLNoRow: time.Nanosecond,
	})
	if got := check(s, "k"); got != "identified" {
		t.Fatalf("before the outage: got %s; want identified", got)
	}
	proxy.stop()
	checkOutageRecovery(t, s, proxy, "k")
}

func hexPickle(h string) ([]byte, error) { return hex.DecodeString(h) }

// refusedAddr is a loopback port nothing listens on.
func refusedAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// checkOutage: three lookups, each a doubt within the timeout, open the
// breaker, after which a lookup is a doubt at once.
func checkOutage(t *testing.T, s *Sessions) {
	t.Helper()
	key := strings.Repeat("a", 32)
	for i := range 3 {
		start := time.Now()
		if got := check(s, key); !strings.HasPrefix(got, "doubt:") || time.Since(start) > 400*time.Millisecond {
			t.Fatalf("lookup %d: got %s after %v; want a doubt within the 200ms timeout", i, got, time.Since(start))
		}
		for j := 0; s.Stats.BreakerOpens.Load() == 0 && i == 2 && j < 20; j++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if s.BreakerState() != "open" {
		t.Fatalf("breaker %s after 3 failures; want open", s.BreakerState())
	}
	start := time.Now()
	if got := check(s, key); got != "doubt:breaker-open" || time.Since(start) > 50*time.Millisecond {
		t.Errorf("with the breaker open: got %s after %v; want doubt:breaker-open at once", got, time.Since(start))
	}
}

// checkOutageRecovery runs with the proxy to the store stopped: doubts
// within the timeout, the breaker opens, a hanging store times out, and
// the store back answers again.
func checkOutageRecovery(t *testing.T, s *Sessions, proxy *tcpProxy, key string) {
	t.Helper()
	for i := range 3 {
		start := time.Now()
		if got := check(s, key); !strings.HasPrefix(got, "doubt:") || time.Since(start) > 400*time.Millisecond {
			t.Fatalf("lookup %d while down: got %s after %v; want a doubt within the timeout", i, got, time.Since(start))
		}
	}
	for i := 0; s.BreakerState() != "open" && i < 20; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if s.BreakerState() != "open" {
		t.Fatalf("breaker %s; want open", s.BreakerState())
	}
	q := s.Stats.Queries.Load()
	if got := check(s, key); got != "doubt:breaker-open" || s.Stats.Queries.Load() != q {
		t.Errorf("with the breaker open: got %s, or it asked the store", got)
	}
	time.Sleep(350 * time.Millisecond)
	proxy.start(t, true)
	start := time.Now()
	if got := check(s, key); !strings.HasPrefix(got, "doubt:") || time.Since(start) > 400*time.Millisecond {
		t.Errorf("hanging store: got %s after %v; want a doubt within the timeout", got, time.Since(start))
	}
	proxy.stop()
	proxy.start(t, false)
	deadline := time.Now().Add(5 * time.Second)
	for check(s, key) != "identified" {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery within 5s; breaker %s", s.BreakerState())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.BreakerState() != "closed" {
		t.Errorf("breaker %s after recovery; want closed", s.BreakerState())
	}
}

func memcachedAddr(t testing.TB) string { return sessiontest.Env(t, "USERROUTER_TEST_MEMCACHED") }

func newMemcacheStore(t testing.TB, addr, tmpl string, timeout time.Duration) *MemcacheStore {
	t.Helper()
	s, err := OpenMemcache(MemcacheOptions{Server: addr, KeyTemplate: tmpl, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMemcachedDjangoPymemcache: sessions Django's cache engine wrote to
// the test memcached through pymemcache (PyMemcacheCache, Debian's
// python3-pymemcache 3.5: its pickle_serde, flags 1).
func TestMemcachedDjangoPymemcache(t *testing.T) {
	addr := memcachedAddr(t)
	prefix := testPrefix()
	var keys struct{ Anonymous, Identified, Django string }
	runDjango(t, `
print(json.dumps({"anonymous": session_after(cart), "identified": session_after(log_in), "django": django.get_version()}))
`, map[string]any{"engine": "django.contrib.sessions.backends.cache",
		"cache": map[string]any{"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": addr, "KEY_PREFIX": prefix}}, &keys)
	t.Logf("sessions written by Django %s through pymemcache", keys.Django)
	s := newCacheSessions(t, newMemcacheStore(t, addr, prefix+":1:django.contrib.sessions.cache{key}", time.Second), "django", "", Options{Timeout: 2 * time.Second})
	for _, tc := range []struct{ name, key, want string }{
		{"anonymous with a cart", keys.Anonymous, "anonymous"},
		{"logged in", keys.Identified, "identified"},
	} {
		if got := check(s, tc.key); got != tc.want {
			t.Errorf("%s: got %s; want %s", tc.name, got, tc.want)
		}
	}
}

// TestMemcachedDjango: sessions Django's cache and cached_db engines
// wrote to the test memcached through pylibmc (PyLibMCCache), one stored
// zlib-compressed by pylibmc (flags 9); and cached_db's fallback to the
// database (Django's SQLite file) when memcached has lost the session.
func TestMemcachedDjango(t *testing.T) {
	addr := memcachedAddr(t)
	prefix := testPrefix()
	dbPath := filepath.Join(t.TempDir(), "db.sqlite3")
	cacheCfg := map[string]any{"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache", "LOCATION": addr, "KEY_PREFIX": prefix}
	var keys struct{ Anonymous, Identified, Compressed, Django string }
	runDjango(t, `
import pylibmc
from django.contrib.sessions.backends.cache import KEY_PREFIX
anonymous, identified = session_after(cart), session_after(log_in)
# The logged-in session again, large, stored compressed by pylibmc itself.
big = dict(cache.get(KEY_PREFIX + identified), padding="x" * 5000)
mc = pylibmc.Client([cfg["cache"]["LOCATION"]])
mc.set(cache.make_key(KEY_PREFIX + "c" * 32), big, min_compress_len=1)
print(json.dumps({"anonymous": anonymous, "identified": identified, "compressed": "c" * 32,
                  "django": django.get_version()}))
`, map[string]any{"engine": "django.contrib.sessions.backends.cache", "cache": cacheCfg}, &keys)
	t.Logf("sessions written by Django %s through pylibmc", keys.Django)

	mc := memcache.New(addr)
	it, err := mc.Get(prefix + ":1:django.contrib.sessions.cache" + keys.Compressed)
	if err != nil || it.Flags != 9 {
		t.Fatalf("pylibmc's compressed value: flags %v, %v; want 9 (pickle | zlib)", it, err)
	}
	s := newCacheSessions(t, newMemcacheStore(t, addr, prefix+":1:django.contrib.sessions.cache{key}", time.Second), "django", "", Options{Timeout: 2 * time.Second})
	for _, tc := range []struct{ name, key, want string }{
		{"anonymous with a cart", keys.Anonymous, "anonymous"},
		{"logged in", keys.Identified, "identified"},
		{"logged in, compressed", keys.Compressed, "identified"},
		{"unknown", strings.Repeat("z", 32), "anonymous"},
		{"a key too long for memcached", strings.Repeat("z", 240), "doubt:undecodable"},
	} {
		if got := check(s, tc.key); got != tc.want {
			t.Errorf("%s: got %s; want %s", tc.name, got, tc.want)
		}
	}

	// cached_db: the cache, then the database.
	var cdb struct{ Anonymous, Identified, Evicted string }
	runDjango(t, `
from django.contrib.sessions.backends.cached_db import KEY_PREFIX
anonymous, identified, evicted = session_after(cart), session_after(log_in), session_after(log_in)
cache.delete(KEY_PREFIX + evicted)
print(json.dumps({"anonymous": anonymous, "identified": identified, "evicted": evicted}))
`, map[string]any{"engine": "django.contrib.sessions.backends.cached_db", "cache": cacheCfg, "db": dbPath}, &cdb)
	db, err := OpenSQLite(dbPath, 2, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	sqlStore, err := NewSQLStore(db, SQLOptions{Query: djangoQuery, Placeholder: QuestionMark, QueryError: SQLiteQueryError})
	if err != nil {
		t.Fatal(err)
	}
	fb := &Fallback{Cache: newMemcacheStore(t, addr, prefix+":1:django.contrib.sessions.cached_db{key}", time.Second), DB: sqlStore}
	cs := newCacheSessions(t, fb, "django", "", Options{Timeout: 2 * time.Second})
	for _, tc := range []struct{ name, key, want string }{
		{"anonymous with a cart", cdb.Anonymous, "anonymous"},
		{"logged in", cdb.Identified, "identified"},
		{"logged in, not in memcached", cdb.Evicted, "identified"},
		{"unknown", strings.Repeat("z", 32), "anonymous"},
	} {
		if got := check(cs, tc.key); got != tc.want {
			t.Errorf("cached_db %s: got %s; want %s", tc.name, got, tc.want)
		}
	}
	if err := cs.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestMemcachedBlackholed: as TestRedisBlackholed, for memcached.
func TestMemcachedBlackholed(t *testing.T) {
	memcachedAddr(t)
	for name, addr := range map[string]string{"silent": blackhole(t), "refused": refusedAddr(t)} {
		t.Run(name, func(t *testing.T) {
			s := newCacheSessions(t, newMemcacheStore(t, addr, "", 200*time.Millisecond), "django", "", Options{
				Timeout: 200 * time.Millisecond, BreakerFailures: 3, BreakerCooldown: time.Minute,
			})
			checkOutage(t, s)
		})
	}
}

// TestMemcachedOutageAndRecovery: as TestRedisOutageAndRecovery.
func TestMemcachedOutageAndRecovery(t *testing.T) {
	addr := memcachedAddr(t)
	prefix := testPrefix()
	d, _ := hexPickle(pickleCases[3].hex)
	mc := memcache.New(addr)
	if err := mc.Set(&memcache.Item{Key: prefix + "k", Value: d, Flags: 1}); err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, addr)
	s := newCacheSessions(t, newMemcacheStore(t, proxy.addr, prefix+"{key}", 200*time.Millisecond), "django", "", Options{
		Timeout: 200 * time.Millisecond, BreakerFailures: 3, BreakerCooldown: 300 * time.Millisecond,
		TTLIdentified: time.Nanosecond, TTLAnonymous: time.Nanosecond, TTLNoRow: time.Nanosecond,
	})
	if got := check(s, "k"); got != "identified" {
		t.Fatalf("before the outage: got %s; want identified", got)
	}
	proxy.stop()
	checkOutageRecovery(t, s, proxy, "k")
}

// BenchmarkColdLookupRedis is BenchmarkColdLookupMySQL for Redis: 20,000
// sessions pickled as Django's cache engine stores them (logged in and
// not, alternately), 64 concurrent lookups of distinct keys through a
// pool of 64 connections, verdicts cached for a nanosecond.
func BenchmarkColdLookupRedis(b *testing.B) {
	addr := redisAddr(b)
	prefix := testPrefix()
	rc := redisClient(b, prefix)
	const rows = 20000
	vals := [2][]byte{}
	vals[0], _ = hex.DecodeString(pickleCases[3].hex) // logged in, protocol 5
	vals[1], _ = hex.DecodeString(pickleCases[7].hex) // anonymous, protocol 5
	ctx := context.Background()
	pipe := rc.Pipeline()
	for i := range rows {
		pipe.Set(ctx, fmt.Sprintf("%s:1:django.contrib.sessions.cachek%031d", prefix, i), vals[i%2], time.Hour)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	store, err := OpenRedis(RedisOptions{URL: "redis://" + addr + "/0", KeyTemplate: prefix + ":1:django.contrib.sessions.cache{key}", MaxConns: 64, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	s := newCacheSessions(b, store, "django", "", Options{
		MaxQueries: 64, Timeout: time.Second, TTLIdentified: time.Nanosecond, TTLAnonymous: time.Nanosecond, TTLNoRow: time.Nanosecond,
	})
	benchColdLookups(b, s, rows)
}

// BenchmarkColdLookupMemcached is the same against the test memcached.
func BenchmarkColdLookupMemcached(b *testing.B) {
	addr := memcachedAddr(b)
	prefix := testPrefix()
	const rows = 20000
	vals := [2][]byte{}
	vals[0], _ = hex.DecodeString(pickleCases[3].hex)
	vals[1], _ = hex.DecodeString(pickleCases[7].hex)
	mc := memcache.New(addr)
	for i := range rows {
		if err := mc.Set(&memcache.Item{Key: fmt.Sprintf("%s:1:django.contrib.sessions.cachek%031d", prefix, i), Value: vals[i%2], Flags: 1, Expiration: 3600}); err != nil {
			b.Fatal(err)
		}
	}
	store, err := OpenMemcache(MemcacheOptions{Server: addr, KeyTemplate: prefix + ":1:django.contrib.sessions.cache{key}", MaxConns: 64, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	s := newCacheSessions(b, store, "django", "", Options{
		MaxQueries: 64, Timeout: time.Second, TTLIdentified: time.Nanosecond, TTLAnonymous: time.Nanosecond, TTLNoRow: time.Nanosecond,
	})
	benchColdLookups(b, s, rows)
}

// TestRedisCoalescesConcurrentLookups: 50 concurrent lookups of one key
// send one GETRANGE; the others share it or find its verdict cached.
func TestRedisCoalescesConcurrentLookups(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix()
	rc := redisClient(t, prefix)
	d, _ := hexPickle(pickleCases[3].hex)
	rc.Set(context.Background(), prefix+"k", d, time.Hour)
	s := newCacheSessions(t, newRedisStore(t, "redis://"+addr+"/0", prefix+"{key}", time.Second), "django", "", Options{Timeout: 2 * time.Second})
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for range 50 {
		wg.Go(func() {
			if check(s, "k") != "identified" {
				wrong.Add(1)
			}
		})
	}
	wg.Wait()
	if q := s.Stats.Queries.Load(); q != 1 || wrong.Load() != 0 {
		t.Errorf("50 concurrent lookups of one key sent %d queries (%d wrong verdicts); want 1 and 0", q, wrong.Load())
	}
}
