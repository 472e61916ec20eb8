package router

import (
	"bytes"
	"compress/gzip"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// maxIdentityBytes bounds the decompressed bodies kept for clients that
// do not accept gzip (see cache.identity).
const maxIdentityBytes = 16 << 20

// serve answers from a page Lookup found, as its format calls for: an
// envelope's status and headers, or a raw body. It returns false, having
// written nothing, when the body cannot be given to the client (see
// serveEntry).
func (q *request) serve(key string, e *pagecache.Entry, cacheStatus string) bool {
	if q.r.cache.raw != nil {
		return q.serveRaw(key, e)
	}
	now := time.Now().UnixMilli()
	if q.serveHead(key, e, cacheStatus, now) {
		return true
	}
	return q.serveEntry(key, e, cacheStatus, now)
}

// A head is the response head a page's hits are served with, built by
// the first hit (everything but Age and Cache-Status: the status, the
// stored Date and the other stored headers, as serveEntry sets them) and
// copied into each later hit's response: a copy of a few slices instead
// of parsing the Date and adding each header again. It keeps a copy of
// the status and stored headers it was built from, and serves only an
// entry whose status and headers are the same bytes (a refill has
// another Date, at least), so it never depends on where the entry's bytes
// live or whether they are still held. A head is never modified once
// published.
type head struct {
	status        int
	stored        []pagecache.Header // copies of the entry's headers
	h             fasthttp.ResponseHeader
	etag, lastMod []byte // in stored
	gzip          bool   // stored Content-Encoding: gzip
	cost          uint32 // what it is charged against maxHeads
}

// maxHeads bounds the memory the heads hold: 8 MiB, each charged 1 KiB
// and twice its headers' bytes (the copy it keeps and the ResponseHeader's).
const maxHeads = 8 << 20

// newHead returns a head for e, its ResponseHeader still to be filled;
// it copies e's headers.
func newHead(e *pagecache.Entry) *head {
	n := 0
	for _, h := range e.Headers {
		n += len(h.Name) + len(h.Value)
	}
	buf := make([]byte, 0, n)
	hd := &head{status: e.Status, stored: make([]pagecache.Header, len(e.Headers)), cost: uint32(1<<10 + 2*n + 32*len(e.Headers))}
	for i, h := range e.Headers {
		at := len(buf)
		buf = append(buf, h.Name...)
		buf = append(buf, h.Value...)
		hd.stored[i] = pagecache.Header{Name: buf[at : at+len(h.Name) : at+len(h.Name)], Value: buf[at+len(h.Name) : len(buf) : len(buf)]}
	}
	var encoding []byte
	hd.etag, hd.lastMod, encoding, _ = entryValidators(hd.stored)
	hd.gzip = len(encoding) > 0 && bytes.EqualFold(encoding, strGzip)
	return hd
}

// matches reports whether hd was built from e's status and headers.
func (hd *head) matches(e *pagecache.Entry) bool {
	if hd.status != e.Status || len(hd.stored) != len(e.Headers) {
		return false
	}
	for i, h := range e.Headers {
		if !bytes.Equal(hd.stored[i].Name, h.Name) || !bytes.Equal(hd.stored[i].Value, h.Value) {
			return false
		}
	}
	return true
}

// serveHead is serveEntry for an ordinary hit (not a 304, not
// decompressed): the head is copied from the page's head, which the
// first such hit builds; it returns false, having written nothing, for
// every other case, which serveEntry handles.
func (q *request) serveHead(key string, e *pagecache.Entry, cacheStatus string, now int64) bool {
	r, ctx := q.r, q.ctx
	if r.cache.heads == nil || e.Kind != pagecache.KindPage {
		return false
	}
	hd, ok := r.cache.heads.GetIfPresent(key)
	ok = ok && hd.matches(e)
	var etag, lastMod []byte
	gz := false
	if ok {
		etag, lastMod, gz = hd.etag, hd.lastMod, hd.gzip
	} else {
		var encoding []byte
		etag, lastMod, encoding, _ = entryValidators(e.Headers)
		gz = len(encoding) > 0 && bytes.EqualFold(encoding, strGzip)
	}
	if gz && !acceptsGzip(&ctx.Request.Header) ||
		e.Status == fasthttp.StatusOK && notModified(&ctx.Request.Header, etag, lastMod) {
		return false // decompressed or 304: serveEntry
	}
	resp := &ctx.Response
	closeConn := resp.Header.ConnectionClose()
	if ok {
		hd.h.CopyTo(&resp.Header)
	} else {
		setEntryHead(&resp.Header, e, e.Status, false)
		hd = newHead(e)
		resp.Header.CopyTo(&hd.h)
		hd.h.ResetConnectionClose()
		// key may alias the request's scratch memory (a Ticket's key until
		// cloned): a map key that changed under otter would never be found
		// to evict, and the heads would outgrow maxHeads without bound.
		r.cache.heads.Set(strings.Clone(key), hd)
	}
	if closeConn {
		resp.Header.SetConnectionClose()
	}
	q.setHitHeaders(&resp.Header, e, cacheStatus, now)
	resp.SetBodyRaw(e.Body)
	r.stats.BytesFromCache.Add(uint64(len(e.Body)))
	return true
}

// entryValidators returns a stored page's ETag, Last-Modified and
// Content-Encoding, and whether its Cache-Control says no-transform.
func entryValidators(headers []pagecache.Header) (etag, lastMod, encoding []byte, noTransform bool) {
	for _, h := range headers {
		switch {
		case bytes.EqualFold(h.Name, strETag):
			etag = h.Value
		case bytes.EqualFold(h.Name, strLastModified):
			lastMod = h.Value
		case bytes.EqualFold(h.Name, strContentEncoding):
			encoding = h.Value
		case bytes.EqualFold(h.Name, strCacheControl):
			noTransform = noTransform || containsFold(h.Value, strNoTransform)
		}
	}
	return etag, lastMod, encoding, noTransform
}

// setEntryHead sets h, still empty, to a stored page's head: status, the
// stored Date and the other stored headers, without Content-Encoding when
// the body is sent decompressed (gunzip).
func setEntryHead(h *fasthttp.ResponseHeader, e *pagecache.Entry, status int, gunzip bool) {
	for _, sh := range e.Headers {
		if bytes.EqualFold(sh.Name, strDate) {
			setDate(h, sh.Value)
			break
		}
	}
	h.SetStatusCode(status)
	// Stored names are as the fill's client normalized them: add them as
	// they are, not normalized again on every hit.
	h.DisableNormalizing()
	for _, sh := range e.Headers {
		if gunzip && bytes.EqualFold(sh.Name, strContentEncoding) || bytes.EqualFold(sh.Name, strDate) {
			continue
		}
		h.AddBytesKV(sh.Name, sh.Value)
	}
}

// setHitHeaders adds what changes with every hit: Age and Cache-Status
// (with RFC 9211's ttl when cacheStatus calls for it).
func (q *request) setHitHeaders(h *fasthttp.ResponseHeader, e *pagecache.Entry, cacheStatus string, now int64) {
	var age [20]byte
	h.SetBytesKV(strAge, strconv.AppendInt(age[:0], max(0, now-e.StoredAt)/1000, 10))
	if withTTL(cacheStatus) {
		// RFC 9211's ttl: the freshness left, negative for a stale page.
		var b [128]byte
		s := strconv.AppendInt(append(append(b[:0], cacheStatus...), "; ttl="...), floorSeconds(e.FreshUntil-now), 10)
		q.addCacheStatusBytes(h, s)
	} else {
		q.addCacheStatus(h, cacheStatus)
	}
}

// serveEntry answers from a stored page: its status and headers, Age, the
// Cache-Status, and the body (decompressed for a client that does not
// accept gzip, see identity). A matching If-None-Match or
// If-Modified-Since gets 304. It does not allocate for an ordinary hit.
// key names the stored page; now is in Unix milliseconds. It returns false,
// having written nothing, when the page is gzipped, the client does not
// take gzip, and the body does not decompress within the bound: the
// caller forwards the request instead.
func (q *request) serveEntry(key string, e *pagecache.Entry, cacheStatus string, now int64) bool {
	r, ctx := q.r, q.ctx
	resp := &ctx.Response
	etag, lastMod, encoding, noTransform := entryValidators(e.Headers)
	notModified := e.Status == fasthttp.StatusOK && notModified(&ctx.Request.Header, etag, lastMod)
	gunzip := len(encoding) > 0 && bytes.EqualFold(encoding, strGzip) && !acceptsGzip(&ctx.Request.Header)
	if gunzip && noTransform {
		return false // RFC 9110 section 7.7: an intermediary must not decode it
	}
	body := e.Body // the store gave us this slice to keep
	if gunzip && !notModified {
		var ok bool
		if body, ok = r.cache.identity(key, e.StoredAt, e.Body); !ok {
			r.log.Log(slog.LevelWarn, "gunzip", "stored gzip body does not decompress within cache.item_size_limit; forwarding the request", slog.String("key", key))
			return false
		}
	}
	status := e.Status
	if notModified {
		status = fasthttp.StatusNotModified
	}
	setEntryHead(&resp.Header, e, status, gunzip)
	q.setHitHeaders(&resp.Header, e, cacheStatus, now)
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
func (q *request) serveRaw(key string, e *pagecache.Entry) bool {
	r, ctx := q.r, q.ctx
	resp := &ctx.Response
	body := e.Body
	gz := false
	if f := r.cache.raw.GzipFlag; f != 0 && e.Flags&f != 0 {
		if gz = acceptsGzip(&ctx.Request.Header); !gz {
			var ok bool
			if body, ok = r.cache.identity(key, 0, body); !ok {
				r.log.Log(slog.LevelWarn, "gunzip", "raw value flagged gzip does not decompress within cache.item_size_limit; forwarding the request", slog.String("key", key))
				return false
			}
		}
	}
	resp.Header.SetStatusCode(fasthttp.StatusOK)
	resp.Header.SetContentType(r.cache.raw.ContentType)
	if r.cache.raw.GzipFlag != 0 && e.Flags&r.cache.raw.GzipFlag != 0 {
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

// setDate gives h, still empty, the stored Date. fasthttp drops a Date set
// through its API ("managed automatically": the server's clock, which
// userrouter turns off); parsing keeps one, so a two-line head is parsed
// into h, before anything else is set. A value no HTTP-date could be (too
// long, or breaking the line: a tampered store) is not sent.
func setDate(h *fasthttp.ResponseHeader, date []byte) {
	if len(date) > maxDateLen || bytes.ContainsAny(date, "\r\n") {
		return
	}
	hb := headBufPool.Get().(*headBuf)
	defer headBufPool.Put(hb)
	b := append(hb.b[:0], "HTTP/1.1 200 OK\r\nDate: "...)
	b = append(b, date...)
	b = append(b, "\r\n\r\n"...)
	if h.Read(hb.reader(b)) == nil {
		h.ResetConnectionClose() // the parser's guess for a head without a length
	}
}

// maxDateLen bounds a stored Date sent on a hit: an IMF-fixdate is 29
// bytes, the obsolete forms a few more.
const maxDateLen = 64

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
	if !mayBeConditional(h.RawHeaders()) {
		return false
	}
	if inm := h.Peek(fasthttp.HeaderIfNoneMatch); len(inm) > 0 {
		// "*" matches any current representation (RFC 9110 section
		// 13.1.2), with an ETag or without: the stored page is one.
		if bytes.Equal(bytes.TrimSpace(inm), []byte{'*'}) {
			return true
		}
		if len(etag) == 0 {
			return false
		}
		for tag := range bytes.SplitSeq(inm, []byte{','}) {
			tag = bytes.TrimSpace(tag)
			if bytes.Equal(bytes.TrimPrefix(tag, strWeak), bytes.TrimPrefix(etag, strWeak)) {
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

// mayBeConditional reports whether a request whose head arrived as raw
// (RequestHeader.RawHeaders: the header lines as received) may carry
// If-None-Match or If-Modified-Since: false only when no line of raw
// starts with "If-" in any case, which spares most hits two header
// lookups (each normalizes its name). An empty raw (a request not parsed
// from the wire) may.
func mayBeConditional(raw []byte) bool {
	if len(raw) == 0 {
		return true
	}
	for {
		if len(raw) >= 3 && raw[0]|0x20 == 'i' && raw[1]|0x20 == 'f' && raw[2] == '-' {
			return true
		}
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			return false
		}
		raw = raw[i+1:]
	}
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

var (
	strETag            = []byte(fasthttp.HeaderETag)
	strLastModified    = []byte(fasthttp.HeaderLastModified)
	strContentEncoding = []byte(fasthttp.HeaderContentEncoding)
	strAge             = []byte(fasthttp.HeaderAge)
	strDate            = []byte(fasthttp.HeaderDate)
	strSetCookie       = []byte(fasthttp.HeaderSetCookie)
	strVary            = []byte(fasthttp.HeaderVary)
	strCacheControl    = []byte(fasthttp.HeaderCacheControl)
	strNoTransform     = []byte("no-transform")
	strAcceptEncoding  = []byte(fasthttp.HeaderAcceptEncoding)
	strGzip            = []byte("gzip")
	strWeak            = []byte("W/")
	strHTTP            = []byte("http")
	strHTTPS           = []byte("https")
)

// containsFold reports whether b contains sub, ignoring ASCII case.
func containsFold(b, sub []byte) bool {
	for i := 0; i+len(sub) <= len(b); i++ {
		if bytes.EqualFold(b[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// floorSeconds is ms in whole seconds, rounded down: a page stale by 100
// ms has a ttl of -1, not 0.
func floorSeconds(ms int64) int64 {
	if ms < 0 {
		return -((-ms + 999) / 1000)
	}
	return ms / 1000
}
