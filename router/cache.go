package router

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
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
	// Hosts are the Host values (lower case, port included when not the
	// default) whose pages may be cached; empty means every host.
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
}

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

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxIdentityBytes bounds the decompressed bodies kept for clients that
// do not accept gzip (see cache.identity).
const maxIdentityBytes = 16 << 20

// pickleFlag is the memcached flag bit Python clients (pymemcache, pylibmc,
// python-memcached) set on pickled values: never a page body.
const pickleFlag = 1

// cache is the Router's page cache state.
type cache struct {
	CacheOptions
	raw     *RawOptions
	hosts   map[string]bool
	flights flights
	bgSlots chan struct{}
	gens    *pagecache.Generations
	ns      atomic.Uint64 // the namespace last seen; 0 before the first
	hints   *otter.Cache[string, tagHint]
	// identities keeps decompressed bodies of gzipped pages (see identity).
	identities *otter.Cache[string, []byte]
}

func newCache(o *CacheOptions) (*cache, error) {
	if o.Store == nil || o.Keys == nil || o.Policy == nil {
		return nil, errors.New("router: the cache needs a store, a key template and a policy")
	}
	c := &cache{CacheOptions: *o, raw: o.Raw}
	c.UncacheableTTL = cmp.Or(c.UncacheableTTL, 2*time.Minute)
	c.CollapseTimeout = cmp.Or(c.CollapseTimeout, 30*time.Second)
	c.MaxBodySize = cmp.Or(c.MaxBodySize, 1<<20-8<<10)
	c.bgSlots = make(chan struct{}, cmp.Or(c.MaxBackgroundFills, 64))
	if len(o.Hosts) > 0 {
		c.hosts = map[string]bool{}
		for _, h := range o.Hosts {
			c.hosts[string(bytes.ToLower([]byte(h)))] = true
		}
	} else if !o.Keys.HasHost() {
		return nil, errors.New("router: a key template without {host} needs a list of cacheable hosts, or one site's pages would be served for another")
	}
	if c.raw != nil && c.raw.ContentType == "" {
		c.raw.ContentType = "text/html; charset=utf-8"
	}
	c.Prefix = cmp.Or(c.Prefix, "ur:")
	if c.TagHeaders == nil {
		c.TagHeaders = []string{"Surrogate-Key", "xkey", "Cache-Tag"}
	}
	gens, err := pagecache.NewGenerations(c.Store, c.Prefix, c.TagCacheTTL)
	if err != nil {
		return nil, err
	}
	c.gens = gens
	if c.hints, err = otter.New(&otter.Options[string, tagHint]{MaximumSize: 100_000}); err != nil {
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

// fillResult is the outcome of one fill, shared by the requests that
// waited for it.
type fillResult struct {
	reason pagecache.Reason
	entry  []byte // the stored value, for waiters to serve; nil when not stored
	err    error  // the backend failed
	// body is what was read of the response body, for the leader to send
	// first (the rest, if any, is still in its response's stream).
	body []byte
}

// pageKeys names a page in the store: its key (namespace included) and
// its URL counter's. Empty url in raw mode.
type pageKeys struct {
	page, url string
	// The purge sequence and URL counter as the lookup read them, before
	// any fill request: a fill uses them as its fence instead of reading
	// them again. Known says which were read.
	seq, urlGen        uint64
	seqKnown, urlKnown bool
	// storeDown: an operation of the lookup failed; the request is
	// forwarded without a fill, and asks the store nothing more.
	storeDown bool
}

// anonymous serves a visitor who may share the cache: a fresh page from
// the store, a stale one while it is refreshed, or a miss filled without
// credentials.
func (r *Router) anonymous(ctx *fasthttp.RequestCtx, sc *scratch, rule *pagecache.Rule, host, path, query []byte, hasCookies bool) outcome {
	c := r.cache
	sc.in = pagecache.KeyInput{Scheme: r.scheme(ctx), Host: host, Path: path, Query: query, Header: &ctx.Request.Header}
	var ok bool
	sc.key, ok = c.Keys.Append(sc.key[:0], &sc.in, nil)
	sc.in = pagecache.KeyInput{}
	if !ok {
		return r.bypass(ctx, bypassQuery)
	}
	if c.raw != nil {
		return r.anonymousRaw(ctx, sc, rule, hasCookies)
	}
	e := entries.Get().(*pagecache.Entry)
	defer entries.Put(e)
	state, keys := r.lookup(sc, e, time.Now().UnixMilli())
	switch state {
	case pageFresh:
		if !r.serveEntry(ctx, keys.page, e, statusHit, time.Now().UnixMilli()) {
			return r.bypass(ctx, bypassGunzip)
		}
		r.stats.Hits.Add(1)
		return outcomeHit
	case pageStale:
		if !r.serveEntry(ctx, keys.page, e, statusStale, time.Now().UnixMilli()) {
			return r.bypass(ctx, bypassGunzip)
		}
		r.stats.StaleHits.Add(1)
		r.backgroundFill(ctx, keys.clone(), rule)
		return outcomeStale
	case pageUncacheable:
		return r.bypass(ctx, bypassUncacheable)
	}
	return r.miss(ctx, keys.clone(), rule, hasCookies)
}

// miss answers a visitor the cache could not: their own request fills the
// cache when it carries no cookies; otherwise it is forwarded and a
// credential-free twin fills the cache in the background.
func (r *Router) miss(ctx *fasthttp.RequestCtx, keys pageKeys, rule *pagecache.Rule, hasCookies bool) outcome {
	if keys.storeDown {
		// One store timeout is all a request pays: no fence, no fill.
		return r.forwardAs(ctx, statusStoreError, outcomeMiss)
	}
	if ctx.IsGet() && !hasCookies {
		return r.fillFromVisitor(ctx, keys, rule)
	}
	// A visitor with cookies gets an answer made for them, never stored.
	r.backgroundFill(ctx, keys, rule)
	return r.forwardAs(ctx, statusMissBackground, outcomeMiss)
}

// anonymousRaw serves format "raw": values are bodies another program
// wrote under the key, with no envelope and no generations.
func (r *Router) anonymousRaw(ctx *fasthttp.RequestCtx, sc *scratch, rule *pagecache.Rule, hasCookies bool) outcome {
	c := r.cache
	view := unsafe.String(unsafe.SliceData(sc.key), len(sc.key))
	it, err := c.Store.Get(view)
	switch {
	case err == nil && it.Flags&pickleFlag == 0:
		if !r.serveRaw(ctx, view, it) {
			return r.bypass(ctx, bypassGunzip)
		}
		return outcomeHit
	case err == nil:
		r.stats.Damaged.Add(1) // a pickle is never a page
	case !errors.Is(err, pagecache.ErrMiss):
		r.storeError(err)
		return r.forwardAs(ctx, statusStoreError, outcomeMiss)
	}
	if !c.raw.Fill {
		return r.forwardAs(ctx, statusMissRaw, outcomeMiss)
	}
	// The URL counter fences raw fills against purges, as in envelope
	// mode (see storeRaw).
	url := string(c.gens.AppendURLKey(nil, sc.key))
	return r.miss(ctx, pageKeys{page: strings.Clone(view), url: url}, rule, hasCookies)
}

// A pageState is what the store holds for a request.
type pageState uint8

const (
	pageMissing     pageState = iota // nothing usable: fill
	pageFresh                        // serve
	pageStale                        // serve, and refresh in the background
	pageUncacheable                  // a marker: forward without filling
)

// lookup reads the page at the base key in sc.key, with the namespace and
// URL counters (one round trip), then its tags' counters if it has tags
// (one more), and decodes it into e. now is in Unix milliseconds. keys
// alias sc until cloned.
func (r *Router) lookup(sc *scratch, e *pagecache.Entry, now int64) (pageState, pageKeys) {
	c := r.cache
	g := c.gens
	sc.url = g.AppendURLKey(sc.url[:0], sc.key)
	urlKey := unsafe.String(unsafe.SliceData(sc.url), len(sc.url))
	ns := c.ns.Load()
	pageKey := r.pageKey(sc, ns)

	sc.keys = append(sc.keys[:0], pageKey)
	// Counters known in process (tag_cache_ttl) are not read; those read
	// from the store are remembered, and only those: remembering a value
	// known in process would extend its life at every hit, and another
	// instance's purge would never show.
	nsCur, nsLocal := g.Local(g.NSKey())
	nsKnown := nsLocal
	if !nsKnown {
		sc.keys = append(sc.keys, g.NSKey())
	}
	urlCur, urlLocal := g.Local(urlKey)
	urlKnown := urlLocal
	if !urlKnown {
		sc.keys = append(sc.keys, urlKey)
	}
	// The purge sequence is only needed on a miss, as the fill's fence;
	// one more key in this round trip saves the fill one.
	seqCur, seqLocal := g.Local(g.SeqKey())
	seqKnown := seqLocal
	if !seqKnown {
		sc.keys = append(sc.keys, g.SeqKey())
	}
	// The page's tags, as last seen: their counters come in the same round
	// trip, speculatively.
	tagsAt := len(sc.keys)
	hint, hinted := c.hints.GetIfPresent(unsafe.String(unsafe.SliceData(sc.key), len(sc.key)))
	if hinted {
		sc.keys = append(sc.keys, hint.keys...)
	}
	var it pagecache.Item
	var found bool
	if len(sc.keys) == 1 {
		var err error
		it, err = c.Store.Get(pageKey)
		if found = err == nil; err != nil && !errors.Is(err, pagecache.ErrMiss) {
			r.storeError(err)
			return pageMissing, pageKeys{page: pageKey, url: urlKey, storeDown: true}
		}
	} else {
		sc.items = slices.Grow(sc.items[:0], len(sc.keys))[:len(sc.keys)]
		items := sc.items
		if err := c.Store.GetMulti(sc.keys, items); err != nil {
			// The store failed (down, or slower than cache.timeout): this
			// request asks it nothing more, so it costs one timeout at
			// most, and no counter is created or trusted.
			r.storeError(err)
			clear(sc.items)
			return pageMissing, pageKeys{page: pageKey, url: urlKey, storeDown: true}
		}
		it, found = items[0], items[0].Found()
		i := 1
		if !nsKnown {
			if v, ok := pagecache.ParseCounter(items[i]); ok {
				nsCur, nsKnown = v, true
			}
			i++
		}
		if !urlKnown {
			urlCur, urlKnown = pagecache.ParseCounter(items[i])
			i++
		}
		if !seqKnown {
			seqCur, seqKnown = pagecache.ParseCounter(items[i])
		}
	}
	if urlKnown && !urlLocal {
		g.Remember(urlKey, urlCur)
	}
	if seqKnown && !seqLocal {
		g.Remember(g.SeqKey(), seqCur)
	}
	defer clear(sc.items) // do not keep values alive in the pool
	if !nsKnown {
		// No namespace yet (a new or flushed store): start one.
		v, err := g.Create(g.NSKey())
		if err != nil {
			r.storeError(err)
			return pageMissing, pageKeys{page: pageKey, url: urlKey, storeDown: true}
		}
		nsCur = v
	}
	if !nsLocal {
		g.Remember(g.NSKey(), nsCur)
	}
	if nsCur != ns {
		// Everything was purged (or this is the first request): the page
		// lives under the new namespace.
		c.ns.Store(nsCur)
		pageKey = r.pageKey(sc, nsCur)
		var err error
		it, err = c.Store.Get(pageKey)
		if found = err == nil; err != nil && !errors.Is(err, pagecache.ErrMiss) {
			r.storeError(err)
			return pageMissing, pageKeys{page: pageKey, url: urlKey, storeDown: true}
		}
	}
	keys := pageKeys{page: pageKey, url: urlKey, seq: seqCur, seqKnown: seqKnown, urlGen: urlCur, urlKnown: urlKnown}
	if !found || !urlKnown {
		return pageMissing, keys // a missing URL counter counts as purged
	}
	if err := pagecache.Decode(it.Value, e); err != nil {
		r.stats.Damaged.Add(1)
		return pageMissing, keys
	}
	valid := pagecache.Check(e.URLGen, urlCur)
	if valid != pagecache.Invalid && e.NumTags() > 0 {
		v, ok := pagecache.Invalid, false
		if hinted {
			v, ok = hint.check(e, sc.items[tagsAt:len(sc.keys)])
		}
		if !ok { // no hint, or the page's tags changed: one more round trip
			v = r.checkTags(e)
			r.rememberTags(sc.key, e)
		}
		valid = max(valid, v)
	}
	switch {
	case valid == pagecache.Invalid:
		return pageMissing, keys
	case e.Kind == pagecache.KindUncacheable:
		if valid == pagecache.Valid && now < e.FreshUntil {
			return pageUncacheable, keys
		}
		return pageMissing, keys
	case e.Kind != pagecache.KindPage:
		return pageMissing, keys
	case valid == pagecache.Valid && now < e.FreshUntil:
		return pageFresh, keys
	case now < e.StaleUntil:
		return pageStale, keys // past its freshness, or soft-purged
	}
	return pageMissing, keys
}

// checkTags reads the counters of a page's surrogate keys and returns the
// worst of their verdicts; a counter missing or unreadable is Invalid.
func (r *Router) checkTags(e *pagecache.Entry) pagecache.Validity {
	g := r.cache.gens
	worst := pagecache.Valid
	var keys []string
	var recorded []uint64
	e.Tags(func(tag []byte, gen uint64) bool {
		k := g.TagKey(string(tag))
		if cur, ok := g.Local(k); ok {
			worst = max(worst, pagecache.Check(gen, cur))
		} else {
			keys = append(keys, k)
			recorded = append(recorded, gen)
		}
		return true
	})
	if len(keys) == 0 || worst == pagecache.Invalid {
		return worst
	}
	items := make([]pagecache.Item, len(keys))
	if err := r.cache.Store.GetMulti(keys, items); err != nil {
		r.storeError(err)
		return pagecache.Invalid
	}
	for i, k := range keys {
		cur, ok := pagecache.ParseCounter(items[i])
		if !ok {
			return pagecache.Invalid
		}
		g.Remember(k, cur)
		worst = max(worst, pagecache.Check(recorded[i], cur))
	}
	return worst
}

// A tagHint is what the last decode of a page showed of its tags: their
// names and their counters' keys, in the entry's order.
type tagHint struct {
	names []string
	keys  []string
}

// check applies the counters fetched with the page (items, in hint order)
// to e's tags; ok is false when e's tags are not the hint's.
func (h tagHint) check(e *pagecache.Entry, items []pagecache.Item) (v pagecache.Validity, ok bool) {
	if e.NumTags() != len(h.names) || len(items) < len(h.names) {
		return pagecache.Invalid, false
	}
	i := 0
	ok = true
	e.Tags(func(tag []byte, gen uint64) bool {
		if string(tag) != h.names[i] {
			ok = false
			return false
		}
		cur, found := pagecache.ParseCounter(items[i])
		if !found {
			v = pagecache.Invalid // a missing counter counts as purged
		} else {
			v = max(v, pagecache.Check(gen, cur))
		}
		i++
		return true
	})
	return v, ok
}

// rememberTags keeps a page's tags as a hint for its next lookups. Not
// used with tag_cache_ttl, where counters are read locally anyway.
func (r *Router) rememberTags(base []byte, e *pagecache.Entry) {
	c := r.cache
	if c.TagCacheTTL > 0 {
		return
	}
	h := tagHint{names: make([]string, 0, e.NumTags()), keys: make([]string, 0, e.NumTags())}
	e.Tags(func(tag []byte, _ uint64) bool {
		h.names = append(h.names, string(tag))
		h.keys = append(h.keys, c.gens.TagKey(string(tag)))
		return true
	})
	c.hints.Set(string(base), h)
}

// pageKey builds in sc.page the page key: the base key and the namespace.
func (r *Router) pageKey(sc *scratch, ns uint64) string {
	sc.page = append(append(sc.page[:0], sc.key...), "|n"...)
	sc.page = strconv.AppendUint(sc.page, ns, 10)
	sc.page = r.cache.Keys.Fit(sc.page, 0)
	return unsafe.String(unsafe.SliceData(sc.page), len(sc.page))
}

// clone copies keys out of the scratch buffers they alias.
func (k pageKeys) clone() pageKeys {
	k.page, k.url = strings.Clone(k.page), strings.Clone(k.url)
	return k
}

func (r *Router) storeError(err error) {
	r.stats.StoreErrors.Add(1)
	r.log.Log(slog.LevelWarn, "store", "cache store failed; serving from the backend", slog.String("error", err.Error()))
}

// fillFromVisitor forwards a visitor without cookies or credentials and
// stores the answer if the policy allows. Concurrent misses of the key wait
// for this one fill and are served the stored page; when it could not be
// stored, each forwards its own request.
func (r *Router) fillFromVisitor(ctx *fasthttp.RequestCtx, keys pageKeys, rule *pagecache.Rule) outcome {
	closeConn := r.prepare(ctx)
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	if !r.fillRequest(req, ctx, acceptsGzip(&ctx.Request.Header)) {
		return r.bypass(ctx, bypassQuery)
	}
	var resp *fasthttp.Response
	res, leader := r.cache.flights.do(keys.page, r.cache.CollapseTimeout, func() *fillResult {
		resp = fasthttp.AcquireResponse()
		start := time.Now()
		res := r.fill(req, resp, keys, rule)
		if r.access != nil {
			addUpstream(ctx, time.Since(start))
		}
		return res
	})
	switch {
	case leader && res.err != nil:
		fasthttp.ReleaseResponse(resp)
		r.backendError(ctx, res.err)
		return outcomeError
	case leader:
		status := statusMissStored
		if res.reason != pagecache.Storable {
			status = statusNotStored[res.reason]
		}
		if !r.relayWith(ctx, resp, res.body, status, closeConn) {
			return outcomeError
		}
		return outcomeMiss
	case res == nil:
		r.stats.CollapseTimeouts.Add(1)
		return r.forwardAs(ctx, statusCollapseTimeout, outcomeMiss)
	case res.entry != nil:
		e := entries.Get().(*pagecache.Entry)
		defer entries.Put(e)
		if pagecache.Decode(res.entry, e) == nil && r.serveEntry(ctx, keys.page, e, statusCollapsed, time.Now().UnixMilli()) {
			r.stats.Collapsed.Add(1)
			return outcomeCollapsed
		}
		return r.forwardAs(ctx, statusMissBackground, outcomeMiss)
	}
	return r.forwardAs(ctx, statusNotStored[res.reason], outcomeMiss)
}

// backgroundFill starts, unless one is running or too many are, a fill of
// key by a request like the visitor's without credentials. It copies what
// it needs from ctx before returning.
func (r *Router) backgroundFill(ctx *fasthttp.RequestCtx, keys pageKeys, rule *pagecache.Rule) {
	c := r.cache
	if c.raw != nil && !c.raw.Fill || c.flights.running(keys.page) {
		return
	}
	select {
	case c.bgSlots <- struct{}{}:
	default:
		r.stats.FillsSkipped.Add(1)
		return
	}
	req := fasthttp.AcquireRequest()
	if !r.fillRequest(req, ctx, true) {
		fasthttp.ReleaseRequest(req)
		<-c.bgSlots
		return
	}
	started := c.flights.tryGo(keys.page, func() *fillResult {
		defer func() {
			fasthttp.ReleaseRequest(req)
			<-c.bgSlots
		}()
		r.stats.BackgroundFills.Add(1)
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(resp)
		res := r.fill(req, resp, keys, rule)
		if res.err != nil {
			r.log.Log(slog.LevelWarn, "fill", "background fill failed", slog.String("key", keys.page), slog.String("error", res.err.Error()))
		}
		return res
	})
	if !started {
		fasthttp.ReleaseRequest(req)
		<-c.bgSlots
	}
}

// fill sends req, decides whether the answer may be stored, and stores it
// (or an uncacheable marker). resp keeps the answer for a leader to relay;
// when the body was read, fillResult.body holds it.
//
// Purges cannot be overtaken: the URL counter and the purge sequence are
// read before the request is sent, the page records that URL generation,
// and the tags' generations are read after the answer together with the
// sequence again; if a purge by key came in between, the answer is not
// stored.
func (r *Router) fill(req *fasthttp.Request, resp *fasthttp.Response, keys pageKeys, rule *pagecache.Rule) *fillResult {
	c := r.cache
	before, genErr := r.fence(keys)
	start := time.Now()
	err := r.backends.Do(req, resp)
	r.backendDone(nil, start)
	if err != nil {
		return &fillResult{err: err}
	}
	r.countBackend(resp.StatusCode())
	now := time.Now()
	info := pagecache.Response{
		Status:          resp.StatusCode(),
		CacheControl:    joinHeader(&resp.Header, fasthttp.HeaderCacheControl),
		Expires:         resp.Header.Peek(fasthttp.HeaderExpires),
		Date:            resp.Header.Peek(fasthttp.HeaderDate),
		Vary:            joinHeader(&resp.Header, fasthttp.HeaderVary),
		ContentEncoding: resp.Header.ContentEncoding(),
	}
	var tags []string
	var tagErr error
	for k, v := range resp.Header.All() {
		switch {
		case bytes.EqualFold(k, strSetCookie) && !c.Policy.StripSetCookie(v):
			info.SetCookie = true
		case c.isTagHeader(k) && tagErr == nil:
			tags, tagErr = pagecache.ParseTags(tags, v)
		}
	}
	d := c.Policy.Decide(rule, &info, now)
	switch {
	case d.Reason != pagecache.Storable:
	case genErr != nil:
		r.storeError(genErr)
		d.Reason = pagecache.ReasonStoreError
	case tagErr != nil:
		r.log.Log(slog.LevelWarn, "tags", "response not stored: its surrogate keys break the limits", slog.String("key", keys.page), slog.String("error", tagErr.Error()))
		d.Reason = pagecache.ReasonTags
	case c.raw != nil && len(tags) > 0:
		d.Reason = pagecache.ReasonTags // raw pages have nowhere to keep tags
	}
	res := &fillResult{reason: d.Reason}
	if d.Reason == pagecache.Storable {
		body, complete, err := readBody(resp, c.MaxBodySize)
		res.body = body
		switch {
		case err != nil:
			res.err = err
			return res
		case !complete:
			res.reason = pagecache.ReasonTooLarge
		default:
			res.reason, res.entry = r.store(keys, resp, body, d, now, before, tags)
		}
	}
	switch {
	case res.reason == pagecache.Storable:
		r.stats.Stored.Add(1)
	case res.reason == pagecache.ReasonPurged || res.reason == pagecache.ReasonStoreError:
		r.stats.NotStored[res.reason].Add(1)
	default:
		r.stats.NotStored[res.reason].Add(1)
		if resp.StatusCode() < 500 && genErr == nil { // a server error may pass; do not mark the URL
			r.markUncacheable(keys, now, before)
		}
	}
	return res
}

// fence returns the purge sequence and URL counter a fill stores its
// page under, read before its request is sent: the lookup's values when
// it read them (older is safe: a purge since then only keeps the page
// from being stored), else read now, creating a missing counter.
func (r *Router) fence(keys pageKeys) (map[string]uint64, error) {
	g := r.cache.gens
	before := make(map[string]uint64, 2)
	for _, k := range []struct {
		key   string
		v     uint64
		known bool
	}{{g.SeqKey(), keys.seq, keys.seqKnown}, {keys.url, keys.urlGen, keys.urlKnown}} {
		if !k.known {
			var err error
			if k.v, err = g.Create(k.key); err != nil {
				return nil, err
			}
			g.Remember(k.key, k.v)
		}
		before[k.key] = k.v
	}
	return before, nil
}

// store writes the page; it returns why not when it could not.
func (r *Router) store(keys pageKeys, resp *fasthttp.Response, body []byte, d pagecache.Decision, now time.Time, before map[string]uint64, tags []string) (pagecache.Reason, []byte) {
	c := r.cache
	if c.raw != nil {
		return r.storeRaw(keys, resp, body, d, before), nil
	}
	var hdrs [32]pagecache.Header
	page := pagecache.Page{
		Kind:       pagecache.KindPage,
		Status:     resp.StatusCode(),
		StoredAt:   now.UnixMilli(),
		FreshUntil: now.Add(d.TTL).UnixMilli(),
		StaleUntil: now.Add(d.TTL + d.Grace).UnixMilli(),
		URLGen:     before[keys.url],
		Headers:    hdrs[:0],
		Body:       body,
	}
	if len(tags) > 0 {
		tagKeys := make([]string, 0, len(tags)+1)
		tagKeys = append(tagKeys, c.gens.SeqKey())
		for _, t := range tags {
			tagKeys = append(tagKeys, c.gens.TagKey(t))
		}
		after, err := c.gens.Read(tagKeys)
		if err != nil {
			r.storeError(err)
			return pagecache.ReasonStoreError, nil
		}
		if after[c.gens.SeqKey()] != before[c.gens.SeqKey()] {
			return pagecache.ReasonPurged, nil
		}
		for i, t := range tags {
			page.Tags = append(page.Tags, pagecache.Tag{Name: t, Gen: after[tagKeys[i+1]]})
		}
	}
	for k, v := range resp.Header.All() {
		if !c.Policy.Keep(k) {
			continue
		}
		if len(page.Headers) == len(hdrs) {
			return pagecache.ReasonHeaders, nil
		}
		page.Headers = append(page.Headers, pagecache.Header{Name: bytes.Clone(k), Value: bytes.Clone(v)})
	}
	env, err := pagecache.Encode(make([]byte, 0, len(body)+512), &page)
	if err != nil {
		return pagecache.ReasonHeaders, nil
	}
	if err := c.Store.Set(keys.page, pagecache.Item{Value: env}, d.TTL+d.Grace); err != nil {
		return storeReason(err), nil
	}
	return pagecache.Storable, env
}

// storeRaw writes a raw body, fenced against purges by the URL counter:
// a raw value cannot record the generation it was fetched under, so the
// counter is read again after the value is written, and a purge that came
// in since the fence (purgeURL bumps the counter, then deletes) has the
// value deleted again. Whichever order the two run in, the purged page is
// gone once both are done.
func (r *Router) storeRaw(keys pageKeys, resp *fasthttp.Response, body []byte, d pagecache.Decision, before map[string]uint64) pagecache.Reason {
	c := r.cache
	flags := uint32(0)
	if c.raw.GzipFlag != 0 && bytes.EqualFold(resp.Header.ContentEncoding(), []byte("gzip")) {
		flags = c.raw.GzipFlag
	} else if len(resp.Header.ContentEncoding()) > 0 {
		return pagecache.ReasonEncoding
	}
	if err := c.Store.Set(keys.page, pagecache.Item{Value: body, Flags: flags}, d.TTL); err != nil {
		return storeReason(err)
	}
	it, err := c.Store.Get(keys.url)
	if cur, ok := pagecache.ParseCounter(it); err == nil && ok && cur == before[keys.url] {
		return pagecache.Storable
	}
	if err := c.Store.Delete(keys.page); err != nil && !errors.Is(err, pagecache.ErrMiss) {
		r.storeError(err)
	}
	return pagecache.ReasonPurged
}

func storeReason(err error) pagecache.Reason {
	if errors.Is(err, pagecache.ErrTooLarge) {
		return pagecache.ReasonTooLarge
	}
	return pagecache.ReasonStoreError
}

// markUncacheable leaves a marker so the next visitors of the page go
// straight to the backend, like Varnish's hit-for-pass. Purging the URL
// clears it, as it would a page.
func (r *Router) markUncacheable(keys pageKeys, now time.Time, before map[string]uint64) {
	c := r.cache
	if c.raw != nil {
		return // another program owns raw keys
	}
	page := pagecache.Page{Kind: pagecache.KindUncacheable, Status: 200, StoredAt: now.UnixMilli(), URLGen: before[keys.url],
		FreshUntil: now.Add(c.UncacheableTTL).UnixMilli(), StaleUntil: now.Add(c.UncacheableTTL).UnixMilli()}
	env, _ := pagecache.Encode(nil, &page)
	if err := c.Store.Set(keys.page, pagecache.Item{Value: env}, c.UncacheableTTL); err != nil {
		r.storeError(err)
	}
}

// isTagHeader reports whether a response header carries surrogate keys.
func (c *cache) isTagHeader(name []byte) bool {
	for _, h := range c.TagHeaders {
		if bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	return false
}

// readBody reads resp's body up to limit bytes. complete is false when the
// body is longer (what was read is returned, the rest stays in the stream).
func readBody(resp *fasthttp.Response, limit int) (body []byte, complete bool, err error) {
	if !resp.IsBodyStream() {
		return resp.Body(), true, nil
	}
	n := resp.Header.ContentLength()
	if n > limit {
		return nil, false, nil
	}
	if n < 0 {
		n = 16 << 10
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+1))
	_, err = buf.ReadFrom(io.LimitReader(resp.BodyStream(), int64(limit)+1))
	if err != nil {
		return nil, false, err
	}
	if buf.Len() > limit {
		return buf.Bytes(), false, nil
	}
	resp.CloseBodyStream() // read to the end: the connection goes back to the pool
	return buf.Bytes(), true, nil
}

// serveEntry answers from a stored page: its status and headers, Age, the
// Cache-Status, and the body (decompressed for a client that does not
// accept gzip, see identity). A matching If-None-Match or
// If-Modified-Since gets 304. It does not allocate for an ordinary hit.
// key names the stored page; now is in Unix milliseconds. It returns false,
// having written nothing, when the page is gzipped, the client does not
// take gzip, and the body does not decompress within the bound: the
// caller forwards the request instead.
func (r *Router) serveEntry(ctx *fasthttp.RequestCtx, key string, e *pagecache.Entry, cacheStatus string, now int64) bool {
	resp := &ctx.Response
	var etag, lastMod, encoding []byte
	for _, h := range e.Headers {
		switch {
		case bytes.EqualFold(h.Name, strETag):
			etag = h.Value
		case bytes.EqualFold(h.Name, strLastModified):
			lastMod = h.Value
		case bytes.EqualFold(h.Name, strContentEncoding):
			encoding = h.Value
		}
	}
	notModified := e.Status == fasthttp.StatusOK && notModified(&ctx.Request.Header, etag, lastMod)
	gunzip := len(encoding) > 0 && bytes.EqualFold(encoding, strGzip) && !acceptsGzip(&ctx.Request.Header)
	body := e.Body // the store gave us this slice to keep
	if gunzip && !notModified {
		var ok bool
		if body, ok = r.cache.identity(key, e.StoredAt, e.Body); !ok {
			r.log.Log(slog.LevelWarn, "gunzip", "stored gzip body does not decompress within cache.item_size_limit; forwarding the request", slog.String("key", key))
			return false
		}
	}
	if notModified {
		resp.Header.SetStatusCode(fasthttp.StatusNotModified)
	} else {
		resp.Header.SetStatusCode(e.Status)
	}
	for _, h := range e.Headers {
		if gunzip && bytes.EqualFold(h.Name, strContentEncoding) {
			continue
		}
		resp.Header.AddBytesKV(h.Name, h.Value)
	}
	var age [20]byte
	resp.Header.SetBytesKV(strAge, strconv.AppendInt(age[:0], max(0, now-e.StoredAt)/1000, 10))
	resp.Header.Add(headerCacheStatus, cacheStatus)
	if notModified {
		resp.SkipBody = true
	} else {
		resp.SetBodyRaw(body)
	}
	r.stats.BytesFromCache.Add(uint64(len(resp.Body())))
	return true
}

// serveRaw answers from a body-only value written by another program; it
// returns false, having written nothing, for a gzipped value a client
// without gzip cannot be given (see serveEntry).
func (r *Router) serveRaw(ctx *fasthttp.RequestCtx, key string, it pagecache.Item) bool {
	resp := &ctx.Response
	body := it.Value
	gz := false
	if f := r.cache.raw.GzipFlag; f != 0 && it.Flags&f != 0 {
		if gz = acceptsGzip(&ctx.Request.Header); !gz {
			var ok bool
			if body, ok = r.cache.identity(key, 0, body); !ok {
				r.log.Log(slog.LevelWarn, "gunzip", "raw value flagged gzip does not decompress within cache.item_size_limit; forwarding the request", slog.String("key", key))
				return false
			}
		}
	}
	r.stats.Hits.Add(1)
	resp.Header.SetStatusCode(fasthttp.StatusOK)
	resp.Header.SetContentType(r.cache.raw.ContentType)
	if r.cache.raw.GzipFlag != 0 && it.Flags&r.cache.raw.GzipFlag != 0 {
		if gz {
			resp.Header.SetContentEncodingBytes(strGzip)
		}
		resp.Header.SetBytesKV(strVary, strAcceptEncoding)
	}
	resp.Header.Add(headerCacheStatus, statusHit)
	resp.SetBodyRaw(body)
	r.stats.BytesFromCache.Add(uint64(len(body)))
	return true
}

// identity returns the decompressed body of a gzipped page, for clients
// that do not accept gzip. Each stored version of a page (its key, stored
// time, length and CRC-32C: a refill under the same key, or a raw value
// another program rewrote, is another version) is decompressed once per
// instance and kept in a bounded in-process cache, so a run of such
// clients costs one decompression, not one each; the output is bounded by
// the item size limit (a gzip bomb in the store is refused, ok false).
func (c *cache) identity(key string, storedAt int64, gz []byte) (body []byte, ok bool) {
	var buf [64]byte
	id := append(strconv.AppendInt(append(buf[:0], '|'), storedAt, 10), '|')
	id = strconv.AppendInt(id, int64(len(gz)), 10)
	id = append(id, '|')
	id = strconv.AppendUint(id, uint64(crc32.Checksum(gz, castagnoli)), 16)
	k := key + string(id)
	if b, found := c.identities.GetIfPresent(k); found {
		return b, b != nil
	}
	b, err := gunzipBody(gz, c.MaxBodySize+8<<10)
	if err != nil {
		b = nil // remembered too: a bad value is not decompressed again
	}
	c.identities.Set(k, b)
	return b, b != nil
}

// notModified applies a conditional request to a stored page: If-None-Match
// when sent (weak comparison), otherwise If-Modified-Since.
func notModified(h *fasthttp.RequestHeader, etag, lastMod []byte) bool {
	if inm := h.Peek(fasthttp.HeaderIfNoneMatch); len(inm) > 0 {
		if len(etag) == 0 {
			return false
		}
		for tag := range bytes.SplitSeq(inm, []byte{','}) {
			tag = bytes.TrimSpace(tag)
			if bytes.Equal(tag, []byte{'*'}) || bytes.Equal(bytes.TrimPrefix(tag, strWeak), bytes.TrimPrefix(etag, strWeak)) {
				return true
			}
		}
		return false
	}
	ims := h.Peek(fasthttp.HeaderIfModifiedSince)
	if len(ims) == 0 || len(lastMod) == 0 {
		return false
	}
	since, err1 := fasthttp.ParseHTTPDate(ims)
	modified, err2 := fasthttp.ParseHTTPDate(lastMod)
	return err1 == nil && err2 == nil && !modified.After(since)
}

// acceptsGzip reports whether Accept-Encoding allows gzip.
func acceptsGzip(h *fasthttp.RequestHeader) bool {
	for enc := range bytes.SplitSeq(h.Peek(fasthttp.HeaderAcceptEncoding), []byte{','}) {
		name, q, _ := bytes.Cut(bytes.TrimSpace(enc), []byte{';'})
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, strGzip) || bytes.Equal(name, []byte{'*'}) {
			return !qZero(bytes.TrimSpace(q))
		}
	}
	return false
}

// qZero reports whether an Accept-Encoding parameter is "q=0" (or 0.0...).
func qZero(param []byte) bool {
	v, ok := bytes.CutPrefix(param, []byte("q="))
	if !ok || len(v) == 0 {
		return false
	}
	for _, c := range v {
		if c != '0' && c != '.' {
			return false
		}
	}
	return true
}

var gzipReaders sync.Pool

// errGunzipTooLarge: a gzipped body decompresses to more than allowed.
var errGunzipTooLarge = errors.New("router: gzipped body decompresses beyond the limit")

// gunzipBody decompresses b, at most limit bytes of output.
func gunzipBody(b []byte, limit int) ([]byte, error) {
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(b))
	} else {
		err = zr.Reset(bytes.NewReader(b))
	}
	if err != nil {
		return nil, err
	}
	defer gzipReaders.Put(zr)
	var out bytes.Buffer
	n, err := out.ReadFrom(io.LimitReader(zr, int64(limit)+1))
	switch {
	case err != nil:
		return nil, err
	case n > int64(limit):
		return nil, errGunzipTooLarge
	}
	return out.Bytes(), nil
}

