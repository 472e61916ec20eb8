package sessioncheck

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// newPostgresStore opens an SQLStore over the PostgreSQL at dsn, as
// main does for driver = "postgres".
func newPostgresStore(t testing.TB, dsn, query string, zone *time.Location, timeout time.Duration) *SQLStore {
	t.Helper()
	db, err := OpenPostgres(dsn, 8, timeout)
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewSQLStore(db, SQLOptions{
		Query: query, Placeholder: Dollar, NowOffset: true, Zone: zone,
		QueryError: PostgresQueryError, DSNError: PostgresDSNError,
	})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return store
}

// newPostgresSessions builds Sessions over the database at dsn.
func newPostgresSessions(t testing.TB, dsn, query, rule string, signer *DjangoSigner, o Options) *Sessions {
	t.Helper()
	store := newPostgresStore(t, dsn, query, nil, cmp.Or(o.Timeout, DefaultTimeout))
	var err error
	if o.Rule == nil {
		if o.Rule, err = NewRule(rule, signer); err != nil {
			t.Fatal(err)
		}
	}
	o.Store = store
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// withHost returns the URL or keyword/value dsn pointed at addr.
func withHost(t testing.TB, dsn, addr string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	if !strings.Contains(dsn, "://") {
		return dsn + " host=" + host + " port=" + port
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}

func TestPostgresDjango(t *testing.T) {
	dsn, _, fx := sessiontest.PostgresDjango(t)
	plain := newPostgresSessions(t, dsn, djangoQuery, "django", nil, Options{})
	verified := newPostgresSessions(t, dsn, djangoQuery, "django", &DjangoSigner{Secrets: []string{fx.SecretKey}}, Options{})
	checkDjangoFixtures(t, fx, plain, verified)
}

// TestPostgresDjangoWrites has Debian's Django (psycopg2, USE_TZ = True)
// migrate a fresh database and write two sessions through its own
// session middleware, an anonymous one with a cart and a logged-in one;
// userrouter, on a connection whose TimeZone is 14 hours from UTC, reads
// them with the default query.
func TestPostgresDjangoWrites(t *testing.T) {
	python := sessiontest.Env(t, "USERROUTER_TEST_PYTHON")
	dsn := sessiontest.PostgresDSN(t)
	pgc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", djangoPostgresScript)
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`{"host": %q, "port": %d, "user": %q, "password": %q, "name": %q}`,
		pgc.Host, pgc.Port, pgc.User, pgc.Password, pgc.Database))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Django: %v\n%s", err, out)
	}
	var keys struct{ Anonymous, Identified, Expired, Django string }
	if err := json.Unmarshal(out, &keys); err != nil {
		t.Fatalf("Django printed %s: %v", out, err)
	}
	t.Logf("sessions written by Django %s", keys.Django)

	s := newPostgresSessions(t, sessiontest.PostgresWithParam(dsn, "timezone", "Pacific/Kiritimati"), djangoQuery, "django", nil, Options{})
	for _, tc := range []struct{ name, key, want string }{
		{"anonymous with a cart", keys.Anonymous, "anonymous"},
		{"logged in", keys.Identified, "identified"},
		{"logged in, expired an hour ago", keys.Expired, "anonymous"},
	} {
		if got := check(s, tc.key); got != tc.want {
			t.Errorf("%s: got %s; want %s", tc.name, got, tc.want)
		}
	}
	if n := s.Stats.NoRow.Load(); n != 1 {
		t.Errorf("%d lookups found no row; want 1 (the expired session)", n)
	}
}

