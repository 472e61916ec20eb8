package router

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// Metrics holds every counter and histogram userrouter exports, so that
// they outlive reloads, and writes them in Prometheus text format for
// /metrics. Counters are the packages' own atomics; latency histograms are
// VictoriaMetrics' Prometheus histograms (le buckets, so Prometheus'
// histogram_quantile works on them). Metrics is safe for concurrent use.
type Metrics struct {
	Router   Stats
	Sessions sessioncheck.Stats
	// Credentials are the credential checks' (CredentialOptions.Checker).
	Credentials sessioncheck.Stats
	Memcache    pagecache.MemcacheStats
	Access      AccessStats
	// Reloads counts SIGHUP reloads: [0] applied, [1] refused.
	Reloads [2]atomic.Uint64

	// Durations feed the router's histograms; SessionQuery,
	// CredentialQuery and MemcacheOp the session store's, the credential
	// store's and memcached's.
	Durations       Durations
	SessionQuery    *metrics.PrometheusHistogram
	CredentialQuery *metrics.PrometheusHistogram
	MemcacheOp      *metrics.PrometheusHistogram

	version string
	set     *metrics.Set
}

// latencyBuckets suit userrouter's range: a hit takes tens of
// microseconds, a slow page seconds.
var latencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

// NewMetrics returns the metrics of a userrouter of the given version.
func NewMetrics(version string) *Metrics {
	m := &Metrics{version: version, set: metrics.NewSet()}
	for i, name := range Outcomes() {
		m.Durations.Request[i] = m.set.NewPrometheusHistogramExt(`userrouter_request_duration_seconds{outcome="`+name+`"}`, latencyBuckets)
	}
	m.Durations.Backend = m.set.NewPrometheusHistogramExt("userrouter_backend_duration_seconds", latencyBuckets)
	m.SessionQuery = m.set.NewPrometheusHistogramExt("userrouter_session_query_duration_seconds", latencyBuckets)
	m.CredentialQuery = m.set.NewPrometheusHistogramExt("userrouter_credential_query_duration_seconds", latencyBuckets)
	m.MemcacheOp = m.set.NewPrometheusHistogramExt("userrouter_memcached_operation_duration_seconds", latencyBuckets)
	return m
}

func init() { metrics.ExposeMetadata(true) } // # TYPE lines, for histograms

