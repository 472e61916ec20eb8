//go:build !race

package router

import "testing"

// TestHitAllocs guards the hit path: with the memory store, serving a
// cached page allocates nothing in userrouter.
func TestHitAllocs(t *testing.T) {
	for _, cookie := range []string{"", "csrftoken=abc; _ga=GA1.2.3"} {
		r, ctx := hitRouter(t, cookie)
		if n := testing.AllocsPerRun(500, func() { serveHit(t, r, ctx) }); n != 0 {
			t.Errorf("cookie %q: %v allocations per hit; want 0", cookie, n)
		}
	}
}
