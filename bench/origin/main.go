// Command origin is a stand-in web application for the demo, benchmarks
// and tests. It behaves, where userrouter can tell, like a Django site:
//
//   - GET of any other path renders a page after -render, with at most
//     -workers pages rendering at once (gunicorn's workers); later requests
//     queue. Pages carry Cache-Control: max-age=-max-age and a
//     Surrogate-Key naming the page, its section and "all".
//   - A request with a session cookie makes origin read the session, as
//     Django's middleware does: a signed-in visitor gets a personal page
//     (Cache-Control: private), anyone else the public one.
//   - POST /login starts a signed-in session, POST /cart an anonymous one
//     (a cart), both written in Django's signing format with
//     _auth_user_id for logins, to the session store (-sqlite or -mysql),
//     and answered with Set-Cookie: sessionid=KEY. bench -mint uses them.
//   - ?tags=N adds N more surrogate keys; ?set-cookie=1 adds a Set-Cookie
//     (a CSRF token) to an anonymous page; ?status=N answers that status.
//   - GET /stats counts requests and renders; GET /healthz answers "ok".
//
// Run:
//
//	origin -addr 127.0.0.1:8000 -render 20ms -sqlite /tmp/demo/db.sqlite3
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	_ "modernc.org/sqlite"

	"github.com/userrouter/userrouter/sessioncheck"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("origin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	addr := fs.String("addr", "127.0.0.1:8000", "listen `address`")
	fs.IntVar(&o.Size, "size", 20<<10, "page size in `bytes`")
	fs.DurationVar(&o.Render, "render", 0, "time to render a page")
	fs.IntVar(&o.Workers, "workers", 8, "pages rendered at once, like gunicorn's workers; others queue")
	fs.DurationVar(&o.MaxAge, "max-age", 5*time.Minute, "Cache-Control max-age of public pages")
	sqlitePath := fs.String("sqlite", "", "session store: a SQLite `file`, created with Django's django_session table when missing")
	mysqlDSN := fs.String("mysql", "", "session store: a MySQL `DSN` whose database holds (or gets) django_session")
	fs.StringVar(&o.SecretKey, "secret-key", "userrouter-origin-not-secret", "Django SECRET_KEY sessions are signed with")
	fs.StringVar(&o.Cookie, "cookie", "sessionid", "session cookie `name`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *sqlitePath != "" && *mysqlDSN != "" || o.Size < 0 || o.Workers < 1 {
		fmt.Fprintln(stderr, "origin: bad arguments: give at most one of -sqlite and -mysql, a -size of 0 or more and -workers of 1 or more")
		return 2
	}
	var err error
	switch {
	case *sqlitePath != "":
		o.DB, err = OpenSessionDB("sqlite", *sqlitePath)
	case *mysqlDSN != "":
		o.DB, err = OpenSessionDB("mysql", *mysqlDSN)
	}
	if err != nil {
		fmt.Fprintln(stderr, "origin:", err)
		return 1
	}
	srv := &fasthttp.Server{Handler: New(o).Handle, Name: "origin", ReadBufferSize: 16 << 10}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.ShutdownWithContext(context.Background())
	}()
	log.SetOutput(stderr)
	log.Printf("origin on %s: %d-byte pages, %v render, %d workers", *addr, o.Size, o.Render, o.Workers)
	if err := srv.ListenAndServe(*addr); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "origin:", err)
		return 1
	}
	return 0
}

// OpenSessionDB opens the session database and creates django_session the
// way Django's migration does when it is missing.
func OpenSessionDB(driver, dsn string) (*sql.DB, error) {
	var (
		db  *sql.DB
		err error
		ddl string
	)
	switch driver {
	case "sqlite":
		// WAL lets userrouter read while origin writes; busy_timeout
		// makes concurrent logins wait for each other. (userrouter's
		// sessioncheck.OpenSQLite opens read-only: origin writes.)
		db, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
		ddl = `CREATE TABLE IF NOT EXISTS "django_session" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" datetime NOT NULL)`
	case "mysql":
		// userrouter's own settings: parseTime, UTC, bounded timeouts.
		db, err = sessioncheck.OpenMySQL(dsn, 64)
		ddl = `CREATE TABLE IF NOT EXISTS django_session (session_key varchar(40) NOT NULL PRIMARY KEY, session_data longtext NOT NULL, expire_date datetime(6) NOT NULL)`
	default:
		return nil, fmt.Errorf("session store: unknown driver %q", driver)
	}
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	if _, err := db.Exec(ddl); err != nil {
		db.Close()
		return nil, fmt.Errorf("session store: creating django_session: %w", err)
	}
	return db, nil
}

// newSessionKey makes a key like Django's: 32 of [a-z0-9], random.
func newSessionKey() string {
	return strings.ToLower(rand.Text() + rand.Text())[:32]
}
