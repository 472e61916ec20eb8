//go:build !race

package router

import "testing"

// maxForwardAllocs is what a forward of a small answer allocates: the
// relay's body wrapper (relayBody); the second is slack for the in-process
// backend and the runtime. (The function that returns the backend
// connection to its pool is made once per connection: deadlineConn.done.)
const maxForwardAllocs = 2

// TestForwardAllocs guards the forward path's allocations (the in-process
// backend's included).
func TestForwardAllocs(t *testing.T) {
	const size = 20 << 10
	r, ctx := forwardRouter(t, size)
	w := newCountWriter()
	if n := testing.AllocsPerRun(500, func() { forwardOnce(t, r, ctx, w, size) }); n > maxForwardAllocs {
		t.Errorf("%v allocations per forward; want at most %d", n, maxForwardAllocs)
	}
}
