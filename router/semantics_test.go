package router

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
)

// semanticsSite answers what the RFC 9111 tests need, counting requests
// per path.
func semanticsSite(t *testing.T) (*httptest.Server, func(string) int) {
	counts := map[string]int{}
	var mu = make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu <- struct{}{}
		counts[r.URL.Path]++
		<-mu
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		switch r.URL.Path {
		case "/invented":
			h["X-App-Thing"] = []string{"  spaced ,\tvalue; q=1"}
			h["X-Multi"] = []string{"one", "two", "three"}
			h.Set("Access-Control-Allow-Origin", "https://app.example")
			h.Set("X-Robots-Tag", "noindex")
			h.Set("Content-Disposition", `inline; filename="a b.txt"`)
			h.Set("Connection", "X-Hop")
			h.Set("X-Hop", "per connection")
			h.Set("Date", "Fri, 04 Dec 2026 10:00:00 GMT")
		case "/undated":
			h["Date"] = nil // net/http adds one otherwise
		case "/aged":
			h.Set("Cache-Control", "max-age=3600")
			h.Set("Age", "3600")
		case "/sc-no-store":
			h.Set("Cache-Control", "public, max-age=600")
			h.Set("Surrogate-Control", "no-store")
		case "/sc-short":
			h.Set("Cache-Control", "max-age=600")
			h.Set("Surrogate-Control", "max-age=1")
		case "/no-cache-fields":
			h.Set("Cache-Control", `max-age=60, no-cache="X-Secret, X-Other"`)
			h.Set("X-Secret", "for this one answer")
			h.Set("X-Other", "also")
			h.Set("X-Kept", "shared")
		case "/no-cache-plain":
			h.Set("Cache-Control", "no-cache")
		case "/no-transform":
			h.Set("Cache-Control", "max-age=60, no-transform")
			h.Set("Vary", "Accept-Encoding")
			if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				h.Set("Content-Encoding", "gzip")
				zw := gzip.NewWriter(w)
				io.WriteString(zw, "body of "+r.URL.Path)
				zw.Close()
				return
			}
		case "/age100":
			h.Set("Cache-Control", "max-age=3600")
			h.Set("Age", "100")
		}
		io.WriteString(w, "body of "+r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv, func(p string) int { mu <- struct{}{}; defer func() { <-mu }(); return counts[p] }
}

func semanticsRouter(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	store, err := pagecache.NewMemory(pagecache.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{Template: "{host}{uri}"})
	if err != nil {
		t.Fatal(err)
	}
	return startRouter(t, Options{Cache: &CacheOptions{
		Store: store, Keys: keys, MaxBodySize: 1 << 20,
		Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}}),
	}}, testBackendOptions(backendAddr(srv)))
}

// TestHitKeepsWhatThePageSaid: a hit carries every end-to-end header the
// backend sent, byte for byte and repeated ones in order (RFC 9111 section
// 3.1), and its Date; hop-by-hop headers, and those Connection names, are
// not stored.
func TestHitKeepsWhatThePageSaid(t *testing.T) {
	srv, _ := semanticsSite(t)
	base := semanticsRouter(t, srv)
	miss := fetch(t, "GET", base+"/invented")
	hit := fetch(t, "GET", base+"/invented")
	if hit.cacheStatus != statusHit {
		t.Fatalf("second request: %q; want a hit", hit.cacheStatus)
	}
	for _, name := range []string{"X-App-Thing", "X-Multi", "Access-Control-Allow-Origin", "X-Robots-Tag", "Content-Disposition", "Content-Type", "Date"} {
		if got, want := hit.header.Values(name), miss.header.Values(name); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("%s: the hit has %q; the miss (the backend's answer) had %q", name, got, want)
		}
	}
	if got := hit.header.Get("Date"); got != "Fri, 04 Dec 2026 10:00:00 GMT" {
		t.Errorf("Date: the hit has %q; want the stored one, the backend's", got)
	}
	if v := hit.header.Values("X-Hop"); len(v) > 0 {
		t.Errorf("X-Hop, named by Connection: the hit has %q; want none", v)
	}
}

// TestHitWithoutBackendDate: a page the backend sent without Date is
// stored with the time it came (RFC 9110 section 6.6.1), so a hit has one.
func TestHitWithoutBackendDate(t *testing.T) {
	srv, _ := semanticsSite(t)
	base := semanticsRouter(t, srv)
	before := time.Now().Add(-time.Second)
	fetch(t, "GET", base+"/undated")
	hit := fetch(t, "GET", base+"/undated")
	d, err := http.ParseTime(hit.header.Get("Date"))
	if hit.cacheStatus != statusHit || err != nil || d.Before(before.Truncate(time.Second)) || d.After(time.Now()) {
		t.Errorf("hit %q with Date %q (%v); want a hit dated when it was stored", hit.cacheStatus, hit.header.Get("Date"), err)
	}
}

