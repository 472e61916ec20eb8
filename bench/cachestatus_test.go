package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestParseCacheStatus(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // members formatted by fmtMembers
	}{
		{name: "empty", in: "", want: ""},
		{name: "hit", in: "userrouter; hit", want: "userrouter[hit]"},
		{name: "miss stored", in: "userrouter; fwd=miss; stored", want: "userrouter[fwd=miss stored]"},
		{name: "no spaces", in: "userrouter;fwd=bypass;detail=identified", want: "userrouter[fwd=bypass detail=identified]"},
		{name: "two members", in: `Origin; fwd=uri-miss, "CDN Company"; hit; ttl=30`, want: `Origin[fwd=uri-miss] "CDN Company"[hit ttl=30]`},
		{name: "quoted comma and semicolon", in: `c; detail="a,b;c"; hit`, want: `c[detail="a,b;c" hit]`},
		{name: "escaped quote", in: `c; detail="x\",y", d; hit`, want: `c[detail="x\",y"] d[hit]`},
		{name: "upper-case key", in: "c; HIT", want: "c[hit]"},
		{name: "empty members skipped", in: " , c; hit ,", want: "c[hit]"},
		{name: "bare name", in: "c", want: "c[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmtMembers(parseCacheStatus(tt.in)); got != tt.want {
				t.Errorf("parseCacheStatus(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

// fmtMembers formats members as name[param param] name[...].
func fmtMembers(ms []cacheMember) string {
	var parts []string
	for _, m := range ms {
		var ps []string
		for _, p := range m.Params {
			ps = append(ps, p.String())
		}
		parts = append(parts, m.Name+"["+strings.Join(ps, " ")+"]")
	}
	return strings.Join(parts, " ")
}

func TestClassifyCacheStatus(t *testing.T) {
	tests := []struct {
		name, in      string
		class, detail string
		hit           bool
	}{
		{name: "no header", in: "", class: "none"},
		{name: "hit", in: "userrouter; hit", class: "hit", hit: true},
		{name: "stale hit", in: "userrouter; hit; detail=stale", class: "hit", detail: "detail=stale", hit: true},
		{name: "miss stored", in: "userrouter; fwd=miss; stored", class: "fwd=miss", detail: "stored"},
		{name: "miss collapsed", in: "userrouter; fwd=miss; collapsed", class: "fwd=miss", detail: "collapsed"},
		{name: "miss not stored", in: "userrouter; fwd=miss; detail=set-cookie", class: "fwd=miss", detail: "detail=set-cookie"},
		{name: "bypass identified", in: "userrouter; fwd=bypass; detail=identified", class: "fwd=bypass", detail: "detail=identified"},
		{name: "bypass doubt", in: "userrouter; fwd=bypass; detail=doubt-timeout", class: "fwd=bypass", detail: "detail=doubt-timeout"},
		{name: "hit not first", in: "userrouter; stored; hit", class: "other", detail: "stored; hit"},
		{name: "no hit or fwd", in: "userrouter; detail=odd", class: "other", detail: "detail=odd"},
		{name: "inner hit decides", in: "userrouter; hit, nginx; fwd=uri-miss", class: "hit", hit: true},
		{name: "last member without hit", in: "origin; fwd=miss; stored, nginx; fwd=uri-miss; ttl=5", class: "fwd=uri-miss", detail: "ttl=5"},
		{name: "blank", in: "  ", class: "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classifyCacheStatus(tt.in)
			if got.Class != tt.class || got.Detail != tt.detail || got.Hit != tt.hit {
				t.Errorf("classifyCacheStatus(%q) = %q %q %v; want %q %q %v", tt.in, got.Class, got.Detail, got.Hit, tt.class, tt.detail, tt.hit)
			}
		})
	}
}

func FuzzParseCacheStatus(f *testing.F) {
	for _, s := range cacheStatusCycle {
		f.Add(s)
	}
	f.Add(`a; detail="x\",y", b; hit`)
	f.Add(`"unterminated; hit`)
	f.Fuzz(func(t *testing.T, v string) {
		ms := parseCacheStatus(v)
		if len(ms) > strings.Count(v, ",")+1 {
			t.Errorf("parseCacheStatus(%q): %d members from %d commas", v, len(ms), strings.Count(v, ","))
		}
		c := classifyCacheStatus(v)
		if c.Class == "" || c.Hit != (c.Class == "hit") {
			t.Errorf("classifyCacheStatus(%q) = %+v: want a class, and Hit exactly for hit", v, c)
		}
	})
}

// TestRecorderOverflow gives two workers more distinct values than they
// track: the values past maxKinds count under "(other hits)" and "(other
// values)", and the merged report keeps the maxKinds most frequent.
func TestRecorderOverflow(t *testing.T) {
	start := time.Now()
	done := start.Add(time.Second)
	a, b := newRecorder(start, 0, 0), newRecorder(start, 0, 0)
	for i := range 3 * maxKinds {
		a.recordResponse(time.Millisecond, done, 200, []byte(fmt.Sprintf("c; hit; ttl=%d", i)))
		b.recordResponse(time.Millisecond, done, 200, []byte(fmt.Sprintf("c; fwd=miss; ttl=%d", i)))
	}
	for range 10 { // the most frequent value, tracked by a
		a.recordResponse(time.Millisecond, done, 200, []byte("c; hit; ttl=0"))
	}
	if len(a.kinds) != maxKinds+1 || a.kinds[maxKinds].value != otherHitKind || a.kinds[maxKinds].count != 2*maxKinds {
		t.Errorf("worker a has %d rows, the last %q with %d; want %d tracked and %q with %d", len(a.kinds), a.kinds[len(a.kinds)-1].value, a.kinds[len(a.kinds)-1].count, maxKinds, otherHitKind, 2*maxKinds)
	}
	m := mergeRecorders([]*recorder{a, b})
	var total, hits, top uint64
	for _, k := range m.kinds {
		total += k.Count
		if k.Hit {
			hits += k.Count
		}
		if k.Value == "c; hit; ttl=0" {
			top = k.Count
		}
	}
	if len(m.kinds) != maxKinds+2 || top != 11 || total != 6*maxKinds+10 || hits != 3*maxKinds+10 {
		t.Errorf("merged: %d rows, ttl=0 hit %d, %d answers of which %d hits; want %d rows, ttl=0 with 11, %d answers, %d hits",
			len(m.kinds), top, total, hits, maxKinds+2, 6*maxKinds+10, 3*maxKinds+10)
	}
}

func TestRecorderMergesWorkers(t *testing.T) {
	start := time.Now()
	a, b := newRecorder(start, 2, 0), newRecorder(start, 2, 0)
	a.recordResponse(2*time.Millisecond, start.Add(100*time.Millisecond), 200, []byte("userrouter; hit"))
	a.recordResponse(4*time.Millisecond, start.Add(1500*time.Millisecond), 200, []byte("userrouter; hit"))
	b.recordResponse(8*time.Millisecond, start.Add(200*time.Millisecond), 503, nil)
	b.recordError(fmt.Errorf("dial: %w", errTestTimeout{}), start.Add(300*time.Millisecond))
	a.recordVisitor(visitorIdentified, 0)
	b.recordVisitor(visitorIdentified, 1)
	b.recordVisitor(visitorIdentified, 1)

	m := mergeRecorders([]*recorder{a, b})
	if n := m.hist.TotalCount(); n != 3 {
		t.Errorf("merged histogram holds %d values; want 3", n)
	}
	if m.status[200] != 2 || m.status[503] != 1 {
		t.Errorf("status %v; want 200: 2, 503: 1", m.status)
	}
	if m.errs[errTimeout] != 1 || !strings.Contains(m.errSample[errTimeout], "i/o timeout") {
		t.Errorf("errors %v %q; want one timeout with its message", m.errs, m.errSample)
	}
	if len(m.kinds) != 2 || m.kinds[0].Value != "userrouter; hit" || m.kinds[0].Count != 2 || !m.kinds[0].Hit {
		t.Errorf("kinds %+v; want the hit value first with 2", m.kinds)
	}
	if len(m.timeline) != 2 || m.timeline[0].Responses != 2 || m.timeline[0].Errors != 1 || m.timeline[1].Responses != 1 {
		t.Errorf("timeline %+v; want 2 answers and 1 error in second 0, 1 answer in second 1", m.timeline)
	}
	if m.visitors[visitorIdentified] != 3 || m.keysUsed[visitorIdentified] != 2 {
		t.Errorf("identified visitors %d, keys used %d; want 3 and 2", m.visitors[visitorIdentified], m.keysUsed[visitorIdentified])
	}
}

// errTestTimeout is a net.Error that timed out.
type errTestTimeout struct{}

func (errTestTimeout) Error() string   { return "i/o timeout" }
func (errTestTimeout) Timeout() bool   { return true }
func (errTestTimeout) Temporary() bool { return true }

// benchValues are Cache-Status values in the proportions of a busy site.
var benchValues = [][]byte{
	[]byte("userrouter; hit"), []byte("userrouter; hit"), []byte("userrouter; hit"), []byte("userrouter; hit"),
	[]byte("userrouter; hit"), []byte("userrouter; hit; detail=stale"), []byte("userrouter; fwd=miss; stored"),
	[]byte("userrouter; fwd=bypass; detail=identified"), nil,
}

// BenchmarkRecordResponse measures bench's per-request bookkeeping: the
// histograms, the status code, the Cache-Status value's interning and the
// timeline.
func BenchmarkRecordResponse(b *testing.B) {
	start := time.Now()
	r := newRecorder(start, 0, 0)
	done := start.Add(time.Second)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.recordResponse(time.Duration(i%5000)*time.Microsecond, done, 200, benchValues[i%len(benchValues)])
		i++
	}
}

// BenchmarkClassifyCacheStatus measures the parse that runs once per
// distinct value when workers are merged.
func BenchmarkClassifyCacheStatus(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		classifyCacheStatus("userrouter; fwd=bypass; detail=doubt-timeout")
	}
}

