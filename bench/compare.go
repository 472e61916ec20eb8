package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
)

// A comparison is the outcome of -compare: runs of A and B, one pair per
// round, A first.
type comparison struct {
	a, b   *runSpec
	rounds [][2]*runResult
}

// ratioJSON holds B/A ratios (or, in medians, the figures themselves).
type ratioJSON struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	P50               float64 `json:"p50"`
	P99               float64 `json:"p99"`
}

// roundJSON is one round of the -compare JSON report.
type roundJSON struct {
	Round int       `json:"round"`
	A     runJSON   `json:"a"`
	B     runJSON   `json:"b"`
	Ratio ratioJSON `json:"ratio"` // B/A in this round
}

// compareJSON is the -compare JSON report.
type compareJSON struct {
	Mode        string               `json:"mode"` // "compare"
	A           string               `json:"a"`
	B           string               `json:"b"`
	NameA       string               `json:"name_a"` // -names: what the reports call A
	NameB       string               `json:"name_b"`
	Load        string               `json:"load"` // the shared load settings, in words
	Rounds      []roundJSON          `json:"rounds"`
	MedianRatio ratioJSON            `json:"median_ratio"` // median over rounds of B/A
	Median      map[string]ratioJSON `json:"median"`       // "a", "b": median figures (latency in ms)
}

// figures returns a run's throughput, p50 and p99 (ms).
func figures(r *runResult) ratioJSON {
	l := latencyOf(r.hist)
	return ratioJSON{RequestsPerSecond: r.rps(), P50: l.P50, P99: l.P99}
}

// ratio returns b/a figure by figure; NaN where a is 0.
func ratio(a, b ratioJSON) ratioJSON {
	div := func(x, y float64) float64 {
		if x == 0 {
			return math.NaN()
		}
		return y / x
	}
	return ratioJSON{div(a.RequestsPerSecond, b.RequestsPerSecond), div(a.P50, b.P50), div(a.P99, b.P99)}
}

// median returns the median of xs, ignoring NaNs; NaN when none is left.
func median(xs []float64) float64 {
	xs = slices.DeleteFunc(slices.Clone(xs), math.IsNaN)
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// medianOf applies median to each figure of fs.
func medianOf(fs []ratioJSON) ratioJSON {
	var rps, p50, p99 []float64
	for _, f := range fs {
		rps, p50, p99 = append(rps, f.RequestsPerSecond), append(p50, f.P50), append(p99, f.P99)
	}
	return ratioJSON{median(rps), median(p50), median(p99)}
}

// ratios returns the B/A ratios of every round.
func (c *comparison) ratios() []ratioJSON {
	var out []ratioJSON
	for _, r := range c.rounds {
		out = append(out, ratio(figures(r[0]), figures(r[1])))
	}
	return out
}

// medians returns the median figures of A and B.
func (c *comparison) medians() (a, b ratioJSON) {
	var fa, fb []ratioJSON
	for _, r := range c.rounds {
		fa, fb = append(fa, figures(r[0])), append(fb, figures(r[1]))
	}
	return medianOf(fa), medianOf(fb)
}

// toJSON builds the -compare JSON report. Ratios that cannot be computed
// (a zero figure for A) are reported as 0.
func (c *comparison) toJSON() compareJSON {
	j := compareJSON{Mode: "compare", A: c.a.urls[0], B: c.b.urls[0], NameA: c.a.label, NameB: c.b.label, Load: c.a.describeLoad(), Rounds: []roundJSON{}}
	ratios := c.ratios()
	for i, r := range c.rounds {
		j.Rounds = append(j.Rounds, roundJSON{Round: i + 1, A: r[0].toJSON(), B: r[1].toJSON(), Ratio: finite(ratios[i])})
	}
	j.MedianRatio = finite(medianOf(ratios))
	a, b := c.medians()
	j.Median = map[string]ratioJSON{"a": finite(a), "b": finite(b)}
	return j
}

// finite replaces NaN figures by 0, which JSON can carry.
func finite(r ratioJSON) ratioJSON {
	f := func(x float64) float64 {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0
		}
		return x
	}
	return ratioJSON{f(r.RequestsPerSecond), f(r.P50), f(r.P99)}
}

// noFigure stands for a figure that does not exist: a ratio over a zero,
// the hit ratio of a run no answer of which carried Cache-Status.
const noFigure = "–"

// fmtRatio formats a ratio, noFigure when it cannot be computed.
func fmtRatio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) || x <= 0 {
		return noFigure
	}
	return fmt.Sprintf("%.3f", x)
}

// fmtTimes formats a ratio as a factor: "12.3×", "1.05×".
func fmtTimes(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0) || x <= 0:
		return noFigure
	case x >= 100:
		return fmt.Sprintf("%.0f×", x)
	case x >= 10:
		return fmt.Sprintf("%.1f×", x)
	case x >= 1:
		return fmt.Sprintf("%.2f×", x)
	}
	return fmt.Sprintf("%.2g×", x)
}

