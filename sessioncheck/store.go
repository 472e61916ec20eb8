package sessioncheck

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A Store reads one session's row from the application's session store.
// Implementations must be safe for concurrent use.
type Store interface {
	// Lookup returns the first column of the row for key, or ErrNoRow
	// when there is none (an unknown or expired key). now is the current
	// time, for the query's :now.
	Lookup(ctx context.Context, key string, now time.Time) (Row, error)
	Close() error
}

// ErrNoRow is returned by Lookup when the store has no session for the key.
var ErrNoRow = errors.New("sessioncheck: no such session")

// ValidateQuery checks a session query's named parameters as the MySQL and
// SQLite stores will compile it, without a database: for config checks.
func ValidateQuery(q string) error {
	_, _, err := compileQuery(q, QuestionMark, false, false)
	return err
}

// ValidateCredentialQuery is ValidateQuery for a credential query, which
// may use :user too (see CredentialKey).
func ValidateCredentialQuery(q string) error {
	_, _, err := compileQuery(q, QuestionMark, false, true)
	return err
}

// A param is a named parameter a session query may use.
type param uint8

const (
	paramKey     param = iota // :key, the session key
	paramNow                  // :now, the current time as "2006-01-02 15:04:05.000000" (with "-07:00" under SQLOptions.NowOffset)
	paramNowUnix              // :now_unix, the current Unix time in seconds
	paramUser                 // :user, a credential's user part (SQLOptions.User)
)

var paramNames = map[string]param{"key": paramKey, "now": paramNow, "now_unix": paramNowUnix, "user": paramUser}

// A Placeholder writes the driver's placeholder for the i-th (from 1)
// parameter: "?" for MySQL and SQLite, "$1" for PostgreSQL.
type Placeholder func(i int) string

// QuestionMark is the MySQL and SQLite placeholder.
func QuestionMark(int) string { return "?" }

// compileQuery rewrites the named parameters of q (:key, :now, :now_unix,
// and :user when user) to the driver's placeholders and returns the
// parameters in order. Names inside string literals, quoted identifiers
// and comments are left alone, as is "::" (a PostgreSQL cast). Any other
// :name is an error, and q must use :key.
func compileQuery(q string, ph Placeholder, hashComments, user bool) (string, []param, error) {
	names := ":key, :now or :now_unix"
	if user {
		names = ":key, :user, :now or :now_unix"
	}
	var out strings.Builder
	var params []param
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			end := quotedEnd(q, i)
			out.WriteString(q[i:end])
			i = end
		case c == '-' && strings.HasPrefix(q[i:], "--"), c == '#' && hashComments:
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				end = len(q) - i
			}
			out.WriteString(q[i : i+end])
			i += end
		case c == '/' && strings.HasPrefix(q[i:], "/*"):
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return "", nil, errors.New("unterminated /* comment")
			}
			out.WriteString(q[i : i+2+end+2])
			i += 2 + end + 2
		case c == '?' && ph(1) == "?":
			return "", nil, fmt.Errorf("write the parameters as %s, not ?", names)
		case c == ':' && strings.HasPrefix(q[i:], "::"):
			out.WriteString("::")
			i += 2
		case c == ':' && i+1 < len(q) && isIdentStart(q[i+1]):
			j := i + 1
			for j < len(q) && isIdentPart(q[j]) {
				j++
			}
			name := q[i+1 : j]
			p, ok := paramNames[name]
			if !ok || p == paramUser && !user {
				return "", nil, fmt.Errorf("unknown parameter :%s (use %s)", name, names)
			}
			params = append(params, p)
			out.WriteString(ph(len(params)))
			i = j
		default:
			out.WriteByte(c)
			i++
		}
	}
	for _, p := range params {
		if p == paramKey {
			return out.String(), params, nil
		}
	}
	if user {
		return "", nil, errors.New("the query must use :key, the credential's key")
	}
	return "", nil, errors.New("the query must use :key, the session key")
}

