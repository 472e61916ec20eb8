package router

import "github.com/userrouter/userrouter/sessioncheck"

// Cache-Status (RFC 9211) values, built once: every outcome names itself,
// and serving one costs no allocation.
const (
	headerCacheStatus = "Cache-Status"
	statusIdentified  = "userrouter; fwd=bypass; detail=identified"
)

// statusDoubt maps each doubt reason (sessioncheck.Reason) to its
// Cache-Status: "userrouter; fwd=bypass; detail=doubt-timeout".
var statusDoubt = func() map[string]string {
	m := make(map[string]string, len(sessioncheck.DoubtReasons))
	for _, r := range sessioncheck.DoubtReasons {
		m[r] = "userrouter; fwd=bypass; detail=doubt-" + r
	}
	return m
}()

func doubtStatus(err error) string { return statusDoubt[sessioncheck.Reason(err)] }
