package sessioncheck

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// sqliteDjango writes a Django SQLite database (Django's own DDL and the
// fixture rows) and returns its path; the writer connection stays open for
// the test, as the application's would.
func sqliteDjango(t *testing.T) (string, *sql.DB, sessiontest.Fixtures) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db.sqlite3")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fx := sessiontest.DjangoTable(t, db, sessiontest.SQLiteDDL)
	return path, db, fx
}

// newSQLiteSessions builds Sessions over the SQLite file at path.
func newSQLiteSessions(t testing.TB, path, query, rule string, signer *DjangoSigner) *Sessions {
	t.Helper()
	db, err := OpenSQLite(path, 4, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewSQLStore(db, SQLOptions{Query: query, Placeholder: QuestionMark, QueryError: SQLiteQueryError})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := NewRule(rule, signer)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Store: store, Rule: r})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSQLiteDjango classifies the same Django-made rows as TestMySQLDjango,
// from a SQLite file laid out as Django lays out db.sqlite3.
func TestSQLiteDjango(t *testing.T) {
	path, _, fx := sqliteDjango(t)
	plain := newSQLiteSessions(t, path, djangoQuery, "django", nil)
	verified := newSQLiteSessions(t, path, djangoQuery, "django", &DjangoSigner{Secrets: []string{fx.SecretKey}})
	checkDjangoFixtures(t, fx, plain, verified)
}

// TestSQLiteSeesNewSessions: a login Django writes after userrouter opened
// the file is found, and an expiry in the past hides a row, compared as
// Django writes dates in SQLite (text, UTC).
func TestSQLiteSeesNewSessions(t *testing.T) {
	path, db, fx := sqliteDjango(t)
	s := newSQLiteSessions(t, path, djangoQuery, "django", nil)
	key := strings.Repeat("n", 32)
	if got := check(s, key); got != "anonymous" {
		t.Fatalf("before the login: got %s; want anonymous", got)
	}
	sessiontest.InsertSession(t, db, strings.Repeat("m", 32), fx.Row("identified").SessionData, time.Now().Add(time.Hour))
	sessiontest.InsertSession(t, db, strings.Repeat("e", 32), fx.Row("identified").SessionData, time.Now().Add(-time.Second))
	if got := check(s, strings.Repeat("m", 32)); got != "identified" {
		t.Errorf("a session written after opening: got %s; want identified", got)
	}
	if got := check(s, strings.Repeat("e", 32)); got != "anonymous" {
		t.Errorf("a session that expired a second ago: got %s; want anonymous", got)
	}
}

func TestSQLiteOtherFrameworks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.sqlite3")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().Unix()
	sessiontest.Exec(t, db,
		// Laravel's database session driver, as its SQLite migration makes it.
		`CREATE TABLE "sessions" ("id" varchar not null, "user_id" integer, "ip_address" varchar, "user_agent" text, "payload" text not null, "last_activity" integer not null, primary key ("id"))`,
		fmt.Sprintf("INSERT INTO sessions VALUES ('%s', 42, '127.0.0.1', 'ua', 'YTowOnt9', %d)", strings.Repeat("L", 40), now),
		fmt.Sprintf("INSERT INTO sessions VALUES ('%s', NULL, '127.0.0.1', 'ua', 'YTowOnt9', %d)", strings.Repeat("M", 40), now),
		fmt.Sprintf("INSERT INTO sessions VALUES ('%s', 7, '127.0.0.1', 'ua', 'YTowOnt9', %d)", strings.Repeat("N", 40), now-3*3600),
	)
	laravel := newSQLiteSessions(t, path, "SELECT user_id FROM sessions WHERE id = :key AND last_activity > :now_unix - 7200", "nonempty", nil)
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
}

// TestSQLiteInjection: keys shaped like SQL reach SQLite as one bound value.
func TestSQLiteInjection(t *testing.T) {
	path, db, fx := sqliteDjango(t)
	attack := "x' OR '1'='1"
	sessiontest.InsertSession(t, db, attack, fx.Row("anonymous").SessionData, time.Now().Add(time.Hour))
	s := newSQLiteSessions(t, path, djangoQuery, "django", nil)
	if got := check(s, attack); got != "anonymous" {
		t.Errorf("%q: got %s; want anonymous (its own row)", attack, got)
	}
	for _, key := range []string{"' OR '1'='1", "' OR 1=1 -- ", "x'; DROP TABLE django_session; --", "\x00' OR 1=1", "%", "_", "?1", ":key"} {
		if got := check(s, key); got != "anonymous" {
			t.Errorf("%q: got %s; want anonymous (no such row)", key, got)
		}
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM django_session").Scan(&n); err != nil || n == 0 {
		t.Errorf("the table is gone or empty: %d, %v", n, err)
	}
}

func TestSQLiteValidate(t *testing.T) {
	path, _, _ := sqliteDjango(t)
	pool, err := OpenSQLite(path, 1, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, tc := range []struct {
		query    string
		queryErr bool
	}{
		{djangoQuery, false},
		{"SELECT session_data FROM django_sesion WHERE session_key = :key", true},
		{"SELECT session_dat FROM django_session WHERE session_key = :key", true},
		{"SELEC session_data FROM django_session WHERE session_key = :key", true},
	} {
		store, err := NewSQLStore(pool, SQLOptions{Query: tc.query, Placeholder: QuestionMark, QueryError: SQLiteQueryError})
		if err != nil {
			t.Fatalf("%q: %v", tc.query, err)
		}
		err = store.Validate(context.Background())
		var qe *QueryError
		if got := errors.As(err, &qe); got != tc.queryErr || (err != nil && !strings.Contains(err.Error(), tc.query)) {
			t.Errorf("%q: got %v; want a query error: %v", tc.query, err, tc.queryErr)
		}
	}

	// userrouter never writes the application's database.
	if _, err := pool.Exec("DELETE FROM django_session"); err == nil {
		t.Error("a write through the session pool succeeded; want the database opened read-only")
	}

	// Nor through a URI the operator wrote (it gets query_only too).
	uri, err := OpenSQLite("file:"+path, 1, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer uri.Close()
	if _, err := uri.Exec("DELETE FROM django_session"); err == nil {
		t.Error("a write through a file: URI pool succeeded; want query_only")
	}

	// A missing file or a directory is a configuration mistake, said at once.
	for _, bad := range []string{filepath.Join(t.TempDir(), "missing.sqlite3"), t.TempDir()} {
		if _, err := OpenSQLite(bad, 1, time.Millisecond); err == nil || !strings.Contains(err.Error(), "session.dsn") {
			t.Errorf("OpenSQLite(%s): got %v; want an error naming session.dsn", bad, err)
		}
	}
	if _, err := os.Stat(filepath.Join(t.TempDir(), "missing.sqlite3")); err == nil {
		t.Error("opening a missing database created it")
	}
}

// TestSQLiteLockedIsDoubt: while the application holds an exclusive lock
// past the busy timeout, visitors with a session are forwarded (doubt),
// never guessed anonymous; once it commits, lookups answer again.
func TestSQLiteLockedIsDoubt(t *testing.T) {
	path, db, fx := sqliteDjango(t)
	s := newSQLiteSessions(t, path, djangoQuery, "django", nil)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	key := fx.Row("identified").SessionKey
	if got := check(s, key); got != "doubt:store-error" {
		t.Errorf("with the database locked: got %s; want a doubt", got)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if got := check(s, key); got != "identified" {
		t.Errorf("after the lock: got %s; want identified", got)
	}
}
