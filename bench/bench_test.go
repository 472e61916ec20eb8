package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The tests here drive run, bench's whole command, against real HTTP
// servers on 127.0.0.1 started by the test.

// runBench runs bench with args and returns its exit status and output.
func runBench(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// benchJSON runs bench with args and -json, wants exit status 0 and returns
// the decoded report.
func benchJSON(t *testing.T, args ...string) runJSON {
	t.Helper()
	code, out, errOut := runBench(t, append(args, "-json")...)
	if code != 0 {
		t.Fatalf("bench %s: exit status %d; want 0\nstderr: %s", strings.Join(args, " "), code, errOut)
	}
	var r runJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench -json output does not decode: %v\n%s", err, out)
	}
	return r
}

// newServer starts an HTTP server on 127.0.0.1 for the test's lifetime.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// countingServer answers 200 "ok" on every path but /missing (404) and
// counts the requests it got.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok"))
	})
	return s, &n
}

func TestClosedLoopCountsAndStatusCodes(t *testing.T) {
	t.Parallel()
	s, served := countingServer(t)
	r := benchJSON(t, "-url", s.URL, "-urls", "testdata/urls.txt", "-requests", "400", "-c", "4", "-warmup", "0", "-timeout", "5s")

	if r.Mode != "closed" || r.Connections != 4 || r.URLs != 2 {
		t.Errorf("mode %q, connections %d, urls %d; want closed, 4, 2", r.Mode, r.Connections, r.URLs)
	}
	if r.Requests != 400 || r.Responses != 400 || r.Errors != 0 {
		t.Errorf("requests %d, responses %d, errors %d; want 400, 400, 0", r.Requests, r.Responses, r.Errors)
	}
	ok, missing := r.StatusCodes["200"], r.StatusCodes["404"]
	if ok+missing != 400 || ok < 100 || missing < 100 {
		t.Errorf("status codes %v; want 200 and 404 (two URLs, uniform) adding up to 400", r.StatusCodes)
	}
	// 400 measured requests and the one preflight request, nothing more.
	if got := served.Load(); got != 401 {
		t.Errorf("server got %d requests; want 401 (400 and the reachability check)", got)
	}
	if r.RequestsPerSecond <= 0 || r.DurationS <= 0 {
		t.Errorf("requests_per_second %v, duration_s %v; want both positive", r.RequestsPerSecond, r.DurationS)
	}
}

func TestRequestsBoundIsExact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		requests int
	}{
		{name: "one connection", args: []string{"-c", "1"}, requests: 37},
		{name: "more connections than requests", args: []string{"-c", "16"}, requests: 5},
		{name: "many connections", args: []string{"-c", "33"}, requests: 257},
		{name: "with warm-up", args: []string{"-c", "8", "-warmup", "200ms"}, requests: 100},
		{name: "open loop", args: []string{"-c", "8", "-rate", "2000"}, requests: 150},
		{name: "open loop with warm-up", args: []string{"-c", "8", "-rate", "2000", "-warmup", "100ms"}, requests: 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := countingServer(t)
			args := append([]string{"-url", s.URL, "-requests", fmt.Sprint(tt.requests), "-warmup", "0", "-timeout", "5s"}, tt.args...)
			r := benchJSON(t, args...)
			if r.Requests != uint64(tt.requests) || r.StatusCodes["200"] != uint64(tt.requests) {
				t.Errorf("requests %d, status 200 %d; want %d of each", r.Requests, r.StatusCodes["200"], tt.requests)
			}
		})
	}
}

// cacheStatusCycle is what cacheStatusServer answers, request after request.
var cacheStatusCycle = []string{
	"userrouter; hit",
	"userrouter; hit",
	"userrouter; hit",
	"userrouter; hit; detail=stale",
	"userrouter; fwd=miss; stored",
	"userrouter; fwd=miss; collapsed",
	"userrouter; fwd=miss; detail=set-cookie",
	"userrouter; fwd=bypass; detail=identified",
	"userrouter; fwd=bypass; detail=doubt-timeout",
	"", // no header
}

// cacheStatusServer answers with the values of cacheStatusCycle in turn.
func cacheStatusServer(t *testing.T) *httptest.Server {
	var n atomic.Int64
	return newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if v := cacheStatusCycle[(n.Add(1)-1)%int64(len(cacheStatusCycle))]; v != "" {
			w.Header().Set("Cache-Status", v)
		}
		w.Write([]byte("page"))
	})
}

