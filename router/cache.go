package router

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

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
}

func newCache(o *CacheOptions) (*cache, error) {
	if o.Store == nil || o.Keys == nil || o.Policy == nil {
		return nil, errors.New("router: the cache needs a store, a key template and a policy")
	}
	c := &cache{CacheOptions: *o, raw: o.Raw}
	c.UncacheableTTL = cmp.Or(c.UncacheableTTL, 2*time.Minute)
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

// anonymous serves a visitor who may share the cache: a fresh page from
// the store, a stale one while it is refreshed, or a miss filled without
// credentials.
func (r *Router) anonymous(ctx *fasthttp.RequestCtx, sc *scratch, rule *pagecache.Rule, host, path, query []byte, hasCookies bool) {
	c := r.cache
	sc.in = pagecache.KeyInput{Scheme: r.scheme(ctx), Host: host, Path: path, Query: query, Header: &ctx.Request.Header}
	var ok bool
	sc.key, ok = c.Keys.Append(sc.key[:0], &sc.in, nil)
	sc.in = pagecache.KeyInput{}
	if !ok {
		r.bypass(ctx, bypassQuery)
		return
	}
	// A view of the buffer, for the lookup alone (stores do not keep the key
	// they are asked for); the miss paths, which keep it, take a copy.
	view := unsafe.String(unsafe.SliceData(sc.key), len(sc.key))

	now := time.Now()
	it, err := c.Store.Get(view)
	switch {
	case err == nil && c.raw != nil:
		if it.Flags&pickleFlag == 0 {
			r.serveRaw(ctx, it)
			return
		}
		r.stats.Damaged.Add(1) // a pickle is never a page
	case err == nil:
		e := entries.Get().(*pagecache.Entry)
		defer entries.Put(e)
		if derr := pagecache.Decode(it.Value, e); derr != nil {
			r.stats.Damaged.Add(1)
			break
		}
		unix := now.Unix()
		switch {
		case e.Kind == pagecache.KindUncacheable && unix < e.FreshUntil:
			r.bypass(ctx, bypassUncacheable)
			return
		case e.Kind != pagecache.KindPage:
		case unix < e.FreshUntil:
			r.stats.Hits.Add(1)
			r.serveEntry(ctx, e, statusHit, unix)
			return
		case unix < e.StaleUntil:
			r.stats.StaleHits.Add(1)
			r.serveEntry(ctx, e, statusStale, unix)
			r.backgroundFill(ctx, strings.Clone(view), rule)
			return
		}
	case !errors.Is(err, pagecache.ErrMiss):
		r.stats.StoreErrors.Add(1)
		r.log.Log(slog.LevelWarn, "store-get", "cache store failed; serving from the backend", slog.String("error", err.Error()))
	}

	if c.raw != nil && !c.raw.Fill {
		r.forward(ctx, statusMissRaw)
		return
	}
	key := strings.Clone(view)
	if ctx.IsGet() && !hasCookies {
		r.fillFromVisitor(ctx, key, rule)
		return
	}
	// A visitor with cookies gets an answer made for them, never stored;
	// the cache is filled in the background by a request without them.
	r.backgroundFill(ctx, key, rule)
	r.forward(ctx, statusMissBackground)
}

// fillFromVisitor forwards a visitor without cookies or credentials and
// stores the answer if the policy allows. Concurrent misses of the key wait
// for this one fill and are served the stored page; when it could not be
// stored, each forwards its own request.
func (r *Router) fillFromVisitor(ctx *fasthttp.RequestCtx, key string, rule *pagecache.Rule) {
	closeConn := r.prepare(ctx)
	prepareFill(&ctx.Request.Header)
	var resp *fasthttp.Response
	res, leader := r.cache.flights.do(key, func() *fillResult {
		resp = fasthttp.AcquireResponse()
		return r.fill(&ctx.Request, resp, key, rule)
	})
	switch {
	case leader && res.err != nil:
		fasthttp.ReleaseResponse(resp)
		r.backendError(ctx, res.err)
	case leader:
		status := statusMissStored
		if res.reason != pagecache.Storable {
			status = statusNotStored[res.reason]
		}
		r.relayWith(ctx, resp, res.body, status, closeConn)
	case res != nil && res.entry != nil:
		e := entries.Get().(*pagecache.Entry)
		defer entries.Put(e)
		if pagecache.Decode(res.entry, e) == nil {
			r.stats.Collapsed.Add(1)
			r.serveEntry(ctx, e, statusCollapsed, time.Now().Unix())
			return
		}
		r.forward(ctx, statusMissBackground)
	default:
		reason := pagecache.ReasonStatus
		if res != nil {
			reason = res.reason
		}
		r.forward(ctx, statusNotStored[reason])
	}
}

// backgroundFill starts, unless one is running or too many are, a fill of
// key by a request like the visitor's without credentials. It copies what
// it needs from ctx before returning.
func (r *Router) backgroundFill(ctx *fasthttp.RequestCtx, key string, rule *pagecache.Rule) {
	c := r.cache
	if c.raw != nil && !c.raw.Fill || c.flights.running(key) {
		return
	}
	select {
	case c.bgSlots <- struct{}{}:
	default:
		r.stats.FillsSkipped.Add(1)
		return
	}
	req := fasthttp.AcquireRequest()
	r.fillRequest(req, ctx)
	started := c.flights.tryGo(key, func() *fillResult {
		defer func() {
			fasthttp.ReleaseRequest(req)
			<-c.bgSlots
		}()
		r.stats.BackgroundFills.Add(1)
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(resp)
		res := r.fill(req, resp, key, rule)
		if res.err != nil {
			r.log.Log(slog.LevelWarn, "fill", "background fill failed", slog.String("key", key), slog.String("error", res.err.Error()))
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
func (r *Router) fill(req *fasthttp.Request, resp *fasthttp.Response, key string, rule *pagecache.Rule) *fillResult {
	c := r.cache
	if err := r.backends.Do(req, resp); err != nil {
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
	for k, v := range resp.Header.All() {
		if bytes.EqualFold(k, strSetCookie) && !c.Policy.StripSetCookie(v) {
			info.SetCookie = true
		}
	}
	d := c.Policy.Decide(rule, &info, now)
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
			res.reason, res.entry = r.store(key, resp, body, d, now)
		}
	}
	if res.reason != pagecache.Storable {
		r.stats.NotStored[res.reason].Add(1)
		if resp.StatusCode() < 500 { // a server error may pass; do not mark the URL
			r.markUncacheable(key, now)
		}
	} else {
		r.stats.Stored.Add(1)
	}
	return res
}

// store writes the page; it returns why not when it could not.
func (r *Router) store(key string, resp *fasthttp.Response, body []byte, d pagecache.Decision, now time.Time) (pagecache.Reason, []byte) {
	c := r.cache
	if c.raw != nil {
		flags := uint32(0)
		if c.raw.GzipFlag != 0 && bytes.EqualFold(resp.Header.ContentEncoding(), []byte("gzip")) {
			flags = c.raw.GzipFlag
		} else if len(resp.Header.ContentEncoding()) > 0 {
			return pagecache.ReasonEncoding, nil
		}
		if err := c.Store.Set(key, pagecache.Item{Value: body, Flags: flags}, d.TTL); err != nil {
			return storeReason(err), nil
		}
		return pagecache.Storable, nil
	}
	var hdrs [32]pagecache.Header
	page := pagecache.Page{
		Kind:       pagecache.KindPage,
		Status:     resp.StatusCode(),
		StoredAt:   now.Unix(),
		FreshUntil: now.Add(d.TTL).Unix(),
		StaleUntil: now.Add(d.TTL + d.Grace).Unix(),
		Headers:    hdrs[:0],
		Body:       body,
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
	if err := c.Store.Set(key, pagecache.Item{Value: env}, d.TTL+d.Grace); err != nil {
		return storeReason(err), nil
	}
	return pagecache.Storable, env
}

func storeReason(err error) pagecache.Reason {
	if errors.Is(err, pagecache.ErrTooLarge) {
		return pagecache.ReasonTooLarge
	}
	return pagecache.ReasonStoreError
}

// markUncacheable leaves a marker so the next visitors of key go straight
// to the backend, like Varnish's hit-for-pass.
func (r *Router) markUncacheable(key string, now time.Time) {
	c := r.cache
	if c.raw != nil {
		return // another program owns raw keys
	}
	page := pagecache.Page{Kind: pagecache.KindUncacheable, Status: 200, StoredAt: now.Unix(),
		FreshUntil: now.Add(c.UncacheableTTL).Unix(), StaleUntil: now.Add(c.UncacheableTTL).Unix()}
	env, _ := pagecache.Encode(nil, &page)
	if err := c.Store.Set(key, pagecache.Item{Value: env}, c.UncacheableTTL); err != nil {
		r.stats.StoreErrors.Add(1)
	}
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
// accept gzip). A matching If-None-Match or If-Modified-Since gets 304.
// It does not allocate for an ordinary hit.
func (r *Router) serveEntry(ctx *fasthttp.RequestCtx, e *pagecache.Entry, cacheStatus string, now int64) {
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
	resp.Header.SetBytesKV(strAge, strconv.AppendInt(age[:0], max(0, now-e.StoredAt), 10))
	resp.Header.Add(headerCacheStatus, cacheStatus)
	switch {
	case notModified:
		resp.SkipBody = true
	case gunzip:
		body, err := gunzipBody(e.Body)
		if err != nil {
			r.log.Log(slog.LevelWarn, "gunzip", "stored gzip body does not decompress; serving it compressed", slog.String("error", err.Error()))
			resp.Header.SetBytesV(fasthttp.HeaderContentEncoding, encoding)
			resp.SetBodyRaw(e.Body)
		} else {
			resp.SetBodyRaw(body)
		}
	default:
		resp.SetBodyRaw(e.Body) // the store gave us this slice to keep
	}
	r.stats.BytesFromCache.Add(uint64(len(resp.Body())))
}

// serveRaw answers from a body-only value written by another program.
func (r *Router) serveRaw(ctx *fasthttp.RequestCtx, it pagecache.Item) {
	r.stats.Hits.Add(1)
	resp := &ctx.Response
	resp.Header.SetStatusCode(fasthttp.StatusOK)
	resp.Header.SetContentType(r.cache.raw.ContentType)
	body := it.Value
	if f := r.cache.raw.GzipFlag; f != 0 && it.Flags&f != 0 {
		if acceptsGzip(&ctx.Request.Header) {
			resp.Header.SetContentEncodingBytes(strGzip)
		} else if b, err := gunzipBody(body); err == nil {
			body = b
		}
		resp.Header.SetBytesKV(strVary, strAcceptEncoding)
	}
	resp.Header.Add(headerCacheStatus, statusHit)
	resp.SetBodyRaw(body)
	r.stats.BytesFromCache.Add(uint64(len(body)))
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

func gunzipBody(b []byte) ([]byte, error) {
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
	_, err = out.ReadFrom(io.LimitReader(zr, 64<<20))
	return out.Bytes(), err
}

// prepareFill makes a visitor's own request fit to fill the cache: no
// conditional or range headers (the cache needs the whole page), and an
// Accept-Encoding of gzip or nothing, so the stored body is one both kinds
// of clients can be served.
func prepareFill(h *fasthttp.RequestHeader) {
	gz := acceptsGzip(h)
	for _, name := range fillDropHeaders {
		h.Del(name)
	}
	h.Del(fasthttp.HeaderAcceptEncoding)
	if gz {
		h.Set(fasthttp.HeaderAcceptEncoding, "gzip")
	}
}

var fillDropHeaders = []string{
	fasthttp.HeaderIfNoneMatch, fasthttp.HeaderIfModifiedSince, fasthttp.HeaderIfMatch,
	fasthttp.HeaderIfUnmodifiedSince, fasthttp.HeaderIfRange, fasthttp.HeaderRange,
}

// fillRequest builds in req the credential-free twin of the visitor's
// request: a GET for the same URI and Host, with the visitor's headers but
// Cookie, Authorization, the operator's fill_strip_headers, hop-by-hop,
// conditional and range headers, asking for gzip.
func (r *Router) fillRequest(req *fasthttp.Request, ctx *fasthttp.RequestCtx) {
	src := &ctx.Request.Header
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURIBytes(src.RequestURI())
	req.Header.SetHostBytes(src.Host())
	conn := src.Peek(fasthttp.HeaderConnection)
	for k, v := range src.AllInOrder() {
		if r.dropFromFill(k, conn) {
			continue
		}
		req.Header.AddBytesKV(k, v)
	}
	req.Header.Set(fasthttp.HeaderAcceptEncoding, "gzip")
	if ok, ip := trusted(ctx.RemoteAddr(), r.trusted); !ok {
		setForwarded(&req.Header, ip)
	}
}

func (r *Router) dropFromFill(k, conn []byte) bool {
	if isHop(k, conn) {
		return true
	}
	for _, name := range [...]string{fasthttp.HeaderHost, fasthttp.HeaderCookie, fasthttp.HeaderAuthorization,
		fasthttp.HeaderContentLength, fasthttp.HeaderContentType, fasthttp.HeaderTransferEncoding,
		fasthttp.HeaderAcceptEncoding, fasthttp.HeaderExpect} {
		if bytes.EqualFold(k, []byte(name)) {
			return true
		}
	}
	for _, name := range fillDropHeaders {
		if bytes.EqualFold(k, []byte(name)) {
			return true
		}
	}
	for _, name := range r.cache.FillStripHeaders {
		if bytes.EqualFold(k, []byte(name)) {
			return true
		}
	}
	return false
}

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
// the key and what it is built from.
type scratch struct {
	host [256]byte
	key  []byte
	in   pagecache.KeyInput
}

var (
	scratches = sync.Pool{New: func() any { return &scratch{key: make([]byte, 0, 512)} }}
	entries   = sync.Pool{New: func() any { return new(pagecache.Entry) }}
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
