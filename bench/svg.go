package main

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// The charts of the HTML report are plain inline SVG written here: no
// script, no font and nothing else is fetched, so the page renders the
// same offline.

// A chartSeries is one line (or set of bars) of a chart.
type chartSeries struct {
	name  string
	color string
	dash  string // SVG stroke-dasharray, "" for a solid line
	style string // "line", "area" or "bars"
	pts   []chartPoint
	marks []chartMark // labelled points on a line
	dots  bool        // mark every point of a line (values in ms)
}

type chartPoint struct{ x, y float64 }

// A chartMark is a labelled dot, such as "p99 4.5ms" on a percentile curve.
type chartMark struct {
	x, y  float64
	label string
}

// A chartAxis maps data values onto one side of the plot.
type chartAxis struct {
	title    string
	min, max float64
	log      bool // min, max and ticks are data values; the scale is log10
	ticks    []chartTick
}

// pos maps v onto 0..1 along the axis, clamped.
func (a *chartAxis) pos(v float64) float64 {
	lo, hi := a.min, a.max
	if a.log {
		v, lo, hi = math.Log10(max(v, a.min)), math.Log10(lo), math.Log10(hi)
	}
	if hi == lo {
		return 0
	}
	return (min(max(v, lo), hi) - lo) / (hi - lo)
}

type chartTick struct {
	v     float64
	label string
}

// A chart is one SVG figure.
type chart struct {
	x, y   chartAxis
	series []chartSeries
	width  float64
	height float64
	// note is a line of small print under the plot, such as how to read it.
	note string
}

// Plot margins, in SVG units.
const (
	marginLeft   = 72.0
	marginRight  = 48.0
	marginTop    = 34.0
	marginBottom = 52.0
)

// niceStep returns a round step (1, 2, 2.5 or 5 times a power of ten)
// that cuts span into about n parts.
func niceStep(span float64, n int) float64 {
	if span <= 0 || math.IsNaN(span) || math.IsInf(span, 0) {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*mag*1.0000001 {
			return m * mag
		}
	}
	return 10 * mag
}

// linearAxis returns an axis from 0 to a round number at or above max,
// with about n ticks labelled by format.
func linearAxis(title string, max float64, n int, format func(float64) string) chartAxis {
	if !(max > 0) {
		max = 1
	}
	step := niceStep(max, n)
	top := math.Ceil(max/step-1e-9) * step
	a := chartAxis{title: title, min: 0, max: top}
	for i := 0; float64(i)*step <= top*1.0000001; i++ {
		v := float64(i) * step
		a.ticks = append(a.ticks, chartTick{v, format(v)})
	}
	return a
}

// logAxis returns a log-scale axis covering lo..hi (both > 0, else
// clamped), from the decade at or below lo to the one at or above hi,
// with ticks at each decade, and at 2 and 5 times each when there are few.
func logAxis(title string, lo, hi float64, format func(float64) string) chartAxis {
	if !(lo > 0) {
		lo = hi / 10
	}
	if !(hi > 0) {
		lo, hi = 0.1, 1
	}
	a := chartAxis{title: title, log: true, min: math.Pow(10, math.Floor(math.Log10(lo)+1e-9)), max: math.Pow(10, math.Ceil(math.Log10(hi)-1e-9))}
	if a.max <= a.min {
		a.max = a.min * 10
	}
	decades := math.Round(math.Log10(a.max / a.min))
	for d := a.min; d <= a.max*1.0001; d *= 10 {
		d = roundSig(d)
		a.ticks = append(a.ticks, chartTick{d, format(d)})
		if decades <= 2 && d*2 < a.max {
			for _, m := range []float64{2, 5} {
				a.ticks = append(a.ticks, chartTick{roundSig(d * m), format(roundSig(d * m))})
			}
		}
	}
	return a
}

// roundSig rounds v to 6 significant digits, undoing float drift in
// repeated multiplication by 10.
func roundSig(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	return r
}

// percentileX maps a percentile (0..100) to the log scale of HdrHistogram
// plots: x = log10(1 / (1 - p)), so 90% is 1, 99% is 2, 99.9% is 3.
func percentileX(p float64) float64 {
	if p >= 100 {
		return math.Inf(1)
	}
	return math.Log10(100 / (100 - p))
}

// percentileAxis returns the x axis of a percentile plot covering count
// samples: up to the percentile where one sample remains, between 99% and
// 99.9999%.
func percentileAxis(count int64) chartAxis {
	// Beyond log10(count) the curve is flat at the maximum.
	top := math.Ceil(math.Log10(float64(max(count, 1))) - 0.25)
	top = min(max(top, 2), 6)
	a := chartAxis{title: "percentile (log scale: each step is ten times rarer)", min: 0, max: top}
	labels := []struct {
		p     float64
		label string
	}{{0, "0%"}, {50, "50%"}, {90, "90%"}, {99, "99%"}, {99.9, "99.9%"}, {99.99, "99.99%"}, {99.999, "99.999%"}, {99.9999, "99.9999%"}}
	for _, l := range labels {
		if x := percentileX(l.p); x <= top+1e-9 {
			a.ticks = append(a.ticks, chartTick{x, l.label})
		}
	}
	return a
}

// fmtAxisMs labels a latency axis tick.
func fmtAxisMs(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1000:
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "s"
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + "ms"
}

