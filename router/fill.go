package router

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
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
	// first (the rest, if any, is still in its response's stream); it is
	// buf's, a pooled buffer (see release).
	body []byte
	buf  *fillBuf
	// failed: the backend failed or answered 5xx; waiters with a stale
	// page may serve it (stale-if-error).
	failed bool
	// revalidated: the backend answered 304 to a conditional fill; entry,
	// when stored, is the refreshed page. The leader has no body to relay.
	revalidated bool
	// key, when not "", is the page key of the variant the answer was made
	// for (by the values its request carried) where it is not the
	// ticket's: vary names the headers it varies on. Only visitors whose
	// values select that variant may be given it (see mine).
	key, vary string
	// marked: the fill wrote the URL's variants marker, whose ticket marker
	// is; a visitor of another variant looks theirs up with it.
	marked bool
	marker pagecache.Ticket
}

// fillFromVisitor forwards a visitor without cookies or credentials and
// stores the answer if the policy allows. Concurrent misses of the key wait
// for this one fill and are served the stored page; when it could not be
// stored, each forwards its own request. A visitor with cookies comes here
// only to revalidate a stale page: they are served the page stored, never
// the fill's answer itself, which was not made for them.
func (q *request) fillFromVisitor(t pagecache.Ticket) outcome {
	r := q.r
	closeConn := q.prepare()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	if !q.fillRequest(req, acceptsGzip(&q.ctx.Request.Header), t.Vary()) {
		return q.bypass(bypassQuery)
	}
	var old *pagecache.Entry
	if q.revalidate && conditional(req, &q.w.entry) {
		old = &q.w.entry // read by the fill, in this goroutine, before it returns
	}
	var resp *fasthttp.Response
	res, leader := r.cache.flights.do(t.Key(), r.cache.CollapseTimeout, func() *fillResult {
		resp = fasthttp.AcquireResponse()
		start := time.Now()
		res := r.fill(req, resp, t, q.rule, old)
		q.waited(start)
		return res
	})
	switch {
	case leader && res.err != nil:
		fasthttp.ReleaseResponse(resp)
		if q.serveStale(res.err) {
			return outcomeStale
		}
		q.backendError(res.err)
		return outcomeError
	case leader && res.failed && q.serveStale(nil):
		fasthttp.ReleaseResponse(resp) // a 5xx: its body not read, its connection closes
		return outcomeStale
	case leader && res.revalidated:
		fasthttp.ReleaseResponse(resp)
		return q.serveRevalidated(t, res)
	case leader && !q.mine(&t, res):
		fasthttp.ReleaseResponse(resp) // made for another variant
		return q.elsewhere(res)
	case leader && q.cookies:
		fasthttp.ReleaseResponse(resp)
		e := &q.w.entry
		if res.entry != nil && pagecache.Decode(res.entry, e) == nil && q.serveEntry(t.Key(), e, statusStaleStored, time.Now().UnixMilli()) {
			return outcomeMiss
		}
		return q.forwardAs(statusNotStored[res.reason], outcomeMiss)
	case leader:
		status := statusMissStored
		switch {
		case res.reason != pagecache.Storable:
			status = statusNotStored[res.reason]
		case q.revalidate:
			status = statusStaleStored
		}
		ok := q.relayWith(resp, res.body, status, closeConn)
		if res.reason != pagecache.ReasonTooLarge {
			// relay copied a body read whole into the response (only the
			// rest of one cut short streams from it, read aliased)
			res.release()
		}
		if !ok {
			return outcomeError
		}
		return outcomeMiss
	case res == nil:
		r.stats.CollapseTimeouts.Add(1)
		return q.forwardAs(statusCollapseTimeout, outcomeMiss)
	case res.failed && q.serveStale(nil):
		return outcomeStale
	case !q.mine(&t, res):
		return q.elsewhere(res)
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

// serveRevalidated answers the leader of a fill the backend answered 304:
// the refreshed page when it was stored, else the stale one it confirmed;
// a 304 that made the page unstorable (a Set-Cookie, say) sends the
// visitor's own request instead.
func (q *request) serveRevalidated(t pagecache.Ticket, res *fillResult) outcome {
	e := &q.w.entry
	now := time.Now().UnixMilli()
	switch {
	case res.entry != nil && pagecache.Decode(res.entry, e) == nil && q.serveEntry(t.Key(), e, statusRevalidated, now):
		return outcomeMiss
	case res.reason == pagecache.ReasonStoreError && q.serveEntry(t.Key(), e, statusRevalidatedNotStored, now):
		return outcomeMiss
	}
	q.ctx.Response.Reset()
	return q.forwardAs(statusNotStored[res.reason], outcomeMiss)
}

// serveStale serves, in place of a failed backend's answer, the stale page
// the lookup found when it is within its stale-if-error limit (RFC 5861).
// err is the failure, for the log; nil for a 5xx answer or another
// request's failed fill.
func (q *request) serveStale(err error) bool {
	key := q.staleKey
	if key == "" {
		return false
	}
	q.staleKey = ""
	q.ctx.Response.Reset()
	if !q.serveEntry(key, &q.w.entry, statusStaleIfError, time.Now().UnixMilli()) {
		return false
	}
	q.r.stats.StaleIfError.Add(1)
	if err != nil {
		q.r.stats.BackendErrors.Add(1)
		q.r.log.Log(slog.LevelWarn, "stale-if-error", "backend request failed; served the stale page", slog.String("key", key), slog.String("error", err.Error()))
	}
	return true
}

// validated reports whether a stored page can be revalidated (see
// conditional).
func validated(e *pagecache.Entry) bool {
	if e.Status != fasthttp.StatusOK {
		return false
	}
	for _, h := range e.Headers {
		if bytes.EqualFold(h.Name, strETag) || bytes.EqualFold(h.Name, strLastModified) {
			return true
		}
	}
	return false
}

// conditional makes req ask whether the stored page e is still current
// (RFC 9111 section 4.3.1): If-None-Match with its ETag, If-Modified-Since
// with its Last-Modified. Only a 200 is revalidated, as Varnish does. It
// reports whether e has a validator.
func conditional(req *fasthttp.Request, e *pagecache.Entry) bool {
	if e.Status != fasthttp.StatusOK {
		return false
	}
	ok := false
	for _, h := range e.Headers {
		switch {
		case bytes.EqualFold(h.Name, strETag):
			req.Header.SetBytesV(fasthttp.HeaderIfNoneMatch, h.Value)
			ok = true
		case bytes.EqualFold(h.Name, strLastModified):
			req.Header.SetBytesV(fasthttp.HeaderIfModifiedSince, h.Value)
			ok = true
		}
	}
	return ok
}

// backgroundFill starts, unless one is running or too many are, a fill of
// the ticket's page by a request like the visitor's without credentials;
// a stale page with a validator is revalidated (a copy of it goes along).
// The fill outlives the request: it takes copies (the fill request, the
// ticket cloned, the stale page) and the rule, which the Policy owns.
func (q *request) backgroundFill(t pagecache.Ticket) {
	r, c, rule := q.r, q.r.cache, q.rule
	if !c.fills || c.flights.running(t.Key()) {
		return
	}
	// A refresh that failed backs off, and none starts while every
	// backend is down: stale hits must not hammer a backend that fails.
	// Nor does one start when a refresh of the page ended after this
	// request's lookup: the stale page it found is already replaced.
	if b, ok := c.backoff.GetIfPresent(t.Key()); ok {
		if b.done > q.refreshes {
			return
		}
		if time.Now().UnixMilli() < b.until {
			r.stats.FillsBackedOff.Add(1)
			return
		}
	}
	if r.backends.allDown() {
		r.stats.FillsBackedOff.Add(1)
		return
	}
	if !c.pages.AdmitVariant(&t) {
		r.stats.NotStored[pagecache.ReasonVariants].Add(1) // the URL has max_variants already
		return
	}
	if q.credPath == credentialPrivate && q.cred.Key != nil && !r.creds.admit(q.w.cpart) {
		return // past the credential's private fills
	}
	select {
	case c.bgSlots <- struct{}{}:
	default:
		r.stats.FillsSkipped.Add(1)
		return
	}
	req := fasthttp.AcquireRequest()
	if !q.fillRequest(req, true, t.Vary()) {
		fasthttp.ReleaseRequest(req)
		<-c.bgSlots
		return
	}
	var old *pagecache.Entry
	if q.revalidate && conditional(req, &q.w.entry) {
		old = q.w.entry.Clone()
	}
	started := c.flights.tryGo(t.Key(), func() *fillResult {
		defer func() {
			fasthttp.ReleaseRequest(req)
			<-c.bgSlots
		}()
		r.stats.BackgroundFills.Add(1)
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(resp)
		res := r.fill(req, resp, t, rule, old)
		res.release() // nobody relays a background fill's body
		c.backedOff(t.Key(), res.failed)
		if res.err != nil {
			r.log.Log(slog.LevelWarn, "fill", "background fill failed; its page's next refresh backs off", slog.String("key", t.Key()), slog.String("error", res.err.Error()))
		}
		return res
	})
	if !started {
		fasthttp.ReleaseRequest(req)
		<-c.bgSlots
	}
}

// backedOff records how a page's background refresh went: a failure
// (the backend failed or answered 5xx) doubles the wait before the next
// one, from 1 s to maxRefreshBackoff; a success clears it, and is
// numbered, so that a request whose lookup read the page before it ended
// starts no second one.
func (c *cache) backedOff(key string, failed bool) {
	if !failed {
		c.backoff.Set(key, refreshBackoff{done: c.refreshes.Add(1)})
		return
	}
	b, _ := c.backoff.GetIfPresent(key)
	b.failures = min(b.failures+1, 8)
	wait := min(time.Second<<(b.failures-1), maxRefreshBackoff)
	b.until = time.Now().Add(wait).UnixMilli()
	c.backoff.Set(key, b)
}

// fill sends req, decides whether the answer may be stored, and stores it
// (or an uncacheable marker). resp keeps the answer for a leader to relay;
// when the body was read, fillResult.body holds it. The ticket is fenced
// before the request is sent (see pagecache.Cache). old, when not nil, is
// the stale page req asks about (see conditional): a 304 refreshes it.
func (r *Router) fill(req *fasthttp.Request, resp *fasthttp.Response, t pagecache.Ticket, rule *pagecache.Rule, old *pagecache.Entry) *fillResult {
	c := r.cache
	genErr := c.pages.Fence(&t)
	start := time.Now()
	err := r.backends.Do(req, resp)
	r.backendDone(start)
	if err != nil {
		return &fillResult{err: err, failed: true}
	}
	r.countBackend(resp.StatusCode())
	if resp.StatusCode() == fasthttp.StatusNotModified && old != nil {
		return r.refresh(resp, t, rule, old, start, genErr)
	}
	now := time.Now()
	info, tags, tagErr := c.describe(resp, start)
	d := c.Policy.Decide(rule, &info, now)
	if rule.Credentials != pagecache.CredentialsBypass && d.Reason == pagecache.Storable && d.Vary != "" {
		// Made for one credential, by headers the key does not hold: a
		// credential's copy never varies.
		d.Reason, d.Vary = pagecache.ReasonVary, ""
	}
	// st is the page the answer is, by the values its request carried: t's
	// own, a variant (another than t's when the URL's marker was missing
	// or lists other headers), or the URL's page when it stopped varying.
	st, ok := t, false
	if d.Vary == "" || c.variable(d.Vary) {
		st, ok = c.pages.Variant(&t, d.Vary, &req.Header)
	}
	res := &fillResult{reason: d.Reason, failed: resp.StatusCode() >= 500}
	switch {
	case !ok:
		st = t
		if d.Reason == pagecache.Storable {
			d.Reason = pagecache.ReasonVary
		}
	case st.Key() != t.Key():
		res.key, res.vary = st.Key(), d.Vary
	}
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
	res.reason = d.Reason
	if d.Reason == pagecache.Storable {
		body, complete, err := readBody(resp, c.MaxBodySize, &res.buf)
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
				res.reason, res.entry = r.put(res, &t, &st, d.Vary, &req.Header, f)
			}
		}
	}
	mark := &t
	if res.marked {
		mark = &st // keep the marker just written: the variant is marked
	}
	r.stored(res, mark, resp.StatusCode() < 500 && genErr == nil, now)
	return res
}

