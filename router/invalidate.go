package router

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// Invalidation is what a successful POST, PUT, PATCH or DELETE does to
// the stored page of its URL and of the same-host URLs its answer names in
// Location and Content-Location (RFC 9111 section 4.4): the request
// changed something, so the copy a visitor would get next may be wrong.
type Invalidation uint8

const (
	// InvalidateHard makes the pages unusable: the next visitor of each
	// re-renders it. The zero value, and the default.
	InvalidateHard Invalidation = iota
	// InvalidateSoft makes them stale: served, within their grace, while
	// one background request refreshes them.
	InvalidateSoft
	// InvalidateOff leaves them until they expire or are purged.
	InvalidateOff
)

var invalidationNames = [...]string{"hard", "soft", "off"}

func (v Invalidation) String() string {
	if int(v) < len(invalidationNames) {
		return invalidationNames[v]
	}
	return fmt.Sprintf("Invalidation(%d)", v)
}

// ParseInvalidation reads "hard", "soft" or "off", as cache.unsafe_invalidation
// holds them.
func ParseInvalidation(s string) (Invalidation, error) {
	for i, n := range invalidationNames {
		if s == n {
			return Invalidation(i), nil
		}
	}
	return 0, fmt.Errorf("router: unsafe invalidation %q is not \"hard\", \"soft\" or \"off\"", s)
}

// maxInvalidationURL bounds the Location and Content-Location values
// resolved; a longer one is ignored: no page of a cache's URL needs more,
// and the backend's headers should not cost unbounded work.
const maxInvalidationURL = 2 << 10

// invalidate carries out the cache's Invalidation for a forwarded request
// the backend answered with resp, before the answer is relayed: so the
// visitor's next request (the GET after a POST) already sees the change,
// on every instance sharing the store. It goes through the purge counters,
// one increment per URL (two when the key has {scheme}), and never fails
// the request: a store error is counted and logged, and ends the
// invalidation, so a store that is down costs the request one timeout.
// Invalidating is always safe, whoever the visitor is, so every request
// forwarded with one of these methods qualifies.
func (q *request) invalidate(resp *fasthttp.Response) {
	r, c := q.r, q.r.cache
	if c.UnsafeInvalidation == InvalidateOff || !unsafeMethod(q.ctx.Request.Header.Method()) {
		return
	}
	if st := resp.StatusCode(); st < 200 || st > 399 {
		return // an error changed nothing, or nothing this cache can tell
	}
	h := &q.ctx.Request.Header
	host, ok := lowerHost(nil, h.Host())
	if !ok || (c.hosts != nil && !c.hosts[string(host)]) {
		return // a host the cache does not serve has no pages
	}
	var targets [3]pagecache.KeyInput
	targets[0].Host = host
	targets[0].Path, targets[0].Query = pagecache.SplitURI(h.RequestURI())
	n := 1
	for _, name := range [...]string{fasthttp.HeaderLocation, fasthttp.HeaderContentLocation} {
		in, ok := sameHostTarget(&targets[0], resp.Header.Peek(name))
		if ok && !containsTarget(targets[:n], &in) {
			targets[n] = in
			n++
		}
	}
	soft := c.UnsafeInvalidation == InvalidateSoft
	for i := range targets[:n] {
		err := c.pages.PurgeURL(&targets[i], soft)
		if errors.Is(err, pagecache.ErrUnkeyable) {
			continue // too many query parameters: never cached
		}
		if err != nil {
			r.storeError(err)
			return
		}
		r.stats.UnsafeInvalidations.Add(1)
	}
}

// unsafeMethod reports whether a successful request with method
// invalidates: the four methods web applications change things with.
// RFC 9111 counts methods of unknown safety too; those are left out.
func unsafeMethod(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodPatch, fasthttp.MethodDelete:
		return true
	}
	return false
}

// sameHostTarget resolves a Location or Content-Location value against
// the request's URL (req: its lower-cased host, raw path and query) and
// returns what the named page's key is built from, when the page is on the
// request's host: a relative reference, or an absolute http(s) URL whose
// host, port included, is the request's, case aside. Anything else (another
// host, another scheme, a value that does not parse or is over
// maxInvalidationURL) is no page of this request's to invalidate. The path
// is the escaped one a client following the link sends, dot segments
// removed.
func sameHostTarget(req *pagecache.KeyInput, value []byte) (pagecache.KeyInput, bool) {
	var in pagecache.KeyInput
	if len(value) == 0 || len(value) > maxInvalidationURL {
		return in, false
	}
	ref, err := url.Parse(string(value))
	if err != nil || ref.Opaque != "" || (ref.Scheme != "" && ref.Scheme != "http" && ref.Scheme != "https") {
		return in, false
	}
	if ref.Host != "" || ref.Scheme != "" {
		if lh, ok := lowerHost(nil, []byte(ref.Host)); !ok || !bytes.Equal(lh, req.Host) {
			return in, false
		}
	}
	base := &url.URL{Scheme: "http", Host: string(req.Host), RawQuery: string(req.Query)}
	if err := setEscapedPath(base, req.Path); err != nil {
		return in, false
	}
	in.Host = req.Host
	in.Path, in.Query = pagecache.SplitURI([]byte(base.ResolveReference(ref).RequestURI()))
	return in, true
}

// setEscapedPath sets u's path from a raw request path, keeping its
// escaping, which ResolveReference works on.
func setEscapedPath(u *url.URL, raw []byte) error {
	p, err := url.PathUnescape(string(raw))
	if err != nil {
		return err
	}
	u.Path, u.RawPath = p, string(raw)
	return nil
}

func containsTarget(list []pagecache.KeyInput, in *pagecache.KeyInput) bool {
	for i := range list {
		if bytes.Equal(list[i].Host, in.Host) && bytes.Equal(list[i].Path, in.Path) && bytes.Equal(list[i].Query, in.Query) {
			return true
		}
	}
	return false
}
