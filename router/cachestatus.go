package router

import (
	"sync/atomic"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// Cache-Status (RFC 9211) values, built once: every outcome names itself,
// and serving one costs no allocation.
const (
	headerCacheStatus    = "Cache-Status"
	statusHit            = "userrouter; hit"
	statusStale          = "userrouter; hit; detail=stale"
	statusCollapsed      = "userrouter; fwd=miss; collapsed"
	statusMissStored     = "userrouter; fwd=miss; stored"
	statusMissBackground = "userrouter; fwd=miss; detail=background-fill"
	statusMissRaw        = "userrouter; fwd=miss; detail=raw-no-fill"
	// A miss whose lookup found the page store failing: forwarded, no fill.
	statusStoreError = "userrouter; fwd=miss; detail=store-error"
	// A miss that waited cache.collapse_timeout for another request's fill
	// and then went to the backend itself.
	statusCollapseTimeout = "userrouter; fwd=miss; detail=collapse-timeout"
	statusIdentified      = "userrouter; fwd=bypass; detail=identified"
)

// statusNotStored is the Cache-Status of a miss whose answer was not
// stored, by reason: "userrouter; fwd=miss; detail=set-cookie".
var statusNotStored = func() (s [pagecache.NumReasons]string) {
	for r := range pagecache.NumReasons {
		s[r] = "userrouter; fwd=miss; detail=" + r.String()
	}
	return s
}()

// A bypassReason says why the cache does not handle a request.
type bypassReason uint8

const (
	bypassMethod        bypassReason = iota // not GET or HEAD
	bypassUpgrade                           // an Upgrade request
	bypassHost                              // a Host not in cache.hosts, or malformed
	bypassPath                              // a bypass path prefix or regexp
	bypassQuery                             // a bypass query parameter, or too many parameters
	bypassCookie                            // a bypass cookie is present
	bypassAuthorization                     // the request carries credentials
	bypassRange                             // a Range request
	bypassRule                              // a cache rule with cache = false
	bypassUncacheable                       // the URL's last answer could not be stored
	bypassBody                              // a GET or HEAD carrying a body
	bypassGunzip                            // a gzipped page too large to decompress for this client
	numBypass
)

var bypassNames = [numBypass]string{"method", "upgrade", "host", "path", "query", "cookie", "authorization", "range", "rule", "uncacheable", "body", "gunzip"}

// BypassReasons lists the bypass reasons in the order of Stats.Bypass.
func BypassReasons() []string { return bypassNames[:] }

var statusBypass = func() (s [numBypass]string) {
	for i, n := range bypassNames {
		s[i] = "userrouter; fwd=bypass; detail=" + n
	}
	return s
}()

// doubtStatus and doubtVerdict name each doubt, by
// sessioncheck.ReasonIndex, in its Cache-Status
// ("userrouter; fwd=bypass; detail=doubt-timeout") and in access log
// lines ("doubt-timeout").
var doubtStatus, doubtVerdict = func() (status, verdict [len(sessioncheck.DoubtReasons)]string) {
	for i, r := range sessioncheck.DoubtReasons {
		status[i] = "userrouter; fwd=bypass; detail=doubt-" + r
		verdict[i] = "doubt-" + r
	}
	return status, verdict
}()

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
	Requests         atomic.Uint64                                 // requests handled
	Outcomes         [NumOutcomes]atomic.Uint64                    // requests by outcome (see Outcomes)
	InFlight         atomic.Int64                                  // requests being handled
	Hits             atomic.Uint64                                 // served fresh from the cache
	StaleHits        atomic.Uint64                                 // served stale while refreshed
	Collapsed        atomic.Uint64                                 // misses served another request's fill
	Stored           atomic.Uint64                                 // fills stored
	NotStored        [pagecache.NumReasons]atomic.Uint64           // fills not stored, by reason
	Bypass           [numBypass]atomic.Uint64                      // forwarded without the cache, by reason
	Identified       atomic.Uint64                                 // forwarded: identified visitors
	Doubts           atomic.Uint64                                 // forwarded: session doubts
	DoubtReasons     [len(sessioncheck.DoubtReasons)]atomic.Uint64 // forwarded doubts, by reason (see sessioncheck.DoubtReasons)
	BackgroundFills  atomic.Uint64                                 // fills for visitors with cookies
	FillsSkipped     atomic.Uint64                                 // background fills not started: too many running
	CollapseTimeouts atomic.Uint64                                 // misses that stopped waiting for another's fill
	Damaged          atomic.Uint64                                 // stored values that could not be read
	StoreErrors      atomic.Uint64                                 // store operations that failed
	BackendResponses [6]atomic.Uint64                              // by status class: [1] 1xx ... [5] 5xx
	BackendErrors    atomic.Uint64                                 // requests no backend answered
	BytesFromCache   atomic.Uint64                                 // body bytes served from the cache
	BytesFromBackend atomic.Uint64                                 // body bytes relayed from backends (known lengths)
	Purges           [numPurgeKinds]atomic.Uint64                  // purges carried out, by kind (url, key, all, soft)
	PurgesRefused    atomic.Uint64                                 // purges refused: address or token
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