// describe is what the policy decides a fill's answer on, and the
// surrogate keys it carries (tagErr when they break the limits); start is
// when its request was sent.
func (c *cache) describe(resp *fasthttp.Response, start time.Time) (info pagecache.Response, tags []string, tagErr error) {
	info = pagecache.Response{
		Status:           resp.StatusCode(),
		CacheControl:     joinHeader(&resp.Header, fasthttp.HeaderCacheControl),
		Expires:          resp.Header.Peek(fasthttp.HeaderExpires),
		Date:             resp.Header.Peek(fasthttp.HeaderDate),
		Vary:             joinHeader(&resp.Header, fasthttp.HeaderVary),
		Age:              resp.Header.Peek(fasthttp.HeaderAge),
		SurrogateControl: joinHeader(&resp.Header, "Surrogate-Control"),
		ContentEncoding:  resp.Header.ContentEncoding(),
		RequestTime:      start,
		Validator:        len(resp.Header.Peek(fasthttp.HeaderETag)) > 0 || len(resp.Header.Peek(fasthttp.HeaderLastModified)) > 0,
	}
	for k, v := range resp.Header.All() {
		switch {
		case bytes.EqualFold(k, strSetCookie) && !c.Policy.StripSetCookie(v):
			info.SetCookie = true
		case c.isTagHeader(k) && tagErr == nil:
			tags, tagErr = pagecache.ParseTags(tags, v)
		}
	}
	return info, tags, tagErr
}

