//go:build !race

package sessioncheck

import (
	"context"
	"testing"
)

// TestCheckCachedAllocs guards the hot path: a visitor with no cookie, or
// with a session whose verdict is cached, costs no allocation.
func TestCheckCachedAllocs(t *testing.T) {
	kf, s := cachedSessions(t)
	ctx := context.Background()
	for _, h := range benchHeaders {
		header := []byte(h.header)
		allocs := testing.AllocsPerRun(1000, func() {
			if key, res := kf.Find(header); res == KeyFound {
				s.Check(ctx, key)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per request; want 0", h.name, allocs)
		}
	}
}
