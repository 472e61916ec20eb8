package router

import (
	"cmp"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/sessioncheck"
)

// Options configures a Router. Backends and Keys are required.
type Options struct {
	Backends *Backends
	// Keys finds the session key in the Cookie header.
	Keys *sessioncheck.KeyFinder
	// Sessions tells identified visitors from anonymous ones; nil means no
	// session store, so every visitor with a session key is forwarded.
	Sessions sessioncheck.Checker
	// TrustedProxies are the peers whose X-Forwarded-* headers are kept.
	TrustedProxies []netip.Prefix
	// MaxRequestBodySize bounds request bodies (413 beyond); 0 means 64 MiB.
	MaxRequestBodySize int
	// Logger receives errors, rate-limited; nil discards them.
	Logger *slog.Logger
}

// Router is the request handler. Router is safe for concurrent use.
type Router struct {
	backends *Backends
	keys     *sessioncheck.KeyFinder
	sessions sessioncheck.Checker
	trusted  []netip.Prefix
	maxBody  int
	log      *limitedLog
}

// New returns a Router for o.
func New(o Options) (*Router, error) {
	if o.Backends == nil || o.Keys == nil {
		return nil, errors.New("router: backends and a session key finder are required")
	}
	sessions := o.Sessions
	if sessions == nil {
		sessions = sessioncheck.NoStore{}
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Router{
		backends: o.Backends,
		keys:     o.Keys,
		sessions: sessions,
		trusted:  o.TrustedProxies,
		maxBody:  cmp.Or(o.MaxRequestBodySize, 64<<20),
		log:      newLimitedLog(logger, time.Second),
	}, nil
}

// Handle serves one request.
func (r *Router) Handle(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		r.forward(ctx, "")
		return
	}
	// Who is it? Asked before any cache decision; a doubt is forwarded.
	key, found := r.keys.Find(ctx.Request.Header.Peek(fasthttp.HeaderCookie))
	if found == sessioncheck.KeyFound {
		v, err := r.sessions.Check(ctx, key)
		if err != nil {
			r.forward(ctx, doubtStatus(err))
			return
		}
		if v == sessioncheck.Identified {
			r.forward(ctx, statusIdentified)
			return
		}
	}
	r.forward(ctx, "")
}

// forward sends the client's request to a backend as it came, apart from
// hop-by-hop headers, and relays the answer as it comes, streaming. A
// non-empty cacheStatus is added as a Cache-Status entry.
func (r *Router) forward(ctx *fasthttp.RequestCtx, cacheStatus string) {
	req := &ctx.Request
	if !r.limitBody(ctx) {
		return
	}
	closeConn := stripHopRequest(&req.Header)
	if ok, ip := trusted(ctx.RemoteAddr(), r.trusted); !ok {
		setForwarded(&req.Header, ip)
	}
	resp := fasthttp.AcquireResponse()
	if err := r.backends.Do(req, resp); err != nil {
		fasthttp.ReleaseResponse(resp)
		r.backendError(ctx, err)
		return
	}
	if err := relay(&ctx.Response, resp); err != nil {
		r.backendError(ctx, err)
	}
	if cacheStatus != "" {
		ctx.Response.Header.Add(headerCacheStatus, cacheStatus)
	}
	if closeConn {
		ctx.SetConnectionClose()
	}
}

// limitBody enforces MaxRequestBodySize, which fasthttp does not when it
// streams request bodies: a declared length over the limit is refused before
// anything is sent, and a chunked body (rare behind nginx, which sends a
// length) is read up to the limit and sent with a length. It answers 413 and
// returns false when the body is too large.
func (r *Router) limitBody(ctx *fasthttp.RequestCtx) bool {
	n := ctx.Request.Header.ContentLength()
	if n > r.maxBody {
		r.tooLarge(ctx)
		return false
	}
	if n != -1 || !ctx.Request.IsBodyStream() {
		return true
	}
	body, err := io.ReadAll(io.LimitReader(ctx.RequestBodyStream(), int64(r.maxBody)+1))
	if err != nil {
		ctx.SetConnectionClose()
		ctx.Error("Bad Request: the request body could not be read\n", fasthttp.StatusBadRequest)
		return false
	}
	if len(body) > r.maxBody {
		r.tooLarge(ctx)
		return false
	}
	ctx.Request.SetBodyRaw(body)
	return true
}

func (r *Router) tooLarge(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose() // the rest of the body is not read
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.Header.SetStatusCode(fasthttp.StatusRequestEntityTooLarge)
	ctx.Response.SetBodyString("Request Entity Too Large: the body exceeds listen.max_request_body_size\n")
}

// backendError answers a request the backends could not: 502 when none
// could be reached or the answer was broken, 503 when every connection to
// them is busy, 504 when the answer did not come in time.
func (r *Router) backendError(ctx *fasthttp.RequestCtx, err error) {
	status, kind, text := fasthttp.StatusBadGateway, "backend-error", "the backend sent an invalid response"
	var de *DialError
	switch {
	case errors.As(err, &de):
		kind, text = "backend-down", "no backend could be reached"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		status, kind, text = fasthttp.StatusServiceUnavailable, "backend-busy", "every backend connection is busy"
	case isTimeout(err):
		status, kind, text = fasthttp.StatusGatewayTimeout, "backend-timeout", "the backend did not answer in time"
	}
	ctx.Response.Header.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(fasthttp.StatusMessage(status) + ": " + text + "\n")
	r.log.Log(slog.LevelError, kind, "backend request failed",
		slog.String("method", string(ctx.Method())),
		slog.String("uri", truncate(ctx.Request.Header.RequestURI(), 200)),
		slog.Int("status", status),
		slog.String("error", err.Error()))
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
