package router

import (
	"sync/atomic"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// An outcome is how a request was served, for counters and latency
// histograms.
type outcome uint8

const (
	outcomeHit        outcome = iota // fresh from the cache
	outcomeStale                     // stale from the cache, refreshed in the background
	outcomeMiss                      // from the backend, the cache filled (or not) on the way
	outcomeCollapsed                 // a miss served another request's fill
	outcomeBypass                    // forwarded without the cache
	outcomeIdentified                // forwarded: an identified visitor
	outcomeDoubt                     // forwarded: the session could not be checked
	outcomePurge                     // a PURGE request
	outcomeError                     // no backend answered (502, 503, 504)
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"hit", "stale", "miss", "collapsed", "bypass", "identified", "doubt", "purge", "error"}

// Outcomes names the outcomes in the order of Stats.Outcomes and
// Durations.Request.
func Outcomes() []string { return outcomeNames[:] }

// An Observer records how long something took; VictoriaMetrics'
// histograms are Observers.
type Observer interface{ UpdateDuration(start time.Time) }

// Durations are the latency histograms a Router feeds; nil ones are
// skipped.
type Durations struct {
	Request [NumOutcomes]Observer // requests, by outcome (see Outcomes)
	Backend Observer              // backend requests, to the response head
}

// Stats counts what a Router did. Fields are safe to read at any time.
type Stats struct {
	Requests          atomic.Uint64                                 // requests handled
	Outcomes          [NumOutcomes]atomic.Uint64                    // requests by outcome (see Outcomes)
	InFlight          atomic.Int64                                  // requests being handled
	Hits              atomic.Uint64                                 // served fresh from the cache
	StaleHits         atomic.Uint64                                 // served stale while refreshed
	Collapsed         atomic.Uint64                                 // misses served another request's fill
	Stored            atomic.Uint64                                 // fills stored
	NotStored         [pagecache.NumReasons]atomic.Uint64           // fills not stored, by reason
	Bypass            [numBypass]atomic.Uint64                      // forwarded without the cache, by reason
	Identified        atomic.Uint64                                 // forwarded: identified visitors
	Doubts            atomic.Uint64                                 // forwarded: session doubts
	DoubtReasons      [len(sessioncheck.DoubtReasons)]atomic.Uint64 // forwarded doubts, by reason (see sessioncheck.DoubtReasons)
	Credentials       [numCredentialPaths]atomic.Uint64             // requests with credentials under a credentials rule, by path (see CredentialPaths)
	CredentialDoubts  [len(sessioncheck.DoubtReasons)]atomic.Uint64 // credentials that could not be checked, by reason
	BackgroundFills   atomic.Uint64                                 // fills for visitors with cookies
	Revalidated       atomic.Uint64                                 // fills the backend answered 304: the stored page refreshed
	StaleIfError      atomic.Uint64                                 // served stale because the backend failed (stale-if-error)
	FillsSkipped      atomic.Uint64                                 // background fills not started: too many running
	FillsBackedOff    atomic.Uint64                                 // background fills not started: the page\'s last one failed, or every backend is down
	CollapseTimeouts  atomic.Uint64                                 // misses that stopped waiting for another's fill
	Damaged           atomic.Uint64                                 // stored values that could not be read
	StoreErrors       atomic.Uint64                                 // store operations that failed
	StoreSkipped      atomic.Uint64                                 // store operations skipped: its breaker was open
	OutageFills       atomic.Uint64                                 // fills made while the store failed, kept in process for their waiters and the next lookups
	OutageHits        atomic.Uint64                                 // hits served from those copies while the store failed
	StoreBreakerOpens atomic.Uint64                                 // times the page store's breaker opened
	BackendResponses  [6]atomic.Uint64                              // by status class: [1] 1xx ... [5] 5xx
	BackendErrors     atomic.Uint64                                 // requests no backend answered
	BytesFromCache    atomic.Uint64                                 // body bytes served from the cache
	BytesFromBackend  atomic.Uint64                                 // body bytes relayed from backends (known lengths)
	Purges            [numPurgeKinds]atomic.Uint64                  // purges carried out, by kind (url, key, all, soft)
	PurgesRefused     atomic.Uint64                                 // purges refused: address or token
	// UnsafeInvalidations counts the URLs invalidated by successful POST,
	// PUT, PATCH and DELETE requests (CacheOptions.UnsafeInvalidation).
	UnsafeInvalidations atomic.Uint64
}

// Purge kinds, for Stats.Purges; a soft purge counts under its kind too.
const (
	purgeURL = iota
	purgeKey
	purgeAll
	purgeSoft
	numPurgeKinds
)

// PurgeKinds names the purge kinds in the order of Stats.Purges.
func PurgeKinds() []string { return []string{"url", "key", "all", "soft"} }
