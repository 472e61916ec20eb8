package router

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
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
	// Cache, when set, serves anonymous visitors from a page store.
	Cache *CacheOptions
	// TrustedProxies are the peers whose X-Forwarded-* headers are kept.
	TrustedProxies []netip.Prefix
	// MaxRequestBodySize bounds request bodies (413 beyond); 0 means 64 MiB.
	MaxRequestBodySize int
	// PurgeAllow are the client addresses allowed to purge; PurgeToken,
	// when set, must come as "Authorization: Bearer <token>" too.
	PurgeAllow []netip.Prefix
	PurgeToken string
	// AccessLog, when set, gets a line per request.
	AccessLog *AccessLog
	// Stats, when set, is counted into (it may outlive the Router: a
	// reload keeps the counters); nil means the Router's own.
	Stats *Stats
	// Durations, when set, are the latency histograms to feed.
	Durations *Durations
	// Logger receives errors, rate-limited; nil discards them.
	Logger *slog.Logger
}

// Router is the request handler. Router is safe for concurrent use.
type Router struct {
	backends  *Backends
	keys      *sessioncheck.KeyFinder
	sessions  sessioncheck.Checker
	cache     *cache
	trusted   []netip.Prefix
	maxBody   int
	log       *limitedLog
	stats     *Stats
	durations Durations

	purgeAllow []netip.Prefix
	purgeToken string
	access     *AccessLog
}

