package router

import (
	"cmp"
	"errors"
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
	// Cache, when set, serves anonymous visitors from a page store.
	Cache *CacheOptions
	// Credentials, when set, checks the credentials (API keys, tokens) of
	// requests under cache rules that serve them; without it every
	// request carrying Authorization is forwarded.
	Credentials *CredentialOptions
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
	creds     *credentials
	trusted   []netip.Prefix
	maxBody   int
	log       *limitedLog
	stats     *Stats
	durations Durations

	purgeAllow []netip.Prefix
	purgeToken string
	access     *AccessLog
	refused    refusedHosts
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
	if o.Credentials != nil {
		cr, err := newCredentials(o.Credentials)
		if err != nil {
			return nil, err
		}
		r.creds = cr
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

// Handle serves one request, in the steps the package doc lists.
func (r *Router) Handle(ctx *fasthttp.RequestCtx) {
	r.stats.Requests.Add(1)
	r.stats.InFlight.Add(1)
	q := r.acquire(ctx)
	defer r.done(q)
	o := outcomeBypass
	if q.framingOK() && q.originForm() {
		o = q.route()
	}
	q.finish()
	r.stats.Outcomes[o].Add(1)
	if obs := r.durations.Request[o]; obs != nil {
		obs.UpdateDuration(ctx.Time())
	}
}

// done ends a request Handle served, panicking or not: its access log
// line, and the request back to the pool.
func (r *Router) done(q *request) {
	if r.access != nil {
		var ip [64]byte
		r.access.write(q.ctx, &q.log, r.clientIP(q.ctx).AppendTo(ip[:0]))
	}
	q.release()
	r.stats.InFlight.Add(-1)
}

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