// fillRequest builds in req the request a fill sends for the visitor's
// request in ctx: a GET with no body that carries exactly what the page
// key is built from and nothing else of the visitor's, so that what is
// stored under a key was rendered from that key's inputs alone (an
// unkeyed header, query parameter or cookie the application reflects
// cannot reach the shared copy):
//
//   - the URI: the raw path and the query as the key holds it
//     (pagecache.KeyTemplate.AppendFillURI);
//   - Host, lower-cased, as the key has it;
//   - the headers the key names ({header:Name}), first value only, less
//     the operator's fill_strip_headers;
//   - X-Forwarded-Proto: the key's scheme; X-Forwarded-For and X-Real-IP:
//     the client's address as one validated IP, nothing the client wrote;
//   - Accept-Encoding: gzip when gz, so one stored body serves both kinds
//     of clients; User-Agent: a fixed "userrouter (cache fill)".
//
// Never Cookie, Authorization, conditional or range headers, nor any
// other header of the visitor's. ok is false when the URI is not
// cacheable (too many query parameters).
func (r *Router) fillRequest(req *fasthttp.Request, ctx *fasthttp.RequestCtx, gz bool) (ok bool) {
	c := r.cache
	src := &ctx.Request.Header
	var hostBuf [256]byte
	host, hostOK := lowerHost(hostBuf[:0], src.Host())
	if !hostOK {
		return false
	}
	in := pagecache.KeyInput{Host: host, Header: src}
	in.Path, in.Query = pagecache.SplitURI(src.RequestURI())
	uri, ok := c.Keys.AppendFillURI(make([]byte, 0, len(in.Path)+len(in.Query)+1), &in)
	if !ok {
		return false
	}
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURIBytes(uri)
	req.Header.SetHostBytes(host)
	for _, name := range c.Keys.Headers() {
		if v := src.Peek(name); len(v) > 0 && !slices.ContainsFunc(c.FillStripHeaders, func(s string) bool { return strings.EqualFold(s, name) }) {
			req.Header.SetBytesV(name, v)
		}
	}
	req.Header.SetBytesV(fasthttp.HeaderXForwardedProto, r.scheme(ctx))
	if ip := r.clientIP(ctx); ip.IsValid() {
		var b [64]byte
		a := ip.AppendTo(b[:0])
		req.Header.SetBytesV(fasthttp.HeaderXForwardedFor, a)
		req.Header.SetBytesV(headerXRealIP, a)
	}
	if gz {
		req.Header.Set(fasthttp.HeaderAcceptEncoding, "gzip")
	}
	req.Header.SetUserAgent(fillUserAgent)
	return true
}

