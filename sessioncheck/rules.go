package sessioncheck

import (
	"bytes"
	"fmt"
)

// A Row is the first column of the row a session query found.
type Row struct {
	Value []byte
	Null  bool
}

// A Rule says what a session row means: identified or anonymous, or an
// error (a doubt) when the row cannot be read. The absence of a row is
// decided before any rule runs: anonymous.
type Rule func(Row) (Verdict, error)

// NewRule returns the rule named by the config: "django", "exists" or
// "nonempty". signer may be nil; only "django" uses it.
func NewRule(name string, signer *DjangoSigner) (Rule, error) {
	switch name {
	case "django":
		return func(r Row) (Verdict, error) {
			ok, err := ParseDjangoSession(r.Value, signer)
			if err != nil || !ok {
				return Anonymous, err
			}
			return Identified, nil
		}, nil
	case "exists":
		return RuleExists, nil
	case "nonempty":
		return RuleNonEmpty, nil
	}
	return nil, fmt.Errorf("sessioncheck: unknown rule %q (use \"django\", \"exists\" or \"nonempty\")", name)
}

// RuleExists: a row means a logged-in visitor, as in tables that hold only
// logged-in sessions (the Rails 8 authentication generator's sessions).
func RuleExists(Row) (Verdict, error) { return Identified, nil }

// RuleNonEmpty: the first column not NULL, not empty and not 0 means a
// logged-in visitor, as Laravel's sessions.user_id.
func RuleNonEmpty(r Row) (Verdict, error) {
	v := bytes.TrimSpace(r.Value)
	if r.Null || len(v) == 0 || bytes.Equal(v, []byte("0")) {
		return Anonymous, nil
	}
	return Identified, nil
}
