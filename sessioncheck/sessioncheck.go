// Package sessioncheck tells anonymous visitors from identified ones by
// reading the session the application itself wrote.
//
// A KeyFinder takes the session key out of the Cookie header. A Checker
// turns a key into a Verdict: Sessions asks the application's session store
// (a parameterized query the operator writes, with :key and :now bound, never
// spliced) and applies a Rule to the row: Django's (decode session_data, look
// for _auth_user_id), "exists" or "nonempty". The store may also be a
// cache the application keeps sessions in: RedisStore and MemcacheStore
// read one key made from a KeyTemplate, and NewCacheRule's rules read
// the value (a pickled Django session through a restricted pickle reader,
// Rails' JSON, Laravel's PHP serialize). Verdicts are cached per key;
// concurrent lookups of one key share one query; a cap on concurrent queries
// and a circuit breaker protect the database. SignedCookies is the Checker
// for Django's signed_cookies engine, whose session is the cookie itself:
// no store, the same verdict cache.
//
// When in doubt — the store failed or timed out, a row cannot be decoded, a
// signature is wrong — Check returns an error and the visitor must be
// forwarded to the backend, never treated as anonymous. Reason names the
// doubt for Cache-Status and the counters.
package sessioncheck

import (
	"context"
	"errors"
)

// A Verdict says who a session key belongs to.
type Verdict uint8

const (
	// Anonymous: no session, an unknown or expired key, or a session
	// without a login. May be served from the cache.
	Anonymous Verdict = iota
	// Identified: a logged-in visitor. Always forwarded to the backend.
	Identified
)

func (v Verdict) String() string {
	if v == Identified {
		return "identified"
	}
	return "anonymous"
}

// A Checker tells whether a session key belongs to an identified visitor.
// An error means doubt: forward the visitor to the backend. Implementations
// must be safe for concurrent use, bound the time a call takes, and must not
// retain key, which may alias a buffer the caller reuses.
type Checker interface {
	Check(ctx context.Context, key []byte) (Verdict, error)
}

// A Pinger is a Checker or a Store that can tell whether its database
// answers, for readiness checks.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Doubts: why a Checker could not tell. Each is forwarded, never guessed.
var (
	ErrNoStore      = errors.New("sessioncheck: no session store configured")
	ErrTimeout      = errors.New("sessioncheck: session lookup timed out")
	ErrBusy         = errors.New("sessioncheck: every session store connection is busy")
	ErrBreakerOpen  = errors.New("sessioncheck: session store failing; not asked for a while")
	ErrStore        = errors.New("sessioncheck: session store error")
	ErrUndecodable  = errors.New("sessioncheck: session data cannot be decoded")
	ErrBadSignature = errors.New("sessioncheck: session data signature does not match")
	// ErrAmbiguousCookie is KeyFinder's Ambiguous as a doubt: the Cookie
	// header could be read otherwise by the application.
	ErrAmbiguousCookie = errors.New("sessioncheck: the session cookie may be read otherwise by the application")
)

// Reason names a doubt in a word, for Cache-Status details, logs and
// counters: "no-store", "timeout", "busy", "breaker-open", "store-error",
// "undecodable", "bad-signature", "ambiguous-cookie".
func Reason(err error) string { return DoubtReasons[ReasonIndex(err)] }

var doubts = [...]error{ErrNoStore, ErrTimeout, ErrBusy, ErrBreakerOpen, ErrStore, ErrUndecodable, ErrBadSignature, ErrAmbiguousCookie}

// DoubtReasons lists every word Reason returns, in the order of Stats.Doubts.
var DoubtReasons = [len(doubts)]string{"no-store", "timeout", "busy", "breaker-open", "store-error", "undecodable", "bad-signature", "ambiguous-cookie"}

// ReasonIndex is Reason's position in DoubtReasons, for counter arrays;
// an error that is none of the doubts is a store error.
func ReasonIndex(err error) int {
	for i, e := range doubts {
		if errors.Is(err, e) {
			return i
		}
	}
	return 4 // store-error
}

// NoStore is the Checker used when no session store is configured: every
// visitor with a session key is in doubt, so forwarded.
type NoStore struct{}

// Check always returns ErrNoStore.
func (NoStore) Check(context.Context, []byte) (Verdict, error) { return Anonymous, ErrNoStore }

var _ Checker = NoStore{}
