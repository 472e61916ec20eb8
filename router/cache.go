package router

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// CacheOptions configures the page cache. Store, Keys and Policy are
// required.
type CacheOptions struct {
	Store  pagecache.Store
	Keys   *pagecache.KeyTemplate
	Policy *pagecache.Policy
	// Raw, when set, reads values as page bodies alone, as another program
	// writes them, instead of envelopes.
	Raw *RawOptions
	// Hosts are the Host values (lower case, with the port when the Host
	// header has one) whose pages may be cached; empty means every host.
	Hosts []string
	// Bypass rules: requests they match are forwarded, never cached.
	BypassPaths       []string // path prefixes
	BypassPathRegexps []*regexp.Regexp
	BypassCookies     []string // cookie names whose presence bypasses
	BypassQueryParams []string // query parameter names whose presence bypasses
	// FillStripHeaders are removed from fill requests besides Cookie and
	// Authorization.
	FillStripHeaders []string
	// CollapseTimeout bounds how long a miss waits for another request's
	// fill of the same page before forwarding its own request. Default
	// 30s; the daemon sets it to backend.read_timeout unless
	// cache.collapse_timeout says otherwise.
	CollapseTimeout time.Duration
	// UncacheableTTL is how long a URL whose response could not be stored
	// goes straight to the backend without another fill. Default 2m.
	UncacheableTTL time.Duration
	// MaxBodySize is the largest body stored; bigger responses pass
	// through uncached. Keep it below the store's item size. Default 1 MiB
	// less 8 KiB for the key, headers and tags.
	MaxBodySize int
	// MaxBackgroundFills bounds the fills running for visitors who carry
	// cookies; beyond it no fill starts. Default 64.
	MaxBackgroundFills int
	// Prefix starts userrouter's own keys: the generation counters.
	// Default "ur:".
	Prefix string
	// TagHeaders are the response headers carrying surrogate keys.
	// Default Surrogate-Key, xkey and Cache-Tag.
	TagHeaders []string
	// StripTagHeaders removes the tag headers from what clients see.
	StripTagHeaders bool
	// TagCacheTTL, when above 0, keeps generation counters in process that
	// long: hits skip reading them, and a purge may take that long to
	// reach every instance.
	TagCacheTTL time.Duration
	// UnsafeInvalidation is what a successful POST, PUT, PATCH or DELETE
	// does to the stored pages of its URL and of the same-host URLs in its
	// answer's Location and Content-Location. Default InvalidateHard.
	UnsafeInvalidation Invalidation
	// L1Size, when above 0, keeps that many bytes of fresh pages in
	// process in front of the store; a purge through another instance
	// reaches this one's copies within L1TTL (see pagecache.CacheOptions).
	L1Size int64
	L1TTL  time.Duration
	// OutageL1Size, when above 0 and L1Size is 0, keeps the pages filled
	// while the page store fails in process, that many bytes at most, for
	// L1TTL, never past their freshness: while the store is down they are
	// served from there (Cache-Status hit; detail=store-down) and the
	// backend renders each page about once per L1TTL. A purge through
	// this instance drops them at once (see pagecache.CacheOptions).
	OutageL1Size int64
	// StoreBreakerFailures consecutive page store failures open its
	// circuit breaker: for StoreBreakerCooldown every request skips the
	// store (Cache-Status detail=store-down) and is served by the backend
	// without a store write (see OutageL1Size); then one request probes
	// it. OnStoreBreaker, when set, is told each time it opens ("open") or
	// closes ("closed"). Defaults DefaultStoreBreakerFailures,
	// DefaultStoreBreakerCooldown.
	StoreBreakerFailures int
	StoreBreakerCooldown time.Duration
	OnStoreBreaker       func(state string)
	// MaxVariants bounds the variants of one URL (a response whose Vary
	// names headers the key does not include) each process fills while
	// the URL's variants marker lasts; beyond it requests are forwarded
	// and not stored (Cache-Status detail=variants). Default
	// pagecache.DefaultMaxVariants.
	MaxVariants int
}

// Defaults of CacheOptions and RawOptions, for zero fields.
const (
	DefaultUncacheableTTL     = 2 * time.Minute
	DefaultMaxBackgroundFills = 64
	DefaultRawContentType     = "text/html; charset=utf-8"
)

// DefaultTagHeaders are the response headers that carry surrogate keys
// when CacheOptions.TagHeaders is nil.
func DefaultTagHeaders() []string { return []string{"Surrogate-Key", "xkey", "Cache-Tag"} }

