package sessioncheck

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
)

// OpenMySQL opens a pool for a MySQL or MariaDB session store. The DSN is
// go-sql-driver/mysql's ("user:pass@tcp(host:3306)/db"); userrouter sets
// interpolateParams (a lookup is one round trip, parameters still escaped
// by the driver, never spliced by us), parseTime with loc=UTC, and connect,
// read and write timeouts when the DSN leaves them out (1s, 2s, 2s).
// The pool holds maxConns connections, all kept idle between lookups.
func OpenMySQL(dsn string, maxConns int) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("sessioncheck: session.dsn: %w", err)
	}
	cfg.InterpolateParams = true
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 2 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 2 * time.Second
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("sessioncheck: session.dsn: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(3 * time.Minute) // below middleboxes' idle cuts
	db.SetConnMaxIdleTime(time.Minute)
	return db, nil
}

// MySQLQueryError reports whether err is the MySQL server rejecting a
// statement (a syntax error, an unknown table or column, no privilege),
// as opposed to the server being unreachable.
func MySQLQueryError(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	// 1040 too many connections and 1203 too many user connections are
	// about reaching the server; 1044, 1045 and 1049 about the DSN.
	switch me.Number {
	case 1040, 1203:
		return false
	}
	return !MySQLDSNError(err)
}

// MySQLDSNError reports whether err is the server refusing the DSN: 1044
// (no access to the database), 1045 (access denied: user or password),
// 1049 (unknown database).
func MySQLDSNError(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1044, 1045, 1049:
		return true
	}
	return false
}
