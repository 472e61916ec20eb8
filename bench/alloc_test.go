//go:build !race

package main

import (
	"fmt"
	"testing"
	"time"
)

// TestRecordResponseAllocs guards the hot path: once a worker has seen a
// Cache-Status value, recording a response allocates nothing.
func TestRecordResponseAllocs(t *testing.T) {
	start := time.Now()
	r := newRecorder(start, 0, 0)
	done := start.Add(time.Second)
	for _, v := range benchValues { // first sight of each value allocates
		r.recordResponse(time.Millisecond, done, 200, v)
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		r.recordResponse(time.Duration(i%5000)*time.Microsecond, done, 200, benchValues[i%len(benchValues)])
		i++
	})
	if allocs != 0 {
		t.Errorf("recordResponse allocates %v times per call; want 0", allocs)
	}
}

// TestOverflowValueAllocs: a value past maxKinds, once seen, is
// remembered, not parsed again on each answer.
func TestOverflowValueAllocs(t *testing.T) {
	start := time.Now()
	r := newRecorder(start, 0, 0)
	done := start.Add(time.Second)
	for i := range maxKinds {
		r.recordResponse(time.Millisecond, done, 200, []byte(fmt.Sprintf("c; hit; ttl=%d", i)))
	}
	values := [][]byte{[]byte("c; hit; ttl=1000"), []byte("c; fwd=miss; ttl=1000")}
	for _, v := range values {
		r.recordResponse(time.Millisecond, done, 200, v)
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		r.recordResponse(time.Millisecond, done, 200, values[i%2])
		i++
	})
	if allocs != 0 {
		t.Errorf("recording a remembered value past maxKinds allocates %v times per call; want 0", allocs)
	}
}

// TestRequestLoopAllocs guards the closed loop: once a connection is up
// and the Cache-Status value seen, a request (send, read a 13 KB answer,
// record) allocates nothing.
func TestRequestLoopAllocs(t *testing.T) {
	w := loopWorker(t, cannedServer(t, page13k))
	now := time.Now()
	now = w.do(now, now, true)
	allocs := testing.AllocsPerRun(500, func() {
		now = w.do(now, now, true)
	})
	if allocs != 0 {
		t.Errorf("a request of the loop allocates %v times; want 0", allocs)
	}
	if w.rec.errs != [numErrKinds]uint64{} {
		t.Errorf("errors: %v (%v)", w.rec.errs, w.rec.errSample)
	}
}