// New returns a Router for o.
func New(o Options) (*Router, error) {
	if o.Backends == nil || o.Keys == nil {
		return nil, errors.New("router: backends and a session key finder are required")
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{
		backends: o.Backends,
		keys:     o.Keys,
		sessions: cmp.Or[sessioncheck.Checker](o.Sessions, sessioncheck.NoStore{}),
		trusted:  o.TrustedProxies,
		maxBody:  cmp.Or(o.MaxRequestBodySize, 64<<20),
		log:      newLimitedLog(logger, time.Second),

		purgeAllow: o.PurgeAllow,
		purgeToken: o.PurgeToken,
		access:     o.AccessLog,
		stats:      o.Stats,
	}
	if r.stats == nil {
		r.stats = new(Stats)
	}
	if o.Durations != nil {
		r.durations = *o.Durations
	}
	if o.Cache != nil {
		c, err := newCache(o.Cache)
		if err != nil {
			return nil, err
		}
		r.cache = c
	}
	return r, nil
}

// Stats returns the router's counters.
func (r *Router) Stats() *Stats { return r.stats }

// Handle serves one request:
//
//  1. Not GET or HEAD, an Upgrade, a host not cached, a bypass rule or
//     credentials in Authorization: forwarded, fwd=bypass.
//  2. The session key is read; identified visitors and doubts are
//     forwarded (detail=identified, detail=doubt-<reason>).
//  3. Anonymous: served from the cache, or filled without credentials.
func (r *Router) Handle(ctx *fasthttp.RequestCtx) {
	r.stats.Requests.Add(1)
	r.stats.InFlight.Add(1)
	defer r.stats.InFlight.Add(-1)
	if r.access != nil {
		rec := records.Get().(*accessRecord)
		*rec = accessRecord{start: time.Now(), verdict: "-"}
		ctx.SetUserValue(recordKey, rec)
		defer r.logAccess(ctx, rec)
	}
	o := outcomeBypass
	if framingOK(ctx) && originForm(ctx) {
		o = r.route(ctx)
	}
	finish(ctx)
	r.stats.Outcomes[o].Add(1)
	if obs := r.durations.Request[o]; obs != nil {
		obs.UpdateDuration(ctx.Time())
	}
}

// route serves the request and says how.
func (r *Router) route(ctx *fasthttp.RequestCtx) outcome {
	c := r.cache
	if c == nil {
		return r.forwardAs(ctx, "", outcomeBypass)
	}
	h := &ctx.Request.Header
	if bytes.Equal(h.Method(), methodPurge) {
		r.purgeMethod(ctx)
		return outcomePurge
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		return r.bypass(ctx, bypassMethod)
	}
	if hasBody(h) {
		// A GET or HEAD with a body: what the application makes of the
		// body is nobody's business but this visitor's.
		return r.bypass(ctx, bypassBody)
	}
	if len(h.Peek(fasthttp.HeaderUpgrade)) > 0 {
		return r.bypass(ctx, bypassUpgrade)
	}
	sc := scratches.Get().(*scratch)
	defer scratches.Put(sc)
	host, ok := lowerHost(sc.host[:0], h.Host())
	if !ok || (c.hosts != nil && !c.hosts[string(host)]) {
		return r.bypass(ctx, bypassHost)
	}
	path, query := pagecache.SplitURI(h.RequestURI())
	clean, _ := pagecache.CleanPath(path)
	// Every Cookie line, raw: Peek gives the first alone, and once fasthttp
	// has parsed cookies, a re-serialized list that is not what the
	// application reads.
	cookies := h.PeekAll(fasthttp.HeaderCookie)
	hasCookies := slices.ContainsFunc(cookies, func(l []byte) bool { return len(l) > 0 })
	switch {
	case c.bypassPath(path, clean):
		return r.bypass(ctx, bypassPath)
	case c.bypassQuery(query):
		return r.bypass(ctx, bypassQuery)
	case slices.ContainsFunc(cookies, c.bypassCookie):
		return r.bypass(ctx, bypassCookie)
	case len(h.Peek(fasthttp.HeaderAuthorization)) > 0:
		return r.bypass(ctx, bypassAuthorization)
	case len(h.Peek(fasthttp.HeaderRange)) > 0:
		return r.bypass(ctx, bypassRange)
	}
	rule := c.Policy.Rule(host, path, clean)
	if !rule.Cache {
		return r.bypass(ctx, bypassRule)
	}
	// Who is it? Asked before any cache decision; a doubt is forwarded.
	key, found := r.keys.FindLines(cookies)
	if found == sessioncheck.Ambiguous {
		// userrouter's reading of the cookie could differ from the
		// application's: never guess anonymous.
		return r.doubt(ctx, sessioncheck.ErrAmbiguousCookie)
	}
	if found == sessioncheck.KeyFound {
		v, err := r.sessions.Check(ctx, key)
		if err != nil {
			return r.doubt(ctx, err)
		}
		if v == sessioncheck.Identified {
			r.stats.Identified.Add(1)
			setVerdict(ctx, "identified")
			return r.forwardAs(ctx, statusIdentified, outcomeIdentified)
		}
	}
	setVerdict(ctx, "anonymous")
	return r.anonymous(ctx, sc, rule, host, path, query, hasCookies)
}

// doubt forwards a visitor whose session could not be told, for err's
// reason (sessioncheck.Reason).
func (r *Router) doubt(ctx *fasthttp.RequestCtx, err error) outcome {
	r.stats.Doubts.Add(1)
	r.stats.DoubtReasons[sessioncheck.ReasonIndex(err)].Add(1)
	setVerdict(ctx, verdictDoubt[sessioncheck.Reason(err)])
	return r.forwardAs(ctx, doubtStatus(err), outcomeDoubt)
}

// bypass forwards a request the cache does not handle.
func (r *Router) bypass(ctx *fasthttp.RequestCtx, reason bypassReason) outcome {
	r.stats.Bypass[reason].Add(1)
	return r.forwardAs(ctx, statusBypass[reason], outcomeBypass)
}

// forwardAs forwards and returns o, or outcomeError when no backend
// answered.
func (r *Router) forwardAs(ctx *fasthttp.RequestCtx, cacheStatus string, o outcome) outcome {
	if !r.forward(ctx, cacheStatus) {
		return outcomeError
	}
	return o
}

// forward sends the client's request to a backend as it came, apart from
// hop-by-hop headers, and relays the answer as it comes, streaming. A
// non-empty cacheStatus is added as a Cache-Status entry. It reports
// whether a backend answered.
func (r *Router) forward(ctx *fasthttp.RequestCtx, cacheStatus string) bool {
	if !r.limitBody(ctx) {
		return true // answered 413 or 400 itself
	}
	closeConn := r.prepare(ctx)
	resp := fasthttp.AcquireResponse()
	start := time.Now()
	err := r.backends.Do(&ctx.Request, resp)
	r.backendDone(ctx, start)
	if err != nil {
		if hasBody(&ctx.Request.Header) {
			closeAfter(ctx) // how much of the body was read is unknown
		}
		fasthttp.ReleaseResponse(resp)
		r.backendError(ctx, err)
		return false
	}
	r.countBackend(resp.StatusCode())
	return r.relayWith(ctx, resp, nil, cacheStatus, closeConn)
}

// backendDone accounts for a backend request begun at start.
func (r *Router) backendDone(ctx *fasthttp.RequestCtx, start time.Time) {
	if r.durations.Backend != nil {
		r.durations.Backend.UpdateDuration(start)
	}
	if r.access != nil && ctx != nil {
		addUpstream(ctx, time.Since(start))
	}
}

// logAccess writes the access log line of a request.
func (r *Router) logAccess(ctx *fasthttp.RequestCtx, rec *accessRecord) {
	var ip [64]byte
	r.access.write(ctx, rec, r.clientIP(ctx).AppendTo(ip[:0]))
	ctx.RemoveUserValue(recordKey)
	records.Put(rec)
}

// verdictDoubt names each doubt in access log lines: "doubt-timeout".
var verdictDoubt = func() map[string]string {
	m := make(map[string]string, len(sessioncheck.DoubtReasons))
	for _, r := range sessioncheck.DoubtReasons {
		m[r] = "doubt-" + r
	}
	return m
}()

// prepare readies the client's request for a backend: hop-by-hop headers
// out, X-Forwarded-* set for an untrusted peer. It reports whether the
// client asked to close its connection.
func (r *Router) prepare(ctx *fasthttp.RequestCtx) (closeConn bool) {
	closeConn = stripHopRequest(&ctx.Request.Header)
	if ok, ip := trusted(ctx.RemoteAddr(), r.trusted); !ok {
		setForwarded(&ctx.Request.Header, ip)
	}
	return closeConn
}

// relayWith relays resp to the client (body: first the bytes already read,
// then the rest of the stream) and adds the Cache-Status. It takes
// ownership of resp, and reports whether the answer could be relayed.
func (r *Router) relayWith(ctx *fasthttp.RequestCtx, resp *fasthttp.Response, read []byte, cacheStatus string, closeConn bool) bool {
	var drop func([]byte) bool
	if r.cache != nil && r.cache.StripTagHeaders {
		drop = r.cache.isTagHeader
	}
	if err := relay(&ctx.Response, resp, read, drop); err != nil {
		r.backendError(ctx, err)
		return false
	}
	r.stats.BytesFromBackend.Add(uint64(max(0, ctx.Response.Header.ContentLength())))
	if cacheStatus != "" {
		ctx.Response.Header.Add(headerCacheStatus, cacheStatus)
	}
	if closeConn {
		closeAfter(ctx)
	}
	return true
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
		ctx.Response.Header.SetStatusCode(fasthttp.StatusBadRequest)
		ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
		ctx.Response.SetBodyString("Bad Request: the request body could not be read (malformed chunked framing)\n")
		closeAfter(ctx) // the framing is lost: the next byte is no request's
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
	closeAfter(ctx) // the rest of the body is not read
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
	r.stats.BackendErrors.Add(1)
	ctx.Response.Header.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(fasthttp.StatusMessage(status) + ": " + text + "\n")
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

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// lowerHost lower-cases a Host header into dst; ok is false for an empty,
// overlong or malformed one.
func lowerHost(dst, host []byte) ([]byte, bool) {
	if len(host) == 0 || len(host) > 255 {
		return nil, false
	}
	for _, c := range host {
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return nil, false
		}
		dst = append(dst, c)
	}
	return dst, true
}

func (c *cache) bypassPath(raw []byte, clean string) bool {
	for _, p := range c.BypassPaths {
		if bytes.HasPrefix(raw, []byte(p)) || (clean != "" && len(clean) >= len(p) && clean[:len(p)] == p) {
			return true
		}
	}
	for _, re := range c.BypassPathRegexps {
		if re.Match(raw) || (clean != "" && re.MatchString(clean)) {
			return true
		}
	}
	return false
}

func (c *cache) bypassQuery(query []byte) bool {
	if len(c.BypassQueryParams) == 0 || len(query) == 0 {
		return false
	}
	for p := range bytes.SplitSeq(query, []byte{'&'}) {
		name, _, _ := bytes.Cut(p, []byte{'='})
		for _, b := range c.BypassQueryParams {
			if string(name) == b {
				return true
			}
		}
	}
	return false
}

func (c *cache) bypassCookie(header []byte) bool {
	if len(c.BypassCookies) == 0 || len(header) == 0 {
		return false
	}
	for pair := range bytes.SplitSeq(header, []byte{';'}) {
		name, _, _ := bytes.Cut(pair, []byte{'='})
		name = bytes.TrimSpace(name)
		for _, b := range c.BypassCookies {
			if string(name) == b {
				return true
			}
		}
	}
	return false
}
