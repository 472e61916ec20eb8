//go:build !race

package router

import (
	"bufio"
	"io"
	"testing"
)

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

// TestHitSizeAllocs: a hit allocates nothing at any page size, its
// response written as the server writes it.
func TestHitSizeAllocs(t *testing.T) {
	for _, s := range hitSizes {
		r, ctx, _ := hitRouterSize(t, "", s.size)
		w := bufio.NewWriterSize(io.Discard, 4096)
		if n := testing.AllocsPerRun(200, func() {
			serveHit(t, r, ctx)
			ctx.Response.Write(w)
			w.Flush()
		}); n != 0 {
			t.Errorf("%s: %v allocations per hit; want 0", s.name, n)
		}
	}
}