// TestAgeCountsFromUpstream: a response that arrives as old as its
// freshness lifetime is never a hit, and a younger one is served with an
// Age counting what upstream caches held it (RFC 9111 sections 4.2.3, 5.1).
func TestAgeCountsFromUpstream(t *testing.T) {
	srv, requests := semanticsSite(t)
	base := semanticsRouter(t, srv)
	for i := range 3 {
		if a := fetch(t, "GET", base+"/aged"); a.cacheStatus == statusHit || a.cacheStatus == statusStale {
			t.Errorf("request %d of a page with Age: 3600, max-age=3600: %q; want never a hit", i, a.cacheStatus)
		}
	}
	if n := requests("/aged"); n != 3 {
		t.Errorf("the backend got %d requests for /aged; want 3", n)
	}
	fetch(t, "GET", base+"/age100")
	hit := fetch(t, "GET", base+"/age100")
	age, err := strconv.Atoi(hit.header.Get("Age"))
	if hit.cacheStatus != statusHit || err != nil || age < 100 || age > 102 {
		t.Errorf("page with Age: 100: %q, Age %q; want a hit with Age 100 (or a second or two more)", hit.cacheStatus, hit.header.Get("Age"))
	}
	if v := hit.header.Values("Age"); len(v) != 1 {
		t.Errorf("Age headers on the hit: %q; want one, userrouter's", v)
	}
}

// TestSurrogateControl: Surrogate-Control: no-store is never stored,
// whatever Cache-Control says; its max-age wins over Cache-Control's; and
// clients never see it, on a miss or a hit.
func TestSurrogateControl(t *testing.T) {
	srv, requests := semanticsSite(t)
	base := semanticsRouter(t, srv)
	for i := range 3 {
		a := fetch(t, "GET", base+"/sc-no-store")
		if a.cacheStatus == statusHit || a.header.Get("Surrogate-Control") != "" {
			t.Errorf("request %d: %q, Surrogate-Control %q; want never a hit, and the header not shown", i, a.cacheStatus, a.header.Get("Surrogate-Control"))
		}
	}
	if n := requests("/sc-no-store"); n != 3 {
		t.Errorf("the backend got %d requests for /sc-no-store; want 3", n)
	}
	fetch(t, "GET", base+"/sc-short")
	hit := fetch(t, "GET", base+"/sc-short")
	if hit.cacheStatus != statusHit || hit.header.Get("Surrogate-Control") != "" || hit.header.Get("Cache-Control") != "max-age=600" {
		t.Errorf("hit: %q, Surrogate-Control %q, Cache-Control %q; want a hit, no Surrogate-Control, the page's Cache-Control", hit.cacheStatus, hit.header.Get("Surrogate-Control"), hit.header.Get("Cache-Control"))
	}
	time.Sleep(1100 * time.Millisecond) // past Surrogate-Control's max-age=1, within Cache-Control's 600
	if a := fetch(t, "GET", base+"/sc-short"); a.cacheStatus == statusHit {
		t.Errorf("after 1.1 s: %q; want no fresh hit (Surrogate-Control: max-age=1 wins)", a.cacheStatus)
	}
}

// TestNoCacheFieldList: a no-cache naming fields lets the response be
// stored and served without revalidation, but without those fields (RFC
// 9111 section 5.2.2.4); a plain no-cache without a validator is not
// stored at all.
func TestNoCacheFieldList(t *testing.T) {
	srv, requests := semanticsSite(t)
	base := semanticsRouter(t, srv)
	miss := fetch(t, "GET", base+"/no-cache-fields")
	hit := fetch(t, "GET", base+"/no-cache-fields")
	if miss.header.Get("X-Secret") == "" || hit.cacheStatus != statusHit {
		t.Fatalf("miss X-Secret %q, then %q; want the backend's header, then a hit", miss.header.Get("X-Secret"), hit.cacheStatus)
	}
	if hit.header.Get("X-Secret") != "" || hit.header.Get("X-Other") != "" || hit.header.Get("X-Kept") != "shared" {
		t.Errorf("hit: X-Secret %q X-Other %q X-Kept %q; want the listed fields gone, the rest kept", hit.header.Get("X-Secret"), hit.header.Get("X-Other"), hit.header.Get("X-Kept"))
	}
	for range 2 {
		if a := fetch(t, "GET", base+"/no-cache-plain"); a.cacheStatus == statusHit || a.cacheStatus == statusStale {
			t.Errorf("no-cache without a validator: %q; want never a hit", a.cacheStatus)
		}
	}
	if n := requests("/no-cache-plain"); n != 2 {
		t.Errorf("no-cache without a validator: %d backend requests; want 2", n)
	}
}

// TestNoTransform: a gzipped page the backend marked no-transform is never
// decompressed for a client that does not take gzip (RFC 9110 section
// 7.7): that client's request is forwarded; gzip clients get hits.
func TestNoTransform(t *testing.T) {
	srv, requests := semanticsSite(t)
	base := semanticsRouter(t, srv)
	fetch(t, "GET", base+"/no-transform", "Accept-Encoding", "gzip")
	if a := fetch(t, "GET", base+"/no-transform", "Accept-Encoding", "gzip"); a.cacheStatus != statusHit || a.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip client: %q %q; want a gzipped hit", a.cacheStatus, a.header.Get("Content-Encoding"))
	}
	a := fetch(t, "GET", base+"/no-transform", "Accept-Encoding", "identity")
	if a.cacheStatus != statusBypass[bypassGunzip] || a.header.Get("Content-Encoding") != "" || a.body != "body of /no-transform" || requests("/no-transform") != 2 {
		t.Errorf("identity client: %q %q %q after %d backend requests; want its own request forwarded", a.cacheStatus, a.header.Get("Content-Encoding"), a.body, requests("/no-transform"))
	}
}
