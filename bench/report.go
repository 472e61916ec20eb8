package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// noneLabel stands for "no Cache-Status header" in reports.
const noneLabel = "(none)"

// latencyJSON holds latency figures in milliseconds.
type latencyJSON struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// latencyOf reads the report's percentiles from h (values in µs).
func latencyOf(h *hdrhistogram.Histogram) latencyJSON {
	if h == nil || h.TotalCount() == 0 {
		return latencyJSON{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return latencyJSON{
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
		Mean: h.Mean() / 1000,
	}
}

// classJSON is one cache class (hit, fwd=miss, ...) of the JSON report.
type classJSON struct {
	Count   uint64            `json:"count"`
	Share   float64           `json:"share"`   // of answered requests
	Details map[string]uint64 `json:"details"` // by what follows hit or fwd; "" for nothing
}

// visitorJSON is one visitor kind of the JSON report.
type visitorJSON struct {
	Requests uint64 `json:"requests"`
	Keys     int    `json:"keys"`      // cookie values available
	KeysUsed int    `json:"keys_used"` // distinct values sent in the measured window
}

// secondJSON is one second of the timeline.
type secondJSON struct {
	Second            int     `json:"second"` // 0 is the first second of the measured window
	RequestsPerSecond float64 `json:"requests_per_second"`
	Errors            uint64  `json:"errors"`
	MeanMs            float64 `json:"mean_ms"`
	MaxMs             float64 `json:"max_ms"`
}

// runJSON is the JSON report of one run.
type runJSON struct {
	Label                string                 `json:"label,omitempty"`
	Mode                 string                 `json:"mode"` // "closed" or "open"
	URL                  string                 `json:"url"`
	URLs                 int                    `json:"urls"`
	Connections          int                    `json:"connections"`
	Procs                int                    `json:"procs"` // GOMAXPROCS bench ran with
	Rate                 float64                `json:"rate"`  // requests/s asked for; 0 in the closed loop
	DurationS            float64                `json:"duration_s"`
	WarmupS              float64                `json:"warmup_s"`
	Requests             uint64                 `json:"requests"`
	Responses            uint64                 `json:"responses"`
	RequestsPerSecond    float64                `json:"requests_per_second"`
	Errors               uint64                 `json:"errors"`
	ErrorsByKind         map[string]uint64      `json:"errors_by_kind"`
	ErrorSamples         map[string]string      `json:"error_samples,omitempty"`
	Latency              latencyJSON            `json:"latency_ms"`
	StatusCodes          map[string]uint64      `json:"status_codes"`
	CacheStatus          map[string]uint64      `json:"cache_status"`
	CacheStatusLatencyMs map[string]latencyJSON `json:"cache_status_latency_ms"`
	CacheClasses         map[string]classJSON   `json:"cache_classes"`
	HitRatio             float64                `json:"hit_ratio"`
	Visitors             map[string]visitorJSON `json:"visitors"`
	Scheduled            *uint64                `json:"scheduled,omitempty"`      // open loop: requests due in the window
	RateSustained        *bool                  `json:"rate_sustained,omitempty"` // open loop: sent ≥ 97% of scheduled
	Interrupted          bool                   `json:"interrupted,omitempty"`
	BenchCost            costJSON               `json:"bench_cost"`               // what the run cost bench (warm-up included)
	TargetProcess        *targetJSON            `json:"target_process,omitempty"` // -pid's resident memory and CPU time
	Timeline             []secondJSON           `json:"timeline"`
}

// visitorNames are the report names of the visitor kinds.
var visitorNames = [numVisitorKinds]string{"none", "identified", "anonymous"}

// hits counts the answers a cache served.
func (r *runResult) hits() uint64 {
	var n uint64
	for _, k := range r.kinds {
		if k.Hit {
			n += k.Count
		}
	}
	return n
}

// hitRatio is hits over answered requests, 0 without answers.
func (r *runResult) hitRatio() float64 {
	if r.responses == 0 {
		return 0
	}
	return float64(r.hits()) / float64(r.responses)
}

// kindLabel is how a Cache-Status value appears in reports.
func kindLabel(v string) string {
	if v == "" {
		return noneLabel
	}
	return v
}

// a classSummary groups the Cache-Status values of one class.
type classSummary struct {
	class   string
	count   uint64
	details []detailCount
}

type detailCount struct {
	detail string
	count  uint64
}

// classes groups r's Cache-Status values by class, largest first.
func (r *runResult) classes() []classSummary {
	idx := map[string]int{}
	var out []classSummary
	for _, k := range r.kinds {
		i, ok := idx[k.Class]
		if !ok {
			i = len(out)
			idx[k.Class] = i
			out = append(out, classSummary{class: k.Class})
		}
		out[i].count += k.Count
		found := false
		for j := range out[i].details {
			if out[i].details[j].detail == k.Detail {
				out[i].details[j].count += k.Count
				found = true
			}
		}
		if !found {
			out[i].details = append(out[i].details, detailCount{k.Detail, k.Count})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].count > out[j].count })
	for _, c := range out {
		sort.SliceStable(c.details, func(i, j int) bool { return c.details[i].count > c.details[j].count })
	}
	return out
}

// timelineSeconds returns the per-second figures of the measured window.
// The last second is usually partial; its rate is scaled to its length.
// With -duration, answers after it (requests sent before the end, still
// in flight) count in the totals but are not plotted as a second of their
// own: nothing new was sent then, so their rate would read as a collapse.
func (r *runResult) timelineSeconds() []secondJSON {
	out := make([]secondJSON, 0, len(r.timeline))
	end := r.elapsed.Seconds()
	if d := r.spec.duration.Seconds(); d > 0 && d < end {
		end = d
	}
	for i, s := range r.timeline {
		if float64(i) >= end {
			break
		}
		span := 1.0
		if float64(i+1) > end {
			span = end - float64(i)
		}
		if span < 0.05 { // a sliver of a second after the window: too noisy to plot
			continue
		}
		sj := secondJSON{Second: i, RequestsPerSecond: float64(s.Responses) / span, Errors: s.Errors, MaxMs: float64(s.LatMax) / 1000}
		if s.Responses > 0 {
			sj.MeanMs = float64(s.LatSum) / float64(s.Responses) / 1000
		}
		out = append(out, sj)
	}
	return out
}

// toJSON builds the JSON report of r.
func (r *runResult) toJSON() runJSON {
	j := runJSON{
		Label:                r.spec.label,
		Mode:                 r.spec.mode(),
		URL:                  describeTargets(r.spec.urls),
		URLs:                 len(r.spec.urls),
		Connections:          r.spec.conns,
		Procs:                runtime.GOMAXPROCS(0),
		Rate:                 r.spec.rate,
		DurationS:            r.elapsed.Seconds(),
		WarmupS:              r.spec.warmup.Seconds(),
		Requests:             r.requests,
		Responses:            r.responses,
		RequestsPerSecond:    r.rps(),
		Errors:               r.errors,
		ErrorsByKind:         map[string]uint64{},
		Latency:              latencyOf(r.hist),
		StatusCodes:          map[string]uint64{},
		CacheStatus:          map[string]uint64{},
		CacheStatusLatencyMs: map[string]latencyJSON{},
		CacheClasses:         map[string]classJSON{},
		HitRatio:             r.hitRatio(),
		Visitors:             map[string]visitorJSON{},
		Interrupted:          r.interrupted,
		Timeline:             r.timelineSeconds(),
		BenchCost:            r.cost.toJSON(),
		TargetProcess:        r.cost.targetJSON(),
	}
	for k := range numErrKinds {
		j.ErrorsByKind[errKindNames[k]] = r.errs[k]
		if r.errSample[k] != "" {
			if j.ErrorSamples == nil {
				j.ErrorSamples = map[string]string{}
			}
			j.ErrorSamples[errKindNames[k]] = r.errSample[k]
		}
	}
	for code, n := range r.status {
		j.StatusCodes[strconv.Itoa(code)] = n
	}
	if r.badStatus > 0 {
		j.StatusCodes["other"] = r.badStatus
	}
	for _, k := range r.kinds {
		j.CacheStatus[kindLabel(k.Value)] = k.Count
		j.CacheStatusLatencyMs[kindLabel(k.Value)] = latencyOf(k.Hist)
	}
	for _, c := range r.classes() {
		cj := classJSON{Count: c.count, Details: map[string]uint64{}}
		if r.responses > 0 {
			cj.Share = float64(c.count) / float64(r.responses)
		}
		for _, d := range c.details {
			cj.Details[d.detail] = d.count
		}
		j.CacheClasses[c.class] = cj
	}
	keys := [numVisitorKinds]int{0, len(r.spec.identified), len(r.spec.anon)}
	for k := range numVisitorKinds {
		j.Visitors[visitorNames[k]] = visitorJSON{Requests: r.visitors[k], Keys: keys[k], KeysUsed: r.keysUsed[k]}
	}
	if r.spec.rate > 0 {
		sched, ok := r.scheduled, !r.unsustained()
		j.Scheduled, j.RateSustained = &sched, &ok
	}
	return j
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fmtMs formats a latency in milliseconds with three significant digits.
func fmtMs(ms float64) string {
	switch {
	case ms >= 10_000:
		return fmt.Sprintf("%.1fs", ms/1000)
	case ms >= 1000:
		return fmt.Sprintf("%.2fs", ms/1000)
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	case ms >= 1:
		return fmt.Sprintf("%.2fms", ms)
	}
	return fmt.Sprintf("%.3fms", ms)
}

// pct formats n of total as a percentage.
func pct(n, total uint64) string {
	if total == 0 {
		return noFigure
	}
	return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(total))
}

// describeLoad says how a run loads its target, in one line.
func (s *runSpec) describeLoad() string {
	var b strings.Builder
	if s.rate > 0 {
		fmt.Fprintf(&b, "open loop, %g requests/s, at most %d in flight", s.rate, s.conns)
	} else {
		fmt.Fprintf(&b, "closed loop, %d connections", s.conns)
	}
	switch {
	case s.duration > 0 && s.requests > 0:
		fmt.Fprintf(&b, ", %v or %d requests", s.duration, s.requests)
	case s.duration > 0:
		fmt.Fprintf(&b, ", %v", s.duration)
	default:
		fmt.Fprintf(&b, ", %d requests", s.requests)
	}
	if s.warmup > 0 {
		fmt.Fprintf(&b, " after %v warm-up", s.warmup)
	}
	return b.String()
}

// describePick says how a run with several URLs picks them.
func (s *runSpec) describePick() string {
	if s.zipf > 1 {
		return fmt.Sprintf("Zipf s=%g", s.zipf)
	}
	return "uniform"
}

// statusCodes returns the status codes of r's answers, in order.
func (r *runResult) statusCodes() []int {
	return slices.Sorted(maps.Keys(r.status))
}

// describeVisitors says which cookies r's requests carried.
func (r *runResult) describeVisitors() string {
	return fmt.Sprintf("%d without cookie, %d identified (%d of %d keys used), %d anonymous-session (%d of %d keys used)",
		r.visitors[visitorNone], r.visitors[visitorIdentified], r.keysUsed[visitorIdentified], len(r.spec.identified),
		r.visitors[visitorAnon], r.keysUsed[visitorAnon], len(r.spec.anon))
}

// describeProcs says how many CPUs bench ran on.
func describeProcs() string {
	if n := runtime.GOMAXPROCS(0); n != 1 {
		return fmt.Sprintf("bench on %d CPUs", n)
	}
	return "bench on 1 CPU"
}

// writeText writes r as the human-readable table.
func (r *runResult) writeText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s := r.spec
	fmt.Fprintf(tw, "target\t%s", describeTargets(s.urls))
	if len(s.urls) > 1 {
		fmt.Fprintf(tw, " (%d URLs, %s)", len(s.urls), s.describePick())
	}
	fmt.Fprintf(tw, "\nload\t%s; %s\n", s.describeLoad(), describeProcs())
	fmt.Fprintf(tw, "bench cost\t%s\n", r.cost.describe())
	if t := r.cost.describeTarget(); t != "" {
		fmt.Fprintf(tw, "target process\t%s\n", t)
	}
	fmt.Fprintf(tw, "requests\t%d in %.2fs: %.1f req/s answered\n", r.requests, r.elapsed.Seconds(), r.rps())
	if s.rate > 0 {
		fmt.Fprintf(tw, "schedule\tsent %d of %d scheduled requests (%s)\n", r.requests, r.scheduled, pct(r.requests, r.scheduled))
	}
	l := latencyOf(r.hist)
	fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n",
		fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Mean))
	if s.rate > 0 {
		fmt.Fprintf(tw, "\t(a request that waited for a free connection counts from its scheduled time)\n")
	}

	var parts []string
	for _, c := range r.statusCodes() {
		parts = append(parts, fmt.Sprintf("%d: %d", c, r.status[c]))
	}
	if r.badStatus > 0 {
		parts = append(parts, fmt.Sprintf("other: %d", r.badStatus))
	}
	if len(parts) == 0 {
		parts = []string{"no answers"}
	}
	fmt.Fprintf(tw, "status\t%s\n", strings.Join(parts, ", "))

	if r.errors == 0 {
		fmt.Fprintf(tw, "errors\t0\n")
	} else {
		fmt.Fprintf(tw, "errors\t%d (%s of requests)\n", r.errors, pct(r.errors, r.requests))
		for k := range numErrKinds {
			if r.errs[k] > 0 {
				fmt.Fprintf(tw, "\t  %s %d, e.g. %s\n", strings.ReplaceAll(errKindNames[k], "_", " "), r.errs[k], r.errSample[k])
			}
		}
	}

	if r.visitors[visitorIdentified]+r.visitors[visitorAnon] > 0 || len(s.identified)+len(s.anon) > 0 {
		fmt.Fprintf(tw, "visitors\t%s\n", r.describeVisitors())
	}
	tw.Flush()

	if len(r.kinds) == 0 {
		return
	}
	if len(r.kinds) == 1 && r.kinds[0].Value == "" {
		fmt.Fprintf(w, "\ncache-status: no answer carried a Cache-Status header\n")
		return
	}
	width := len("cache-status")
	for _, k := range r.kinds {
		width = max(width, len(kindLabel(k.Value)))
	}
	fmt.Fprintf(w, "\n%-*s  %10s  %7s  %9s  %9s\n", width, "cache-status", "count", "share", "p50", "p99")
	for _, k := range r.kinds {
		kl := latencyOf(k.Hist)
		fmt.Fprintf(w, "%-*s  %10d  %7s  %9s  %9s\n", width, kindLabel(k.Value), k.Count, pct(k.Count, r.responses), fmtMs(kl.P50), fmtMs(kl.P99))
	}
	fmt.Fprintf(w, "hit ratio %s (%d of %d answers)\n", pct(r.hits(), r.responses), r.hits(), r.responses)
	for _, c := range r.classes() {
		fmt.Fprintf(w, "  %-12s %s", c.class, pct(c.count, r.responses))
		var ds []string
		for _, d := range c.details {
			if d.detail == "" && len(c.details) == 1 {
				break
			}
			name := d.detail
			if name == "" {
				name = "no detail"
			}
			ds = append(ds, fmt.Sprintf("%s %s", name, pct(d.count, r.responses)))
		}
		if len(ds) > 0 {
			fmt.Fprintf(w, "  (%s)", strings.Join(ds, ", "))
		}
		fmt.Fprintln(w)
	}
}

