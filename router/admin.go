package router

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"
)

// Admin serves the admin listener: /healthz (the process is up), /readyz
// (every dependency checked), POST /purge (checked against purge.allow and
// the token), and /debug/pprof/ when enabled. Keep the listener on
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
		ctx.SetBodyString("not found: the admin listener serves /healthz, /readyz, /metrics and /purge\n")
	}
}