// RawOptions configures format "raw": a value is a page body alone.
type RawOptions struct {
	// ContentType is sent with raw pages. Default "text/html; charset=utf-8".
	ContentType string
	// GzipFlag, when not 0, is the flag bit marking a gzipped value (as
	// nginx's memcached_gzip_flag).
	GzipFlag uint32
	// Fill writes raw bodies on a miss; without it userrouter only reads
	// what another program wrote.
	Fill bool
}

// cache is the Router's page cache state: what is HTTP about it (hosts,
// bypass rules, flights, the identity bodies) around the pagecache.Cache
// that keeps pages coherent with purges.
type cache struct {
	CacheOptions
	raw     *RawOptions
	hosts   map[string]bool
	flights flights
	bgSlots chan struct{}
	pages   *pagecache.Cache
	// fills is false in format raw without RawOptions.Fill: userrouter
	// only reads what another program wrote.
	fills bool
	// fillHeaders are the request headers a fill carries: those the key
	// names ({header:Name}), less FillStripHeaders.
	fillHeaders []string
	// identities keeps decompressed bodies of gzipped pages (see identity).
	identities *otter.Cache[string, []byte]
	// breaker guards the page store (see breakerStore).
	breaker *sessioncheck.Breaker
	// lends: the store reads into lent memory (see lendValues).
	lends bool
	// backoff holds, by page key, when the next background refresh of a
	// page whose last one failed may start, or which refresh last
	// succeeded (see backgroundFill).
	backoff *otter.Cache[string, refreshBackoff]
	// refreshes counts the background refreshes that succeeded.
	refreshes atomic.Uint64
	// heads keeps, by page key, the response head its hits last served
	// (see head).
	heads *otter.Cache[string, *head]
}

// refreshBackoff is how long a page's refreshes wait after failures: one
// second after the first, doubling to 30 s; or, after a success, its
// number in cache.refreshes.
type refreshBackoff struct {
	until    int64 // Unix milliseconds
	failures uint8
	done     uint64
}

const maxRefreshBackoff = 30 * time.Second

