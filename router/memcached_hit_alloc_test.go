//go:build !race

package router

import "testing"

// TestMemcachedHitAllocs guards the memcached hit path: with the page read
// into a lent buffer, a hit of a page that fits one (20 KB) allocates
// nothing (it allocated the page's size before the buffer was lent).
func TestMemcachedHitAllocs(t *testing.T) {
	r, ctx := memcachedHitRouter(t, 20<<10)
	n := testing.AllocsPerRun(200, func() { serveMemcachedHit(t, r, ctx) })
	if n != 0 {
		t.Errorf("%v allocations per memcached hit; want 0", n)
	}
}
