package router

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/userrouter/userrouter/pagecache"
)

// Admin serves the admin listener: /healthz (the process is up), /readyz
// (every dependency checked), POST /purge and GET /inspect?url=URL
// (checked against purge.allow and the token), and /debug/pprof/ when
// enabled. Keep the listener on
// loopback or the operator's network. Admin is safe for concurrent use.
type Admin struct {
	// Router returns the router in service (it changes on reload).
	Router func() *Router
	// Pprof serves Go's profiles under /debug/pprof/.
	Pprof bool
	// Metrics, when set, are served on /metrics.
	Metrics *Metrics
}

// Handle serves one admin request.
func (a *Admin) Handle(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	switch string(ctx.Path()) {
	case "/healthz":
		// The process is up and its config loaded: it would not listen otherwise.
		ctx.SetBodyString("ok\n")
	case "/purge":
		a.Router().ServePurgeAPI(ctx)
	case "/inspect":
		a.Router().ServeInspectAPI(ctx)
	case "/metrics":
		if a.Metrics == nil {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			ctx.SetBodyString("not found: metrics are off (listen.metrics = false)\n")
			return
		}
		ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
		a.Metrics.WritePrometheus(ctx, a.Router())
	case "/readyz":
		// 200 for ok and degraded (userrouter still serves), 503 when no
		// backend answers; ?strict makes degraded 503 too.
		res := a.Router().Ready(context.Background(), time.Second)
		status := fasthttp.StatusOK
		if res.Status == "down" || (res.Status == "degraded" && ctx.QueryArgs().Has("strict")) {
			status = fasthttp.StatusServiceUnavailable
		}
		b, _ := json.MarshalIndent(res, "", "  ")
		ctx.SetStatusCode(status)
		ctx.SetContentType("application/json")
		ctx.SetBody(append(b, '\n'))
	default:
		if a.Pprof && strings.HasPrefix(string(ctx.Path()), "/debug/pprof/") {
			pprofhandler.PprofHandler(ctx)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetBodyString("not found: the admin listener serves /healthz, /readyz, /metrics, /purge and /inspect\n")
	}
}

// Inspection is what GET /inspect?url=URL answers on the admin listener:
// what the cache holds for the URL, as a visitor without cookies would
// find it. Times are in seconds; TTLLeft and GraceLeft are negative once
// passed.
type Inspection struct {
	URL   string `json:"url"`
	Key   string `json:"key"`
	State string `json:"state"` // absent, fresh, stale, expired, uncacheable, variants
	// Vary: the headers a page that varies is stored by (state variants).
	Vary      string     `json:"vary,omitempty"`
	StoredAt  *time.Time `json:"stored_at,omitempty"`
	Age       *float64   `json:"age,omitempty"`
	TTLLeft   *float64   `json:"ttl_left,omitempty"`
	GraceLeft *float64   `json:"grace_left,omitempty"`
	Status    int        `json:"status,omitempty"`
	Size      int        `json:"size"`
	BodySize  int        `json:"body_size"`
	// Headers are the stored headers, in order, as [name, value].
	Headers     [][2]string       `json:"headers,omitempty"`
	Tags        []InspectedTag    `json:"tags,omitempty"`
	Generations *InspectedCounter `json:"generations,omitempty"`
	Error       string            `json:"error,omitempty"`
}

// InspectedTag is a page's surrogate key: the generation the page
// recorded and its counter's now (null when the counter is missing: the
// page then counts as purged).
type InspectedTag struct {
	Tag      string  `json:"tag"`
	Recorded uint64  `json:"recorded"`
	Current  *uint64 `json:"current"`
}

// InspectedCounter holds the generations a page's validity depends on.
type InspectedCounter struct {
	Namespace   uint64  `json:"namespace"`
	URLCounter  string  `json:"url_counter"`
	URLRecorded *uint64 `json:"url_recorded,omitempty"`
	URLCurrent  *uint64 `json:"url_current"`
}

// ServeInspectAPI answers GET /inspect?url=URL on the admin listener,
// allowed as purges are (purge.allow and the token). The URL is written
// as for a purge (absolute, or a path when one host is cached).
func (r *Router) ServeInspectAPI(ctx *fasthttp.RequestCtx) {
	peer, _ := peerAddr(ctx.RemoteAddr())
	if _, ok := r.purgeAllowed(ctx, peer); !ok {
		return
	}
	u := string(ctx.QueryArgs().Peek("url"))
	if !ctx.IsGet() || u == "" {
		ctx.Response.Header.Set("Allow", "GET")
		jsonAnswer(ctx, fasthttp.StatusBadRequest, Inspection{Error: "GET /inspect?url=URL (https://host/path, or /path when one host is cached)"})
		return
	}
	ins, status := r.Inspect(u, time.Now())
	jsonAnswer(ctx, status, ins)
}

// Inspect says what the cache holds for the URL u, with the HTTP status
// of the answer: 400 for a URL that is not one, 503 when the store failed.
func (r *Router) Inspect(u string, now time.Time) (Inspection, int) {
	ins := Inspection{URL: u}
	if r.cache == nil {
		ins.Error = "the cache is off (cache.store = \"none\")"
		return ins, fasthttp.StatusBadRequest
	}
	in, err := r.purgeInput(u)
	if err != nil {
		ins.Error = err.Error()
		return ins, fasthttp.StatusBadRequest
	}
	in.Scheme = strHTTP
	if strings.HasPrefix(u, "https://") {
		in.Scheme = strHTTPS
	}
	got, err := r.cache.pages.Inspect(&in, now)
	switch {
	case errors.Is(err, pagecache.ErrUnkeyable):
		ins.Error = "the URL is never cached: " + err.Error()
		return ins, fasthttp.StatusBadRequest
	case err != nil:
		ins.Error = err.Error()
		return ins, fasthttp.StatusServiceUnavailable
	}
	ins.Key, ins.State, ins.Vary, ins.Size = got.Key, got.State.String(), got.Vary, got.Size
	if e := got.Entry; e != nil && got.State != pagecache.PageMissing {
		ins.Status, ins.BodySize = e.Status, len(e.Body)
		for _, h := range e.Headers {
			ins.Headers = append(ins.Headers, [2]string{string(h.Name), string(h.Value)})
		}
		if e.StoredAt > 0 {
			ms := now.UnixMilli()
			at := time.UnixMilli(e.StoredAt).UTC()
			secs := func(d int64) *float64 { f := float64(d) / 1000; return &f }
			ins.StoredAt, ins.Age = &at, secs(ms-e.StoredAt)
			ins.TTLLeft, ins.GraceLeft = secs(e.FreshUntil-ms), secs(e.StaleUntil-ms)
		}
		for _, t := range got.Tags {
			it := InspectedTag{Tag: t.Name, Recorded: t.Recorded}
			if t.Known {
				it.Current = &t.Now
			}
			ins.Tags = append(ins.Tags, it)
		}
	}
	if got.URLCounter != "" {
		g := &InspectedCounter{Namespace: got.Namespace, URLCounter: got.URLCounter}
		if got.URLKnown {
			g.URLCurrent = &got.URLGen
		}
		if e := got.Entry; e != nil && got.State != pagecache.PageMissing {
			g.URLRecorded = &e.URLGen
		}
		ins.Generations = g
	}
	return ins, fasthttp.StatusOK
}