func TestCacheStatusBreakdown(t *testing.T) {
	t.Parallel()
	s := cacheStatusServer(t)
	// The reachability check takes the cycle's first answer; the 1000
	// measured requests then see every value exactly 100 times.
	r := benchJSON(t, "-url", s.URL, "-requests", "1000", "-c", "4", "-warmup", "0")

	want := map[string]uint64{}
	for _, v := range cacheStatusCycle {
		want[kindLabel(v)] += 100
	}
	for v, n := range want {
		if got := r.CacheStatus[v]; got != n {
			t.Errorf("cache_status[%q] = %d; want %d", v, got, n)
		}
	}
	if len(r.CacheStatus) != len(want) {
		t.Errorf("cache_status has %d values; want %d: %v", len(r.CacheStatus), len(want), r.CacheStatus)
	}
	if r.HitRatio != 0.4 {
		t.Errorf("hit_ratio %v; want 0.4 (400 hits of 1000)", r.HitRatio)
	}
	classes := []struct {
		class   string
		count   uint64
		details map[string]uint64
	}{
		{"hit", 400, map[string]uint64{"": 300, "detail=stale": 100}},
		{"fwd=miss", 300, map[string]uint64{"stored": 100, "collapsed": 100, "detail=set-cookie": 100}},
		{"fwd=bypass", 200, map[string]uint64{"detail=identified": 100, "detail=doubt-timeout": 100}},
		{"none", 100, map[string]uint64{"": 100}},
	}
	for _, c := range classes {
		got := r.CacheClasses[c.class]
		if got.Count != c.count || fmt.Sprint(got.Details) != fmt.Sprint(c.details) {
			t.Errorf("cache_classes[%q] = %d %v; want %d %v", c.class, got.Count, got.Details, c.count, c.details)
		}
	}
	if l := r.CacheStatusLatencyMs["userrouter; hit"]; l.P50 <= 0 || l.Max < l.P50 {
		t.Errorf("cache_status_latency_ms[hit] = %+v; want positive p50 <= max", l)
	}

	code, out, errOut := runBench(t, "-url", s.URL, "-requests", "1000", "-c", "4", "-warmup", "0")
	if code != 0 {
		t.Fatalf("exit status %d; want 0\n%s", code, errOut)
	}
	for _, want := range []string{"hit ratio 40.00%", "userrouter; fwd=bypass; detail=identified", "fwd=miss", "(none)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestJSONSchema(t *testing.T) {
	t.Parallel()
	s := cacheStatusServer(t)
	code, out, errOut := runBench(t, "-url", s.URL, "-requests", "50", "-c", "2", "-warmup", "0", "-json")
	if code != 0 {
		t.Fatalf("exit status %d; want 0\n%s", code, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	fields := []struct {
		name string
		kind string // "number", "string", "object", "array"
	}{
		{"requests_per_second", "number"}, {"errors", "number"}, {"latency_ms", "object"},
		{"requests", "number"}, {"responses", "number"}, {"duration_s", "number"}, {"warmup_s", "number"},
		{"status_codes", "object"}, {"cache_status", "object"}, {"cache_status_latency_ms", "object"},
		{"cache_classes", "object"}, {"hit_ratio", "number"}, {"errors_by_kind", "object"},
		{"mode", "string"}, {"connections", "number"}, {"rate", "number"}, {"url", "string"},
		{"urls", "number"}, {"visitors", "object"}, {"timeline", "array"},
	}
	for _, f := range fields {
		got := "missing"
		switch m[f.name].(type) {
		case float64:
			got = "number"
		case string:
			got = "string"
		case map[string]any:
			got = "object"
		case []any:
			got = "array"
		}
		if got != f.kind {
			t.Errorf("field %q is %s; want %s", f.name, got, f.kind)
		}
	}
	lat, _ := m["latency_ms"].(map[string]any)
	for _, p := range []string{"p50", "p90", "p99", "p999", "max"} {
		if v, ok := lat[p].(float64); !ok || v <= 0 {
			t.Errorf("latency_ms.%s = %v; want a positive number of milliseconds", p, lat[p])
		}
	}
	ebk, _ := m["errors_by_kind"].(map[string]any)
	for _, k := range []string{"connect_refused", "timeout", "connection_closed", "other"} {
		if _, ok := ebk[k].(float64); !ok {
			t.Errorf("errors_by_kind.%s = %v; want a number", k, ebk[k])
		}
	}
	if strings.Count(strings.TrimSpace(out), "\n{") != 0 || !strings.HasPrefix(out, "{") {
		t.Errorf("want exactly one JSON object on stdout, got:\n%s", out)
	}
}

func TestHTMLReport(t *testing.T) {
	t.Parallel()
	s := cacheStatusServer(t)
	file := filepath.Join(t.TempDir(), "report.html")
	code, out, errOut := runBench(t, "-url", s.URL, "-duration", "1500ms", "-c", "2", "-warmup", "0", "-html", file)
	if code != 0 {
		t.Fatalf("exit status %d; want 0\n%s", code, errOut)
	}
	if !strings.Contains(out, "latency") {
		t.Errorf("-html should not replace the table on stdout; got:\n%s", out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	checkSelfContained(t, string(b))
	for _, want := range []string{"Latency by percentile", "Throughput per second", "Cache-Status", "userrouter; fwd=miss; stored", "99.9%"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// checkSelfContained fails unless page is an HTML page with inline SVG
// charts and no script, style sheet, font, image or other resource from
// elsewhere. URLs may appear as text (the target's address does).
func checkSelfContained(t *testing.T, page string) {
	t.Helper()
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || strings.Count(page, "<svg") < 2 {
		t.Errorf("want an HTML page with inline <svg> charts; got %d <svg>", strings.Count(page, "<svg"))
	}
	external := regexp.MustCompile(`(?i)(<script|<link|<img|<iframe|<object|<embed|@import|url\(|(src|href|xlink:href|action)\s*=\s*["']?\s*(https?:)?//)`)
	if m := external.FindAllString(page, -1); len(m) > 0 {
		t.Errorf("the report refers to outside resources: %q", m)
	}
}

func TestCompare(t *testing.T) {
	t.Parallel()
	fast, _ := countingServer(t)
	slow := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(3 * time.Millisecond)
		w.Write([]byte("ok"))
	})
	args := []string{"-compare", fast.URL + "," + slow.URL, "-rounds", "2", "-duration", "300ms", "-warmup", "0", "-c", "2"}
	code, out, errOut := runBench(t, append(args, "-json")...)
	if code != 0 {
		t.Fatalf("exit status %d; want 0\n%s", code, errOut)
	}
	var c compareJSON
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("output does not decode: %v\n%s", err, out)
	}
	if c.Mode != "compare" || len(c.Rounds) != 2 {
		t.Fatalf("mode %q with %d rounds; want compare with 2", c.Mode, len(c.Rounds))
	}
	for i, r := range c.Rounds {
		if r.Round != i+1 || r.A.Label != "A" || r.B.Label != "B" || r.A.Requests == 0 || r.B.Requests == 0 {
			t.Errorf("round %d: %d, labels %q %q, requests %d %d; want both runs measured", i+1, r.Round, r.A.Label, r.B.Label, r.A.Requests, r.B.Requests)
		}
		if !strings.HasPrefix(r.A.URL, fast.URL) || !strings.HasPrefix(r.B.URL, slow.URL) {
			t.Errorf("round %d ran %s and %s; want %s and %s", i+1, r.A.URL, r.B.URL, fast.URL, slow.URL)
		}
	}
	for _, r := range c.Rounds {
		t.Logf("round %d: A %.0f/s p50 %.3f p99 %.3f max %.3f n=%d; B %.0f/s p50 %.3f p99 %.3f n=%d dur %.3f %.3f", r.Round, r.A.RequestsPerSecond, r.A.Latency.P50, r.A.Latency.P99, r.A.Latency.Max, r.A.Requests, r.B.RequestsPerSecond, r.B.Latency.P50, r.B.Latency.P99, r.B.Requests, r.A.DurationS, r.B.DurationS)
	}
	if m := c.MedianRatio; !(m.RequestsPerSecond > 0 && m.RequestsPerSecond < 0.9) || !(m.P50 > 1.1) {
		t.Errorf("median ratio B/A %+v; want throughput below 0.9 and p50 above 1.1 (B sleeps 3ms)", m)
	}

	code, out, errOut = runBench(t, append(args, "-rounds", "1")...)
	if code != 0 {
		t.Fatalf("exit status %d; want 0\n%s", code, errOut)
	}
	for _, want := range []string{"round", "median ratio B/A over 1 rounds: throughput 0.", "B against A: 0.", "× slower", fast.URL, slow.URL} {
		if !strings.Contains(out, want) {
			t.Errorf("compare table lacks %q:\n%s", want, out)
		}
	}
}

func TestCompareHTML(t *testing.T) {
	t.Parallel()
	a, _ := countingServer(t)
	b, _ := countingServer(t)
	file := filepath.Join(t.TempDir(), "compare.html")
	code, _, errOut := runBench(t, "-compare", a.URL+","+b.URL, "-names", "origin alone, behind userrouter", "-rounds", "2", "-duration", "200ms", "-warmup", "0", "-c", "2", "-html", file)
	if code != 0 {
		t.Fatalf("exit status %d; want 0\n%s", code, errOut)
	}
	page, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	checkSelfContained(t, string(page))
	// The runs go by their names; the latency ratios read as faster or
	// slower; the caption quotes the report's own p99; a run without
	// Cache-Status has no hit ratio ("–"), not 0%.
	for _, want := range []string{"origin alone round 2", "behind userrouter round 2", "<h1>behind userrouter against origin alone</h1>",
		"origin alone: " + a.URL, "A point at (99%, ", "<td class=\"n\">–</td>"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !regexp.MustCompile(`[0-9.]+× (faster|slower)|the same`).MatchString(string(page)) {
		t.Errorf("report phrases no latency ratio as faster, slower or the same")
	}
	for _, bad := range []string{"(99%, 8ms)", "0.00%", ">A round", "B/A"} {
		if strings.Contains(string(page), bad) {
			t.Errorf("report holds %q", bad)
		}
	}
}

// stallServer answers at once for the first half of every second and
// holds every request that arrives in the second half until the next
// second starts, like a server pausing for garbage collection.
func stallServer(t *testing.T) *httptest.Server {
	start := time.Now()
	return newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if phase := time.Since(start) % time.Second; phase >= 500*time.Millisecond {
			time.Sleep(time.Second - phase)
		}
		w.Write([]byte("ok"))
	})
}

// measure runs the load args describe and returns the raw result.
func measure(t *testing.T, args ...string) *runResult {
	t.Helper()
	cfg, err := parseConfig(args)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := buildSpecs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return execute(context.Background(), specs[0], nil)
}

// slowerThan counts the recorded latencies at or above d.
func slowerThan(r *runResult, d time.Duration) int64 {
	var n int64
	for _, b := range r.hist.Distribution() {
		if b.From >= d.Microseconds() {
			n += b.Count
		}
	}
	return n
}

func TestOpenLoopShowsWhatClosedLoopHides(t *testing.T) {
	t.Parallel()
	s := stallServer(t)
	closed := measure(t, "-url", s.URL, "-c", "4", "-duration", "2s", "-warmup", "0")
	open := measure(t, "-url", s.URL, "-c", "16", "-rate", "300", "-duration", "2s", "-warmup", "0")

	cl, op := latencyOf(closed.hist), latencyOf(open.hist)
	t.Logf("closed: %d requests, p50 %.2fms p90 %.2fms p99 %.2fms max %.2fms", closed.requests, cl.P50, cl.P90, cl.P99, cl.Max)
	t.Logf("open:   %d requests, p50 %.2fms p90 %.2fms p99 %.2fms max %.2fms", open.requests, op.P50, op.P90, op.P99, op.Max)

	// Both loops meet the stall: the closed loop's slowest requests wait
	// for it too.
	if cl.Max < 200 {
		t.Errorf("closed loop max %.1fms; want ≥ 200ms (the server stalls 500ms each second)", cl.Max)
	}
	// But the closed loop sends only its 4 requests into each stall and
	// waits: among its thousands of samples only a handful are slow.
	slowClosed, slowOpen := slowerThan(closed, 100*time.Millisecond), slowerThan(open, 100*time.Millisecond)
	if slowClosed > 4*3 {
		t.Errorf("closed loop recorded %d requests ≥ 100ms; want at most 12 (4 connections, 2-3 stalls)", slowClosed)
	}
	// The open loop keeps its schedule: about 150 requests fall due in each
	// stall and each counts its wait from its scheduled time.
	if slowOpen < 100 {
		t.Errorf("open loop recorded %d requests ≥ 100ms; want ≥ 100 (300/s during two 500ms stalls)", slowOpen)
	}
	if op.P99 < 200 || op.P99 < 5*cl.P50 {
		t.Errorf("open loop p99 %.1fms; want ≥ 200ms and ≥ 5 × the closed loop's p50 (%.2fms)", op.P99, cl.P50)
	}
	if op.P90 < 100 || cl.P90 >= 100 {
		t.Errorf("p90: open %.1fms, closed %.1fms; want the stall in the open loop's p90 (≥ 100ms) and not in the closed loop's", op.P90, cl.P90)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	s, _ := countingServer(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, []byte("# nothing\n\n"), 0o644)
	badKeys := filepath.Join(dir, "bad-keys.txt")
	os.WriteFile(badKeys, []byte("good\nsessionid=a; b\n"), 0o644)
	absURLs := filepath.Join(dir, "abs.txt")
	os.WriteFile(absURLs, []byte(s.URL+"/x\n"), 0o644)

	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{name: "no url", args: nil, code: 2, want: "-url is required"},
		{name: "url without scheme", args: []string{"-url", "127.0.0.1:8080"}, code: 2, want: `-url "127.0.0.1:8080"`},
		{name: "url of another scheme", args: []string{"-url", "ftp://127.0.0.1/"}, code: 2, want: "http:// or https://"},
		{name: "url without host", args: []string{"-url", "http:///x"}, code: 2, want: "no host"},
		{name: "url with bad port", args: []string{"-url", "http://127.0.0.1:99999/"}, code: 2, want: "out of range"},
		{name: "zero duration", args: []string{"-url", s.URL, "-duration", "0"}, code: 2, want: "-duration 0s: want a positive duration"},
		{name: "negative duration", args: []string{"-url", s.URL, "-duration", "-5s"}, code: 2, want: "-duration -5s"},
		{name: "negative duration with requests", args: []string{"-url", s.URL, "-duration", "-5s", "-requests", "10"}, code: 2, want: "-duration -5s"},
		{name: "duration without unit", args: []string{"-url", s.URL, "-duration", "10"}, code: 2, want: "-duration"},
		{name: "zero connections", args: []string{"-url", s.URL, "-c", "0"}, code: 2, want: "-c 0"},
		{name: "negative rate", args: []string{"-url", s.URL, "-rate", "-5"}, code: 2, want: "-rate -5"},
		{name: "zero timeout", args: []string{"-url", s.URL, "-timeout", "0s"}, code: 2, want: "-timeout"},
		{name: "unknown flag", args: []string{"-url", s.URL, "-conns", "4"}, code: 2, want: "flag provided but not defined: -conns"},
		{name: "stray argument", args: []string{s.URL}, code: 2, want: "unexpected argument"},
		{name: "bad header", args: []string{"-url", s.URL, "-H", "NoColon"}, code: 2, want: "'Name: value'"},
		{name: "bad method", args: []string{"-url", s.URL, "-method", "GE T"}, code: 2, want: "-method"},
		{name: "missing urls file", args: []string{"-url", s.URL, "-urls", filepath.Join(dir, "nope.txt")}, code: 2, want: "-urls " + filepath.Join(dir, "nope.txt") + ": no such file"},
		{name: "empty urls file", args: []string{"-url", s.URL, "-urls", empty}, code: 2, want: "has no entries"},
		{name: "absolute urls with compare", args: []string{"-compare", s.URL + "," + s.URL, "-urls", absURLs}, code: 2, want: "with -compare give paths"},
		{name: "missing keys file", args: []string{"-url", s.URL, "-identified", "0.1", "-identified-keys", filepath.Join(dir, "nope")}, code: 2, want: "-identified-keys"},
		{name: "keys with a separator", args: []string{"-url", s.URL, "-anon-sessions", "0.1", "-anon-keys", badKeys}, code: 2, want: "not a bare cookie value"},
		{name: "identified without keys", args: []string{"-url", s.URL, "-identified", "0.2"}, code: 2, want: "needs identified cookies"},
		{name: "keys without share", args: []string{"-url", s.URL, "-identified-keys", "testdata/identified-keys.txt"}, code: 2, want: "-identified is 0"},
		{name: "shares above one", args: []string{"-url", s.URL, "-identified", "0.7", "-anon-sessions", "0.5", "-identified-keys", "testdata/identified-keys.txt", "-anon-keys", "testdata/anon-keys.txt"}, code: 2, want: "at most 1"},
		{name: "share above one", args: []string{"-url", s.URL, "-anon-sessions", "1.5"}, code: 2, want: "between 0 and 1"},
		{name: "too many paths", args: []string{"-url", s.URL, "-paths", "2000000000"}, code: 2, want: "-paths 2000000000: at most 10000000"},
		{name: "zipf at one", args: []string{"-url", s.URL, "-paths", "10", "-zipf", "1"}, code: 2, want: "-zipf 1"},
		{name: "zipf without paths", args: []string{"-url", s.URL, "-zipf", "1.2"}, code: 2, want: "-paths N or -urls FILE"},
		{name: "mint without url", args: []string{"-url", s.URL, "-mint", "3"}, code: 2, want: "-login-url"},
		{name: "compare with one url", args: []string{"-compare", s.URL}, code: 2, want: "two base URLs"},
		{name: "compare and url", args: []string{"-compare", s.URL + "," + s.URL, "-url", s.URL}, code: 2, want: "drop -url"},
		{name: "html in a missing directory", args: []string{"-url", s.URL, "-html", filepath.Join(dir, "no", "r.html")}, code: 2, want: "does not exist"},
		{name: "unreachable target", args: []string{"-url", "http://" + closedPort(t) + "/"}, code: 1, want: "connection refused"},
		{name: "unreachable compare target", args: []string{"-compare", s.URL + ",http://" + closedPort(t) + "/"}, code: 1, want: "cannot reach"},
		{name: "unreachable login url", args: []string{"-url", s.URL, "-identified", "0.5", "-mint", "2", "-login-url", "http://" + closedPort(t) + "/login"}, code: 1, want: "-login-url"},
		{name: "login url without cookie", args: []string{"-url", s.URL, "-identified", "0.5", "-mint", "2", "-login-url", s.URL + "/login"}, code: 1, want: `set no "sessionid" cookie`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			code, out, errOut := runBench(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit status %d; want %d\nstderr: %s", code, tt.code, errOut)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q; want it to contain %q", errOut, tt.want)
			}
			if out != "" {
				t.Errorf("stdout %q; want nothing", out)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v; want a quick failure", d)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, out, _ := runBench(t, "-h")
	if code != 0 {
		t.Errorf("-h exit status %d; want 0", code)
	}
	// Every flag must be documented in the usage text.
	newFlagSet(&config{}).VisitAll(func(f *flag.Flag) {
		if !regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(f.Name) + `\b`).MatchString(out) {
			t.Errorf("usage does not document -%s", f.Name)
		}
	})
}

func TestRateNotSustained(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		w.Write([]byte("slow"))
	})
	start := time.Now()
	code, out, errOut := runBench(t, "-url", s.URL, "-rate", "1000", "-c", "4", "-duration", "1s", "-warmup", "0", "-json")
	elapsed := time.Since(start)
	if code != 1 {
		t.Errorf("exit status %d; want 1", code)
	}
	if !regexp.MustCompile(`sent \d+ of 1000 scheduled requests: the target cannot sustain -rate 1000`).MatchString(errOut) {
		t.Errorf("stderr %q; want it to say the target cannot sustain -rate", errOut)
	}
	if elapsed > 2500*time.Millisecond {
		t.Errorf("took %v; want the run to end on time (1s and the last answers)", elapsed)
	}
	var r runJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("the report must still be printed: %v\n%s", err, out)
	}
	if r.RateSustained == nil || *r.RateSustained || r.Scheduled == nil || *r.Scheduled != 1000 || r.Requests >= 200 {
		t.Errorf("rate_sustained %v, scheduled %v, requests %d; want false, 1000 and well under 200", r.RateSustained, r.Scheduled, r.Requests)
	}
	// Requests that waited for a free connection count from their
	// scheduled time: the slowest waited most of the second.
	if r.Latency.Max < 500 {
		t.Errorf("max latency %.1fms; want ≥ 500ms, counted from the schedule", r.Latency.Max)
	}
}

// sessionServer mints cookies on POST /login and /anon and counts the
// session cookies it sees on other requests.
type sessionServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string]int // cookie value ("" for none) → requests
}