// fmtLatencyRatio says how B's latency compares with A's, given their
// ratio B/A: "3.2× faster", "1.10× slower", "the same".
func fmtLatencyRatio(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0) || x <= 0:
		return noFigure
	case x > 0.995 && x < 1.005:
		return "the same"
	case x < 1:
		return fmtTimes(1/x) + " faster"
	}
	return fmtTimes(x) + " slower"
}

// fmtThroughputRatio says how B's throughput compares with A's, given
// their ratio B/A: "12.3× the throughput", "0.95× the throughput".
func fmtThroughputRatio(x float64) string {
	if s := fmtTimes(x); s != noFigure {
		return s + " the throughput"
	}
	return noFigure
}

// hitRatioText is a run's hit ratio for a report, noFigure when no answer
// carried Cache-Status (a run without a cache has no hit ratio, not 0%).
func (r *runResult) hitRatioText() string {
	if !r.hasCacheStatus() {
		return noFigure
	}
	return pct(r.hits(), r.responses)
}

// writeText writes the per-round table and the median ratios.
func (c *comparison) writeText(w io.Writer) {
	an, bn := c.a.label, c.b.label
	fmt.Fprintf(w, "%s  %s\n%s  %s\nload  %s, %d rounds (%s, then %s)\n\n", an, describeTargets(c.a.urls), bn, describeTargets(c.b.urls), c.a.describeLoad(), len(c.rounds), an, bn)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "round\trun\treq/s\tp50\tp99\tmax\terrors\thit ratio\tbench CPU/req\t\n")
	for i, r := range c.rounds {
		for _, x := range r {
			l := latencyOf(x.hist)
			fmt.Fprintf(tw, "%d\t%s\t%.1f\t%s\t%s\t%s\t%d\t%s\t%s\t\n", i+1, x.spec.label, x.rps(), fmtMs(l.P50), fmtMs(l.P99), fmtMs(l.Max), x.errors, x.hitRatioText(), x.cost.fmtPerRequest())
		}
	}
	tw.Flush()
	if len(c.rounds) == 0 {
		fmt.Fprintf(w, "\nno round was run\n")
		return
	}
	a, b := c.medians()
	m := medianOf(c.ratios())
	width := max(len(an), len(bn))
	fmt.Fprintf(w, "\nmedian %-*s  %.1f req/s  p50 %s  p99 %s\n", width, an, a.RequestsPerSecond, fmtMs(a.P50), fmtMs(a.P99))
	fmt.Fprintf(w, "median %-*s  %.1f req/s  p50 %s  p99 %s\n", width, bn, b.RequestsPerSecond, fmtMs(b.P50), fmtMs(b.P99))
	fmt.Fprintf(w, "median ratio B/A over %d rounds: throughput %s  p50 %s  p99 %s\n", len(c.rounds), fmtRatio(m.RequestsPerSecond), fmtRatio(m.P50), fmtRatio(m.P99))
	if !math.IsNaN(m.RequestsPerSecond) {
		fmt.Fprintf(w, "%s against %s: %s; p50 %s; p99 %s\n", bn, an, fmtThroughputRatio(m.RequestsPerSecond), fmtLatencyRatio(m.P50), fmtLatencyRatio(m.P99))
	}
}

// runCompare runs -compare: A then B, cfg.rounds times, and reports.
func runCompare(ctx context.Context, cfg *config, specs []*runSpec, stdout, stderr, progress io.Writer) int {
	c := &comparison{a: specs[0], b: specs[1]}
	status := exitOK
	var msgs []string
	for round := 1; round <= cfg.rounds && ctx.Err() == nil; round++ {
		var pair [2]*runResult
		for i, s := range specs {
			if progress != nil {
				fmt.Fprintf(progress, "%sround %d/%d, %s: %s\n", prefix, round, cfg.rounds, s.label, describeTargets(s.urls))
			}
			pair[i] = execute(ctx, s, progress)
			m, failed := pair[i].warnings()
			for _, x := range m {
				msgs = append(msgs, fmt.Sprintf("round %d, %s", round, x))
			}
			if failed {
				status = exitFailed
			}
		}
		c.rounds = append(c.rounds, pair)
	}
	if len(c.rounds) < cfg.rounds {
		// Interrupted before a round started (during the reachability
		// checks or the minting, or between rounds).
		msgs = append(msgs, fmt.Sprintf("interrupted: %d of %d rounds run", len(c.rounds), cfg.rounds))
		status = exitFailed
	}
	return emit(cfg, stdout, stderr, status, msgs, func() any { return c.toJSON() }, c.writeText, func() *htmlPage { return htmlCompare(c) })
}