// quotedEnd returns the index just past the quoted text starting at q[i];
// a doubled quote or a backslash escapes one.
func quotedEnd(q string, i int) int {
	quote := q[i]
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\':
			j++
		case quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// SQLStore runs the operator's session query through database/sql. Every
// value is a bound parameter. SQLStore is safe for concurrent use.
type SQLStore struct {
	db     *sql.DB
	source string // the query as configured, for messages
	query  string // with the driver's placeholders
	params []param
	zone   *time.Location
	// nowOffset writes :now with its UTC offset.
	nowOffset bool
	// queryError tells an error the server raised about the query (syntax,
	// unknown table or column) from one reaching it (network, auth);
	// dsnError one about the DSN (credentials, database name).
	queryError, dsnError func(error) bool
}

// A DSNError says the session store refused the DSN itself: wrong
// credentials, no access to the database, or no such database. It is a
// config error, not an outage: fix session.dsn.
type DSNError struct{ Err error }

func (e *DSNError) Error() string { return fmt.Sprintf("sessioncheck: session.dsn: %v", e.Err) }
func (e *DSNError) Unwrap() error { return e.Err }

// A QueryError says the session store rejected the session query itself:
// fix the query or the schema.
type QueryError struct {
	Query string
	Err   error
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("sessioncheck: session query %q: %v", e.Query, e.Err)
}

func (e *QueryError) Unwrap() error { return e.Err }

// SQLOptions configures an SQLStore.
type SQLOptions struct {
	Query       string
	Placeholder Placeholder
	// HashComments treats "#" as starting a comment (MySQL).
	HashComments bool
	// Zone is the time zone :now is written in: UTC for Django with
	// USE_TZ = True, TIME_ZONE otherwise. Nil means UTC.
	Zone *time.Location
	// NowOffset writes :now with its UTC offset, "2006-01-02
	// 15:04:05.000000-07:00" (PostgreSQL): the server reads it as the
	// instant for a timestamp with time zone, whatever its TimeZone, and
	// as the wall clock in Zone for a timestamp without, in every query
	// exec mode. (A time.Time would not do: pgx's exec and
	// simple_protocol modes send it as UTC text, which a timestamp column
	// takes for a wall clock.)
	NowOffset bool
	// QueryError reports whether an error is the server rejecting the
	// query; nil treats every error as the store being unreachable.
	QueryError func(error) bool
	// DSNError reports whether an error is the server refusing the DSN
	// (credentials, database); nil treats none so.
	DSNError func(error) bool
	// User lets the query use :user: the keys looked up are then
	// credentials, CredentialKey's user and key, bound to :user and :key.
	User bool
}

// NewSQLStore checks and compiles the query; it does not contact the
// database. Call Validate for that.
func NewSQLStore(db *sql.DB, o SQLOptions) (*SQLStore, error) {
	q, params, err := compileQuery(o.Query, o.Placeholder, o.HashComments, o.User)
	if err != nil {
		return nil, &QueryError{Query: o.Query, Err: err}
	}
	zone := o.Zone
	if zone == nil {
		zone = time.UTC
	}
	qe := o.QueryError
	if qe == nil {
		qe = func(error) bool { return false }
	}
	de := o.DSNError
	if de == nil {
		de = func(error) bool { return false }
	}
	return &SQLStore{db: db, source: o.Query, query: q, params: params, zone: zone, nowOffset: o.NowOffset, queryError: qe, dsnError: de}, nil
}

// Validate runs the query once, for a key no session has, and checks that
// it returns at least one column. A *QueryError means the query or the
// schema is wrong; any other error means the store could not be reached.
func (s *SQLStore) Validate(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, s.query, s.args("", time.Now())...)
	if err != nil {
		if s.dsnError(err) {
			return &DSNError{Err: err}
		}
		if s.queryError(err) {
			return &QueryError{Query: s.source, Err: err}
		}
		return fmt.Errorf("sessioncheck: session store unreachable: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err == nil && len(cols) == 0 {
		err = errors.New("it returns no column")
	}
	if err != nil {
		return &QueryError{Query: s.source, Err: err}
	}
	return nil
}

func (s *SQLStore) args(key string, now time.Time) []any {
	args := make([]any, len(s.params))
	user, key := SplitCredentialKey(key)
	for i, p := range s.params {
		switch p {
		case paramKey:
			args[i] = key
		case paramUser:
			args[i] = user
		case paramNow:
			if s.nowOffset {
				args[i] = now.In(s.zone).Format("2006-01-02 15:04:05.000000-07:00")
			} else {
				args[i] = now.In(s.zone).Format("2006-01-02 15:04:05.000000")
			}
		case paramNowUnix:
			args[i] = now.Unix()
		}
	}
	return args
}

// Lookup runs the query for key and returns its first column.
func (s *SQLStore) Lookup(ctx context.Context, key string, now time.Time) (Row, error) {
	rows, err := s.db.QueryContext(ctx, s.query, s.args(key, now)...)
	if err != nil {
		return Row{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Row{}, err
		}
		return Row{}, ErrNoRow
	}
	cols, err := rows.Columns()
	if err != nil {
		return Row{}, err
	}
	dest := make([]any, len(cols))
	var first any
	dest[0] = &first
	for i := 1; i < len(dest); i++ {
		dest[i] = new(sql.RawBytes)
	}
	if err := rows.Scan(dest...); err != nil {
		return Row{}, err
	}
	return toRow(first), rows.Close()
}

// toRow turns a scanned value of any driver type into bytes.
func toRow(v any) Row {
	switch x := v.(type) {
	case nil:
		return Row{Null: true}
	case []byte:
		return Row{Value: x}
	case string:
		return Row{Value: []byte(x)}
	case int64:
		return Row{Value: strconv.AppendInt(nil, x, 10)}
	case float64:
		return Row{Value: strconv.AppendFloat(nil, x, 'g', -1, 64)}
	case bool:
		if x {
			return Row{Value: []byte("1")}
		}
		return Row{Value: []byte("0")}
	case time.Time:
		return Row{Value: []byte(x.Format(time.RFC3339Nano))}
	}
	return Row{Value: fmt.Appendf(nil, "%v", v)}
}

// Ping checks that the database answers.
func (s *SQLStore) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close closes the database pool.
func (s *SQLStore) Close() error { return s.db.Close() }

var (
	_ Store  = (*SQLStore)(nil)
	_ Pinger = (*SQLStore)(nil)
)
