package router

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// Variants (RFC 9111 section 4.1). A response whose Vary names request
// headers the key does not include is stored as the variant the values
// of those headers select (pagecache.Cache.LookupVariant), values the
// fill request carries normalised (pagecache.AppendVaryValue), so that
// what is stored under a variant's key was rendered from its key's inputs
// alone, as for any page. Accept-Encoding, Cookie and Authorization never
// select a variant: fills ask for gzip and carry no credentials, and the
// stored copy is the one made without them. The first fill of a URL knows
// of no variant yet and carries none of the values: when its answer
// varies, it writes the marker and stores the answer as the variant of
// the values it carried; a visitor whose values select another variant is
// not given it, but looks their own variant up (once: see elsewhere).

// variable reports whether an answer varying on names (Decision.Vary)
// may be stored as a variant: not in format raw, which keeps one body per
// key, and not on a header fills never carry (fill_strip_headers).
func (c *cache) variable(names string) bool {
	if c.raw != nil {
		return false
	}
	for name := range strings.SplitSeq(names, ",") {
		if slices.ContainsFunc(c.FillStripHeaders, func(s string) bool { return strings.EqualFold(s, name) }) {
			return false
		}
	}
	return true
}

// setVaryHeaders gives a fill request the visitor's values, normalised, of
// the headers a variants marker lists (vary): those the variant is
// selected by, an empty one removed (User-Agent included: the fixed one is
// no input of the variant). Never Cookie or Authorization, which no marker
// lists. ok is false when a value is too long to key a variant.
func (q *request) setVaryHeaders(req *fasthttp.Request, vary string) (ok bool) {
	src := &q.ctx.Request.Header
	var buf [pagecache.MaxVaryValue]byte
	for name := range strings.SplitSeq(vary, ",") {
		if name == "" || strings.EqualFold(name, fasthttp.HeaderCookie) || strings.EqualFold(name, fasthttp.HeaderAuthorization) {
			continue
		}
		v, ok := pagecache.AppendVaryValue(buf[:0], src.Peek(name))
		switch {
		case !ok:
			return false
		case len(v) == 0:
			req.Header.Del(name)
		default:
			req.Header.SetBytesV(name, v)
		}
	}
	return true
}

// mine reports whether a fill's answer may be given to this visitor: it
// was made for the page the visitor's lookup found (t), or for the variant
// the visitor's own values select.
func (q *request) mine(t *pagecache.Ticket, res *fillResult) bool {
	if res.key == "" {
		return true
	}
	own, ok := q.r.cache.pages.Variant(t, res.vary, &q.ctx.Request.Header)
	return ok && own.Key() == res.key
}

// elsewhere answers a visitor a fill's answer was not made for (see
// mine): once the fill wrote the URL's marker, their own variant is looked
// up and served, or filled; otherwise, or a second time, their own request
// is forwarded.
func (q *request) elsewhere(res *fillResult) outcome {
	if !res.marked || q.reentered {
		return q.notStored(cmp.Or(res.reason, pagecache.ReasonVary))
	}
	q.reentered = true
	q.revalidate, q.staleKey = false, "" // the page the lookup found is not the visitor's
	w := q.w
	state, t, ok := q.r.cache.pages.LookupVariant(&res.marker, &q.ctx.Request.Header, &w.pages, &w.entry, time.Now())
	if !ok {
		return q.notStored(pagecache.ReasonVary)
	}
	return q.cached(state, t)
}

// notStored forwards a request the cache will not store the answer to,
// for reason: Cache-Status "fwd=miss; detail=<reason>".
func (q *request) notStored(reason pagecache.Reason) outcome {
	q.r.stats.NotStored[reason].Add(1)
	return q.forwardAs(statusNotStored[reason], outcomeMiss)
}