// fillDuringOutage answers a visitor without cookies whose lookup found
// the page store failing (t.StoreDown), so that an outage of the store is
// not a flood of the backend: identical misses still wait for one fill,
// sent without cookies like any other (with the verified credential alone
// under a per-credential rule, whose flight is the credential's); when
// the policy would have stored its answer, the waiters are served it and
// the page is kept in process (pagecache.Cache.Remember) for cache.l1_ttl
// at most, where the next lookups that find the store failing are served
// it. Nothing is asked of the store. status is the leader's Cache-Status
// (store-down or store-error).
func (q *request) fillDuringOutage(t pagecache.Ticket, status string) outcome {
	r := q.r
	closeConn := q.prepare()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	if !q.fillRequest(req, acceptsGzip(&q.ctx.Request.Header), "") {
		return q.bypass(bypassQuery)
	}
	var resp *fasthttp.Response
	res, leader := r.cache.flights.do(t.Key(), r.cache.CollapseTimeout, func() *fillResult {
		resp = fasthttp.AcquireResponse()
		start := time.Now()
		res := r.fillDown(req, resp, t, q.rule)
		q.waited(start)
		return res
	})
	switch {
	case leader && res.err != nil:
		fasthttp.ReleaseResponse(resp)
		q.backendError(res.err)
		return outcomeError
	case leader:
		ok := q.relayWith(resp, res.body, status, closeConn)
		if res.reason != pagecache.ReasonTooLarge {
			res.release() // as in fillFromVisitor: relay copied the body
		}
		if !ok {
			return outcomeError
		}
		return outcomeMiss
	case res == nil:
		r.stats.CollapseTimeouts.Add(1)
		return q.forwardAs(statusCollapseTimeout, outcomeMiss)
	case res.entry != nil && res.key == "":
		// This outage fill's page, or a stored one when the fill waited
		// for began before the store failed: either made by a request
		// without credentials, and storable.
		e := &q.w.entry
		if pagecache.Decode(res.entry, e) == nil && q.serveEntry(t.Key(), e, statusCollapsedStoreDown, time.Now().UnixMilli()) {
			r.stats.Collapsed.Add(1)
			return outcomeCollapsed
		}
	}
	return q.forwardAs(status, outcomeMiss)
}