func newSessionServer(t *testing.T) *sessionServer {
	ss := &sessionServer{seen: map[string]int{}}
	var n atomic.Int64
	ss.Server = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login", "/anon":
			if r.Method != http.MethodPost {
				http.Error(w, "POST only", http.StatusMethodNotAllowed)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: fmt.Sprintf("%s-%d", r.URL.Path[1:], n.Add(1)), HttpOnly: true, Path: "/"})
			w.Header().Add("Set-Cookie", "csrftoken=x; Path=/")
			http.Redirect(w, r, "/", http.StatusFound)
			return
		}
		v := ""
		if c, err := r.Cookie("sid"); err == nil {
			v = c.Value
		}
		ss.mu.Lock()
		ss.seen[v]++
		ss.mu.Unlock()
		w.Write([]byte("page"))
	})
	return ss
}

func TestSessionsMinted(t *testing.T) {
	t.Parallel()
	s := newSessionServer(t)
	r := benchJSON(t, "-url", s.URL, "-requests", "600", "-c", "4", "-warmup", "0", "-cookie-name", "sid",
		"-identified", "0.3", "-anon-sessions", "0.2", "-mint", "5", "-login-url", s.URL+"/login", "-anon-url", s.URL+"/anon")

	id, anon, none := r.Visitors["identified"], r.Visitors["anonymous"], r.Visitors["none"]
	if id.Keys != 5 || anon.Keys != 5 {
		t.Errorf("keys: identified %d, anonymous %d; want 5 minted of each", id.Keys, anon.Keys)
	}
	if id.Requests+anon.Requests+none.Requests != 600 {
		t.Errorf("visitors %+v; want 600 requests in all", r.Visitors)
	}
	if id.Requests < 120 || id.Requests > 240 || anon.Requests < 60 || anon.Requests > 180 {
		t.Errorf("identified %d and anonymous %d of 600; want about 180 and 120", id.Requests, anon.Requests)
	}
	if id.KeysUsed != 5 || anon.KeysUsed != 5 {
		t.Errorf("keys used: identified %d, anonymous %d; want all 5 of each", id.KeysUsed, anon.KeysUsed)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var loginSeen, anonSeen int
	for v, n := range s.seen {
		switch {
		case strings.HasPrefix(v, "login-"):
			loginSeen += n
		case strings.HasPrefix(v, "anon-"):
			anonSeen += n
		case v != "":
			t.Errorf("server saw cookie %q, which it never minted", v)
		}
	}
	if uint64(loginSeen) != id.Requests || uint64(anonSeen) != anon.Requests {
		t.Errorf("server saw %d identified and %d anonymous cookies; bench reports %d and %d", loginSeen, anonSeen, id.Requests, anon.Requests)
	}
}

func TestSessionsFromFiles(t *testing.T) {
	t.Parallel()
	s := newSessionServer(t)
	code, out, errOut := runBench(t, "-url", s.URL, "-requests", "300", "-c", "3", "-warmup", "0", "-cookie-name", "sid",
		"-identified", "0.5", "-identified-keys", "testdata/identified-keys.txt", "-anon-sessions", "0.5", "-anon-keys", "testdata/anon-keys.txt")
	if code != 0 {
		t.Fatalf("exit status %d; want 0\n%s", code, errOut)
	}
	if !regexp.MustCompile(`visitors\s+0 without cookie, \d+ identified \(3 of 3 keys used\), \d+ anonymous-session \(2 of 2 keys used\)`).MatchString(out) {
		t.Errorf("table lacks the visitors line:\n%s", out)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for v := range s.seen {
		if !strings.HasPrefix(v, "ident000") && !strings.HasPrefix(v, "anon000") && v != "" {
			t.Errorf("server saw cookie %q, which is in neither file", v)
		}
	}
	if n := s.seen[""]; n != 1 {
		t.Errorf("server saw %d requests without cookie; want 1 (the reachability check)", n)
	}
}

func TestZipfSkew(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	hits := map[string]int{}
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
	})
	benchJSON(t, "-url", s.URL, "-paths", "100", "-zipf", "1.5", "-requests", "2000", "-c", "4", "-warmup", "0")
	mu.Lock()
	defer mu.Unlock()
	if len(hits) < 10 || hits["/page/0"] < 500 || hits["/page/0"] <= hits["/page/9"] {
		t.Errorf("%d paths, /page/0 got %d, /page/9 %d; want a skew towards /page/0 (about 43%% of 2000)", len(hits), hits["/page/0"], hits["/page/9"])
	}
	for p := range hits {
		if !regexp.MustCompile(`^/page/\d\d?$`).MatchString(p) {
			t.Errorf("unexpected path %q", p)
		}
	}
}

