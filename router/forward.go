package router

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/valyala/fasthttp"
)

// forwardAs forwards and returns o, or outcomeError when no backend
// answered.
func (q *request) forwardAs(cacheStatus string, o outcome) outcome {
	if !q.forward(cacheStatus) {
		return outcomeError
	}
	return o
}

// forward sends the client's request to a backend as it came, apart from
// hop-by-hop headers, and relays the answer as it comes, streaming. A
// non-empty cacheStatus is added as a Cache-Status entry. It reports
// whether a backend answered.
func (q *request) forward(cacheStatus string) bool {
	r, ctx := q.r, q.ctx
	if !q.limitBody() {
		return true // answered 413 or 400 itself
	}
	closeConn := q.prepare()
	resp := fasthttp.AcquireResponse()
	start := time.Now()
	err := r.backends.Do(&ctx.Request, resp)
	r.backendDone(start)
	q.waited(start)
	if err != nil {
		if hasBody(&ctx.Request.Header) {
			q.closeAfter() // how much of the body was read is unknown
		}
		if be := (*bodyError)(nil); errors.As(err, &be) {
			// The backend answered, and only its body was cut short: the
			// request was carried out, so count it and invalidate for it.
			r.countBackend(resp.StatusCode())
			if r.cache != nil {
				q.invalidate(resp)
			}
		}
		fasthttp.ReleaseResponse(resp)
		if q.serveStale(err) {
			return true
		}
		q.backendError(err)
		return false
	}
	r.countBackend(resp.StatusCode())
	if r.cache != nil {
		q.invalidate(resp)
	}
	return q.relayWith(resp, nil, cacheStatus, closeConn)
}

// backendDone accounts for a backend request begun at start.
func (r *Router) backendDone(start time.Time) {
	if r.durations.Backend != nil {
		r.durations.Backend.UpdateDuration(start)
	}
}

// prepare readies the client's request for a backend: hop-by-hop headers
// out, X-Forwarded-* set for an untrusted peer. It reports whether the
// client asked to close its connection.
func (q *request) prepare() (closeConn bool) {
	ctx := q.ctx
	closeConn = stripHopRequest(&ctx.Request.Header)
	if ok, ip := trusted(ctx.RemoteAddr(), q.r.trusted); !ok {
		setForwarded(&ctx.Request.Header, ip)
	}
	return closeConn
}

// relayWith relays resp to the client (body: first the bytes already read,
// then the rest of the stream) and adds the Cache-Status. It takes
// ownership of resp, and reports whether the answer could be relayed.
func (q *request) relayWith(resp *fasthttp.Response, read []byte, cacheStatus string, closeConn bool) bool {
	r, ctx := q.r, q.ctx
	if resp.StatusCode() >= 500 && q.serveStale(nil) {
		fasthttp.ReleaseResponse(resp) // a body not read: its connection closes
		return true
	}
	var drop func([]byte) bool
	if r.cache != nil {
		drop = r.cache.hidden
	}
	if err := relay(&ctx.Response, resp, read, drop); err != nil {
		q.backendError(err)
		return false
	}
	r.stats.BytesFromBackend.Add(uint64(max(0, ctx.Response.Header.ContentLength())))
	if cacheStatus != "" {
		q.addCacheStatus(&ctx.Response.Header, cacheStatus)
	}
	if closeConn {
		q.closeAfter()
	}
	return true
}

// limitBody enforces MaxRequestBodySize, which fasthttp does not when it
// streams request bodies: a declared length over the limit is refused before
// anything is sent, and a chunked body (rare behind nginx, which sends a
// length) is read up to the limit and sent with a length. It answers 413 and
// returns false when the body is too large.
func (q *request) limitBody() bool {
	r, ctx := q.r, q.ctx
	n := ctx.Request.Header.ContentLength()
	if n > r.maxBody {
		q.tooLarge()
		return false
	}
	if n != -1 || !ctx.Request.IsBodyStream() {
		return true
	}
	body, err := io.ReadAll(io.LimitReader(ctx.RequestBodyStream(), int64(r.maxBody)+1))
	if err != nil {
		return q.refuse("the request body could not be read (malformed chunked framing)")
	}
	if len(body) > r.maxBody {
		q.tooLarge()
		return false
	}
	ctx.Request.SetBodyRaw(body)
	return true
}

func (q *request) tooLarge() {
	q.closeAfter() // the rest of the body is not read
	plainAnswer(q.ctx, fasthttp.StatusRequestEntityTooLarge, "the body exceeds listen.max_request_body_size")
}

// backendError answers a request the backends could not: 502 when none
// could be reached or the answer was broken, 503 when every connection to
// them is busy, 504 when the answer did not come in time.
func (q *request) backendError(err error) {
	r, ctx := q.r, q.ctx
	status, kind, text := fasthttp.StatusBadGateway, "backend-error", "the backend sent an invalid response"
	var de *DialError
	switch {
	case errors.As(err, &de):
		kind, text = "backend-down", "no backend could be reached"
	case errors.Is(err, ErrBackendsSick):
		status, kind, text = fasthttp.StatusServiceUnavailable, "backend-sick", "every backend is failing its health probe; try again shortly"
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "5")
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		status, kind, text = fasthttp.StatusServiceUnavailable, "backend-busy", "every backend connection is busy"
	case isTimeout(err):
		status, kind, text = fasthttp.StatusGatewayTimeout, "backend-timeout", "the backend did not answer in time"
	}
	r.stats.BackendErrors.Add(1)
	plainAnswer(ctx, status, text)
	r.log.Log(slog.LevelError, kind, "backend request failed",
		slog.String("method", string(ctx.Method())),
		slog.String("uri", truncate(ctx.Request.Header.RequestURI(), 200)),
		slog.Int("status", status),
		slog.String("error", err.Error()))
}

func (r *Router) countBackend(status int) {
	r.stats.BackendResponses[min(max(status/100, 1), 5)].Add(1)
}

var methodPurge = []byte("PURGE")

// readBodyInto reads the next size bytes of body straight into dst's body
// buffer, after what it holds: one copy from the backend connection's read
// buffer, where copying through a buffer of its own cost two. The buffer
// is fasthttp's pooled one, already grown to the usual page, so a forward
// allocates nothing for its body once warm.
func readBodyInto(dst *fasthttp.Response, body io.Reader, size int) error {
	b := dst.SwapBody(nil)
	n := len(b)
	b = slices.Grow(b, size)[:n+size]
	_, err := io.ReadFull(body, b[n:])
	dst.SwapBody(b)
	return err
}
