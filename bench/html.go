package main

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"os"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// htmlPage is what the report template shows; htmlRun and htmlCompare
// fill it.
type htmlPage struct {
	Title     string
	Subtitle  []string
	Generated string
	Warnings  []string
	Cards     []htmlCard
	Charts    []htmlChart
	Tables    []htmlTable
}

type htmlCard struct{ Label, Value, Sub string }

type htmlChart struct {
	Title string
	SVG   template.HTML
}

// An htmlTable is a titled table; cells of numeric columns are right-aligned.
type htmlTable struct {
	Title   string
	Head    []string // nil: no header row
	Numeric []bool
	Keyed   bool // the first column names the row
	Half    bool // narrow: two such tables share a row
	Rows    [][]string
	Note    string
}

// colors of the charts: the first for single runs and A, the second for B.
var (
	blues   = []string{"#1d4ed8", "#3b82f6", "#60a5fa", "#1e3a8a", "#93c5fd"}
	oranges = []string{"#c2410c", "#f97316", "#fb923c", "#7c2d12", "#fdba74"}
)

const errorColor = "#dc2626"

// roundColor is the color of -compare's run j (0: A, 1: B) in round i.
func roundColor(i, j int) string {
	shades := [2][]string{blues, oranges}[j]
	return shades[i%len(shades)]
}

// percentileCurve samples h (µs) along the percentile axis, in ms.
func percentileCurve(h *hdrhistogram.Histogram, top float64) []chartPoint {
	var pts []chartPoint
	if h.TotalCount() == 0 {
		return nil
	}
	for i := 0; ; i++ {
		x := float64(i) * 0.01
		if x > top {
			break
		}
		p := 100 * (1 - math.Pow(10, -x))
		pts = append(pts, chartPoint{x, float64(h.ValueAtQuantile(p)) / 1000})
	}
	return append(pts, chartPoint{top, float64(h.Max()) / 1000})
}

// latencyChart plots the percentile curves of runs, labelled by names.
// With one run the usual percentiles are marked and labelled.
func latencyChart(runs []*runResult, names []string, colors []string, dashes []string) template.HTML {
	var count int64
	top, bottom := 0.0, math.Inf(1)
	for _, r := range runs {
		if r.hist.TotalCount() == 0 {
			continue
		}
		count = max(count, r.hist.TotalCount())
		top = max(top, float64(r.hist.Max())/1000)
		bottom = min(bottom, float64(r.hist.Min())/1000)
	}
	c := chart{
		width: 1000, height: 380,
		x: percentileAxis(count),
		y: logAxis("latency (log scale)", bottom, top, fmtAxisMs),
	}
	// The caption reads the chart's own first curve at 99%.
	for i, r := range runs {
		if r.hist.TotalCount() > 0 {
			p99 := fmtMs(float64(r.hist.ValueAtQuantile(99)) / 1000)
			c.note = fmt.Sprintf("A point at (99%%, %s) reads: 99%% of the requests were answered within %s", p99, p99)
			if len(runs) > 1 {
				c.note += " (" + names[i] + ")"
			}
			c.note += ". The right end is the slowest request."
			break
		}
	}
	for i, r := range runs {
		s := chartSeries{name: names[i], color: colors[i], dash: dashes[i], style: "line", pts: percentileCurve(r.hist, c.x.max)}
		if len(runs) == 1 && r.hist.TotalCount() > 0 {
			s.style = "area"
			for _, p := range []struct {
				q    float64
				name string
			}{{50, "p50"}, {90, "p90"}, {99, "p99"}, {99.9, "p99.9"}} {
				if x := percentileX(p.q); x <= c.x.max {
					v := float64(r.hist.ValueAtQuantile(p.q)) / 1000
					s.marks = append(s.marks, chartMark{x, v, p.name + " " + fmtMs(v)})
				}
			}
			mx := float64(r.hist.Max()) / 1000
			s.marks = append(s.marks, chartMark{c.x.max, mx, "max " + fmtMs(mx)})
		}
		c.series = append(c.series, s)
	}
	return c.svg()
}

