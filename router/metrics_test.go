package router

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
	"github.com/userrouter/userrouter/sessioncheck"
	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// scrape reads /metrics and parses it with Prometheus' own parser.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var parser expfmt.TextParser
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return families
}

// value returns the value of a counter or gauge sample with the given
// labels ("k=v" pairs), or of a histogram's count.
func value(t *testing.T, f map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf, ok := f[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range mf.Metric {
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with %v", name, labels)
	return 0
}

func TestMetrics(t *testing.T) {
	mc := pagecachetest.Start(t)
	dsn, _, fx := sessiontest.MySQLDjango(t)
	s := newSite(t)
	m := NewMetrics("test")

	sessions := mysqlSessions(t, dsn, func(o *sessioncheck.Options) { o.Stats, o.QueryDuration = &m.Sessions, m.SessionQuery })
	mstore, _ := pagecache.NewMemcache(pagecache.MemcacheOptions{Servers: []string{mc.Addr}, Timeout: 100 * time.Millisecond, Stats: &m.Memcache, OpDuration: m.MemcacheOp})
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{})
	b, _ := NewBackends(testBackendOptions(backendAddr(s.Server)))
	r, err := New(Options{Backends: b, Keys: testKeys, Sessions: sessions, Stats: &m.Router, Durations: &m.Durations,
		PurgeAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Cache: &CacheOptions{Store: mstore, Keys: keys, StripTagHeaders: true,
			Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Default: pagecache.Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})}})
	if err != nil {
		t.Fatal(err)
	}
	base := serveHandler(t, r.Handle)
	admin := serveHandler(t, (&Admin{Router: func() *Router { return r }, Metrics: m}).Handle)

	before := scrape(t, admin)
	get := func(path string, header ...string) answer { return fetch(t, "GET", base+path, header...) }
	get("/page")                // miss, stored
	get("/page")                // hit
	get("/set-cookie")          // miss, not stored: set-cookie
	fetch(t, "POST", base+"/p") // bypass: method
	get("/page", "Cookie", "sessionid="+fx.Row("identified").SessionKey)
	get("/page", "Cookie", "sessionid="+fx.Row("doubt").SessionKey)
	get("/page", "Cookie", "sessionid="+fx.Row("identified").SessionKey) // verdict cache hit
	fetch(t, "PURGE", base+"/page")
	after := scrape(t, admin)

	for _, tc := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"userrouter_requests_total", []string{"outcome=hit"}, 1},
		{"userrouter_requests_total", []string{"outcome=miss"}, 2},
		{"userrouter_requests_total", []string{"outcome=bypass"}, 1},
		{"userrouter_requests_total", []string{"outcome=identified"}, 2},
		{"userrouter_requests_total", []string{"outcome=doubt"}, 1},
		{"userrouter_requests_total", []string{"outcome=purge"}, 1},
		{"userrouter_request_duration_seconds", []string{"outcome=hit"}, 1},
		{"userrouter_request_duration_seconds", []string{"outcome=miss"}, 2},
		{"userrouter_cache_stored_total", nil, 1},
		{"userrouter_cache_not_stored_total", []string{"reason=set-cookie"}, 1},
		{"userrouter_bypass_total", []string{"reason=method"}, 1},
		{"userrouter_backend_responses_total", []string{"class=2xx"}, 6},
		{"userrouter_backend_duration_seconds", nil, 6},
		{"userrouter_session_lookups_total", nil, 3},
		{"userrouter_session_cache_hits_total", nil, 1},
		{"userrouter_session_queries_total", nil, 2},
		{"userrouter_session_query_duration_seconds", nil, 2},
		{"userrouter_session_verdicts_total", []string{"verdict=identified"}, 2},
		{"userrouter_session_doubts_total", []string{"reason=undecodable"}, 1},
		{"userrouter_purges_total", []string{"kind=url"}, 1},
		{"userrouter_unsafe_invalidations_total", nil, 1}, // the POST
	} {
		if got := value(t, after, tc.name, tc.labels...) - value(t, before, tc.name, tc.labels...); got != tc.delta {
			t.Errorf("%s%v moved by %v; want %v", tc.name, tc.labels, got, tc.delta)
		}
	}
	if value(t, after, "userrouter_response_bytes_total", "source=cache") == 0 || value(t, after, "userrouter_memcached_operations_total") == 0 {
		t.Error("bytes from the cache or memcached operations did not move")
	}

	// Histograms are Prometheus histograms: le buckets up to +Inf.
	h := after["userrouter_request_duration_seconds"]
	if h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("userrouter_request_duration_seconds is a %v", h.GetType())
	}
	for _, mm := range h.Metric {
		if len(mm.Histogram.Bucket) < 10 {
			t.Errorf("only %d buckets", len(mm.Histogram.Bucket))
		}
	}

	// memcached goes down: errors and misses count, pages still come.
	mc.Stop()
	errsBefore := value(t, after, "userrouter_memcached_errors_total")
	if a := get("/page"); a.status != 200 {
		t.Fatalf("with memcached down: %d", a.status)
	}
	down := scrape(t, admin)
	if value(t, down, "userrouter_memcached_errors_total") <= errsBefore || value(t, down, "userrouter_cache_store_errors_total") == 0 {
		t.Error("a memcached outage did not count as errors")
	}
	if value(t, down, "userrouter_requests_total", "outcome=miss") <= value(t, after, "userrouter_requests_total", "outcome=miss") {
		t.Error("a request during the memcached outage was not a miss")
	}

	// The backend goes down: errors count.
	s.Close()
	get("/other")
	gone := scrape(t, admin)
	if value(t, gone, "userrouter_backend_errors_total") != 1 || value(t, gone, "userrouter_requests_total", "outcome=error") != 1 {
		t.Error("a backend outage did not count")
	}
	if value(t, gone, "userrouter_in_flight_requests") != 0 || value(t, gone, "userrouter_build_info", "version=test") != 1 {
		t.Error("gauges wrong")
	}

	// The Grafana dashboard refers only to metrics that exist.
	dash, err := os.ReadFile("../contrib/grafana/userrouter-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct{ Expr string } `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`userrouter_[a-z_]+`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, n := range names.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(n, "_bucket")
				if _, ok := gone[base]; !ok {
					t.Errorf("the dashboard uses %s, which /metrics does not have", n)
				}
			}
		}
	}
}