func TestHeadersAndMethod(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.Host+" "+r.Header.Get("X-Test")+" "+r.UserAgent())
		mu.Unlock()
	})
	benchJSON(t, "-url", s.URL, "-requests", "3", "-c", "1", "-warmup", "0", "-method", "HEAD",
		"-H", "X-Test: yes", "-H", "Host: example.org", "-H", "User-Agent: tester")
	mu.Lock()
	defer mu.Unlock()
	for _, g := range got {
		if g != "HEAD example.org yes tester" {
			t.Errorf("server saw %q; want %q", g, "HEAD example.org yes tester")
		}
	}
}

// misbehavingServer answers /ok at once, closes the connection on /close
// without answering, and never answers /hang. It counts nothing.
func misbehavingServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					switch req := string(buf[:n]); {
					case strings.HasPrefix(req, "GET /close "):
						return
					case strings.HasPrefix(req, "GET /hang "):
						select {
						case <-done:
						case <-time.After(5 * time.Second):
						}
						return
					default:
						c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
					}
				}
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

func TestErrorsByKind(t *testing.T) {
	t.Parallel()
	base := misbehavingServer(t)
	urls := filepath.Join(t.TempDir(), "urls.txt")
	os.WriteFile(urls, []byte("/ok\n/close\n/hang\n"), 0o644) // the reachability check takes the first
	start := time.Now()
	r := benchJSON(t, "-url", base, "-urls", urls, "-requests", "60", "-c", "6", "-warmup", "0", "-timeout", "300ms")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v; every request should be bounded by -timeout 300ms", d)
	}
	e := r.ErrorsByKind
	if r.Requests != 60 || r.StatusCodes["200"] == 0 || e["timeout"] == 0 || e["connection_closed"] == 0 {
		t.Errorf("requests %d, status %v, errors by kind %v; want 60 with answers, timeouts and closed connections", r.Requests, r.StatusCodes, e)
	}
	if r.Errors != e["timeout"]+e["connection_closed"]+e["connect_refused"]+e["other"] || r.Responses+r.Errors != r.Requests {
		t.Errorf("errors %d, by kind %v, responses %d; want the kinds to add up", r.Errors, e, r.Responses)
	}
	if r.ErrorSamples["timeout"] == "" {
		t.Errorf("error_samples %v; want a timeout message", r.ErrorSamples)
	}
}