// timeAxis returns the x axis of a per-second chart over n seconds.
func timeAxis(n int) chartAxis {
	a := linearAxis("seconds into the measured window", float64(max(n, 1)), 10, func(v float64) string { return fmt.Sprintf("%g", v) })
	if len(a.ticks) > 1 && a.ticks[1].v < 1 { // whole seconds only
		a.ticks = nil
		for i := range n {
			a.ticks = append(a.ticks, chartTick{float64(i), fmt.Sprint(i)})
		}
	}
	a.min = -0.5
	a.max = float64(max(n, 1)) - 0.5
	ticks := a.ticks[:0]
	for _, t := range a.ticks {
		if t.v <= a.max {
			ticks = append(ticks, t)
		}
	}
	a.ticks = ticks
	return a
}

// throughputChart plots answered requests (and errors) per second.
func throughputChart(r *runResult) template.HTML {
	secs := r.timelineSeconds()
	var top float64
	ok := chartSeries{name: "answered req/s", color: blues[1], style: "bars"}
	bad := chartSeries{name: "errors/s", color: errorColor, style: "bars"}
	for _, s := range secs {
		top = max(top, s.RequestsPerSecond, float64(s.Errors))
		ok.pts = append(ok.pts, chartPoint{float64(s.Second), s.RequestsPerSecond})
		if s.Errors > 0 {
			bad.pts = append(bad.pts, chartPoint{float64(s.Second), float64(s.Errors)})
		}
	}
	c := chart{width: 1000, height: 300, x: timeAxis(len(secs)), y: linearAxis("requests per second", top, 5, fmtAxisCount), series: []chartSeries{ok}}
	if len(bad.pts) > 0 {
		c.series = append(c.series, bad)
	}
	if r.spec.rate > 0 {
		c.series = append(c.series, chartSeries{name: fmt.Sprintf("-rate %g", r.spec.rate), color: "#16a34a", dash: "6 4", style: "line",
			pts: []chartPoint{{c.x.min, r.spec.rate}, {c.x.max, r.spec.rate}}})
		c.y = linearAxis("requests per second", max(top, r.spec.rate), 5, fmtAxisCount)
	}
	return c.svg()
}

// latencyTimeChart plots the mean and the slowest latency of each second.
func latencyTimeChart(r *runResult) template.HTML {
	secs := r.timelineSeconds()
	top, bottom := 0.0, math.Inf(1)
	mean := chartSeries{name: "mean", color: blues[0], style: "line", dots: len(secs) <= 60}
	worst := chartSeries{name: "max", color: oranges[1], style: "line", dots: len(secs) <= 60}
	for _, s := range secs {
		if s.MeanMs > 0 {
			top, bottom = max(top, s.MaxMs), min(bottom, s.MeanMs)
		}
		mean.pts = append(mean.pts, chartPoint{float64(s.Second), s.MeanMs})
		worst.pts = append(worst.pts, chartPoint{float64(s.Second), s.MaxMs})
	}
	c := chart{width: 1000, height: 300, x: timeAxis(len(secs)), y: logAxis("latency (log scale)", bottom, top, fmtAxisMs), series: []chartSeries{mean, worst}}
	return c.svg()
}

// compareThroughputChart plots each -compare run's requests per second.
func compareThroughputChart(c *comparison) template.HTML {
	ch := chart{width: 1000, height: 320}
	var top float64
	n := 0
	for i, pair := range c.rounds {
		for j, r := range pair {
			s := chartSeries{name: fmt.Sprintf("%s round %d", r.spec.label, i+1), color: roundColor(i, j), style: "line"}
			for _, sec := range r.timelineSeconds() {
				s.pts = append(s.pts, chartPoint{float64(sec.Second), sec.RequestsPerSecond})
				top = max(top, sec.RequestsPerSecond)
			}
			n = max(n, len(s.pts))
			ch.series = append(ch.series, s)
		}
	}
	ch.x = timeAxis(n)
	ch.y = linearAxis("requests per second", top, 5, fmtAxisCount)
	return ch.svg()
}

