package router

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
)

// TestBackendProbe: a backend failing its health probe leaves the
// rotation; with every backend sick a forwarded request gets 503 with
// Retry-After at once (not after read_timeout), an anonymous visitor of an
// expired page gets it stale (stale-if-error), /readyz says the backend is
// down; once the probes pass again, requests flow.
func TestBackendProbe(t *testing.T) {
	var healthy, hang atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if !healthy.Load() {
				http.Error(w, "sick", http.StatusInternalServerError)
			}
			return
		}
		if hang.Load() {
			time.Sleep(3 * time.Second) // a hung application
		}
		w.Header().Set("Cache-Control", "max-age=1")
		w.Write([]byte("page " + r.URL.Path))
	}))
	t.Cleanup(srv.Close)
	bo := testBackendOptions(backendAddr(srv))
	b, err := NewBackends(bo)
	if err != nil {
		t.Fatal(err)
	}
	var changes atomic.Int32
	b.StartProbes(ProbeOptions{Path: "/healthz", Interval: 30 * time.Millisecond, Timeout: 200 * time.Millisecond, Window: 3, Threshold: 2,
		OnChange: func(string, error) { changes.Add(1) }})
	t.Cleanup(func() { b.Close() })
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: "{host}{uri}"})
	o := Options{Backends: b, Cache: &CacheOptions{Store: mustMemory(t), Keys: keys, MaxBodySize: 1 << 20,
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{StaleIfError: time.Hour, Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})}}
	o.Keys = testKeys
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	base := serveHandler(t, r.Handle)
	first := fetch(t, "GET", base+"/page")
	time.Sleep(1100 * time.Millisecond) // the page expires

	healthy.Store(false)
	hang.Store(true)
	deadline := time.Now().Add(2 * time.Second)
	for !b.allSick() {
		if time.Now().After(deadline) {
			t.Fatal("the backend never turned sick")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	a := fetch(t, "POST", base+"/form")
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || time.Since(start) > time.Second {
		t.Errorf("forwarded while every backend is sick: %d Retry-After %q after %v; want 503 with Retry-After at once", a.status, a.header.Get("Retry-After"), time.Since(start))
	}
	if a := fetch(t, "GET", base+"/page"); !statusIs(a.cacheStatus, statusStaleIfError) || a.body != first.body {
		t.Errorf("anonymous, page expired, backends sick: %q %q; want the stale page", a.cacheStatus, a.body)
	}
	if rd := r.Ready(context.Background(), time.Second); rd.Status != "down" {
		t.Errorf("/readyz with every backend sick: %+v; want down", rd)
	}

	healthy.Store(true)
	hang.Store(false)
	deadline = time.Now().Add(2 * time.Second)
	for b.allSick() {
		if time.Now().After(deadline) {
			t.Fatal("the backend never turned healthy")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a := fetch(t, "GET", base+"/other"); a.status != 200 {
		t.Errorf("after recovery: %d %q", a.status, a.body)
	}
	if n := changes.Load(); n != 2 {
		t.Errorf("%d state changes reported; want 2 (sick, healthy)", n)
	}
}