// fmtAxisCount labels a count axis tick: 12000 is "12k".
func fmtAxisCount(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// f formats an SVG coordinate.
func f(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// svg renders the chart. Every text it writes is escaped.
func (c *chart) svg() template.HTML {
	w, h := c.width, c.height
	pw, ph := w-marginLeft-marginRight, h-marginTop-marginBottom
	sx := func(v float64) float64 { return marginLeft + c.x.pos(v)*pw }
	sy := func(v float64) float64 { return marginTop + ph - c.y.pos(v)*ph }
	esc := html.EscapeString
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %s %s" role="img">`, f(w), f(h))

	// grid and ticks
	for _, t := range c.y.ticks {
		y := sy(t.v)
		fmt.Fprintf(&b, `<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>`, f(marginLeft), f(y), f(marginLeft+pw), f(y))
		fmt.Fprintf(&b, `<text class="tick" x="%s" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, f(marginLeft-8), f(y), esc(t.label))
	}
	for _, t := range c.x.ticks {
		x := sx(t.v)
		fmt.Fprintf(&b, `<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>`, f(x), f(marginTop), f(x), f(marginTop+ph))
		fmt.Fprintf(&b, `<text class="tick" x="%s" y="%s" text-anchor="middle">%s</text>`, f(x), f(marginTop+ph+18), esc(t.label))
	}
	fmt.Fprintf(&b, `<rect class="frame" x="%s" y="%s" width="%s" height="%s"/>`, f(marginLeft), f(marginTop), f(pw), f(ph))
	fmt.Fprintf(&b, `<text class="axis" x="%s" y="%s" text-anchor="middle">%s</text>`, f(marginLeft+pw/2), f(h-8), esc(c.x.title))
	fmt.Fprintf(&b, `<text class="axis" transform="translate(16 %s) rotate(-90)" text-anchor="middle">%s</text>`, f(marginTop+ph/2), esc(c.y.title))

	// data
	for _, s := range c.series {
		switch s.style {
		case "bars":
			bw := pw / math.Max(1, c.x.max-c.x.min) * 0.8
			for _, p := range s.pts {
				x, y := sx(p.x)-bw/2, sy(p.y)
				fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s</title></rect>`,
					f(x), f(y), f(bw), f(sy(c.y.min)-y), s.color, esc(fmt.Sprintf("%s: %s at second %g", s.name, fmtAxisCount(math.Round(p.y)), p.x)))
			}
		default:
			if len(s.pts) == 0 {
				continue
			}
			var path strings.Builder
			for i, p := range s.pts {
				cmd := "L"
				if i == 0 {
					cmd = "M"
				}
				fmt.Fprintf(&path, "%s%s %s", cmd, f(sx(p.x)), f(sy(p.y)))
			}
			if s.style == "area" {
				first, last := s.pts[0], s.pts[len(s.pts)-1]
				fmt.Fprintf(&b, `<path d="%sL%s %sL%s %sZ" fill="%s" fill-opacity="0.12" stroke="none"/>`,
					path.String(), f(sx(last.x)), f(sy(c.y.min)), f(sx(first.x)), f(sy(c.y.min)), s.color)
			}
			dash := ""
			if s.dash != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
			}
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"%s><title>%s</title></path>`, path.String(), s.color, dash, esc(s.name))
			if s.dots {
				for _, p := range s.pts {
					fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2.5" fill="%s"><title>%s</title></circle>`, f(sx(p.x)), f(sy(p.y)), s.color, esc(fmt.Sprintf("%s: %s at second %g", s.name, fmtMs(p.y), p.x)))
				}
			}
		}
		var placed []labelBox
		for _, m := range s.marks {
			x, y := sx(m.x), sy(m.y)
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3.5" fill="%s"><title>%s</title></circle>`, f(x), f(y), s.color, esc(m.label))
			// Labels sit up and to the right of their dot (to the left
			// near the right edge) and climb until they clear the
			// labels already placed.
			wl := 7.2 * float64(len(m.label))
			box := labelBox{x0: x + 6, x1: x + 6 + wl, y1: y - 6}
			if box.x1 > marginLeft+pw {
				box.x0, box.x1 = x-6-wl, x-6
			}
			box.y0 = box.y1 - 14
			for overlaps(box, placed) {
				box.y0 -= 16
				box.y1 -= 16
			}
			placed = append(placed, box)
			fmt.Fprintf(&b, `<text class="mark" x="%s" y="%s">%s</text>`, f(box.x0), f(box.y1-2), esc(m.label))
		}
	}

	// legend, in a row above the plot
	if len(c.series) > 1 {
		lx := marginLeft
		for _, s := range c.series {
			dash, width := "", "2.5"
			if s.dash != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
			}
			if s.style == "bars" {
				width = "8"
			}
			fmt.Fprintf(&b, `<line x1="%s" y1="14" x2="%s" y2="14" stroke="%s" stroke-width="%s"%s/>`, f(lx), f(lx+22), s.color, width, dash)
			fmt.Fprintf(&b, `<text class="legend" x="%s" y="14" dominant-baseline="middle">%s</text>`, f(lx+28), esc(s.name))
			lx += 28 + 7.5*float64(len(s.name)) + 24
		}
	}
	b.WriteString(`</svg>`)
	if c.note != "" {
		fmt.Fprintf(&b, `<p class="note">%s</p>`, esc(c.note))
	}
	return template.HTML(b.String())
}

// A labelBox is the space a chart label takes.
type labelBox struct{ x0, x1, y0, y1 float64 }

// overlaps reports whether b overlaps any of boxes.
func overlaps(b labelBox, boxes []labelBox) bool {
	for _, o := range boxes {
		if b.x0 < o.x1 && o.x0 < b.x1 && b.y0 < o.y1 && o.y0 < b.y1 {
			return true
		}
	}
	return false
}
