package sessiontest

import (
	"database/sql"
	_ "embed"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// PostgresDDL creates django_session exactly as Django does on PostgreSQL
// (expire_date is a timestamp with time zone, whatever USE_TZ).
//
//go:embed testdata/django_session.postgres.sql
var PostgresDDL string

// PostgresDSN creates a database on the test PostgreSQL
// (USERROUTER_TEST_POSTGRES_DSN, a URL or keyword/value DSN naming a
// user allowed to create databases) and returns a DSN for it, in the same
// form; the database is dropped when the test ends.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := Env(t, "USERROUTER_TEST_POSTGRES_DSN")
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("userrouter_test_%d_%d", time.Now().UnixNano(), rand.IntN(1e6))
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		admin.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop test database: %v", err)
		}
		admin.Close()
	})
	return PostgresWithDatabase(t, base, name)
}

// PostgresWithDatabase returns dsn naming database name instead.
func PostgresWithDatabase(t testing.TB, dsn, name string) string {
	t.Helper()
	if !strings.Contains(dsn, "://") {
		return dsn + " dbname=" + name // a later keyword wins
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// PostgresWithParam adds a keyword (a libpq setting or a run-time
// parameter such as timezone) to a URL or keyword/value dsn.
func PostgresWithParam(dsn, key, value string) string {
	if !strings.Contains(dsn, "://") {
		return dsn + " " + key + "=" + value
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + key + "=" + url.QueryEscape(value)
}

// PostgresDjango creates a database on the test PostgreSQL with
// django_session as Django creates it, filled with the fixture rows (as
// DjangoTable does). It returns the database's DSN and an open handle,
// closed when the test ends.
func PostgresDjango(t testing.TB) (string, *sql.DB, Fixtures) {
	t.Helper()
	dsn := PostgresDSN(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	Exec(t, db, PostgresDDL)
	fx := LoadFixtures(t)
	for _, row := range fx.Rows {
		expire := time.Now().Add(14 * 24 * time.Hour)
		if row.Expired {
			expire = time.Now().Add(-time.Hour)
		}
		InsertPostgresSession(t, db, row.SessionKey, row.SessionData, expire)
	}
	return dsn, db, fx
}

// InsertPostgresSession adds one django_session row; expire is sent as
// the instant it is, as psycopg2 sends Django's aware datetimes.
func InsertPostgresSession(t testing.TB, db *sql.DB, key, data string, expire time.Time) {
	t.Helper()
	if _, err := db.Exec("INSERT INTO django_session (session_key, session_data, expire_date) VALUES ($1, $2, $3)",
		key, data, expire); err != nil {
		t.Fatal(err)
	}
}
