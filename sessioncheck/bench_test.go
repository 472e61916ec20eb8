package sessioncheck

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// cachedSessions returns a Sessions whose verdict cache already holds the
// key of benchHeaders' "session" cookie. Its store is a MySQL pool that is
// never dialed: a cache hit does not reach the store.
func cachedSessions(tb testing.TB) (*KeyFinder, *Sessions) {
	tb.Helper()
	db, err := OpenMySQL("u@tcp(127.0.0.1:1)/none", 1)
	if err != nil {
		tb.Fatal(err)
	}
	store, err := NewSQLStore(db, SQLOptions{Query: djangoQuery, Placeholder: QuestionMark})
	if err != nil {
		tb.Fatal(err)
	}
	rule, _ := NewRule("django", nil)
	s, err := New(Options{Store: store, Rule: rule})
	if err != nil {
		tb.Fatal(err)
	}
	s.cache.Set(djangoKey, kindAnonymous)
	kf, _ := NewKeyFinder("sessionid", "^[a-z0-9]{32}$")
	return kf, s
}

// BenchmarkCheckCached is the per-request cost of a visitor with a known
// session: find the key in the Cookie header, answer from the cache.
func BenchmarkCheckCached(b *testing.B) {
	kf, s := cachedSessions(b)
	header := []byte(benchHeaders[2].header)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key, _ := kf.Find(header)
			if v, err := s.Check(ctx, key); err != nil || v != Anonymous {
				b.Fatal(v, err)
			}
		}
	})
}

// BenchmarkColdLookupMySQL asks MariaDB about a key never seen before, 64
// lookups at a time, and reports latency percentiles.
func BenchmarkColdLookupMySQL(b *testing.B) {
	dsn := sessiontest.MySQLDSN(b)
	db, _ := sql.Open("mysql", dsn)
	defer db.Close()
	fx := sessiontest.DjangoTable(b, db, sessiontest.MySQLDDL)
	const rows = 20000
	tx, _ := db.Begin()
	stmt, _ := tx.Prepare("INSERT INTO django_session VALUES (?, ?, ?)")
	for i := range rows {
		stmt.Exec(fmt.Sprintf("k%031d", i), fx.Rows[i%2].SessionData, time.Now().UTC().Add(time.Hour))
	}
	tx.Commit()
	s := newMySQLSessions(b, dsn, djangoQuery, "django", nil, Options{
		MaxQueries: 64, Timeout: time.Second, TTLIdentified: time.Nanosecond, TTLAnonymous: time.Nanosecond, TTLNoRow: time.Nanosecond,
	})
	// newMySQLSessions opened 8 connections; 64 concurrent lookups need 64.
	s.store.(*SQLStore).db.SetMaxOpenConns(64)
	s.store.(*SQLStore).db.SetMaxIdleConns(64)
	benchColdLookups(b, s, rows)
}

// benchColdLookups asks s about keys "k%031d" below rows, 64 lookups at a
// time, each a key not asked about for a while (s caches verdicts for a
// nanosecond), and reports latency percentiles and throughput.
func benchColdLookups(b *testing.B, s *Sessions, rows int64) {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(32) // 32 per GOMAXPROCS: 64 goroutines on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			key := fmt.Sprintf("k%031d", next.Add(1)%rows)
			t0 := time.Now()
			if _, err := s.Check(context.Background(), []byte(key)); err != nil {
				b.Error(err)
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "lookups/s")
	}
}

// TestMySQLSteadyStateQueryRate replays the sizing case: 10,000
// distinct sessions asked about 5,000 times a second, with the default
// verdict TTLs, and measures the queries per second over one whole TTL
// period once the cache is warm (65 s to 125 s). It takes two minutes, so
// it runs only when asked:
//
//	USERROUTER_SOAK=1 make test   (or go test -run SteadyState ./sessioncheck)
func TestMySQLSteadyStateQueryRate(t *testing.T) {
	if os.Getenv("USERROUTER_SOAK") == "" {
		t.Skip("two-minute measurement; set USERROUTER_SOAK=1 to run it")
	}
	dsn, db, fx := sessiontest.MySQLDjango(t)
	const sessions, rate = 10000, 5000
	tx, _ := db.Begin()
	stmt, _ := tx.Prepare("INSERT INTO django_session VALUES (?, ?, ?)")
	for i := range sessions {
		stmt.Exec(fmt.Sprintf("s%031d", i), fx.Rows[i%3].SessionData, time.Now().UTC().Add(time.Hour))
	}
	tx.Commit()
	s := newMySQLSessions(t, dsn, djangoQuery, "django", nil, Options{})

	ticker := time.NewTicker(time.Second / 100) // 100 batches of 50 a second
	defer ticker.Stop()
	var seed uint64 = 1
	begin := time.Now()
	var before uint64
	var checks int
	for now := range ticker.C {
		for range rate / 100 {
			seed = seed*6364136223846793005 + 1442695040888963407
			key := fmt.Sprintf("s%031d", (seed>>33)%sessions)
			s.Check(context.Background(), []byte(key))
			checks++
		}
		switch el := now.Sub(begin); {
		case el >= 65*time.Second && before == 0:
			before = s.Stats.Queries.Load()
		case el >= 125*time.Second:
			qps := float64(s.Stats.Queries.Load()-before) / 60
			t.Logf("%d checks in %v; steady state (65-125 s): %.0f queries/s for %d sessions at %d checks/s", checks, el.Round(time.Second), qps, sessions, rate)
			if qps >= 200 {
				t.Errorf("%.0f queries/s; want fewer than 200", qps)
			}
			return
		}
	}
}
