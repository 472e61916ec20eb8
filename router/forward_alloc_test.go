//go:build !race

package router

import "testing"

// maxForwardAllocs is what a forward of a small answer allocates: the
// four objects fasthttp's HostClient makes for every streamed response
// body (the stream and the closures that release its connection).
// userrouter's own part allocates nothing.
const maxForwardAllocs = 4

// TestForwardAllocs guards the forward path's allocations (the in-process
// backend's included).
func TestForwardAllocs(t *testing.T) {
	const size = 20 << 10
	r, ctx := forwardRouter(t, size)
	if n := testing.AllocsPerRun(500, func() { forwardOnce(t, r, ctx, size) }); n > maxForwardAllocs {
		t.Errorf("%v allocations per forward; want at most %d", n, maxForwardAllocs)
	}
}
