package router

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"
)

// hopHeaders are meaningful only for one connection and are never relayed
// (RFC 9110 section 7.6.1). Transfer-Encoding and Content-Length are not
// here: fasthttp owns message framing and re-frames every body itself.
var hopHeaders = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "TE", "Trailer", "Upgrade",
}

// protectedHeaders may not be removed by being named in Connection.
var protectedHeaders = [...]string{"Host", "Content-Length", "Transfer-Encoding"}

// isHop reports whether a header must not be relayed: it is hop-by-hop, or
// the message's Connection header names it.
func isHop(name, connection []byte) bool {
	for _, h := range hopHeaders {
		if len(name) == len(h) && bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	if len(connection) == 0 {
		return false
	}
	for _, p := range protectedHeaders {
		if bytes.EqualFold(name, []byte(p)) {
			return false
		}
	}
	for tok := range bytes.SplitSeq(connection, []byte{','}) {
		if bytes.EqualFold(bytes.TrimSpace(tok), name) {
			return true
		}
	}
	return false
}

// requestSpecial are the request headers fasthttp keeps in fields of its
// own rather than in its ordered list.
var requestSpecial = [...]string{"Host", "User-Agent", "Content-Type", "Content-Length", "Cookie", "Transfer-Encoding", "Trailer"}

// stripHopRequest removes hop-by-hop headers from a request about to be
// forwarded, keeping the order of the rest, and reports whether the client
// asked to close its connection. Expect is removed too: fasthttp has
// already answered "100-continue" to the client and reads the body itself.
func stripHopRequest(h *fasthttp.RequestHeader) (closeConn bool) {
	// fasthttp would otherwise add "Content-Type: application/octet-stream"
	// to a body sent without one.
	h.SetNoDefaultContentType(true)
	closeConn = h.ConnectionClose() // an exact "Connection: close", kept aside by fasthttp
	conn := h.Peek(fasthttp.HeaderConnection)
	drop := func(k []byte) bool { return isHop(k, conn) || bytes.EqualFold(k, []byte(fasthttp.HeaderExpect)) }
	// AllInOrder reads the raw headers; All would parse the Cookie header
	// and have it written back re-serialized.
	found := false
	for k := range h.AllInOrder() {
		if drop(k) {
			found = true
			break
		}
	}
	if !found {
		return closeConn
	}
	conn = bytes.Clone(conn)
	for tok := range bytes.SplitSeq(conn, []byte{','}) {
		if bytes.EqualFold(bytes.TrimSpace(tok), []byte("close")) {
			closeConn = true
		}
	}
	// fasthttp's Del moves the last header into the gap, which would reorder
	// repeated headers; take the ordinary headers out and put them back in
	// order instead. This runs only when a hop-by-hop header is present.
	type kv struct{ k, v []byte }
	var kept []kv
	var gone [][]byte
	for k, v := range h.AllInOrder() {
		switch {
		case drop(k):
			gone = append(gone, bytes.Clone(k))
		case !isRequestSpecial(k):
			kept = append(kept, kv{bytes.Clone(k), bytes.Clone(v)})
		}
	}
	for _, k := range gone {
		h.DelBytes(k)
	}
	for _, e := range kept {
		h.DelBytes(e.k)
	}
	for _, e := range kept {
		h.AddBytesKV(e.k, e.v)
	}
	return closeConn
}

func isRequestSpecial(k []byte) bool {
	for _, s := range requestSpecial {
		if bytes.EqualFold(k, []byte(s)) {
			return true
		}
	}
	return false
}

// setForwarded sets X-Forwarded-For and X-Real-IP to the peer and
// X-Forwarded-Proto to http, for a peer that is not a trusted proxy: every
// occurrence the peer sent of them is removed first, under any spelling a
// WSGI server reads as the same header (X_Forwarded_For), so nothing of
// the peer's own making reaches the application as a proxy's word. A
// trusted proxy's (nginx's) headers pass untouched.
func setForwarded(h *fasthttp.RequestHeader, peer net.IP) {
	var buf [64]byte
	ip := appendIP(buf[:0], peer)
	delForwarded(h)
	h.SetBytesV(fasthttp.HeaderXForwardedFor, ip)
	h.SetBytesV(headerXRealIP, ip)
	h.Set(fasthttp.HeaderXForwardedProto, "http")
}

// appendIP appends ip as net.IP.String writes it, without allocating.
func appendIP(dst []byte, ip net.IP) []byte {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return append(dst, ip.String()...)
	}
	return a.Unmap().AppendTo(dst)
}

const headerXRealIP = "X-Real-IP"

// forwardedHeaders are the headers only a trusted proxy may set.
var forwardedHeaders = [...]string{fasthttp.HeaderXForwardedFor, headerXRealIP, fasthttp.HeaderXForwardedProto}

// delForwarded removes every occurrence of the forwardedHeaders, also
// when written with underscores.
func delForwarded(h *fasthttp.RequestHeader) {
	var found [][]byte
	for k := range h.AllInOrder() {
		if isForwardedHeader(k) {
			found = append(found, bytes.Clone(k))
		}
	}
	for _, k := range found {
		h.DelBytes(k)
	}
}

func isForwardedHeader(k []byte) bool {
	for _, f := range forwardedHeaders {
		if len(k) != len(f) {
			continue
		}
		same := true
		for i := range k {
			a, b := k[i]|0x20, f[i]|0x20
			if a == '_'|0x20 {
				a = '-' | 0x20
			}
			if a != b {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

// trusted reports whether addr is a unix socket peer or inside prefixes.
func trusted(addr net.Addr, prefixes []netip.Prefix) (bool, net.IP) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return true, nil // a unix socket: a local process with file access
	}
	a, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return false, tcp.IP
	}
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true, tcp.IP
		}
	}
	return false, tcp.IP
}