// fillDown is fill while the page store fails: no fence, no Put, no
// uncacheable marker. An answer the policy would store, which varies on
// nothing the key does not hold and fits MaxBodySize, is encoded for the
// waiters and kept in process (pagecache.Cache.Remember): fillResult.entry.
func (r *Router) fillDown(req *fasthttp.Request, resp *fasthttp.Response, t pagecache.Ticket, rule *pagecache.Rule) *fillResult {
	c := r.cache
	start := time.Now()
	err := r.backends.Do(req, resp)
	r.backendDone(start)
	if err != nil {
		return &fillResult{err: err, failed: true}
	}
	r.countBackend(resp.StatusCode())
	now := time.Now()
	info, tags, tagErr := c.describe(resp, start)
	d := c.Policy.Decide(rule, &info, now)
	res := &fillResult{reason: d.Reason, failed: resp.StatusCode() >= 500}
	switch {
	case d.Reason != pagecache.Storable:
		return res
	case d.Vary != "":
		res.reason = pagecache.ReasonVary // its variants' marker is in the store
		return res
	case tagErr != nil:
		res.reason = pagecache.ReasonTags
		return res
	}
	res.reason = pagecache.ReasonStoreError
	body, complete, err := readBody(resp, c.MaxBodySize, &res.buf)
	res.body = body
	switch {
	case err != nil:
		res.err = err
	case !complete:
		res.reason = pagecache.ReasonTooLarge // its rest streams from body: see release
	default:
		if f, ok := r.fillOf(resp, body, d, now, tags); ok {
			if res.entry = c.pages.Remember(&t, f); res.entry != nil {
				r.stats.OutageFills.Add(1)
			}
		}
	}
	return res
}

