package router

import (
	"bytes"
	"cmp"
	"errors"
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
		maxBody:  cmp.Or(o.MaxRequestBodySize, DefaultMaxRequestBodySize),
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
		c, err := newCache(o.Cache, r)
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