// summaryCards are the headline figures of a run.
func summaryCards(r *runResult) []htmlCard {
	l := latencyOf(r.hist)
	cards := []htmlCard{
		{"throughput", fmt.Sprintf("%.0f req/s", r.rps()), fmt.Sprintf("%d answered in %.2fs", r.responses, r.elapsed.Seconds())},
		{"p50", fmtMs(l.P50), "half the requests were faster"},
		{"p99", fmtMs(l.P99), fmt.Sprintf("p90 %s", fmtMs(l.P90))},
		{"p99.9", fmtMs(l.P999), fmt.Sprintf("max %s", fmtMs(l.Max))},
		{"errors", fmt.Sprintf("%d", r.errors), pct(r.errors, r.requests) + " of requests"},
	}
	if r.hasCacheStatus() {
		cards = append(cards, htmlCard{"hit ratio", r.hitRatioText(), fmt.Sprintf("%d hits of %d answers", r.hits(), r.responses)})
	}
	return cards
}

// hasCacheStatus reports whether any answer carried a Cache-Status header.
func (r *runResult) hasCacheStatus() bool {
	for _, k := range r.kinds {
		if k.Value != "" {
			return true
		}
	}
	return false
}

// runTables are the detail tables of a run.
func runTables(r *runResult) []htmlTable {
	s := r.spec
	l := latencyOf(r.hist)
	summary := htmlTable{Title: "Summary", Keyed: true, Rows: [][]string{
		{"target", describeTargets(s.urls)},
		{"load", s.describeLoad()},
		{"measured", fmt.Sprintf("%.2fs", r.elapsed.Seconds())},
		{"requests", fmt.Sprintf("%d sent, %d answered, %d errors", r.requests, r.responses, r.errors)},
		{"throughput", fmt.Sprintf("%.1f answered requests/s", r.rps())},
		{"latency", fmt.Sprintf("p50 %s, p90 %s, p99 %s, p99.9 %s, max %s, mean %s", fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Mean))},
		{"bench cost", r.cost.describe() + " (warm-up included)"},
	}}
	if t := r.cost.describeTarget(); t != "" {
		summary.Rows = append(summary.Rows, []string{"target process", t})
	}
	if s.rate > 0 {
		summary.Rows = append(summary.Rows, []string{"schedule", fmt.Sprintf("sent %d of %d scheduled requests (%s); latency counts from each request's scheduled time", r.requests, r.scheduled, pct(r.requests, r.scheduled))})
	}
	if len(s.urls) > 1 {
		summary.Rows = append(summary.Rows, []string{"URLs", fmt.Sprintf("%d, %s", len(s.urls), s.describePick())})
	}
	if len(s.identified)+len(s.anon) > 0 {
		summary.Rows = append(summary.Rows, []string{"visitors", r.describeVisitors()})
	}
	tables := []htmlTable{summary}

	if r.hasCacheStatus() {
		cs := htmlTable{Title: "Cache-Status", Head: []string{"value", "class", "count", "share", "p50", "p99", "max"},
			Numeric: []bool{false, false, true, true, true, true, true},
			Note:    fmt.Sprintf("hit ratio %s: answers whose first parameter after the cache name is hit", pct(r.hits(), r.responses))}
		for _, k := range r.kinds {
			kl := latencyOf(k.Hist)
			cs.Rows = append(cs.Rows, []string{kindLabel(k.Value), k.Class, fmt.Sprint(k.Count), pct(k.Count, r.responses), fmtMs(kl.P50), fmtMs(kl.P99), fmtMs(kl.Max)})
		}
		tables = append(tables, cs)
		cl := htmlTable{Title: "By class", Head: []string{"class", "count", "share", "details"}, Numeric: []bool{false, true, true, false}}
		for _, c := range r.classes() {
			var ds []string
			for _, d := range c.details {
				name := d.detail
				if name == "" {
					name = "no detail"
				}
				ds = append(ds, fmt.Sprintf("%s %d", name, d.count))
			}
			cl.Rows = append(cl.Rows, []string{c.class, fmt.Sprint(c.count), pct(c.count, r.responses), strings.Join(ds, ", ")})
		}
		tables = append(tables, cl)
	}

	st := htmlTable{Title: "Status codes", Head: []string{"status", "count", "share"}, Numeric: []bool{false, true, true}, Half: true}
	for _, c := range r.statusCodes() {
		st.Rows = append(st.Rows, []string{fmt.Sprint(c), fmt.Sprint(r.status[c]), pct(r.status[c], r.responses)})
	}
	if r.badStatus > 0 {
		st.Rows = append(st.Rows, []string{"other", fmt.Sprint(r.badStatus), pct(r.badStatus, r.responses)})
	}
	tables = append(tables, st)

	et := htmlTable{Title: "Errors", Head: []string{"kind", "count", "example"}, Numeric: []bool{false, true, false}, Half: true}
	for k := range numErrKinds {
		if r.errs[k] > 0 {
			et.Rows = append(et.Rows, []string{strings.ReplaceAll(errKindNames[k], "_", " "), fmt.Sprint(r.errs[k]), r.errSample[k]})
		}
	}
	if len(et.Rows) == 0 {
		et.Note = "none: every request got an answer"
	}
	tables = append(tables, et)
	return tables
}