// warnings returns what the user must know about r beyond its figures,
// each a sentence for stderr; failed says whether they make the run fail.
func (r *runResult) warnings() (msgs []string, failed bool) {
	name := ""
	if r.spec.label != "" {
		name = r.spec.label + ": "
	}
	if r.interrupted {
		msgs = append(msgs, name+"interrupted: the figures cover the run so far")
		failed = true
	}
	if r.unsustained() {
		msgs = append(msgs, fmt.Sprintf("%ssent %d of %d scheduled requests: the target cannot sustain -rate %g (it answered %.1f req/s with at most %d in flight); lower -rate, or raise -c if the target has capacity to spare",
			name, r.requests, r.scheduled, r.spec.rate, r.rps(), r.spec.conns))
		failed = true
	}
	if r.requests > 0 && r.responses == 0 {
		msgs = append(msgs, fmt.Sprintf("%severy one of the %d requests failed (see errors)", name, r.requests))
		failed = true
	}
	if r.requests == 0 && !r.interrupted {
		msgs = append(msgs, name+"no request was measured: raise -duration")
		failed = true
	}
	if h := r.cost.heavy(); h != "" {
		msgs = append(msgs, name+h)
	}
	if r.limitMissed {
		msgs = append(msgs, fmt.Sprintf("%s-duration %v ran out after %d of -requests %d; raise -duration, or set -duration 0 to stop on the count alone",
			name, r.spec.duration, r.requests, r.spec.requests))
	}
	return msgs, failed
}
