package router

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// route classifies the request, then serves it and says how (steps 2 to
// 6 of the package doc).
func (q *request) route() outcome {
	r, c := q.r, q.r.cache
	if c == nil {
		return q.forwardAs("", outcomeBypass)
	}
	h := &q.ctx.Request.Header
	if bytes.Equal(h.Method(), methodPurge) {
		r.purgeMethod(q.ctx, &q.log)
		return outcomePurge
	}
	if !q.ctx.IsGet() && !q.ctx.IsHead() {
		return q.bypass(bypassMethod)
	}
	if hasBody(h) {
		// A GET or HEAD with a body: what the application makes of the
		// body is nobody's business but this visitor's.
		return q.bypass(bypassBody)
	}
	if len(h.Peek(fasthttp.HeaderUpgrade)) > 0 {
		return q.bypass(bypassUpgrade)
	}
	var ok bool
	q.host, ok = lowerHost(q.w.host[:0], h.Host())
	if !ok || (c.hosts != nil && !c.hosts[string(q.host)]) {
		q.refuseHost(h.Host(), ok)
		return q.bypass(bypassHost)
	}
	q.path, q.query = pagecache.SplitURI(h.RequestURI())
	clean, _ := pagecache.CleanPath(q.path)
	// Every Cookie line, raw: Peek gives the first alone, and once fasthttp
	// has parsed cookies, a re-serialized list that is not what the
	// application reads.
	cookies := h.PeekAll(fasthttp.HeaderCookie)
	q.cookies = slices.ContainsFunc(cookies, func(l []byte) bool { return len(l) > 0 })
	switch {
	case c.bypassPath(q.path, clean):
		return q.bypass(bypassPath)
	case c.bypassQuery(q.query):
		return q.bypass(bypassQuery)
	case slices.ContainsFunc(cookies, c.bypassCookie):
		return q.bypass(bypassCookie)
	case len(h.Peek(fasthttp.HeaderRange)) > 0:
		return q.bypass(bypassRange)
	}
	q.rule = c.Policy.Rule(q.host, q.path, clean)
	if !q.rule.Cache {
		return q.bypass(bypassRule)
	}
	// A credential: forwarded, unless the rule serves credentials and it
	// verifies (see credential).
	if o, done := q.credential(); done {
		return o
	}
	// Who is it? Asked before any cache decision; a doubt is forwarded.
	// The Cookie lines are peeked again: PeekAll's result lives in a
	// buffer the header reuses, and credential's PeekAll(Authorization)
	// has overwritten cookies.
	key, found := r.keys.FindLines(h.PeekAll(fasthttp.HeaderCookie))
	if found == sessioncheck.Ambiguous {
		// userrouter's reading of the cookie could differ from the
		// application's: never guess anonymous.
		return q.doubt(sessioncheck.ErrAmbiguousCookie)
	}
	if found == sessioncheck.KeyFound {
		v, err := r.sessions.Check(q.ctx, key)
		if err != nil {
			return q.doubt(err)
		}
		if v == sessioncheck.Identified {
			r.stats.Identified.Add(1)
			q.log.verdict = "identified"
			return q.forwardAs(statusIdentified, outcomeIdentified)
		}
	}
	q.log.verdict = "anonymous"
	return q.anonymous()
}

// doubt forwards a visitor whose session could not be told, for err's
// reason (sessioncheck.Reason).
func (q *request) doubt(err error) outcome {
	i := sessioncheck.ReasonIndex(err)
	q.r.stats.Doubts.Add(1)
	q.r.stats.DoubtReasons[i].Add(1)
	q.log.verdict = doubtVerdict[i]
	if errors.Is(err, sessioncheck.ErrTimeout) || errors.Is(err, sessioncheck.ErrStore) || errors.Is(err, sessioncheck.ErrBusy) {
		// The store failing: one line a second, with what was suppressed
		// (the breaker's opening and closing are logged on their own).
		q.r.log.Log(slog.LevelWarn, "session-store", "session store failing; visitors with a session are forwarded",
			slog.String("reason", sessioncheck.Reason(err)), slog.String("error", err.Error()))
	}
	return q.forwardAs(doubtStatus[i], outcomeDoubt)
}

// bypass forwards a request the cache does not handle.
func (q *request) bypass(reason bypassReason) outcome {
	q.r.stats.Bypass[reason].Add(1)
	return q.forwardAs(statusBypass[reason], outcomeBypass)
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
