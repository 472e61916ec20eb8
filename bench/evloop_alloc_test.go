//go:build linux && !race

package main

import "testing"

// TestEventLoopAllocs guards the event loop's request path: a run of many
// requests allocates no more than a run of a few (the loop's and the
// connection's setup).
func TestEventLoopAllocs(t *testing.T) {
	w := loopWorker(t, cannedServer(t, page13k))
	runLoop(t, w, 10) // the Cache-Status value is interned
	few := testing.AllocsPerRun(5, func() { runLoop(t, w, 10) })
	many := testing.AllocsPerRun(5, func() { runLoop(t, w, 2010) })
	if many > few {
		t.Errorf("a run of 2010 requests allocates %v times, one of 10 %v times; want no allocation per request", many, few)
	}
	if w.rec.errs != [numErrKinds]uint64{} {
		t.Errorf("errors: %v (%v)", w.rec.errs, w.rec.errSample)
	}
}