// put stores an answer as the page st (see fill). An answer that varies
// on other headers than t's marker lists, or when there is none, first
// writes the URL's marker, then is the variant of the marker that h, the
// fill request's headers, select, counted among its variants.
func (r *Router) put(res *fillResult, t, st *pagecache.Ticket, vary string, h pagecache.HeaderPeeker, f *pagecache.Fill) (pagecache.Reason, []byte) {
	c := r.cache
	if vary != "" && vary != t.Vary() {
		if reason := c.pages.PutVariants(t, vary, f); reason != pagecache.Storable {
			return reason, nil
		}
		res.marked, res.marker = true, *t
		var ok bool
		if *st, ok = c.pages.Variant(t, vary, h); !ok {
			return pagecache.ReasonVary, nil
		}
		c.pages.AdmitVariant(st) // the first of the new marker's
	}
	return c.pages.Put(st, f)
}

// stored counts what became of a fill; one not stored leaves an
// uncacheable marker when mark (a server error may pass: the URL is not
// marked), unless a purge or the store was the cause.
func (r *Router) stored(res *fillResult, t *pagecache.Ticket, mark bool, now time.Time) {
	switch {
	case res.reason == pagecache.Storable:
		r.stats.Stored.Add(1)
	case res.reason == pagecache.ReasonPurged || res.reason == pagecache.ReasonStoreError:
		r.stats.NotStored[res.reason].Add(1)
	default:
		r.stats.NotStored[res.reason].Add(1)
		if mark {
			r.cache.pages.MarkUncacheable(t, now, r.cache.UncacheableTTL)
		}
	}
}

