package router

import (
	"bytes"
	"errors"
	"io"

	"github.com/valyala/fasthttp"
)

// Request framing. The server streams request bodies to the handler, so
// whatever the handler leaves unread of a body is still on the client's
// connection, where fasthttp would parse it as the next request: one client
// could then choose the method, path and headers of a request that nginx,
// on a shared upstream connection, sends for another visitor. Every request
// therefore ends in finish, which leaves the connection at a request
// boundary (the rest of the body read and dropped, up to maxDrain) or
// closes it.

// maxDrain is the most of an unread request body finish reads to keep the
// connection; beyond it the connection is closed instead. The bodies a
// handler leaves unread are small by nature (a PURGE or an early error);
// large ones are cheaper to cut off than to read.
const maxDrain = 64 << 10

// closeAfter makes the connection close after this response: at once on
// the response, and again in finish, in case a later step reset it
// (ctx.Error and Response.Reset clear the response's close flag;
// request.closeConn stays).
func (q *request) closeAfter() {
	q.closeConn = true
	q.ctx.SetConnectionClose()
}

// hasBody reports whether the request declares a body: a Content-Length
// above 0, or chunked framing (-1). -2, a request with neither, has none.
func hasBody(h *fasthttp.RequestHeader) bool {
	n := h.ContentLength()
	return n > 0 || n == -1
}

// finish ends a request on a request boundary: it drains what remains of
// the body, and closes the connection when that is more than maxDrain, when
// the body is malformed (a bad chunk), or when any step asked for it.
func (q *request) finish() {
	ctx := q.ctx
	if !q.closeConn && hasBody(&ctx.Request.Header) && ctx.Request.IsBodyStream() {
		q.closeConn = !drain(ctx.RequestBodyStream())
	}
	if q.closeConn {
		ctx.SetConnectionClose()
	}
}

// drain reads body to its end, at most maxDrain bytes; it reports whether
// the end was reached cleanly.
func drain(body io.Reader) bool {
	if body == nil {
		return true
	}
	var buf [4 << 10]byte
	for n := 0; n <= maxDrain; {
		m, err := body.Read(buf[:])
		n += m
		switch {
		case errors.Is(err, io.EOF):
			return n <= maxDrain
		case err != nil:
			return false // a framing error: the next byte is no request's
		case m == 0:
			return false
		}
	}
	return false
}

// framingOK checks what fasthttp's parser accepts but a front proxy may
// read otherwise (RFC 9112 sections 5.2, 6.1 and 6.3): a folded header
// line (obs-fold), Content-Length together with Transfer-Encoding, more
// than one Content-Length, or a Transfer-Encoding other than "chunked".
// Each could make userrouter and nginx disagree on where the body ends;
// such a request is answered 400 and the connection closed.
func (q *request) framingOK() bool {
	h := &q.ctx.Request.Header
	raw := h.RawHeaders()
	folded := bytes.Contains(raw, []byte("\n ")) || bytes.Contains(raw, []byte("\n\t"))
	if !folded && !hasBody(h) {
		return true // the hit path: one scan, nothing else
	}
	why := ""
	if folded {
		why = "a header line is folded (obs-fold)"
	}
	cl, te := 0, 0
	for line := range bytes.SplitSeq(raw, []byte{'\n'}) {
		name, value, ok := bytes.Cut(bytes.TrimSuffix(line, []byte{'\r'}), []byte{':'})
		if !ok {
			continue
		}
		switch {
		case bytes.EqualFold(name, []byte(fasthttp.HeaderContentLength)):
			cl++
		case bytes.EqualFold(name, []byte(fasthttp.HeaderTransferEncoding)):
			te++
			if !bytes.EqualFold(bytes.TrimSpace(value), []byte("chunked")) {
				why = "Transfer-Encoding other than \"chunked\""
			}
		}
	}
	switch {
	case why != "":
	case cl > 0 && te > 0:
		why = "both Content-Length and Transfer-Encoding"
	case cl > 1 || te > 1:
		why = "a repeated Content-Length or Transfer-Encoding"
	default:
		return true
	}
	return q.refuse("the request's framing is ambiguous: " + why)
}

// originForm rewrites a request target in absolute form ("GET
// http://host/path", RFC 9112 section 3.2.2) to origin form, so that the
// cache key, a fill and the backend all see one host and one path: the
// target's authority must then agree with the Host header (or stands in
// for a missing one). Any other target that is neither origin form nor
// "*" for OPTIONS is refused. It answers 400 itself and returns false when
// the target cannot be used.
func (q *request) originForm() bool {
	ctx := q.ctx
	h := &ctx.Request.Header
	uri := h.RequestURI()
	if len(uri) > 0 && uri[0] == '/' {
		return true
	}
	if string(uri) == "*" && h.IsOptions() {
		return true
	}
	rest, ok := cutSchemePrefix(uri)
	if !ok {
		return q.refuse("the request target is neither a path nor an http(s) URL")
	}
	end := bytes.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, target := rest[:end], rest[end:]
	host := h.Host()
	switch {
	case len(authority) == 0 || bytes.IndexByte(authority, '@') >= 0:
		return q.refuse("the request target has no host, or carries user information")
	case len(host) > 0 && !bytes.EqualFold(authority, host):
		return q.refuse("the request target's host and the Host header disagree")
	}
	t := make([]byte, 0, len(target)+1)
	if len(target) == 0 || target[0] != '/' {
		t = append(t, '/')
	}
	t = append(t, target...)
	if len(host) == 0 {
		h.SetHostBytes(bytes.Clone(authority))
	}
	ctx.Request.SetRequestURIBytes(t)
	return true
}

func cutSchemePrefix(uri []byte) ([]byte, bool) {
	for _, s := range [...]string{"http://", "https://"} {
		if len(uri) >= len(s) && bytes.EqualFold(uri[:len(s)], []byte(s)) {
			return uri[len(s):], true
		}
	}
	return nil, false
}

// refuse answers 400 with why and closes the connection: after a request
// whose framing or target cannot be trusted, neither can the next byte.
func (q *request) refuse(why string) bool {
	plainAnswer(q.ctx, fasthttp.StatusBadRequest, why)
	q.closeAfter()
	return false
}

// plainAnswer sets userrouter's own plain-text answer: the status and its
// reason, then what went wrong ("Bad Request: the request ...").
func plainAnswer(ctx *fasthttp.RequestCtx, status int, text string) {
	ctx.Response.Header.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(fasthttp.StatusMessage(status) + ": " + text + "\n")
}
