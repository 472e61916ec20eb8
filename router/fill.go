package router

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

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

// fillFromVisitor forwards a visitor without cookies or credentials and
// stores the answer if the policy allows. Concurrent misses of the key wait
// for this one fill and are served the stored page; when it could not be
// stored, each forwards its own request.
func (q *request) fillFromVisitor(t pagecache.Ticket) outcome {
	r := q.r
	closeConn := q.prepare()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	if !q.fillRequest(req, acceptsGzip(&q.ctx.Request.Header)) {
		return q.bypass(bypassQuery)
	}
	var resp *fasthttp.Response
	res, leader := r.cache.flights.do(t.Key(), r.cache.CollapseTimeout, func() *fillResult {
		resp = fasthttp.AcquireResponse()
		start := time.Now()
		res := r.fill(req, resp, t, q.rule)
		q.waited(start)
		return res
	})
	switch {
	case leader && res.err != nil:
		fasthttp.ReleaseResponse(resp)
		q.backendError(res.err)
		return outcomeError
	case leader:
		status := statusMissStored
		if res.reason != pagecache.Storable {
			status = statusNotStored[res.reason]
		}
		if !q.relayWith(resp, res.body, status, closeConn) {
			return outcomeError
		}
		return outcomeMiss
	case res == nil:
		r.stats.CollapseTimeouts.Add(1)
		return q.forwardAs(statusCollapseTimeout, outcomeMiss)
	case res.entry != nil:
		e := &q.w.entry // the lookup is done with it
		if pagecache.Decode(res.entry, e) == nil && q.serveEntry(t.Key(), e, statusCollapsed, time.Now().UnixMilli()) {
			r.stats.Collapsed.Add(1)
			return outcomeCollapsed
		}
		return q.forwardAs(statusMissBackground, outcomeMiss)
	}
	return q.forwardAs(statusNotStored[res.reason], outcomeMiss)
}