// refresh applies a 304 to the stale page it revalidated (RFC 9111
// sections 3.2 and 4.3.4): the page keeps its status, body and, unless
// the 304 sends new ones, its surrogate keys; each header the 304 sends
// replaces the stored ones of that name, but the Content-* headers, which
// describe a representation that did not change; freshness is decided
// again from the merged headers, and the page stored anew.
func (r *Router) refresh(resp *fasthttp.Response, t pagecache.Ticket, rule *pagecache.Rule, old *pagecache.Entry, start time.Time, genErr error) *fillResult {
	c := r.cache
	now := time.Now()
	r.stats.Revalidated.Add(1)
	connection := joinHeader(&resp.Header, fasthttp.HeaderConnection)
	var sent []pagecache.Header
	var tags []string
	var tagErr error
	setCookie, tagged := false, false
	for k, v := range resp.Header.All() {
		if bytes.EqualFold(k, strSetCookie) {
			setCookie = setCookie || !c.Policy.StripSetCookie(v)
			continue
		}
		if c.isTagHeader(k) {
			tagged = true
			if tagErr == nil {
				tags, tagErr = pagecache.ParseTags(tags, v)
			}
		}
		if c.stores(k, connection) && !hasPrefixFold(k, "Content-") {
			sent = append(sent, pagecache.Header{Name: bytes.Clone(k), Value: bytes.Clone(v)})
		}
	}
	merged := make([]pagecache.Header, 0, len(old.Headers)+len(sent))
	for _, h := range old.Headers {
		if !slices.ContainsFunc(sent, func(s pagecache.Header) bool { return bytes.EqualFold(s.Name, h.Name) }) {
			merged = append(merged, h)
		}
	}
	merged = append(merged, sent...)
	if !tagged {
		old.Tags(func(tag []byte, _ uint64) bool {
			tags = append(tags, string(tag))
			return true
		})
	}
	info := pagecache.Response{
		Status:           old.Status,
		CacheControl:     storedValues(merged, fasthttp.HeaderCacheControl),
		Expires:          storedValues(merged, fasthttp.HeaderExpires),
		Date:             storedValues(merged, fasthttp.HeaderDate),
		Vary:             storedValues(merged, fasthttp.HeaderVary),
		Age:              resp.Header.Peek(fasthttp.HeaderAge),
		SurrogateControl: joinHeader(&resp.Header, "Surrogate-Control"),
		ContentEncoding:  storedValues(merged, fasthttp.HeaderContentEncoding),
		RequestTime:      start,
		SetCookie:        setCookie,
		Validator:        true,
	}
	d := c.Policy.Decide(rule, &info, now)
	res := &fillResult{revalidated: true, reason: d.Reason}
	switch {
	case d.Reason != pagecache.Storable:
	case d.Vary != t.Vary():
		res.reason = pagecache.ReasonVary // the 304 changed what the page varies on
	case genErr != nil:
		r.storeError(genErr)
		res.reason = pagecache.ReasonStoreError
	case tagErr != nil:
		res.reason = pagecache.ReasonTags
	default:
		f := &pagecache.Fill{Status: old.Status, Body: old.Body, ContentEncoding: info.ContentEncoding, Tags: tags,
			StoredAt: now, TTL: d.TTL, Grace: d.Grace, Age: d.Age, ErrorGrace: d.ErrorGrace, Keep: d.Keep}
		size := len(old.Body)
		for _, h := range merged {
			if !pagecache.Lists(d.Unstored, h.Name) {
				f.Headers = append(f.Headers, h)
				size += len(h.Name) + len(h.Value) + 3
			}
		}
		if size > c.MaxBodySize+storedHeaderBytes {
			res.reason = pagecache.ReasonTooLarge
			break
		}
		res.reason, res.entry = c.pages.Put(&t, f)
	}
	r.stored(res, &t, genErr == nil, now)
	return res
}

// storedValues joins the values of a stored header with ", ".
func storedValues(hs []pagecache.Header, name string) []byte {
	var v []byte
	for _, h := range hs {
		if bytes.EqualFold(h.Name, []byte(name)) {
			if v != nil {
				v = append(v, ", "...)
			}
			v = append(v, h.Value...)
		}
	}
	return v
}

// hasPrefixFold reports whether b starts with prefix, ignoring ASCII case.
func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// stores reports whether a response header goes into a stored page: the
// policy stores it, it is end to end (the Connection header does not
// name it), and clients see it.
func (c *cache) stores(name, connection []byte) bool {
	return c.Policy.Stores(name) && !isHop(name, connection) && !c.hidden(name)
}

