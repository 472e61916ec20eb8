package router

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
)

// TestInspect: what Router.Inspect says of a URL before a fill, after it,
// after a soft purge and a purge by key, and of URLs it cannot key.
func TestInspect(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Surrogate-Key", "t1 t2")
		w.Header().Set("X-Frame-Options", "DENY")
		fmt.Fprint(w, "page")
	}))
	t.Cleanup(backend.Close)
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{})
	store, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	b, err := NewBackends(testBackendOptions(backendAddr(backend)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{Backends: b, Keys: testKeys, Cache: &CacheOptions{Store: store, Keys: keys, Hosts: []string{"example.com"},
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Grace: time.Hour, Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})}})
	if err != nil {
		t.Fatal(err)
	}
	base := serveHandler(t, r.Handle)
	const u = "http://example.com/a"

	if ins, status := r.Inspect(u, time.Now()); status != 200 || ins.State != "absent" || !strings.HasPrefix(ins.Key, "page:example.com/a|n") || ins.Generations == nil {
		t.Errorf("before a fill: %d %+v", status, ins)
	}
	fetch(t, "GET", base+"/a", "Host", "example.com")
	ins, status := r.Inspect(u, time.Now())
	if status != 200 || ins.State != "fresh" || ins.Status != 200 || ins.BodySize != 4 || ins.Size <= ins.BodySize || *ins.TTLLeft <= 50 || *ins.GraceLeft <= 3600 || *ins.Age < 0 {
		t.Errorf("after a fill: %d %+v", status, ins)
	}
	if !slices.Contains(ins.Headers, [2]string{"X-Frame-Options", "DENY"}) {
		t.Errorf("headers %q; want X-Frame-Options", ins.Headers)
	}
	if len(ins.Tags) != 2 || ins.Tags[0].Tag != "t1" || ins.Tags[0].Current == nil || *ins.Tags[0].Current != ins.Tags[0].Recorded {
		t.Errorf("tags %+v", ins.Tags)
	}
	if g := ins.Generations; g == nil || g.URLCurrent == nil || g.URLRecorded == nil || *g.URLCurrent != *g.URLRecorded {
		t.Errorf("generations %+v", g)
	}
	if _, err := r.Purge(&PurgeRequest{URLs: []string{u}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	if ins, _ := r.Inspect(u, time.Now()); ins.State != "stale" {
		t.Errorf("after a soft purge: %q; want stale", ins.State)
	}
	if _, err := r.Purge(&PurgeRequest{Keys: []string{"t2"}}); err != nil {
		t.Fatal(err)
	}
	if ins, _ := r.Inspect(u, time.Now()); ins.State != "absent" {
		t.Errorf("after a purge by key: %q; want absent", ins.State)
	}
	for _, bad := range []string{"ftp://example.com/a", "http://exa mple.com/", "example.com/a"} {
		if ins, status := r.Inspect(bad, time.Now()); status != 400 || ins.Error == "" {
			t.Errorf("%.40q: %d %+v; want 400 with an error", bad, status, ins)
		}
	}
}