func TestClassifyError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "refused", err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, want: errRefused},
		{name: "fasthttp timeout", err: fasthttp.ErrTimeout, want: errTimeout},
		{name: "dial timeout", err: fasthttp.ErrDialTimeout, want: errTimeout},
		{name: "deadline", err: fmt.Errorf("read: %w", os.ErrDeadlineExceeded), want: errTimeout},
		{name: "net timeout", err: errTestTimeout{}, want: errTimeout},
		{name: "closed before answer", err: fasthttp.ErrConnectionClosed, want: errClosed},
		{name: "eof", err: io.EOF, want: errClosed},
		{name: "reset", err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, want: errClosed},
		{name: "other", err: errors.New("fasthttp: unexpected status line"), want: errOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classifyError(tt.err); got != tt.want {
				t.Errorf("classifyError(%v) = %s; want %s", tt.err, errKindNames[got], errKindNames[tt.want])
			}
		})
	}
}

func TestResolveTargets(t *testing.T) {
	tests := []struct {
		name, base string
		refs       []string
		sameHost   bool
		want       string // the URLs joined by spaces, or "error"
	}{
		{name: "base itself", base: "http://h:8080", refs: []string{""}, want: "http://h:8080/"},
		{name: "root base", base: "http://h/", refs: []string{"/a", "b", "/c?x=1"}, want: "http://h/a http://h/b http://h/c?x=1"},
		{name: "base with a path", base: "http://h/app/", refs: []string{"/page/1", "page/2"}, want: "http://h/app/page/1 http://h/app/page/2"},
		{name: "base path without slash", base: "http://h/app", refs: []string{"/x"}, want: "http://h/app/x"},
		{name: "escaped path kept", base: "http://h/", refs: []string{"/a%2Fb"}, want: "http://h/a%2Fb"},
		{name: "absolute URL kept", base: "http://h/", refs: []string{"https://other:8443/z"}, want: "https://other:8443/z"},
		{name: "absolute URL without base", base: "", refs: []string{"http://other/z"}, want: "http://other/z"},
		{name: "path without base", base: "", refs: []string{"/z"}, want: "error"},
		{name: "absolute URL with compare", base: "http://h/", refs: []string{"http://other/z"}, sameHost: true, want: "error"},
		{name: "absolute URL of another scheme", base: "http://h/", refs: []string{"ftp://other/z"}, want: "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			urls, err := resolveTargets(tt.base, tt.refs, tt.sameHost)
			got := strings.Join(urls, " ")
			if err != nil {
				got = "error"
			}
			if got != tt.want {
				t.Errorf("resolveTargets(%q, %q) = %q (%v); want %q", tt.base, tt.refs, got, err, tt.want)
			}
		})
	}
}