// htmlRun builds the report page of one run.
func htmlRun(r *runResult) *htmlPage {
	warnings, _ := r.warnings()
	return &htmlPage{
		Title:     "bench report",
		Subtitle:  []string{describeTargets(r.spec.urls), r.spec.describeLoad()},
		Generated: time.Now().Format("2006-01-02 15:04:05 MST"),
		Warnings:  warnings,
		Cards:     summaryCards(r),
		Charts: []htmlChart{
			{"Latency by percentile", latencyChart([]*runResult{r}, []string{"latency"}, blues[:1], []string{""})},
			{"Throughput per second", throughputChart(r)},
			{"Latency per second", latencyTimeChart(r)},
		},
		Tables: runTables(r),
	}
}

// htmlCompare builds the report page of -compare.
func htmlCompare(c *comparison) *htmlPage {
	ratios := medianOf(c.ratios())
	a, b := c.medians()
	an, bn := c.a.label, c.b.label
	title := "bench comparison"
	if an != "A" || bn != "B" {
		title = bn + " against " + an
	}
	p := &htmlPage{
		Title:     title,
		Subtitle:  []string{an + ": " + describeTargets(c.a.urls), bn + ": " + describeTargets(c.b.urls), fmt.Sprintf("%s, %d rounds, %s then %s", c.a.describeLoad(), len(c.rounds), an, bn)},
		Generated: time.Now().Format("2006-01-02 15:04:05 MST"),
		Cards: []htmlCard{
			{"throughput", fmtTimes(ratios.RequestsPerSecond), fmt.Sprintf("%s %.0f, %s %.0f req/s", an, a.RequestsPerSecond, bn, b.RequestsPerSecond)},
			{"p50", fmtLatencyRatio(ratios.P50), fmt.Sprintf("%s %s, %s %s", an, fmtMs(a.P50), bn, fmtMs(b.P50))},
			{"p99", fmtLatencyRatio(ratios.P99), fmt.Sprintf("%s %s, %s %s", an, fmtMs(a.P99), bn, fmtMs(b.P99))},
		},
	}
	var runs []*runResult
	var names, colors, dashes []string
	for i, pair := range c.rounds {
		for j, r := range pair {
			w, _ := r.warnings()
			for _, m := range w {
				p.Warnings = append(p.Warnings, fmt.Sprintf("round %d, %s", i+1, m))
			}
			runs = append(runs, r)
			names = append(names, fmt.Sprintf("%s round %d", r.spec.label, i+1))
			colors = append(colors, roundColor(i, j))
			dashes = append(dashes, "")
		}
	}
	p.Charts = []htmlChart{
		{"Latency by percentile", latencyChart(runs, names, colors, dashes)},
		{"Throughput per second", compareThroughputChart(c)},
	}
	rt := htmlTable{Title: "Rounds", Head: []string{"round", "run", "req/s", "p50", "p90", "p99", "max", "errors", "hit ratio", "bench CPU/req"},
		Numeric: []bool{true, false, true, true, true, true, true, true, true, true},
		Note:    "bench CPU/req: bench's own CPU time per request (warm-up included); see What bench costs in docs/bench.md."}
	for i, pair := range c.rounds {
		for _, r := range pair {
			l := latencyOf(r.hist)
			rt.Rows = append(rt.Rows, []string{fmt.Sprint(i + 1), r.spec.label, fmt.Sprintf("%.1f", r.rps()), fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.Max), fmt.Sprint(r.errors), r.hitRatioText(), r.cost.fmtPerRequest()})
		}
	}
	ra := htmlTable{Title: fmt.Sprintf("%s against %s", bn, an), Half: true, Head: []string{"round", "throughput", "p50", "p99"}, Numeric: []bool{false, true, true, true},
		Note: fmt.Sprintf("The median over rounds is the figure to quote. Throughput is %s's over %s's; latencies say how much faster or slower %s answered.", bn, an, bn)}
	for i, rr := range c.ratios() {
		ra.Rows = append(ra.Rows, []string{fmt.Sprint(i + 1), fmtTimes(rr.RequestsPerSecond), fmtLatencyRatio(rr.P50), fmtLatencyRatio(rr.P99)})
	}
	ra.Rows = append(ra.Rows, []string{"median", fmtTimes(ratios.RequestsPerSecond), fmtLatencyRatio(ratios.P50), fmtLatencyRatio(ratios.P99)})
	p.Tables = []htmlTable{rt, ra}
	return p
}