func newCache(o *CacheOptions, r *Router) (*cache, error) {
	if o.Store == nil || o.Keys == nil || o.Policy == nil {
		return nil, errors.New("router: the cache needs a store, a key template and a policy")
	}
	c := &cache{CacheOptions: *o, raw: o.Raw, fills: o.Raw == nil || o.Raw.Fill}
	_, c.lends = o.Store.(pagecache.BufferedGetter)
	c.UncacheableTTL = cmp.Or(c.UncacheableTTL, DefaultUncacheableTTL)
	c.CollapseTimeout = cmp.Or(c.CollapseTimeout, 30*time.Second)
	c.MaxBodySize = cmp.Or(c.MaxBodySize, 1<<20-8<<10)
	c.bgSlots = make(chan struct{}, cmp.Or(c.MaxBackgroundFills, DefaultMaxBackgroundFills))
	for _, h := range o.Keys.Headers() {
		if !slices.ContainsFunc(o.FillStripHeaders, func(s string) bool { return strings.EqualFold(s, h) }) {
			c.fillHeaders = append(c.fillHeaders, h)
		}
	}
	if len(o.Hosts) > 0 {
		c.hosts = map[string]bool{}
		for _, h := range o.Hosts {
			c.hosts[string(bytes.ToLower([]byte(h)))] = true
		}
	} else if !o.Keys.HasHost() {
		return nil, errors.New("router: a key template without {host} needs a list of cacheable hosts, or one site's pages would be served for another")
	}
	for _, name := range o.Keys.Cookies() {
		// The session cookie, or a name the session cookie finder
		// could take for it: a fill would carry a session.
		if _, found := r.keys.Find([]byte(name + "=x")); found != sessioncheck.NoCookie {
			return nil, fmt.Errorf("router: the key template includes the session cookie {cookie:%s}: its fills would carry a session", name)
		}
	}
	c.breaker = sessioncheck.NewBreaker(cmp.Or(c.StoreBreakerFailures, DefaultStoreBreakerFailures),
		cmp.Or(c.StoreBreakerCooldown, DefaultStoreBreakerCooldown), &r.stats.StoreBreakerOpens, c.OnStoreBreaker)
	inProcess, _ := c.Store.(interface{ InProcess() bool })
	po := pagecache.CacheOptions{Store: newBreakerStore(c.Store, c.breaker), InProcess: inProcess != nil && inProcess.InProcess(), Keys: c.Keys, Prefix: c.Prefix, TagCacheTTL: c.TagCacheTTL, L1Size: c.L1Size, L1TTL: c.L1TTL, OutageL1Size: c.OutageL1Size,
		MaxVariants: c.MaxVariants, OnStoreError: r.storeError, OnDamaged: func() { r.stats.Damaged.Add(1) }}
	if m, ok := c.Store.(*pagecache.Memory); ok {
		po.Front = m
	}
	if c.raw != nil {
		raw := *c.raw
		raw.ContentType = cmp.Or(raw.ContentType, DefaultRawContentType)
		c.raw = &raw
		po.Raw, po.RawGzipFlag = true, raw.GzipFlag
	}
	if c.TagHeaders == nil {
		c.TagHeaders = DefaultTagHeaders()
	}
	var err error
	if c.pages, err = pagecache.NewCache(po); err != nil {
		return nil, err
	}
	c.backoff, err = otter.New(&otter.Options[string, refreshBackoff]{MaximumSize: 100_000})
	if err != nil {
		return nil, err
	}
	c.heads, err = otter.New(&otter.Options[string, *head]{
		MaximumWeight: maxHeads,
		Weigher:       func(k string, h *head) uint32 { return uint32(len(k)) + h.cost },
	})
	if err != nil {
		return nil, err
	}
	c.identities, err = otter.New(&otter.Options[string, []byte]{
		MaximumWeight: maxIdentityBytes,
		Weigher:       func(k string, b []byte) uint32 { return uint32(len(k) + len(b) + 64) },
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// anonymous serves a visitor who may share the cache: a fresh page from
// the store, a stale one while it is refreshed, or a miss filled without
// credentials.
func (q *request) anonymous() outcome {
	r, c, w := q.r, q.r.cache, q.w
	w.in = pagecache.KeyInput{Scheme: r.scheme(q.ctx), Host: q.host, Path: q.path, Query: q.query, Header: &q.ctx.Request.Header}
	if len(c.Keys.Cookies()) > 0 {
		w.in.Cookies = q.ctx.Request.Header.PeekAll(fasthttp.HeaderCookie)
	}
	var ok bool
	w.key, ok = c.Keys.Append(w.key[:0], &w.in, nil)
	cookiesOK := ok || c.Keys.CookiesValid(&w.in)
	urlBase := w.key
	if ok && w.in.Cookies != nil {
		// The pages of every cookie value share their URL's counter, so
		// that a purge by URL reaches them all.
		w.url, _ = c.Keys.AppendURLBase(w.url[:0], &w.in)
		urlBase = w.url
	}
	w.in = pagecache.KeyInput{}
	switch {
	case !cookiesOK:
		return q.bypass(bypassKeyCookie)
	case !ok:
		return q.bypass(bypassQuery)
	}
	e := &w.entry
	var state pagecache.State
	var t pagecache.Ticket
	q.refreshes = c.refreshes.Load()
	if q.credPath == credentialPrivate {
		if w.cpart, ok = r.creds.appendHash(w.cpart[:0], &q.cred, &w.mac); !ok {
			return q.credentialDoubt(sessioncheck.ErrNoStore, false) // no hash key: refused by conf
		}
		vb := q.lendValues()
		state, t = c.pages.LookupPrivate(w.key, urlBase, w.cpart, &w.pages, e, time.Now())
		q.keepValues(vb)
	} else {
		vb := q.lendValues()
		state, t = c.pages.LookupURL(w.key, urlBase, &w.pages, e, time.Now())
		q.keepValues(vb)
	}
	if state == pagecache.PageVariants && q.cred.Key != nil {
		return q.notStored(pagecache.ReasonVary) // credential copies do not vary
	}
	if state == pagecache.PageVariants {
		// The page varies: the request's values select the variant.
		if state, t, ok = c.pages.LookupVariant(&t, &q.ctx.Request.Header, &w.pages, e, time.Now()); !ok {
			return q.notStored(pagecache.ReasonVary)
		}
	}
	return q.cached(state, t)
}

// A valueBuf is memory a lookup reads the page into (see lendValues).
type valueBuf struct{ b []byte }

// valueBufSize is a lent buffer's size: a page and its counters up to it
// cost no allocation; a larger page is allocated as before.
const valueBufSize = 64 << 10

var valueBufs = sync.Pool{New: func() any { return &valueBuf{b: make([]byte, 0, valueBufSize)} }}

// Close gives v back once the response made from it is written: fasthttp
// closes a request's user values when it resets the request, after
// writing the response (and never, if the connection breaks first: then
// v is collected).
func (v *valueBuf) Close() error {
	valueBufs.Put(v)
	return nil
}

// valueBufKey is the user value a lent buffer is kept under.
type valueBufKey struct{}

// lendValues lends a pooled buffer to the request's next lookup, which
// reads the page there rather than into a new allocation
// (pagecache.Scratch.LendValues): hits from memcached allocate nothing.
func (q *request) lendValues() *valueBuf {
	if !q.r.cache.lends {
		return nil
	}
	vb := valueBufs.Get().(*valueBuf)
	q.w.pages.LendValues(vb.b[:0])
	return vb
}

// keepValues, after the lookup, keeps vb with the request until its
// response is written when the entry may alias it (the body is sent from
// it without a copy), else gives it back at once.
func (q *request) keepValues(vb *valueBuf) {
	switch {
	case vb == nil:
		return
	case q.w.pages.LentUsed():
		q.ctx.SetUserValue(valueBufKey{}, vb)
	default:
		valueBufs.Put(vb)
	}
}

// cached answers from what a lookup found under t (w.entry): the page,
// fresh or stale, or a miss.
func (q *request) cached(state pagecache.State, t pagecache.Ticket) outcome {
	r, e := q.r, &q.w.entry
	switch state {
	case pagecache.PageFresh:
		status := statusHit
		switch {
		case t.FromOutage():
			status = statusHitStoreDown
			r.stats.OutageHits.Add(1)
		case t.FromL1():
			status = statusHitL1
		}
		if !q.serve(t.Key(), e, status) {
			return q.bypass(bypassGunzip)
		}
		r.stats.Hits.Add(1)
		return outcomeHit
	case pagecache.PageStale:
		if !q.serve(t.Key(), e, statusStale) {
			return q.bypass(bypassGunzip)
		}
		r.stats.StaleHits.Add(1)
		q.revalidate = true
		q.backgroundFill(t.Clone())
		return outcomeStale
	case pagecache.PageUncacheable:
		return q.bypass(bypassUncacheable)
	case pagecache.PageExpired:
		t = t.Clone()
		q.revalidate = true
		if time.Now().UnixMilli() < e.ErrorUntil {
			q.staleKey = t.Key()
		}
		return q.miss(t)
	}
	return q.miss(t.Clone())
}

// miss answers a visitor the cache could not: their own request fills the
// cache when it carries no cookies; otherwise it is forwarded and a
// credential-free twin fills the cache in the background.
func (q *request) miss(t pagecache.Ticket) outcome {
	if t.StoreDown() {
		// One store timeout is all a request pays (none while the
		// breaker is open): no fence, no store write. Visitors without
		// cookies (anonymous, or with a verified credential: then their
		// credential's own flight) still share one fill per page (see
		// fillDuringOutage); others are forwarded.
		status := statusStoreError
		if q.r.cache.breaker.String() != "closed" {
			status = statusStoreDown
		}
		if q.r.cache.fills && q.r.cache.raw == nil && q.ctx.IsGet() && !q.cookies {
			if q.credPath == credentialPrivate && q.cred.Key != nil && !q.r.creds.admit(q.w.cpart) {
				return q.forwardAs(statusCredentialLimit, outcomeMiss) // max_private_fills holds in an outage too
			}
			return q.fillDuringOutage(t, status)
		}
		return q.forwardAs(status, outcomeMiss)
	}
	if !q.r.cache.fills {
		return q.forwardAs(statusMissRaw, outcomeMiss)
	}
	if !q.r.cache.pages.AdmitVariant(&t) {
		return q.notStored(pagecache.ReasonVariants) // the URL has max_variants already
	}
	if q.credPath == credentialPrivate && q.cred.Key != nil && !q.r.creds.admit(q.w.cpart) {
		return q.forwardAs(statusCredentialLimit, outcomeMiss)
	}
	if q.ctx.IsGet() && (!q.cookies || q.revalidate && validated(&q.w.entry)) {
		// A visitor with cookies waits, like a hit, for a revalidation of
		// a stale page: it is cheap, and the page is served if it stays.
		return q.fillFromVisitor(t)
	}
	// A visitor with cookies gets an answer made for them, never stored.
	q.backgroundFill(t)
	return q.forwardAs(statusMissBackground, outcomeMiss)
}

func (r *Router) storeError(err error) {
	if errors.Is(err, errStoreOpen) {
		r.stats.StoreSkipped.Add(1) // the breaker's change was logged
		return
	}
	r.stats.StoreErrors.Add(1)
	r.log.Log(slog.LevelWarn, "store", "cache store failed; serving from the backend", slog.String("error", err.Error()))
}