// WritePrometheus writes every metric; current is the router in service
// (for the state of its session store's circuit breaker), or nil.
func (m *Metrics) WritePrometheus(out io.Writer, current *Router) {
	w := &promWriter{w: bufio.NewWriter(out)}
	defer w.w.Flush()
	s := &m.Router
	w.gauge("userrouter_build_info", "The running version.", sample{`version="` + m.version + `"`, 1})

	w.counter("userrouter_requests_total", "Requests handled, by how they were served.", indexed(Outcomes(), "outcome", s.Outcomes[:])...)
	w.gauge("userrouter_in_flight_requests", "Requests being handled.", sample{"", float64(s.InFlight.Load())})
	w.counter("userrouter_cache_stored_total", "Fills whose answer was stored.", one(&s.Stored))
	var reasons []string
	for r := range pagecache.NumReasons {
		reasons = append(reasons, r.String())
	}
	w.counter("userrouter_cache_not_stored_total", "Fills whose answer was not stored, by reason.", indexed(reasons[1:], "reason", s.NotStored[1:])...)
	w.counter("userrouter_bypass_total", "Requests forwarded without the cache, by reason.", indexed(BypassReasons(), "reason", s.Bypass[:])...)
	w.counter("userrouter_cache_damaged_total", "Stored values that could not be read (damaged, another version, a pickle).", one(&s.Damaged))
	w.counter("userrouter_cache_store_errors_total", "Page store operations that failed (served from the backend).", one(&s.StoreErrors))
	w.counter("userrouter_cache_store_skipped_total", "Page store operations skipped while its circuit breaker was open.", one(&s.StoreSkipped))
	w.counter("userrouter_cache_outage_fills_total", "Fills made while the page store failed whose page was kept in process (cache.outage_l1_size) and given to the requests that waited.", one(&s.OutageFills))
	w.counter("userrouter_cache_outage_hits_total", "Hits served, while the page store failed, from the pages kept in process by outage fills.", one(&s.OutageHits))
	w.counter("userrouter_cache_store_breaker_opens_total", "Times the page store's circuit breaker opened.", one(&s.StoreBreakerOpens))
	storeOpen := 0.0
	if current != nil && current.cache != nil && current.cache.breaker.String() != "closed" {
		storeOpen = 1
	}
	w.gauge("userrouter_cache_store_breaker_open", "1 while the page store is not asked after repeated failures.", sample{"", storeOpen})
	w.counter("userrouter_background_fills_total", "Cache fills started for visitors with cookies, and stale refreshes.", one(&s.BackgroundFills))
	w.counter("userrouter_cache_revalidated_total", "Conditional fills the backend answered 304 Not Modified: the stored page was refreshed without a render.", one(&s.Revalidated))
	w.counter("userrouter_cache_stale_if_error_total", "Requests served a stale page because the backend failed (stale-if-error).", one(&s.StaleIfError))
	w.counter("userrouter_background_fills_skipped_total", "Background fills not started: too many running.", one(&s.FillsSkipped))
	w.counter("userrouter_background_fills_backed_off_total", "Background fills not started: the page's last refresh failed (it backs off, 1 s doubling to 30 s), or every backend is down.", one(&s.FillsBackedOff))
	w.counter("userrouter_collapse_timeouts_total", "Misses that stopped waiting for another request's fill (cache.collapse_timeout) and went to the backend.", one(&s.CollapseTimeouts))
	w.counter("userrouter_backend_responses_total", "Backend responses, by status class.",
		indexed([]string{"1xx", "2xx", "3xx", "4xx", "5xx"}, "class", s.BackendResponses[1:])...)
	w.counter("userrouter_backend_errors_total", "Requests no backend answered (502, 503, 504).", one(&s.BackendErrors))
	w.counter("userrouter_response_bytes_total", "Response body bytes sent, by source: the cache, or backends (known lengths).",
		sample{`source="cache"`, float64(s.BytesFromCache.Load())}, sample{`source="backend"`, float64(s.BytesFromBackend.Load())})
	w.counter("userrouter_purges_total", "Purges carried out, by kind (a soft purge counts under its kind too).", indexed(PurgeKinds(), "kind", s.Purges[:])...)
	w.counter("userrouter_purges_refused_total", "Purges refused: address not allowed, or no valid token.", one(&s.PurgesRefused))
	w.counter("userrouter_unsafe_invalidations_total", "URLs invalidated by successful POST, PUT, PATCH and DELETE requests (the request's, and same-host Location and Content-Location).", one(&s.UnsafeInvalidations))

	ss := &m.Sessions
	w.counter("userrouter_session_lookups_total", "Session keys checked.", one(&ss.Lookups))
	w.counter("userrouter_session_cache_hits_total", "Session keys answered from the verdict cache.", one(&ss.CacheHits))
	w.counter("userrouter_session_queries_total", "Queries sent to the session store.", one(&ss.Queries))
	w.counter("userrouter_session_verdicts_total", "Session verdicts, by kind.",
		sample{`verdict="identified"`, float64(ss.Identified.Load())}, sample{`verdict="anonymous"`, float64(ss.Anonymous.Load())},
		sample{`verdict="no_row"`, float64(ss.NoRow.Load())})
	w.counter("userrouter_session_doubts_total", "Visitors forwarded because their session could not be checked, by reason.",
		indexed(sessioncheck.DoubtReasons[:], "reason", s.DoubtReasons[:])...)
	w.counter("userrouter_session_breaker_opens_total", "Times the session store's circuit breaker opened.", one(&ss.BreakerOpens))
	open := 0.0
	if current != nil {
		if b, ok := current.sessions.(interface{ BreakerState() string }); ok && b.BreakerState() != "closed" {
			open = 1
		}
	}
	w.gauge("userrouter_session_breaker_open", "1 while the session store is not asked after repeated failures.", sample{"", open})

	cs := &m.Credentials
	w.counter("userrouter_credential_requests_total", "Requests carrying a credential (or none) under a cache rule that serves credentials, by path.",
		indexed(CredentialPaths(), "path", s.Credentials[:])...)
	w.counter("userrouter_credential_lookups_total", "Credentials checked.", one(&cs.Lookups))
	w.counter("userrouter_credential_cache_hits_total", "Credentials answered from the verdict cache.", one(&cs.CacheHits))
	w.counter("userrouter_credential_queries_total", "Queries sent to the credential store.", one(&cs.Queries))
	w.counter("userrouter_credential_verdicts_total", "Credential verdicts, by kind.",
		sample{`verdict="valid"`, float64(cs.Identified.Load())}, sample{`verdict="invalid"`, float64(cs.NoRow.Load() + cs.Anonymous.Load())})
	w.counter("userrouter_credential_doubts_total", "Requests forwarded because their credential could not be checked, by reason.",
		indexed(sessioncheck.DoubtReasons[:], "reason", s.CredentialDoubts[:])...)
	w.counter("userrouter_credential_breaker_opens_total", "Times the credential store's circuit breaker opened.", one(&cs.BreakerOpens))
	credOpen := 0.0
	if current != nil && current.creds != nil {
		if b, ok := current.creds.checker.(interface{ BreakerState() string }); ok && b.BreakerState() != "closed" {
			credOpen = 1
		}
	}
	w.gauge("userrouter_credential_breaker_open", "1 while the credential store is not asked after repeated failures.", sample{"", credOpen})

	ms := &m.Memcache
	w.counter("userrouter_memcached_operations_total", "memcached operations sent.", one(&ms.Ops))
	w.counter("userrouter_memcached_misses_total", "memcached gets that found nothing.", one(&ms.Misses))
	w.counter("userrouter_memcached_errors_total", "memcached operations that failed (timeouts and busy included).", one(&ms.Errors))
	w.counter("userrouter_memcached_timeouts_total", "memcached operations that timed out.", one(&ms.Timeouts))
	w.counter("userrouter_memcached_busy_total", "memcached operations that found no free slot.", one(&ms.Busy))
	w.counter("userrouter_memcached_too_large_total", "Pages not sent to memcached: over the item size limit.", one(&ms.TooLarge))
	w.counter("userrouter_memcached_ejections_total", "memcached servers taken off the ring after server_failure_limit consecutive failures (a failed retry counts again).", one(&ms.Ejections))

	if current != nil && current.cache != nil {
		if mem, ok := current.cache.Store.(pagecache.Sizer); ok {
			w.gauge("userrouter_memory_store_bytes", "Bytes the memory page store holds (keys, pages and per-entry overhead).", sample{"", float64(mem.Size())})
			w.gauge("userrouter_memory_store_items", "Entries the memory page store holds (pages and purge counters).", sample{"", float64(mem.Len())})
		}
	}

	w.counter("userrouter_access_log_lines_total", "Access log lines written.", one(&m.Access.Written))
	w.counter("userrouter_access_log_dropped_total", "Access log lines dropped: the writer could not keep up.", one(&m.Access.Dropped))
	w.counter("userrouter_reloads_total", "Configuration reloads (SIGHUP), applied or refused.",
		sample{`result="ok"`, float64(m.Reloads[0].Load())}, sample{`result="failed"`, float64(m.Reloads[1].Load())})

	w.w.Flush()
	m.set.WritePrometheus(out)
	metrics.WriteProcessMetrics(out)
}

type sample struct {
	labels string
	value  float64
}

func one(c *atomic.Uint64) sample { return sample{"", float64(c.Load())} }

func indexed(names []string, label string, counters []atomic.Uint64) []sample {
	out := make([]sample, len(names))
	for i, n := range names {
		out[i] = sample{label + `="` + n + `"`, float64(counters[i].Load())}
	}
	return out
}

type promWriter struct{ w *bufio.Writer }

func (p *promWriter) counter(name, help string, samples ...sample) {
	p.metric(name, help, "counter", samples)
}
func (p *promWriter) gauge(name, help string, samples ...sample) {
	p.metric(name, help, "gauge", samples)
}

func (p *promWriter) metric(name, help, typ string, samples []sample) {
	fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	for _, s := range samples {
		p.w.WriteString(name)
		if s.labels != "" {
			p.w.WriteString("{" + s.labels + "}")
		}
		p.w.WriteByte(' ')
		p.w.WriteString(strconv.FormatFloat(s.value, 'g', -1, 64))
		p.w.WriteByte('\n')
	}
}