// TestReportsWithoutAnswers renders every report of a run in which no
// request got an answer: nothing may panic or divide by zero.
func TestReportsWithoutAnswers(t *testing.T) {
	t.Parallel()
	rec := newRecorder(time.Now(), 0, 0)
	rec.recordVisitor(visitorNone, 0)
	rec.recordError(errTestTimeout{}, time.Now())
	spec := &runSpec{urls: []string{"http://127.0.0.1:1/"}, conns: 1, rate: 10, duration: time.Second}
	r := &runResult{spec: spec, merged: mergeRecorders([]*recorder{rec}), requests: 1, errors: 1, scheduled: 10, elapsed: time.Second}

	var text bytes.Buffer
	r.writeText(&text)
	if !regexp.MustCompile(`status +no answers`).MatchString(text.String()) || !strings.Contains(text.String(), "timeout 1, e.g. i/o timeout") {
		t.Errorf("table:\n%s", text.String())
	}
	if _, err := json.Marshal(r.toJSON()); err != nil {
		t.Errorf("JSON: %v", err)
	}
	msgs, failed := r.warnings()
	if !failed || len(msgs) != 2 {
		t.Errorf("warnings %q, failed %v; want the unsustained rate and every request failed", msgs, failed)
	}
	file := filepath.Join(t.TempDir(), "r.html")
	if err := writeHTMLFile(file, htmlRun(r)); err != nil {
		t.Fatal(err)
	}
	c := &comparison{a: spec, b: spec, rounds: [][2]*runResult{{r, r}}}
	if err := writeHTMLFile(file, htmlCompare(c)); err != nil {
		t.Fatal(err)
	}
	if _, err := json.Marshal(c.toJSON()); err != nil {
		t.Errorf("compare JSON: %v", err)
	}
	text.Reset()
	c.writeText(&text)
	if !strings.Contains(text.String(), "throughput –") {
		t.Errorf("compare table with no answers should show '–' ratios:\n%s", text.String())
	}
}

