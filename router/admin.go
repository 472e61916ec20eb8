package router

import (
	"github.com/valyala/fasthttp"
)

// Admin serves the admin listener: /healthz for now. It must only be
// reachable from the machine or the operator's network: it is not
// authenticated. Admin is safe for concurrent use.
type Admin struct{}

// Handle serves one admin request.
func (a *Admin) Handle(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	switch string(ctx.Path()) {
	case "/healthz":
		// The process is up and its config loaded: it would not listen otherwise.
		ctx.SetBodyString("ok\n")
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetBodyString("not found: the admin listener serves /healthz\n")
	}
}