// fillOf is what Put stores of an answer (RFC 9111 section 3.1): its
// status, every end-to-end header in order, repeated ones included, but
// those the policy never stores (Set-Cookie, hop-by-hop, Age, the
// operator's drop_headers), those its Connection header names, and the tag
// headers when clients do not see them; a Date, the time it came, when the
// backend sent none; its body, tags and freshness. ok is false when the
// headers and body together pass MaxBodySize. One header more than an
// envelope holds is kept, for Put to refuse (ReasonHeaders). Its headers
// alias resp's, and its body is body: it is to be stored before either
// changes.
func (r *Router) fillOf(resp *fasthttp.Response, body []byte, d pagecache.Decision, now time.Time, tags []string) (f *pagecache.Fill, ok bool) {
	c := r.cache
	f = &pagecache.Fill{Status: resp.StatusCode(), Body: body, ContentEncoding: resp.Header.ContentEncoding(),
		Tags: tags, StoredAt: now, TTL: d.TTL, Grace: d.Grace, Age: d.Age, ErrorGrace: d.ErrorGrace, Keep: d.Keep,
		Headers: make([]pagecache.Header, 0, 16)}
	connection := joinHeader(&resp.Header, fasthttp.HeaderConnection)
	size, dated := len(body), false
	for k, v := range resp.Header.All() {
		switch {
		case !c.stores(k, connection), pagecache.Lists(d.Unstored, k):
			continue
		case len(f.Headers) > maxStoredHeaders:
			return f, true
		}
		dated = dated || bytes.EqualFold(k, strDate)
		size += len(k) + len(v) + 3
		f.Headers = append(f.Headers, pagecache.Header{Name: k, Value: v})
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
// A streamed body is read into a pooled buffer, which *buf is then set to:
// the body is copied once from there into the stored page (Encode), and
// the buffer goes back to the pool once the leader's answer no longer
// needs it (fillResult.release), so a miss allocates no read buffer.
func readBody(resp *fasthttp.Response, limit int, buf **fillBuf) (body []byte, complete bool, err error) {
	if !resp.IsBodyStream() {
		return resp.Body(), true, nil
	}
	n := resp.Header.ContentLength()
	if n > limit {
		return nil, false, nil
	}
	fb := fillBufs.Get().(*fillBuf)
	*buf = fb
	if n < 0 {
		n = 16 << 10
	}
	b := slices.Grow(fb.b[:0], n+1)
	lr := io.LimitedReader{R: resp.BodyStream(), N: int64(limit) + 1}
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(len(b), limit+1-len(b)))
		}
		m, rerr := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			fb.b = b
			return nil, false, rerr
		}
	}
	fb.b = b
	if len(b) > limit {
		return b, false, nil
	}
	resp.CloseBodyStream() // read to the end: the connection goes back to the pool
	return b, true, nil
}

// fillBuf is a pooled buffer a fill reads a response body into.
type fillBuf struct{ b []byte }

// maxPooledFillBuf bounds the buffers kept for reuse: a larger one (a rare
// large page) is left to the garbage collector rather than held by the
// pool.
const maxPooledFillBuf = 1 << 20

var fillBufs = sync.Pool{New: func() any { return new(fillBuf) }}

// release gives the fill's read buffer back to the pool; res.body must
// no longer be used.
func (res *fillResult) release() {
	fb := res.buf
	if fb == nil {
		return
	}
	res.buf, res.body = nil, nil
	if cap(fb.b) > maxPooledFillBuf {
		fb.b = nil
	}
	fb.b = fb.b[:0]
	fillBufs.Put(fb)
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
//     of clients; User-Agent: a fixed "userrouter (cache fill)";
//   - for a variant, the headers its URL's marker lists (vary), the
//     visitor's values normalised: what the variant's key is built from
//     (see setVaryHeaders; User-Agent too, when the page varies on it).
//
// Never Cookie, Authorization, conditional or range headers, nor any
// other header of the visitor's. ok is false when the URI is not
// cacheable (too many query parameters).
func (q *request) fillRequest(req *fasthttp.Request, gz bool, vary string) (ok bool) {
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
	// The cookies the key includes ({cookie:Name}), with the values it
	// holds, and no other: the page is rendered from the key's inputs.
	if names := c.Keys.Cookies(); len(names) > 0 {
		lines := src.PeekAll(fasthttp.HeaderCookie)
		for _, name := range names {
			v, ok := pagecache.CookieValue(lines, name)
			if !ok {
				return false
			}
			if len(v) > 0 {
				req.Header.SetCookieBytesKV([]byte(name), v)
			}
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
	if q.cred.Key != nil {
		q.setCredential(req)
	}
	return q.setVaryHeaders(req, vary)
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