// hugeBodyServer answers /big with an 8 MiB body, and /endless with a
// header announcing 1 TiB of body followed by a trickle that never ends.
func hugeBodyServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close() })
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if strings.HasPrefix(string(buf[:n]), "GET /endless ") {
						c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n"))
						for {
							if _, err := c.Write([]byte("x")); err != nil {
								return
							}
							select {
							case <-done:
								return
							case <-time.After(10 * time.Millisecond):
							}
						}
					}
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\n\r\n"))
					for range 128 {
						if _, err := c.Write(chunk); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

// TestHugeBodiesAreNotHeld loads a target whose bodies are huge or never
// end: bench reads them through without keeping them (a body read into
// memory would take 8 MiB per connection, and the announced 1 TiB would
// crash it), and a body that does not arrive within -timeout is a timeout.
func TestHugeBodiesAreNotHeld(t *testing.T) {
	t.Parallel()
	base := hugeBodyServer(t)
	urls := filepath.Join(t.TempDir(), "urls.txt")
	os.WriteFile(urls, []byte("/big\n/endless\n"), 0o644) // the reachability check takes the first
	start := time.Now()
	r := benchJSON(t, "-url", base, "-urls", urls, "-requests", "12", "-c", "4", "-warmup", "0", "-timeout", "1s")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v; every request should be bounded by -timeout 1s", d)
	}
	if r.Requests != 12 || r.StatusCodes["200"] == 0 || r.ErrorsByKind["timeout"] == 0 || r.Responses+r.Errors != r.Requests {
		t.Errorf("requests %d, status %v, errors by kind %v; want 12, answers for /big and timeouts for /endless", r.Requests, r.StatusCodes, r.ErrorsByKind)
	}
}