// relay copies the backend response src into dst, the response the server
// writes to the client, leaving out hop-by-hop headers, and hands src's body
// stream over: dst's server closes the stream when it is done writing, which
// releases src and returns the backend connection to its pool. relay takes
// ownership of src.
//
// The head is copied by parsing a rebuilt header block into dst, not by
// setting headers one by one and not by letting HostClient fill dst: fasthttp
// drops a Date set through its API ("managed automatically"), and the reset
// HostClient does re-enables the Date and Content-Type it adds by default.
// Parsing keeps the backend's Date, and dst keeps the server's settings.
//
// read is what the caller already read of the body (a fill that looked at
// it): it is sent first, then whatever remains in the stream. Headers for
// which drop (when not nil) returns true are left out too.
func relay(dst, src *fasthttp.Response, read []byte, drop func(name []byte) bool) error {
	src.Header.SetNoDefaultContentType(true) // relay only a Content-Type the backend sent
	hb := headBufPool.Get().(*headBuf)
	defer headBufPool.Put(hb)
	b := append(hb.b[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(src.StatusCode()), 10)
	b = append(b, ' ')
	if msg := src.Header.StatusMessage(); len(msg) > 0 {
		b = append(b, msg...)
	} else {
		b = append(b, fasthttp.StatusMessage(src.StatusCode())...)
	}
	b = append(b, "\r\n"...)
	conn := src.Header.Peek(fasthttp.HeaderConnection)
	for k, v := range src.Header.All() {
		if isHop(k, conn) || bytes.EqualFold(k, []byte(fasthttp.HeaderContentLength)) ||
			bytes.EqualFold(k, []byte(fasthttp.HeaderTransferEncoding)) || drop != nil && drop(k) {
			continue
		}
		b = append(b, k...)
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	if err := dst.Header.Read(hb.reader(b)); err != nil {
		fasthttp.ReleaseResponse(src)
		return err
	}
	// Without a Content-Length the parser assumed a body read until close;
	// the length is set below, and the client's connection stays open.
	dst.Header.ResetConnectionClose()
	size := src.Header.ContentLength()
	if !src.IsBodyStream() {
		if len(read) > 0 || len(src.Body()) > 0 {
			dst.SetBody(append(read, src.Body()...)) // all of it was read
		} else if size >= 0 {
			// No body: HEAD, 204, 304, 1xx. Keep the declared length.
			dst.Header.SetContentLength(size)
		}
		fasthttp.ReleaseResponse(src)
		return nil
	}
	if len(read) > 0 {
		// A fill read part of a long body: send that, then the rest.
		if size < 0 {
			size = -1
		}
		dst.SetBodyStream(&relayBody{r: io.MultiReader(bytes.NewReader(read), src.BodyStream()), resp: src}, size)
		return nil
	}
	if bb, ok := src.BodyStream().(*bufferedBody); ok {
		// Read whole already, and held in the backend connection's read
		// buffer: written from there (relayBody.WriteTo), the connection
		// pooled again once it is.
		dst.SetBodyStream(&relayBody{r: bb, resp: src}, size)
		return nil
	}
	if size >= 0 && size <= maxBufferedBody {
		// Small bodies are read whole, like nginx's proxy buffers: the
		// backend connection is free at once, the client gets head and body
		// in one write, and a body cut short is a clean 502, not a torn one.
		err := readBodyInto(dst, src.BodyStream(), size)
		fasthttp.ReleaseResponse(src)
		if err != nil {
			dst.ResetBody()
			return fmt.Errorf("read response body: %w", err)
		}
		return nil
	}
	if size < 0 {
		size = -1 // chunked or read-until-close: the client gets chunked
	}
	dst.SetBodyStream(&relayBody{r: src.BodyStream(), resp: src}, size)
	return nil
}

// maxBufferedBody is the largest response body relay reads whole before
// answering; longer ones, and those of unknown length, are streamed.
const maxBufferedBody = 256 << 10

type headBuf struct {
	b  []byte
	rd bytes.Reader
	br *bufio.Reader
}

// reader returns a reader of b, a header block built in hb.b, sized to
// hold it whole (fasthttp parses a head from one buffer).
func (hb *headBuf) reader(b []byte) *bufio.Reader {
	hb.b = b
	hb.rd.Reset(b)
	if hb.br == nil || hb.br.Size() < len(b) {
		hb.br = bufio.NewReaderSize(&hb.rd, max(len(b), 4096))
	} else {
		hb.br.Reset(&hb.rd)
	}
	return hb.br
}

var headBufPool = sync.Pool{New: func() any { return &headBuf{b: make([]byte, 0, 2048)} }}

// relayBody reads a backend body and, when closed, releases the backend
// response that owns it.
type relayBody struct {
	r    io.Reader
	resp *fasthttp.Response
}

func (b *relayBody) Read(p []byte) (int, error) { return b.r.Read(p) }

// WriteTo lets a body held in a read buffer be written from there; any
// other is copied through a pooled buffer (io.Copy would allocate one per
// response: through the client's TCPConn.ReadFrom, or io.MultiReader's
// WriteTo).
func (b *relayBody) WriteTo(w io.Writer) (int64, error) {
	if bb, ok := b.r.(*bufferedBody); ok {
		return bb.WriteTo(w)
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{b.r}, *buf)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (b *relayBody) Close() error {
	if b.resp != nil {
		fasthttp.ReleaseResponse(b.resp) // closes the stream; pools or drops the connection
		b.resp = nil
	}
	return nil
}
