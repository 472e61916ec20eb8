package sessioncheck

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// OpenSQLite opens a pool over a SQLite session store: the application's
// database file (Django's db.sqlite3). It is pure Go (modernc.org/sqlite),
// so CGO_ENABLED=0 builds keep it.
//
// path is the file's path, or a SQLite URI ("file:...") taken as it is
// but for the driver's _query_only and _busy_timeout, added when missing.
// userrouter opens a path read-only (mode=ro, PRAGMA query_only): it never
// creates, migrates or writes the application's database. Each connection
// waits up to busyTimeout for a writer holding the database lock, so a
// lookup racing Django's commit waits instead of failing. The file must
// exist: a missing one is a configuration mistake, not an outage.
func OpenSQLite(path string, maxConns int, busyTimeout time.Duration) (*sql.DB, error) {
	busy := strconv.FormatInt(max(busyTimeout.Milliseconds(), 1), 10)
	dsn := path
	if strings.HasPrefix(path, "file:") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		for _, p := range [][2]string{{"_query_only", "1"}, {"_busy_timeout", busy}} {
			if !strings.Contains(path, p[0]+"=") {
				dsn += sep + p[0] + "=" + p[1]
				sep = "&"
			}
		}
	} else {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("sessioncheck: session.dsn %q: %w", path, err)
		}
		if fi, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("sessioncheck: session.dsn: the SQLite database %s cannot be opened (%w); point it at the application's database file, e.g. Django's db.sqlite3", abs, err)
		} else if fi.IsDir() {
			return nil, fmt.Errorf("sessioncheck: session.dsn: %s is a directory; point it at the application's database file, e.g. Django's db.sqlite3", abs)
		}
		q := url.Values{}
		q.Set("mode", "ro")
		q.Set("_busy_timeout", busy)
		q.Set("_query_only", "1")
		dsn = (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sessioncheck: session.dsn: %w", err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	// A connection keeps the schema it read; reopen now and then so a
	// file replaced under us (a restore) is seen.
	db.SetConnMaxLifetime(10 * time.Minute)
	return db, nil
}

// SQLiteQueryError reports whether err is SQLite rejecting a statement (a
// syntax error, an unknown table or column), as opposed to the database
// being busy, locked, unreadable or missing.
func SQLiteQueryError(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_ERROR, sqlite3.SQLITE_AUTH, sqlite3.SQLITE_RANGE, sqlite3.SQLITE_MISMATCH:
		return true
	}
	return false
}
