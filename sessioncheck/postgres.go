package sessioncheck

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Dollar is the PostgreSQL placeholder: $1, $2, ...
func Dollar(i int) string { return "$" + strconv.Itoa(i) }

// OpenPostgres opens a pool for a PostgreSQL session store through pgx's
// database/sql driver. The DSN is libpq's, as a URL
// ("postgres://django:pw@127.0.0.1:5432/app?sslmode=verify-full") or as
// keyword/value pairs ("host=127.0.0.1 dbname=app sslmode=require"); TLS
// is the DSN's business (sslmode, sslrootcert, sslcert, sslkey; pgx's
// default, like libpq's, is sslmode=prefer), and the PG* environment
// variables fill in what it leaves out.
//
// userrouter sets, when the DSN leaves them out, connect_timeout=1s,
// application_name=userrouter, and statement_timeout to timeout, so the
// server itself gives up on a lookup the router has stopped waiting for
// (each lookup's context carries the same deadline). The query is
// prepared on each connection the first time it runs there (pgx's
// statement cache) and is one round trip after that. The pool holds
// maxConns connections, all kept idle between lookups.
func OpenPostgres(dsn string, maxConns int, timeout time.Duration) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("sessioncheck: session.dsn: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = time.Second
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "userrouter"
	}
	if _, ok := cfg.RuntimeParams["statement_timeout"]; !ok && timeout > 0 {
		cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(3 * time.Minute) // below middleboxes' idle cuts
	db.SetConnMaxIdleTime(time.Minute)
	return db, nil
}

// PostgresDSNError reports whether err is the server refusing the DSN
// while connecting: SQLSTATE 28P01 (wrong password), 28000 (no such role,
// or no pg_hba.conf entry for it), 3D000 (no such database) or 42501 (no
// CONNECT privilege on the database).
func PostgresDSNError(err error) bool {
	var ce *pgconn.ConnectError
	var pe *pgconn.PgError
	if !errors.As(err, &ce) || !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "28P01", "28000", "3D000", "42501":
		return true
	}
	return false
}

// PostgresQueryError reports whether err is the server rejecting the
// statement: SQLSTATE classes 42 (syntax error, undefined table 42P01 or
// column 42703, no privilege on the table 42501), 22 (data exception, such
// as a parameter of the wrong type), 0A (feature not supported) and 3F (no
// such schema). Connection failures (08), too many connections (53),
// shutdowns and cancelled statements (57: statement_timeout is 57014) are
// the store being unavailable, not the query's fault.
func PostgresQueryError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 || PostgresDSNError(err) {
		return false
	}
	switch pe.Code[:2] {
	case "42", "22", "0A", "3F":
		return true
	}
	return false
}