// djangoPostgresScript reads connection settings as JSON on stdin and
// prints the keys of the sessions Django wrote.
const djangoPostgresScript = `
import datetime, json, sys
import django
from django.conf import settings
db = json.load(sys.stdin)
settings.configure(
    SECRET_KEY="userrouter-postgres-test", USE_TZ=True, ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"],
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "HOST": db["host"], "PORT": db["port"],
                           "USER": db["user"], "PASSWORD": db["password"], "NAME": db["name"]}},
    SESSION_ENGINE="django.contrib.sessions.backends.db",
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
)
django.setup()
from django.contrib.auth import login
from django.contrib.auth.models import User
from django.contrib.sessions.middleware import SessionMiddleware
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import timezone

call_command("migrate", verbosity=0, interactive=False)
alice = User.objects.create_user("alice", "alice@example.com", "pw")

def session_after(view):
    def handler(request):
        view(request)
        return HttpResponse("ok")
    response = SessionMiddleware(handler)(RequestFactory().get("/"))
    return response.cookies["sessionid"].value

def cart(request):
    request.session["cart"] = [{"sku": "SKU-1", "qty": 2}]

def log_in(request):
    login(request, alice, backend="django.contrib.auth.backends.ModelBackend")

expired = session_after(log_in)
Session.objects.filter(session_key=expired).update(expire_date=timezone.now() - datetime.timedelta(hours=1))
print(json.dumps({"anonymous": session_after(cart), "identified": session_after(log_in), "expired": expired,
                  "django": django.get_version()}))
`

