// Package sessiontest provides session stores for tests: throwaway MariaDB
// databases and django_session rows made by a real Django (Debian's
// python3-django 3.2; testdata/make_fixtures.py regenerates them).
package sessiontest

import (
	"database/sql"
	_ "embed"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Env returns the named service address, skipping the test when it is
// unset; under `make test` (USERROUTER_REQUIRE_INTEGRATION=1) it fails
// instead, so a missing service cannot pass unnoticed.
func Env(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("USERROUTER_REQUIRE_INTEGRATION") != "" {
			t.Fatalf("%s is unset although USERROUTER_REQUIRE_INTEGRATION is set", name)
		}
		t.Skipf("%s is unset: run `make test` to run the integration tests against real services", name)
	}
	return v
}

// MySQLDSN creates a database on the test MariaDB (USERROUTER_TEST_MYSQL_DSN)
// and returns a DSN for it; the database is dropped when the test ends.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	base := Env(t, "USERROUTER_TEST_MYSQL_DSN")
	admin, err := sql.Open("mysql", base)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("userrouter_test_%d_%d", time.Now().UnixNano(), rand.IntN(1e6))
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		admin.Exec("DROP DATABASE " + name)
		admin.Close()
	})
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName = name
	return cfg.FormatDSN()
}

// MySQLDjango creates a database on the test MariaDB with django_session
// as Django creates it, filled with the fixture rows (see DjangoTable). It
// returns the database's DSN and an open handle, closed when the test ends.
func MySQLDjango(t testing.TB) (string, *sql.DB, Fixtures) {
	t.Helper()
	dsn := MySQLDSN(t)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return dsn, db, DjangoTable(t, db, MySQLDDL)
}

// A Row is one django_session row made by Django.
type Row struct {
	Name        string `json:"name"`
	SessionKey  string `json:"session_key"`
	SessionData string `json:"session_data"`
	// Want is what userrouter must make of the row: "identified",
	// "anonymous", "no-row" (expired) or "doubt" (undecodable).
	Want string `json:"want"`
	// WantVerified, when set, replaces Want when signatures are verified.
	WantVerified string `json:"want_verified"`
	Expired      bool   `json:"expired"`
}

// Fixtures are the rows and the SECRET_KEY they were signed with.
type Fixtures struct {
	SecretKey string `json:"secret_key"`
	Django    string `json:"django"`
	Rows      []Row  `json:"rows"`
}

var (
	//go:embed testdata/django_sessions.json
	fixturesJSON []byte
	// MySQLDDL creates django_session exactly as Django does on MySQL.
	//go:embed testdata/django_session.mysql.sql
	MySQLDDL string
	// SQLiteDDL creates django_session exactly as Django does on SQLite.
	//go:embed testdata/django_session.sqlite.sql
	SQLiteDDL string
)

// LoadFixtures returns the Django fixture rows.
func LoadFixtures(t testing.TB) Fixtures {
	var f Fixtures
	if err := json.Unmarshal(fixturesJSON, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// Row returns the first fixture row with the given Want, for tests that
// need "a logged-in session" or "an anonymous one".
func (f Fixtures) Row(want string) Row {
	for _, r := range f.Rows {
		if r.Want == want && r.WantVerified == "" && !r.Expired {
			return r
		}
	}
	panic("sessiontest: no fixture row wanting " + want)
}

// Exec runs each statement; the DDL files hold several, separated by ";".
func Exec(t testing.TB, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		for _, one := range strings.Split(s, ";") {
			if one = strings.TrimSpace(one); one == "" || one == "BEGIN" || one == "COMMIT" {
				continue
			}
			if _, err := db.Exec(one); err != nil {
				t.Fatalf("%s: %v", one, err)
			}
		}
	}
}

// DjangoTable creates django_session with ddl (MySQLDDL or SQLiteDDL) and
// inserts the fixture rows: expired rows expired an hour ago, the others
// expire in two weeks. Dates are written as Django writes them, in UTC.
func DjangoTable(t testing.TB, db *sql.DB, ddl string) Fixtures {
	t.Helper()
	Exec(t, db, ddl)
	fx := LoadFixtures(t)
	for _, row := range fx.Rows {
		expire := time.Now().UTC().Add(14 * 24 * time.Hour)
		if row.Expired {
			expire = time.Now().UTC().Add(-time.Hour)
		}
		InsertSession(t, db, row.SessionKey, row.SessionData, expire)
	}
	return fx
}

// InsertSession adds one django_session row.
func InsertSession(t testing.TB, db *sql.DB, key, data string, expire time.Time) {
	t.Helper()
	if _, err := db.Exec("INSERT INTO django_session (session_key, session_data, expire_date) VALUES (?, ?, ?)",
		key, data, expire.UTC().Format("2006-01-02 15:04:05.000000")); err != nil {
		t.Fatal(err)
	}
}