// TestCompareStopsWhenInterrupted interrupts -compare during A's run: B
// must not be loaded at all (its requests would wait for a slow target),
// and the report still comes out.
func TestCompareStopsWhenInterrupted(t *testing.T) {
	t.Parallel()
	var bServed atomic.Int64
	a, _ := countingServer(t)
	b := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if bServed.Add(1) > 1 { // the reachability check is answered at once
			time.Sleep(2 * time.Second)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	var out, errOut bytes.Buffer
	start := time.Now()
	code := runContext(ctx, []string{"-compare", a.URL + "," + b.URL, "-duration", "5s", "-warmup", "0", "-c", "4", "-timeout", "5s", "-json"}, &out, &errOut, 0)
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("took %v after an interruption at 300ms; want bench to stop at once", d)
	}
	if code != exitFailed || !strings.Contains(errOut.String(), "interrupted") {
		t.Errorf("exit status %d, stderr %q; want 1 and the interruption reported", code, errOut.String())
	}
	if n := bServed.Load(); n > 1 {
		t.Errorf("B got %d requests; want only the reachability check, B's run starts after the interruption", n)
	}
	var c compareJSON
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		t.Errorf("the report must still be printed: %v\n%s", err, out.String())
	}
}

// TestManyCacheStatusValues loads a target whose Cache-Status carries a
// parameter that changes from answer to answer (RFC 9211's ttl), half of
// them hits: far more distinct values than a connection tracks. The hit
// ratio must stay right, and the report must stay short.
func TestManyCacheStatusValues(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if i%2 == 0 {
			w.Header().Set("Cache-Status", fmt.Sprintf("cdn; hit; ttl=%d", i))
		} else {
			w.Header().Set("Cache-Status", fmt.Sprintf("cdn; fwd=miss; ttl=%d", i))
		}
	})
	r := benchJSON(t, "-url", s.URL, "-requests", "2000", "-c", "8", "-warmup", "0")
	if r.HitRatio < 0.45 || r.HitRatio > 0.55 {
		t.Errorf("hit_ratio %v; want about 0.5 (every other answer a hit)", r.HitRatio)
	}
	if len(r.CacheStatus) > maxKinds+2 {
		t.Errorf("cache_status has %d values; want at most %d, the rarest folded", len(r.CacheStatus), maxKinds+2)
	}
	var total uint64
	for _, c := range r.CacheStatus {
		total += c
	}
	if total != 2000 || r.CacheClasses["hit"].Count+r.CacheClasses["fwd=miss"].Count+r.CacheClasses["other"].Count != 2000 {
		t.Errorf("cache_status adds up to %d, classes %v; want 2000", total, r.CacheClasses)
	}
}
