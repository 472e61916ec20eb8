package sessioncheck

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

const djangoQuery = "SELECT session_data FROM django_session WHERE session_key = :key AND expire_date > :now"

// newMySQLSessions builds Sessions over the database at dsn.
func newMySQLSessions(t testing.TB, dsn, query, rule string, signer *DjangoSigner, o Options) *Sessions {
	t.Helper()
	db, err := OpenMySQL(dsn, 8)
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewSQLStore(db, SQLOptions{Query: query, Placeholder: QuestionMark, HashComments: true, QueryError: MySQLQueryError})
	if err != nil {
		t.Fatal(err)
	}
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

func check(s *Sessions, key string) string {
	v, err := s.Check(context.Background(), []byte(key))
	if err != nil {
		return "doubt:" + Reason(err)
	}
	return v.String()
}

func TestMySQLDjango(t *testing.T) {
	dsn, _, fx := sessiontest.MySQLDjango(t)

	plain := newMySQLSessions(t, dsn, djangoQuery, "django", nil, Options{})
	verified := newMySQLSessions(t, dsn, djangoQuery, "django", &DjangoSigner{Secrets: []string{fx.SecretKey}}, Options{})
	checkDjangoFixtures(t, fx, plain, verified)
}

// checkDjangoFixtures classifies every fixture row through plain and
// through verified (which checks signatures), then checks that the second
// round came from the verdict cache. Every driver must pass it.
func checkDjangoFixtures(t *testing.T, fx sessiontest.Fixtures, plain, verified *Sessions) {
	t.Helper()
	for _, row := range fx.Rows {
		want := map[string]string{"identified": "identified", "anonymous": "anonymous", "no-row": "anonymous", "doubt": "doubt:undecodable"}[row.Want]
		if got := check(plain, row.SessionKey); got != want {
			t.Errorf("%s: got %s; want %s", row.Name, got, want)
		}
		if row.WantVerified != "" || row.Want == "doubt" {
			want = "doubt:bad-signature" // a damaged payload no longer matches its signature
		}
		if got := check(verified, row.SessionKey); got != want {
			t.Errorf("%s, verified: got %s; want %s", row.Name, got, want)
		}
	}
	if got := check(plain, strings.Repeat("0", 32)); got != "anonymous" {
		t.Errorf("unknown key: got %s; want anonymous", got)
	}

	// Every verdict but the doubts is now cached: asking again sends no query.
	queries := plain.Stats.Queries.Load()
	for _, row := range fx.Rows {
		check(plain, row.SessionKey)
	}
	doubts := 0
	for _, row := range fx.Rows {
		if row.Want == "doubt" {
			doubts++
		}
	}
	if got := plain.Stats.Queries.Load() - queries; got != uint64(doubts) {
		t.Errorf("second round sent %d queries; want %d (only the undecodable rows, which are never cached)", got, doubts)
	}
	if plain.Stats.CacheHits.Load() == 0 || plain.Stats.Identified.Load() == 0 || plain.Stats.NoRow.Load() == 0 {
		t.Errorf("counters did not move: %+v", &plain.Stats)
	}
}

// TestMySQLInjection sends keys shaped like SQL injection straight to Check
// (past the key pattern, which would refuse them) and shows each reached
// the database as one bound value: the row whose key is literally the
// attack string is found, and nothing else is.
func TestMySQLInjection(t *testing.T) {
	dsn, db, _ := sessiontest.MySQLDjango(t) // identified rows are there to be matched by mistake
	attack := "x' OR '1'='1"
	anon := sessiontest.LoadFixtures(t).Row("anonymous").SessionData
	sessiontest.InsertSession(t, db, attack, anon, time.Now().Add(time.Hour))
	s := newMySQLSessions(t, dsn, djangoQuery, "django", nil, Options{})
	if got := check(s, attack); got != "anonymous" {
		t.Errorf("%q: got %s; want anonymous (its own row)", attack, got)
	}
	for _, key := range []string{
		"' OR '1'='1", "' OR 1=1 -- ", "\\' OR 1=1 #", "x'; DROP TABLE django_session; --",
		"\x00' OR '1'='1", "é' OR 'é'='é", "\u202e' OR '1'='1", strings.Repeat("'", MaxKeyLength),
		"%", "_", "?", ":key", "\\", "\"", "`", "1 UNION SELECT session_data FROM django_session",
	} {
		if got := check(s, key); got != "anonymous" {
			t.Errorf("%q: got %s; want anonymous (no such row)", key, got)
		}
	}
	if got := check(s, strings.Repeat("a", MaxKeyLength+1)); got != "doubt:undecodable" {
		t.Errorf("over-long key: got %s; want a doubt without a query", got)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM django_session").Scan(&n); err != nil || n == 0 {
		t.Errorf("the table is gone or empty: %d, %v", n, err)
	}

	// The statement the server ran carried the key as one quoted, escaped
	// literal: the general log shows it.
	if _, err := db.Exec("SET GLOBAL log_output = 'TABLE', GLOBAL general_log = 'ON'"); err != nil {
		t.Skipf("cannot enable the general log: %v", err)
	}
	defer db.Exec("SET GLOBAL general_log = 'OFF'")
	marker := fmt.Sprintf("' OR '%d'='%d", time.Now().UnixNano(), time.Now().UnixNano())
	check(s, marker)
	db.Exec("SET GLOBAL general_log = 'OFF'")
	var logged string
	err := db.QueryRow("SELECT CONVERT(argument USING utf8mb4) FROM mysql.general_log WHERE argument LIKE ? ORDER BY event_time DESC LIMIT 1",
		"%django_session%"+strings.ReplaceAll(marker[len("' OR '"):], "'", "%")+"%").Scan(&logged)
	if err != nil {
		t.Fatalf("the lookup is not in the general log: %v", err)
	}
	if want := `session_key = '\' OR \'`; !strings.Contains(logged, want) {
		t.Errorf("the server ran %q; want the key as one escaped literal (%s...)", logged, want)
	}
}

func TestMySQLCoalescesConcurrentLookups(t *testing.T) {
	dsn, _, fx := sessiontest.MySQLDjango(t)
	// SLEEP keeps the first query in flight while the others arrive.
	s := newMySQLSessions(t, dsn, djangoQuery+" AND (SELECT SLEEP(0.05)) = 0", "django", nil, Options{Timeout: 2 * time.Second})
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

func TestMySQLQueryCap(t *testing.T) {
	dsn, _, fx := sessiontest.MySQLDjango(t)
	s := newMySQLSessions(t, dsn, djangoQuery, "django", nil, Options{MaxQueries: 2, Timeout: 100 * time.Millisecond})
	// Two queries hold both slots (as slow queries would).
	s.slots <- struct{}{}
	s.slots <- struct{}{}
	start := time.Now()
	if got := check(s, fx.Rows[0].SessionKey); got != "doubt:busy" {
		t.Errorf("with every slot taken: got %s; want doubt:busy", got)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 300*time.Millisecond {
		t.Errorf("gave up after %v; want about the 100ms timeout", d)
	}
	if s.Stats.Queries.Load() != 0 {
		t.Error("a query was sent without a slot")
	}
	<-s.slots
	if got := check(s, fx.Rows[0].SessionKey); got != "identified" {
		t.Errorf("with a slot free: got %s; want identified", got)
	}
	if s.BreakerState() != "closed" {
		t.Errorf("busy lookups moved the breaker to %s; want closed", s.BreakerState())
	}
}

func TestMySQLOtherFrameworks(t *testing.T) {
	dsn := sessiontest.MySQLDSN(t)
	db, _ := sql.Open("mysql", dsn)
	defer db.Close()
	now := time.Now().Unix()
	sessiontest.Exec(t, db,
		// Laravel's database session driver.
		"CREATE TABLE sessions (id varchar(255) NOT NULL PRIMARY KEY, user_id bigint unsigned NULL, ip_address varchar(45) NULL, user_agent text NULL, payload longtext NOT NULL, last_activity int NOT NULL, KEY sessions_user_id_index (user_id), KEY sessions_last_activity_index (last_activity))",
		fmt.Sprintf("INSERT INTO sessions VALUES ('%s', 42, '127.0.0.1', 'ua', 'YTowOnt9', %d)", strings.Repeat("L", 40), now),
		fmt.Sprintf("INSERT INTO sessions VALUES ('%s', NULL, '127.0.0.1', 'ua', 'YTowOnt9', %d)", strings.Repeat("M", 40), now),
		fmt.Sprintf("INSERT INTO sessions VALUES ('%s', 7, '127.0.0.1', 'ua', 'YTowOnt9', %d)", strings.Repeat("N", 40), now-3*3600),
		// The Rails 8 authentication generator: one row per logged-in session.
		"CREATE TABLE rails_sessions (id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, user_id bigint NOT NULL, ip_address varchar(255), user_agent varchar(255), created_at datetime(6) NOT NULL, updated_at datetime(6) NOT NULL)",
		"INSERT INTO rails_sessions (user_id, created_at, updated_at) VALUES (5, NOW(6), NOW(6))",
	)
	laravel := newMySQLSessions(t, dsn, "SELECT user_id FROM sessions WHERE id = :key AND last_activity > :now_unix - 7200", "nonempty", nil, Options{})
	for key, want := range map[string]string{
		strings.Repeat("L", 40): "identified",
		strings.Repeat("M", 40): "anonymous",
		strings.Repeat("N", 40): "anonymous", // idle longer than the lifetime
		strings.Repeat("O", 40): "anonymous",
	} {
		if got := check(laravel, key); got != want {
			t.Errorf("laravel %s...: got %s; want %s", key[:3], got, want)
		}
	}
	rails := newMySQLSessions(t, dsn, "SELECT 1 FROM rails_sessions WHERE id = :key", "exists", nil, Options{})
	for key, want := range map[string]string{"1": "identified", "2": "anonymous"} {
		if got := check(rails, key); got != want {
			t.Errorf("rails %s: got %s; want %s", key, got, want)
		}
	}
}

func TestMySQLValidate(t *testing.T) {
	dsn, _, _ := sessiontest.MySQLDjango(t)
	pool, _ := OpenMySQL(dsn, 2)
	defer pool.Close()
	for _, tc := range []struct {
		query     string
		queryErr  bool
		compileOK bool
	}{
		{djangoQuery, false, true},
		{"SELECT session_data FROM django_sesion WHERE session_key = :key", true, true},
		{"SELECT session_dat FROM django_session WHERE session_key = :key", true, true},
		{"SELEC session_data FROM django_session WHERE session_key = :key", true, true},
		{"SELECT session_data FROM django_session WHERE session_key = ? AND :key", true, false},
		{"SELECT session_data FROM django_session WHERE session_key = :sessionkey", true, false},
	} {
		store, err := NewSQLStore(pool, SQLOptions{Query: tc.query, Placeholder: QuestionMark, QueryError: MySQLQueryError})
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
		err = store.Validate(context.Background())
		var qe *QueryError
		if got := errors.As(err, &qe); got != tc.queryErr || (err != nil && !strings.Contains(err.Error(), tc.query)) {
			t.Errorf("%q: got %v; want a query error: %v", tc.query, err, tc.queryErr)
		}
	}

	// An unreachable server is not the query's fault.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfg, _ := mysql.ParseDSN(dsn)
	cfg.Addr = addr
	down, _ := OpenMySQL(cfg.FormatDSN(), 1)
	defer down.Close()
	store, _ := NewSQLStore(down, SQLOptions{Query: djangoQuery, Placeholder: QuestionMark, QueryError: MySQLQueryError})
	var qe *QueryError
	if err := store.Validate(context.Background()); err == nil || errors.As(err, &qe) {
		t.Errorf("unreachable store: got %v; want a plain error", err)
	}
}

// tcpProxy stands between userrouter and the real MariaDB, so a test can
// make the database refuse connections or stop answering, and come back.
type tcpProxy struct {
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	hang   bool
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	p := &tcpProxy{target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			hang := p.hang
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			if hang {
				continue // accept, never answer
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

// stop closes the listener and every connection: the database is down.
func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// start listens again on the same address: the database is back.
func (p *tcpProxy) start(t testing.TB, hang bool) {
	p.mu.Lock()
	p.hang = hang
	p.mu.Unlock()
	for i := 0; ; i++ {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.serve(ln)
			return
		}
		if i == 50 {
			t.Fatalf("relisten on %s: %v", p.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMySQLOutageAndRecovery(t *testing.T) {
	dsn, _, fx := sessiontest.MySQLDjango(t)
	cfg, _ := mysql.ParseDSN(dsn)
	proxy := newTCPProxy(t, cfg.Addr)
	cfg.Addr = proxy.addr
	s := newMySQLSessions(t, cfg.FormatDSN(), djangoQuery, "django", nil, Options{
		Timeout: 200 * time.Millisecond, BreakerFailures: 3, BreakerCooldown: 500 * time.Millisecond,
		TTLIdentified: time.Nanosecond, TTLAnonymous: time.Nanosecond, TTLNoRow: time.Nanosecond,
	})
	key := fx.Rows[0].SessionKey
	if got := check(s, key); got != "identified" {
		t.Fatalf("before the outage: got %s; want identified", got)
	}

	// Down, refusing connections: doubts, then the breaker opens and
	// answers at once without asking.
	proxy.stop()
	for i := range 3 {
		start := time.Now()
		got := check(s, key)
		if !strings.HasPrefix(got, "doubt:") || time.Since(start) > 300*time.Millisecond {
			t.Fatalf("lookup %d while down: got %s after %v; want a doubt within the timeout", i, got, time.Since(start))
		}
	}
	if s.BreakerState() != "open" || s.Stats.BreakerOpens.Load() != 1 {
		t.Fatalf("breaker %s after %d opens; want open", s.BreakerState(), s.Stats.BreakerOpens.Load())
	}
	queries := s.Stats.Queries.Load()
	start := time.Now()
	if got := check(s, key); got != "doubt:breaker-open" || time.Since(start) > 20*time.Millisecond {
		t.Errorf("with the breaker open: got %s after %v; want doubt:breaker-open at once", got, time.Since(start))
	}
	if s.Stats.Queries.Load() != queries {
		t.Error("the open breaker let a query through")
	}

	// Up again, but hanging: lookups time out within the timeout.
	time.Sleep(600 * time.Millisecond) // past the cooldown: the next lookup probes
	proxy.start(t, true)
	start = time.Now()
	if got := check(s, key); got != "doubt:timeout" || time.Since(start) > 400*time.Millisecond {
		t.Errorf("hanging database: got %s after %v; want doubt:timeout within the timeout", got, time.Since(start))
	}
	// The probe's own deadline ends with the caller's; give it a moment
	// to record its failure.
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