// fillUserAgent is the User-Agent of every fill: the visitor's is no
// input of the shared page (a mobile view rendered for one would be
// served to all).
const fillUserAgent = "userrouter (cache fill)"

// joinHeader joins every value of a header with ", ".
func joinHeader(h *fasthttp.ResponseHeader, name string) []byte {
	all := h.PeekAll(name)
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	return bytes.Join(all, []byte(", "))
}

// scheme is the request's scheme for keys: X-Forwarded-Proto from a
// trusted proxy, else http.
func (r *Router) scheme(ctx *fasthttp.RequestCtx) []byte {
	if p := ctx.Request.Header.Peek(fasthttp.HeaderXForwardedProto); len(p) > 0 {
		if ok, _ := trusted(ctx.RemoteAddr(), r.trusted); ok {
			if bytes.EqualFold(p, strHTTPS) {
				return strHTTPS
			}
		}
	}
	return strHTTP
}

// scratch is per-request working memory, pooled: the lower-cased host,
// the keys and what they are built from.
type scratch struct {
	host  [256]byte
	key   []byte // the base key, from the template
	page  []byte // the page key: base key and namespace
	url   []byte // the URL counter's key
	keys  []string
	items []pagecache.Item
	in    pagecache.KeyInput
}

var (
	scratches = sync.Pool{New: func() any {
		return &scratch{key: make([]byte, 0, 512), page: make([]byte, 0, 512), url: make([]byte, 0, 64),
			keys: make([]string, 0, 8), items: make([]pagecache.Item, 0, 8)}
	}}
	entries = sync.Pool{New: func() any { return new(pagecache.Entry) }}
)

var (
	strETag            = []byte(fasthttp.HeaderETag)
	strLastModified    = []byte(fasthttp.HeaderLastModified)
	strContentEncoding = []byte(fasthttp.HeaderContentEncoding)
	strAge             = []byte(fasthttp.HeaderAge)
	strSetCookie       = []byte(fasthttp.HeaderSetCookie)
	strVary            = []byte(fasthttp.HeaderVary)
	strAcceptEncoding  = []byte(fasthttp.HeaderAcceptEncoding)
	strGzip            = []byte("gzip")
	strWeak            = []byte("W/")
	strHTTP            = []byte("http")
	strHTTPS           = []byte("https")
)
