package router

import (
	"github.com/valyala/fasthttp"
)

// Admin serves the admin listener: /healthz, and POST /purge (checked
// against purge.allow and the token). Keep the listener on loopback or the
// operator's network. Admin is safe for concurrent use.
type Admin struct {
	// Router returns the router in service (it changes on reload).
	Router func() *Router
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
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetBodyString("not found: the admin listener serves /healthz and /purge\n")
	}
}