// backgroundFill starts, unless one is running or too many are, a fill of
// the ticket's page by a request like the visitor's without credentials.
// The fill outlives the request: it takes copies (the fill request, the
// ticket cloned) and the rule, which the Policy owns.
func (q *request) backgroundFill(t pagecache.Ticket) {
	r, c, rule := q.r, q.r.cache, q.rule
	if !c.fills || c.flights.running(t.Key()) {
		return
	}
	select {
	case c.bgSlots <- struct{}{}:
	default:
		r.stats.FillsSkipped.Add(1)
		return
	}
	req := fasthttp.AcquireRequest()
	if !q.fillRequest(req, true) {
		fasthttp.ReleaseRequest(req)
		<-c.bgSlots
		return
	}
	started := c.flights.tryGo(t.Key(), func() *fillResult {
		defer func() {
			fasthttp.ReleaseRequest(req)
			<-c.bgSlots
		}()
		r.stats.BackgroundFills.Add(1)
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(resp)
		res := r.fill(req, resp, t, rule)
		if res.err != nil {
			r.log.Log(slog.LevelWarn, "fill", "background fill failed", slog.String("key", t.Key()), slog.String("error", res.err.Error()))
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
// when the body was read, fillResult.body holds it. The ticket is fenced
// before the request is sent (see pagecache.Cache).
func (r *Router) fill(req *fasthttp.Request, resp *fasthttp.Response, t pagecache.Ticket, rule *pagecache.Rule) *fillResult {
	c := r.cache
	genErr := c.pages.Fence(&t)
	start := time.Now()
	err := r.backends.Do(req, resp)
	r.backendDone(start)
	if err != nil {
		return &fillResult{err: err}
	}
	r.countBackend(resp.StatusCode())
	now := time.Now()
	info := pagecache.Response{
		Status:           resp.StatusCode(),
		CacheControl:     joinHeader(&resp.Header, fasthttp.HeaderCacheControl),
		Expires:          resp.Header.Peek(fasthttp.HeaderExpires),
		Date:             resp.Header.Peek(fasthttp.HeaderDate),
		Vary:             joinHeader(&resp.Header, fasthttp.HeaderVary),
		Age:              resp.Header.Peek(fasthttp.HeaderAge),
		SurrogateControl: joinHeader(&resp.Header, "Surrogate-Control"),
		ContentEncoding:  resp.Header.ContentEncoding(),
		RequestTime:      start,
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
		r.log.Log(slog.LevelWarn, "tags", "response not stored: its surrogate keys break the limits", slog.String("key", t.Key()), slog.String("error", tagErr.Error()))
		d.Reason = pagecache.ReasonTags
	case len(tags) > 0 && !c.pages.KeepsTags():
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
			if f, ok := r.fillOf(resp, body, d, now, tags); !ok {
				res.reason = pagecache.ReasonTooLarge
			} else {
				res.reason, res.entry = c.pages.Put(&t, f)
			}
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
			c.pages.MarkUncacheable(&t, now, c.UncacheableTTL)
		}
	}
	return res
}

// fillOf is what Put stores of an answer (RFC 9111 section 3.1): its
// status, every end-to-end header in order, repeated ones included, but
// those the policy never stores (Set-Cookie, hop-by-hop, Age, the
// operator's drop_headers), those its Connection header names, and the tag
// headers when clients do not see them; a Date, the time it came, when the
// backend sent none; its body, tags and freshness. ok is false when the
// headers and body together pass MaxBodySize. One header more than an
// envelope holds is kept, for Put to refuse (ReasonHeaders).
func (r *Router) fillOf(resp *fasthttp.Response, body []byte, d pagecache.Decision, now time.Time, tags []string) (f *pagecache.Fill, ok bool) {
	c := r.cache
	f = &pagecache.Fill{Status: resp.StatusCode(), Body: body, ContentEncoding: resp.Header.ContentEncoding(),
		Tags: tags, StoredAt: now, TTL: d.TTL, Grace: d.Grace, Age: d.Age, Headers: make([]pagecache.Header, 0, 16)}
	connection := joinHeader(&resp.Header, fasthttp.HeaderConnection)
	size, dated := len(body), false
	for k, v := range resp.Header.All() {
		switch {
		case !c.Policy.Stores(k), isHop(k, connection), c.hidden(k):
			continue
		case len(f.Headers) > maxStoredHeaders:
			return f, true
		}
		dated = dated || bytes.EqualFold(k, strDate)
		size += len(k) + len(v) + 3
		f.Headers = append(f.Headers, pagecache.Header{Name: bytes.Clone(k), Value: bytes.Clone(v)})
	}
	if !dated {
		var b [len(http.TimeFormat)]byte
		f.Headers = append(f.Headers, pagecache.Header{Name: strDate, Value: now.UTC().AppendFormat(b[:0], http.TimeFormat)})
	}
	return f, size <= c.MaxBodySize+storedHeaderBytes
}

// maxStoredHeaders is how many headers an envelope holds.
const maxStoredHeaders = 64

// storedHeaderBytes is what headers may add to MaxBodySize: the item size
// limit less MaxBodySize leaves room for the key, tags and envelope.
const storedHeaderBytes = 4 << 10

// hidden reports whether clients never see a response header: it is for
// userrouter alone (Surrogate-Control, which a surrogate consumes, and the
// tag headers when StripTagHeaders).
func (c *cache) hidden(name []byte) bool {
	return bytes.EqualFold(name, strSurrogateControl) || c.StripTagHeaders && c.isTagHeader(name)
}

var strSurrogateControl = []byte("Surrogate-Control")

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

// fillRequest builds in req the request a fill sends for the visitor's
// request: a GET with no body that carries exactly what the page
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
func (q *request) fillRequest(req *fasthttp.Request, gz bool) (ok bool) {
	r, c, ctx := q.r, q.r.cache, q.ctx
	src := &ctx.Request.Header
	in := pagecache.KeyInput{Host: q.host, Path: q.path, Query: q.query, Header: src}
	uri, ok := c.Keys.AppendFillURI(make([]byte, 0, len(in.Path)+len(in.Query)+1), &in)
	if !ok {
		return false
	}
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURIBytes(uri)
	req.Header.SetHostBytes(q.host)
	for _, name := range c.fillHeaders {
		if v := src.Peek(name); len(v) > 0 {
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