// TestPostgresNow checks :now against both column types, on connections
// whose TimeZone is far from UTC and from time_zone: a timestamp with time
// zone (Django's, whatever USE_TZ), and a timestamp without time zone
// (Rails', or one written in some zone) holding wall clocks of time_zone.
// It holds in pgx's query exec modes: the default, and exec and
// simple_protocol, which PgBouncer setups use.
func TestPostgresNow(t *testing.T) {
	dsn := sessiontest.PostgresDSN(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	sessiontest.Exec(t, db,
		"CREATE TABLE aware (k text PRIMARY KEY, v text NOT NULL, e timestamp with time zone NOT NULL)",
		"CREATE TABLE naive (k text PRIMARY KEY, v text NOT NULL, e timestamp NOT NULL)")
	now := time.Now()
	for _, r := range []struct {
		key string
		in  time.Duration
	}{{"past", -time.Hour}, {"soon", time.Minute}, {"future", time.Hour}} {
		if _, err := db.Exec("INSERT INTO aware VALUES ($1, '1', $2)", r.key, now.Add(r.in)); err != nil {
			t.Fatal(err)
		}
		// Django with USE_TZ = False writes the wall clock of TIME_ZONE.
		wall := now.Add(r.in).In(ny).Format("2006-01-02 15:04:05.999999")
		if _, err := db.Exec("INSERT INTO naive VALUES ($1, '1', $2::timestamp)", r.key, wall); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, dsn, table string
		zone             *time.Location
	}{
		{"timestamptz, TimeZone +14", sessiontest.PostgresWithParam(dsn, "timezone", "Pacific/Kiritimati"), "aware", nil},
		{"timestamptz, TimeZone -10", sessiontest.PostgresWithParam(dsn, "timezone", "Pacific/Honolulu"), "aware", ny},
		{"timestamp in TIME_ZONE, TimeZone +9", sessiontest.PostgresWithParam(dsn, "timezone", "Asia/Tokyo"), "naive", ny},
	} {
		for _, mode := range []string{"cache_statement", "exec", "simple_protocol"} {
			store := newPostgresStore(t, sessiontest.PostgresWithParam(tc.dsn, "default_query_exec_mode", mode),
				"SELECT v FROM "+tc.table+" WHERE k = :key AND e > :now", tc.zone, time.Second)
			for key, want := range map[string]error{"past": ErrNoRow, "soon": nil, "future": nil} {
				if _, err := store.Lookup(context.Background(), key, time.Now().UTC()); !errors.Is(err, want) {
					t.Errorf("%s, %s mode, %s: got %v; want %v", tc.name, mode, key, err, want)
				}
			}
			store.Close()
		}
	}
}

// TestPostgresConnectionSettings: the pool's connections carry the
// lookup timeout as statement_timeout, and name themselves; a DSN's own
// values win.
func TestPostgresConnectionSettings(t *testing.T) {
	dsn := sessiontest.PostgresDSN(t)
	for _, tc := range []struct{ dsn, timeout, app string }{
		{dsn, "150ms", "userrouter"},
		{sessiontest.PostgresWithParam(sessiontest.PostgresWithParam(dsn, "statement_timeout", "5000"), "application_name", "edge-7"), "5s", "edge-7"},
	} {
		db, err := OpenPostgres(tc.dsn, 2, 150*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var timeout, app string
		if err := db.QueryRow("SELECT current_setting('statement_timeout'), current_setting('application_name')").Scan(&timeout, &app); err != nil {
			t.Fatal(err)
		}
		if timeout != tc.timeout || app != tc.app {
			t.Errorf("statement_timeout %q, application_name %q; want %q, %q", timeout, app, tc.timeout, tc.app)
		}
		db.Close()
	}

	// The server cancels a statement past statement_timeout by itself,
	// and the lookup is a timeout, not a query error.
	store := newPostgresStore(t, dsn, "SELECT :key::text FROM pg_sleep(2)", nil, 150*time.Millisecond)
	defer store.Close()
	if err := store.Validate(context.Background()); err == nil || PostgresQueryError(err) {
		t.Errorf("Validate of a statement over statement_timeout: %v; want an error that is not the query's fault", err)
	} else if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "57014" {
		t.Errorf("Validate of a statement over statement_timeout: %v; want SQLSTATE 57014", err)
	}
}

func TestPostgresInjection(t *testing.T) {
	dsn, db, _ := sessiontest.PostgresDjango(t)
	attack := "x' OR '1'='1"
	anon := sessiontest.LoadFixtures(t).Row("anonymous").SessionData
	sessiontest.InsertPostgresSession(t, db, attack, anon, time.Now().Add(time.Hour))
	s := newPostgresSessions(t, dsn, djangoQuery, "django", nil, Options{})
	if got := check(s, attack); got != "anonymous" {
		t.Errorf("%q: got %s; want anonymous (its own row)", attack, got)
	}
	for _, key := range []string{
		"' OR '1'='1", "' OR 1=1 -- ", "\\' OR 1=1 --", "x'; DROP TABLE django_session; --",
		"$1", "$$ OR 1=1 $$", "E'\\x27 OR 1=1", "é' OR 'é'='é", "\u202e' OR '1'='1", strings.Repeat("'", MaxKeyLength),
		"%", "_", "?", ":key", "\\", "\"", "1 UNION SELECT session_data FROM django_session",
	} {
		if got := check(s, key); got != "anonymous" {
			t.Errorf("%q: got %s; want anonymous (no such row)", key, got)
		}
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM django_session").Scan(&n); err != nil || n == 0 {
		t.Errorf("the table is gone or empty: %d, %v", n, err)
	}
	// The server prepared the query with placeholders, the key apart.
	// pg_prepared_statements is per connection: ask the pool's own (the
	// lookups ran one at a time, so on one connection).
	var stmt string
	conn, err := s.store.(*SQLStore).db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.QueryRowContext(context.Background(), "SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%django_session%'").Scan(&stmt); err != nil {
		t.Fatalf("the lookup is not a prepared statement: %v", err)
	}
	if want := "WHERE session_key = $1 AND expire_date > $2"; !strings.Contains(stmt, want) {
		t.Errorf("the server prepared %q; want it to contain %q", stmt, want)
	}
}

func TestPostgresCoalescesConcurrentLookups(t *testing.T) {
	dsn, _, fx := sessiontest.PostgresDjango(t)
	s := newPostgresSessions(t, dsn, djangoQuery+" AND pg_sleep(0.2) IS NOT NULL", "django", nil, Options{Timeout: 2 * time.Second})
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for range 50 {
		wg.Go(func() {
			if check(s, fx.Rows[0].SessionKey) != "identified" {
				wrong.Add(1)
			}
		})
	}
	wg.Wait()
	if q := s.Stats.Queries.Load(); q != 1 || wrong.Load() != 0 {
		t.Errorf("50 concurrent lookups of one key sent %d queries (%d wrong verdicts); want 1 and 0", q, wrong.Load())
	}
}

func TestPostgresOtherFrameworks(t *testing.T) {
	dsn := sessiontest.PostgresDSN(t)
	db, _ := sql.Open("pgx", dsn)
	defer db.Close()
	now := time.Now().Unix()
	sessiontest.Exec(t, db,
		// Laravel's database session driver, as its PostgreSQL grammar creates it.
		"CREATE TABLE sessions (id varchar(255) NOT NULL PRIMARY KEY, user_id bigint NULL, ip_address varchar(45) NULL, user_agent text NULL, payload text NOT NULL, last_activity integer NOT NULL)",
		fmt.Sprintf("INSERT INTO sessions VALUES ('%s', 42, '127.0.0.1', 'ua', 'YTowOnt9', %d)", strings.Repeat("L", 40), now),
		fmt.Sprintf("INSERT INTO sessions VALUES ('%s', NULL, '127.0.0.1', 'ua', 'YTowOnt9', %d)", strings.Repeat("M", 40), now),
		fmt.Sprintf("INSERT INTO sessions VALUES ('%s', 7, '127.0.0.1', 'ua', 'YTowOnt9', %d)", strings.Repeat("N", 40), now-3*3600),
		// The Rails 8 authentication generator.
		"CREATE TABLE rails_sessions (id bigserial PRIMARY KEY, user_id bigint NOT NULL, ip_address varchar, user_agent varchar, created_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL)",
		"INSERT INTO rails_sessions (user_id, created_at, updated_at) VALUES (5, now(), now())",
	)
	laravel := newPostgresSessions(t, dsn, "SELECT user_id FROM sessions WHERE id = :key AND last_activity > :now_unix - 7200", "nonempty", nil, Options{})
	for key, want := range map[string]string{
		strings.Repeat("L", 40): "identified",
		strings.Repeat("M", 40): "anonymous",
		strings.Repeat("N", 40): "anonymous",
		strings.Repeat("O", 40): "anonymous",
	} {
		if got := check(laravel, key); got != want {
			t.Errorf("laravel %s...: got %s; want %s", key[:3], got, want)
		}
	}
	// A text key compared with a bigint column: cast it, as one would.
	rails := newPostgresSessions(t, dsn, "SELECT 1 FROM rails_sessions WHERE id::text = :key", "exists", nil, Options{})
	for key, want := range map[string]string{"1": "identified", "2": "anonymous"} {
		if got := check(rails, key); got != want {
			t.Errorf("rails %s: got %s; want %s", key, got, want)
		}
	}
}

// TestPostgresValidate: what the server says at startup is sorted into
// config errors (the query: 42P01 and friends; the DSN: 28P01, 28000,
// 3D000) and outages (refused, silent), as for MySQL.
func TestPostgresValidate(t *testing.T) {
	dsn, _, _ := sessiontest.PostgresDjango(t)
	for _, tc := range []struct {
		query     string
		queryErr  bool
		compileOK bool
	}{
		{djangoQuery, false, true},
		{"SELECT session_data FROM django_sesion WHERE session_key = :key", true, true},               // 42P01
		{"SELECT session_dat FROM django_session WHERE session_key = :key", true, true},               // 42703
		{"SELEC session_data FROM django_session WHERE session_key = :key", true, true},               // 42601
		{"SELECT session_data FROM django_session WHERE session_key = :key AND 1 = 'x'", true, true},  // 22P02
		{"SELECT session_data FROM nosuchschema.django_session WHERE session_key = :key", true, true}, // 3F000
		{"SELECT session_data FROM django_session WHERE session_key = :key::text AND expire_date > :now::timestamptz", false, true},
		{"SELECT session_data FROM django_session WHERE session_key = ? AND :key", true, true}, // ? is PostgreSQL's own
		{"SELECT session_data FROM django_session WHERE session_key = :sessionkey", true, false},
	} {
		store, err := NewSQLStore(nil, SQLOptions{Query: tc.query, Placeholder: Dollar, NowOffset: true, QueryError: PostgresQueryError, DSNError: PostgresDSNError})
		if !tc.compileOK {
			var qe *QueryError
			if !errors.As(err, &qe) || !strings.Contains(err.Error(), tc.query) {
				t.Errorf("%q: got %v; want a QueryError naming the query", tc.query, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.query, err)
		}
		store = newPostgresStore(t, dsn, tc.query, nil, time.Second)
		err = store.Validate(context.Background())
		store.Close()
		var qe *QueryError
		if got := errors.As(err, &qe); got != tc.queryErr || (err != nil && !strings.Contains(err.Error(), tc.query)) {
			t.Errorf("%q: got %v; want a query error: %v", tc.query, err, tc.queryErr)
		}
	}

	// The DSN refused: an unknown database (3D000), an unknown role
	// (28000), a wrong password (28P01, from a server that asks for one).
	fake := fakePostgres(t, "28P01", "password authentication failed for user \"django\"")
	for _, tc := range []struct{ name, dsn, code string }{
		{"unknown database", sessiontest.PostgresWithDatabase(t, dsn, "userrouter_no_such_db"), "3D000"},
		{"unknown role", sessiontest.PostgresWithParam(dsn, "user", "userrouter_no_such_role"), "28000"},
		{"wrong password", "postgres://django:wrong@" + fake + "/app?sslmode=disable", "28P01"},
	} {
		store := newPostgresStore(t, tc.dsn, djangoQuery, nil, time.Second)
		err := store.Validate(context.Background())
		store.Close()
		var de *DSNError
		var pe *pgconn.PgError
		if !errors.As(err, &de) || !errors.As(err, &pe) || pe.Code != tc.code {
			t.Errorf("%s: got %v; want a DSNError with SQLSTATE %s", tc.name, err, tc.code)
		}
		if strings.Contains(fmt.Sprint(err), "wrong") {
			t.Errorf("%s: the error shows the password: %v", tc.name, err)
		}
	}

	// Unreachable is not the config's fault: refused, or silent.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := ln.Addr().String()
	ln.Close()
	for name, addr := range map[string]string{"refused": refused, "silent": blackhole(t)} {
		store := newPostgresStore(t, withHost(t, dsn, addr), djangoQuery, nil, time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		err := store.Validate(ctx)
		cancel()
		store.Close()
		var qe *QueryError
		var de *DSNError
		if err == nil || errors.As(err, &qe) || errors.As(err, &de) || time.Since(start) > time.Second {
			t.Errorf("%s: got %v after %v; want a plain error, promptly", name, err, time.Since(start))
		}
	}
}

// fakePostgres answers every connection's startup message with a FATAL
// error of the given SQLSTATE, as a server refusing the login does.
func fakePostgres(t *testing.T, code, msg string) string {
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
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
				be.Flush()
			}()
		}
	}()
	return ln.Addr().String()
}

// blackhole accepts connections and never answers, as a hung server or a
// firewall that drops packets after the handshake.
func blackhole(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

// TestPostgresBlackholed: a server that accepts and never answers costs
// each lookup its timeout, no more, and opens the breaker.
func TestPostgresBlackholed(t *testing.T) {
	dsn := withHost(t, sessiontest.Env(t, "USERROUTER_TEST_POSTGRES_DSN"), blackhole(t))
	s := newPostgresSessions(t, dsn, djangoQuery, "django", nil, Options{
		Timeout: 200 * time.Millisecond, BreakerFailures: 3, BreakerCooldown: time.Minute,
	})
	key := strings.Repeat("a", 32)
	for i := range 3 {
		start := time.Now()
		if got := check(s, key); got != "doubt:timeout" || time.Since(start) > 400*time.Millisecond {
			t.Fatalf("lookup %d: got %s after %v; want doubt:timeout within the 200ms timeout", i, got, time.Since(start))
		}
		// The query records its failure when its own deadline passes.
		for j := 0; s.Stats.BreakerOpens.Load() == 0 && i == 2 && j < 20; j++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if s.BreakerState() != "open" {
		t.Fatalf("breaker %s after 3 timeouts; want open", s.BreakerState())
	}
	start := time.Now()
	if got := check(s, key); got != "doubt:breaker-open" || time.Since(start) > 50*time.Millisecond {
		t.Errorf("with the breaker open: got %s after %v; want doubt:breaker-open at once", got, time.Since(start))
	}
}

func TestPostgresOutageAndRecovery(t *testing.T) {
	dsn, _, fx := sessiontest.PostgresDjango(t)
	pgc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, net.JoinHostPort(pgc.Host, fmt.Sprint(pgc.Port)))
	s := newPostgresSessions(t, withHost(t, dsn, proxy.addr), djangoQuery, "django", nil, Options{
		Timeout: 200 * time.Millisecond, BreakerFailures: 3, BreakerCooldown: 500 * time.Millisecond,
		TTLIdentified: time.Nanosecond, TTLAnonymous: time.Nanosecond, TTLNoRow: time.Nanosecond,
	})
	key := fx.Rows[0].SessionKey
	if got := check(s, key); got != "identified" {
		t.Fatalf("before the outage: got %s; want identified", got)
	}

	// Down, refusing connections: doubts, then the breaker opens.
	proxy.stop()
	for i := range 3 {
		start := time.Now()
		got := check(s, key)
		if !strings.HasPrefix(got, "doubt:") || time.Since(start) > 400*time.Millisecond {
			t.Fatalf("lookup %d while down: got %s after %v; want a doubt within the timeout", i, got, time.Since(start))
		}
	}
	if s.BreakerState() != "open" || s.Stats.BreakerOpens.Load() != 1 {
		t.Fatalf("breaker %s after %d opens; want open", s.BreakerState(), s.Stats.BreakerOpens.Load())
	}
	queries := s.Stats.Queries.Load()
	if got := check(s, key); got != "doubt:breaker-open" {
		t.Errorf("with the breaker open: got %s; want doubt:breaker-open", got)
	}
	if s.Stats.Queries.Load() != queries {
		t.Error("the open breaker let a query through")
	}

	// Up again, but hanging: the probe times out within the timeout.
	time.Sleep(600 * time.Millisecond)
	proxy.start(t, true)
	start := time.Now()
	if got := check(s, key); got != "doubt:timeout" || time.Since(start) > 400*time.Millisecond {
		t.Errorf("hanging database: got %s after %v; want doubt:timeout within the timeout", got, time.Since(start))
	}
	for i := 0; s.BreakerState() != "open" && i < 20; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if s.BreakerState() != "open" {
		t.Errorf("a failed probe left the breaker %s; want open", s.BreakerState())
	}

	// Back for real: recovery needs no restart.
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

// TestPostgresErrorClasses sorts SQLSTATEs: raised while connecting (by
// a fake server, so pgx wraps them as it does a real one's) or by a
// statement.
func TestPostgresErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		code         string
		atConnection bool
		dsn, query   bool
	}{
		{"28P01", true, true, false},
		{"28000", true, true, false},
		{"3D000", true, true, false},
		{"42501", true, true, false},  // no CONNECT privilege
		{"57P03", true, false, false}, // starting up
		{"53300", true, false, false}, // too many connections
		{"42501", false, false, true}, // no SELECT privilege
		{"42P01", false, false, true},
		{"42703", false, false, true},
		{"22P02", false, false, true},
		{"3F000", false, false, true},
		{"57014", false, false, false}, // statement_timeout
		{"57P01", false, false, false}, // admin shutdown
		{"08006", false, false, false},
		{"40001", false, false, false},
	} {
		var err error = fmt.Errorf("query: %w", &pgconn.PgError{Code: tc.code})
		if tc.atConnection {
			_, err = pgconn.Connect(context.Background(), "postgres://u@"+fakePostgres(t, tc.code, "refused")+"/db?sslmode=disable")
		}
		if got := PostgresDSNError(err); got != tc.dsn {
			t.Errorf("%s (connecting %v): DSN error %v; want %v (%v)", tc.code, tc.atConnection, got, tc.dsn, err)
		}
		if got := PostgresQueryError(err); got != tc.query {
			t.Errorf("%s (connecting %v): query error %v; want %v (%v)", tc.code, tc.atConnection, got, tc.query, err)
		}
	}
	if PostgresDSNError(errors.New("dial tcp: connection refused")) || PostgresQueryError(context.DeadlineExceeded) {
		t.Error("a network error classified as a config error")
	}
}

// BenchmarkColdLookupPostgres is BenchmarkColdLookupMySQL against
// PostgreSQL: keys never seen before, 64 lookups at a time.
func BenchmarkColdLookupPostgres(b *testing.B) {
	dsn, db, fx := sessiontest.PostgresDjango(b)
	const rows = 20000
	if _, err := db.Exec(`INSERT INTO django_session
		SELECT 'k' || lpad(i::text, 31, '0'), CASE WHEN i % 2 = 0 THEN $1 ELSE $2 END, now() + interval '1 hour'
		FROM generate_series(0, $3 - 1) AS i`, fx.Rows[0].SessionData, fx.Rows[1].SessionData, rows); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec("ANALYZE django_session"); err != nil {
		b.Fatal(err)
	}
	s := newPostgresSessions(b, dsn, djangoQuery, "django", nil, Options{
		MaxQueries: 64, Timeout: time.Second, TTLIdentified: time.Nanosecond, TTLAnonymous: time.Nanosecond, TTLNoRow: time.Nanosecond,
	})
	s.store.(*SQLStore).db.SetMaxOpenConns(64)
	s.store.(*SQLStore).db.SetMaxIdleConns(64)
	benchColdLookups(b, s, rows)
}
