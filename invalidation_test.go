package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/userrouter/userrouter/conf"
	"github.com/userrouter/userrouter/router"
)

// TestBuildCacheUnsafeInvalidation: cache.unsafe_invalidation reaches the
// router as the mode it names.
func TestBuildCacheUnsafeInvalidation(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want router.Invalidation
	}{{"hard", router.InvalidateHard}, {"soft", router.InvalidateSoft}, {"off", router.InvalidateOff}} {
		c := conf.Default().Cache
		c.Store, c.UnsafeInvalidation = "memory", tc.in
		o, err := buildCache(c, time.Second, router.NewMetrics("test"), false, nil, slog.Default())
		if err != nil {
			t.Fatal(err)
		}
		if o.UnsafeInvalidation != tc.want {
			t.Errorf("%q: got %v; want %v", tc.in, o.UnsafeInvalidation, tc.want)
		}
	}
}
