package router

import (
	"strings"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// Cache-Status (RFC 9211) values, built once: every outcome names itself,
// and serving one costs no allocation.
const (
	headerCacheStatus = "Cache-Status"
	statusHit         = "userrouter; hit"
	// A hit from the in-process tier (cache.l1_size), which may be
	// cache.l1_ttl behind a purge made through another instance.
	statusHitL1 = "userrouter; hit; detail=l1"
	// A hit while the page store fails: the page a fill made during the
	// outage, kept in process (cache.outage_l1_size, or the L1).
	statusHitStoreDown = "userrouter; hit; detail=store-down"
	statusStale        = "userrouter; hit; detail=stale"
	// A stale page served because the backend failed (RFC 5861).
	statusStaleIfError = "userrouter; hit; detail=stale-if-error"
	// A stale page revalidated by the backend (304) and served refreshed.
	statusRevalidated = "userrouter; fwd=stale; fwd-status=304; stored"
	// The same, when the refreshed page could not be stored.
	statusRevalidatedNotStored = "userrouter; fwd=stale; fwd-status=304"
	// A stale page the backend replaced with a new one, stored.
	statusStaleStored = "userrouter; fwd=stale; fwd-status=200; stored"
	statusCollapsed   = "userrouter; fwd=miss; collapsed"
	// A miss served the answer of another request's fill made while the
	// page store failed.
	statusCollapsedStoreDown = "userrouter; fwd=miss; collapsed; detail=store-down"
	statusMissStored         = "userrouter; fwd=miss; stored"
	statusMissBackground     = "userrouter; fwd=miss; detail=background-fill"
	statusMissRaw            = "userrouter; fwd=miss; detail=raw-no-fill"
	// A miss whose lookup found the page store failing: forwarded, no fill.
	statusStoreError = "userrouter; fwd=miss; detail=store-error"
	// A miss while the page store's circuit breaker is open: the store
	// was not asked.
	statusStoreDown = "userrouter; fwd=miss; detail=store-down"
	// A miss that waited cache.collapse_timeout for another request's fill
	// and then went to the backend itself.
	statusCollapseTimeout = "userrouter; fwd=miss; detail=collapse-timeout"
	statusIdentified      = "userrouter; fwd=bypass; detail=identified"
)

// withTTL reports whether a Cache-Status gets RFC 9211's ttl parameter:
// those of a stale page, served on an error or revalidated. Hits and
// misses keep their fixed values, which log parsers and bench read.
func withTTL(s string) bool {
	return s == statusStaleIfError || strings.HasPrefix(s, "userrouter; fwd=stale")
}

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
	bypassKeyCookie                         // a cookie the key includes has a value it refuses
	numBypass
)

var bypassNames = [numBypass]string{"method", "upgrade", "host", "path", "query", "cookie", "authorization", "range", "rule", "uncacheable", "body", "gunzip", "key-cookie"}

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