func TestRatioPhrases(t *testing.T) {
	tests := []struct {
		x                      float64
		times, latency, thrput string
	}{
		{x: 0.001, times: "0.001×", latency: "1000× faster", thrput: "0.001× the throughput"},
		{x: 0.25, times: "0.25×", latency: "4.00× faster", thrput: "0.25× the throughput"},
		{x: 1.001, times: "1.00×", latency: "the same", thrput: "1.00× the throughput"},
		{x: 1.5, times: "1.50×", latency: "1.50× slower", thrput: "1.50× the throughput"},
		{x: 23.456, times: "23.5×", latency: "23.5× slower", thrput: "23.5× the throughput"},
		{x: math.NaN(), times: "–", latency: "–", thrput: "–"},
		{x: 0, times: "–", latency: "–", thrput: "–"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.x), func(t *testing.T) {
			if got := fmtTimes(tt.x); got != tt.times {
				t.Errorf("fmtTimes: got %q; want %q", got, tt.times)
			}
			if got := fmtLatencyRatio(tt.x); got != tt.latency {
				t.Errorf("fmtLatencyRatio: got %q; want %q", got, tt.latency)
			}
			if got := fmtThroughputRatio(tt.x); got != tt.thrput {
				t.Errorf("fmtThroughputRatio: got %q; want %q", got, tt.thrput)
			}
		})
	}
}
