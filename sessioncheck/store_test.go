package sessioncheck

import (
	"strings"
	"testing"
)

func TestCompileQuery(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		params         []param
		err            string
	}{
		{
			name:   "django default",
			in:     "SELECT session_data FROM django_session WHERE session_key = :key AND expire_date > :now",
			want:   "SELECT session_data FROM django_session WHERE session_key = ? AND expire_date > ?",
			params: []param{paramKey, paramNow},
		},
		{
			name:   "repeated and unix time",
			in:     "SELECT user_id FROM sessions WHERE id = :key AND last_activity > :now_unix - 7200 OR id = :key",
			want:   "SELECT user_id FROM sessions WHERE id = ? AND last_activity > ? - 7200 OR id = ?",
			params: []param{paramKey, paramNowUnix, paramKey},
		},
		{
			name:   "names in literals and comments stay",
			in:     "SELECT ':key', \":now\", `a:b`, 'it''s :key' -- :now\nFROM t /* :key */ WHERE k=:key # :now",
			want:   "SELECT ':key', \":now\", `a:b`, 'it''s :key' -- :now\nFROM t /* :key */ WHERE k=? # :now",
			params: []param{paramKey},
		},
		{
			name:   "backslash escape in a literal",
			in:     `SELECT 'a\':key' FROM t WHERE k = :key`,
			want:   `SELECT 'a\':key' FROM t WHERE k = ?`,
			params: []param{paramKey},
		},
		{
			name:   "postgres cast",
			in:     "SELECT data::text FROM s WHERE k = :key",
			want:   "SELECT data::text FROM s WHERE k = ?",
			params: []param{paramKey},
		},
		{name: "unknown parameter", in: "SELECT a FROM t WHERE k = :key AND u = :user", err: "unknown parameter :user"},
		{name: "no key", in: "SELECT a FROM t WHERE e > :now", err: "must use :key"},
		{name: "keys is not key", in: "SELECT a FROM t WHERE k = :keys", err: "unknown parameter :keys"},
		{name: "open comment", in: "SELECT a FROM t WHERE k = :key /* oops", err: "unterminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, params, err := compileQuery(tc.in, QuestionMark, true, false)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v; want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || len(params) != len(tc.params) {
				t.Fatalf("got %q %v %v; want %q %v", got, params, err, tc.want, tc.params)
			}
			for i := range params {
				if params[i] != tc.params[i] {
					t.Errorf("param %d: got %v; want %v", i, params[i], tc.params[i])
				}
			}
		})
	}
	dollar := func(i int) string { return "$" + string(rune('0'+i)) }
	if got, _, _ := compileQuery("SELECT 1 FROM s WHERE k = :key AND e > :now", dollar, false, false); got != "SELECT 1 FROM s WHERE k = $1 AND e > $2" {
		t.Errorf("PostgreSQL placeholders: got %q", got)
	}
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		name string
		row  Row
		want Verdict
	}{
		{RuleExists, "exists: any row", Row{}, Identified},
		{RuleExists, "exists: null column", Row{Null: true}, Identified},
		{RuleNonEmpty, "nonempty: user id", Row{Value: []byte("42")}, Identified},
		{RuleNonEmpty, "nonempty: uuid", Row{Value: []byte("0b6c7d2e-...")}, Identified},
		{RuleNonEmpty, "nonempty: NULL", Row{Null: true}, Anonymous},
		{RuleNonEmpty, "nonempty: empty", Row{Value: []byte("")}, Anonymous},
		{RuleNonEmpty, "nonempty: zero", Row{Value: []byte("0")}, Anonymous},
		{RuleNonEmpty, "nonempty: blank", Row{Value: []byte("  ")}, Anonymous},
	} {
		if got, err := tc.rule(tc.row); err != nil || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := NewRule("length", nil); err == nil {
		t.Error("an unknown rule was accepted")
	}
}