// writeHTMLFile renders p into the file name.
func writeHTMLFile(name string, p *htmlPage) error {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, p); err != nil {
		return err
	}
	return os.WriteFile(name, buf.Bytes(), 0o644)
}

// pageTemplate is the report page: inline CSS, inline SVG, no script and
// no external resource of any kind.
var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"num": func(t htmlTable, i int) bool { return i < len(t.Numeric) && t.Numeric[i] },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", "DejaVu Sans", sans-serif; color: #1f2937; background: #f3f4f6; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 14px 0 8px; }
.sub { color: #4b5563; margin: 0; word-break: break-all; }
.gen { color: #9ca3af; font-size: 13px; margin: 4px 0 0; }
.warn { background: #fef2f2; border: 1px solid #fecaca; color: #991b1b; padding: 10px 14px; border-radius: 6px; margin: 16px 0 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 20px 0 4px; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 12px 16px; flex: 1 1 110px; }
.card .label { color: #6b7280; font-size: 13px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; margin: 2px 0; font-variant-numeric: tabular-nums; white-space: nowrap; }
.card .small { color: #6b7280; font-size: 13px; }
section.panel { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 18px 14px; margin-top: 18px; }
.tables { display: grid; grid-template-columns: 1fr 1fr; column-gap: 18px; }
.tables section.wide { grid-column: 1 / -1; }
svg.chart { width: 100%; height: auto; display: block; font-family: inherit; }
svg .grid { stroke: #e5e7eb; stroke-width: 1; }
svg .frame { fill: none; stroke: #9ca3af; stroke-width: 1; }
svg .tick { fill: #4b5563; font-size: 12px; }
svg .axis { fill: #374151; font-size: 13px; }
svg .legend { fill: #374151; font-size: 13px; }
svg .mark { fill: #111827; font-size: 12px; font-weight: 600; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.note { color: #6b7280; font-size: 13px; margin: 4px 0 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #f0f1f3; vertical-align: top; }
th { color: #6b7280; font-weight: 600; font-size: 13px; border-bottom: 1px solid #d1d5db; }
td.n, th.n { text-align: right; white-space: nowrap; }
td.k { color: #6b7280; white-space: nowrap; width: 1%; }
td { word-break: break-word; }
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
{{range .Subtitle}}<p class="sub">{{.}}</p>
{{end}}<p class="gen">generated {{.Generated}} by userrouter bench</p>
{{range .Warnings}}<p class="warn">{{.}}</p>
{{end}}<div class="cards">
{{range .Cards}}<div class="card"><div class="label">{{.Label}}</div><div class="value">{{.Value}}</div><div class="small">{{.Sub}}</div></div>
{{end}}</div>
{{range .Charts}}<section class="panel"><h2>{{.Title}}</h2>
{{.SVG}}
</section>
{{end}}<div class="tables">
{{range $t := .Tables}}<section class="panel{{if not $t.Half}} wide{{end}}"><h2>{{$t.Title}}</h2>
{{if $t.Rows}}<table>
{{if $t.Head}}<tr>{{range $i, $h := $t.Head}}<th{{if num $t $i}} class="n"{{end}}>{{$h}}</th>{{end}}</tr>
{{end}}{{range $t.Rows}}<tr>{{range $i, $c := .}}<td{{if num $t $i}} class="n"{{else if and $t.Keyed (eq $i 0)}} class="k"{{end}}>{{$c}}</td>{{end}}</tr>
{{end}}</table>
{{end}}{{with $t.Note}}<p class="note">{{.}}</p>{{end}}
</section>
{{end}}</div>
</main>
</body>
</html>
`))
