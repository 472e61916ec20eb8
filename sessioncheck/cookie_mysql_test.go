package sessioncheck

import (
	"context"
	"strings"
	"testing"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// TestKeyFinderMariaDB shows why Find judges keys as it does: MariaDB's
// default collation finds a session under the key's upper case, with
// trailing spaces and with an accent, so Find must not call those
// anonymous; and the values it calls BadKey match no row.
func TestKeyFinderMariaDB(t *testing.T) {
	dsn, db, fx := sessiontest.MySQLDjango(t)
	s := newMySQLSessions(t, dsn, djangoQuery, "django", nil, Options{})
	kf := newDefaultFinder(t)
	key := fx.Row("identified").SessionKey
	rows := func(value string) int {
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM django_session WHERE session_key = ?", value).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		name, header, read string // read: the value Django reads
		want               KeyResult
		rows               int
	}{
		{"as set", "sessionid=" + key, key, KeyFound, 1},
		{"upper case", "sessionid=" + strings.ToUpper(key), strings.ToUpper(key), KeyFound, 1},
		{"trailing spaces in quotes", `sessionid="` + key + `   "`, key + "   ", KeyFound, 1},
		{"octal escapes", `sessionid="\` + strings.Join(strings.Split(key, ""), `\`) + `\040"`, key + " ", KeyFound, 1},
		{"an accent", "sessionid=" + strings.Replace(key, "e", "é", 1), strings.Replace(key, "e", "é", 1), Ambiguous, 1},
		{"leading spaces in quotes", `sessionid="  ` + key + `"`, "  " + key, BadKey, 0},
		{"one byte more", "sessionid=" + key + "x", key + "x", BadKey, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := rows(tc.read); n != tc.rows {
				t.Errorf("MariaDB has %d rows for %q; want %d", n, tc.read, tc.rows)
			}
			got, res := kf.Find([]byte(tc.header))
			if res != tc.want || res == KeyFound && string(got) != tc.read {
				t.Fatalf("got %q, %v; want %q, %v", got, res, tc.read, tc.want)
			}
			if res != KeyFound {
				return
			}
			if v, err := s.Check(context.Background(), got); err != nil || v != Identified {
				t.Errorf("Check(%q) = %v, %v; want identified", got, v, err)
			}
		})
	}
}
