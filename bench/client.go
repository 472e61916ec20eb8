package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"time"
)

// bench's load goes through this minimal HTTP/1.1 client rather than
// fasthttp's: one connection per worker, the request's bytes written with
// one write, the answer read into one buffer and parsed in place, nothing
// allocated per request. fasthttp's HostClient, measured first (docs/bench.md),
// spent its time in the connection pool, the per-request deadline timer
// and copying a streamed body through io.Copy; with the body streamed,
// the read of a 13 KB answer took several syscalls. This client only does
// what a load generator needs: Content-Length, chunked and
// read-until-close bodies, keep-alive, HEAD, 1xx, and the Cache-Status
// value. It keeps no body: bodies are read and dropped.

// Client errors. Transport errors (refused, reset, timeout) come from the
// net package as they are; classifyError sorts both kinds.
var (
	errMalformed     = errors.New("malformed HTTP response")
	errHeaderTooBig  = errors.New("response header larger than the read buffer")
	errStaleConn     = errors.New("connection closed before an answer")
	errTrailingBytes = errors.New("data after the response, unasked")
)

// Buffer sizes. A response header must fit in readBufSize; a body of any
// size streams through it.
const (
	readBufSize    = 64 << 10
	maxCacheStatus = 4 << 10 // longer Cache-Status values are cut here
)

// An endpoint is one scheme and host a run sends requests to: where to
// dial, and with which TLS settings (nil for plain HTTP).
type endpoint struct {
	addr string
	tls  *tls.Config
}

// newEndpoint returns the endpoint of rawURL, which must have passed
// parseBaseURL.
func newEndpoint(rawURL string) endpoint {
	u, _ := url.Parse(rawURL)
	port := u.Port()
	var cfg *tls.Config
	if u.Scheme == "https" {
		cfg = &tls.Config{ServerName: u.Hostname()}
		if port == "" {
			port = "443"
		}
	}
	if port == "" {
		port = "80"
	}
	return endpoint{addr: net.JoinHostPort(u.Hostname(), port), tls: cfg}
}

// An answer is what bench keeps of one response.
type answer struct {
	status      int
	cacheStatus []byte // the Cache-Status value, valid until the next exchange; empty when absent
}

// A conn is one keep-alive connection to an endpoint and its read buffer.
// It is not safe for concurrent use: each worker owns its own.
type conn struct {
	ep       endpoint
	timeout  time.Duration
	nc       net.Conn
	deadline time.Time // the deadline set on nc
	reused   bool      // nc has carried a response already

	buf    []byte // readBufSize
	r, w   int    // unread data is buf[r:w]
	cs     []byte // Cache-Status, copied out of buf
	noBody bool   // the request is HEAD: answers have no body
}

// newConn returns a conn to ep; it dials on first use. Every exchange is
// bounded by timeout, the connection included.
func newConn(ep endpoint, timeout time.Duration, head bool) *conn {
	return &conn{ep: ep, timeout: timeout, noBody: head, buf: make([]byte, readBufSize)}
}

// close closes the connection; the next exchange dials a new one.
func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
	c.r, c.w = 0, 0
}

// dial connects within the timeout.
func (c *conn) dial(now time.Time) error {
	d := net.Dialer{Deadline: now.Add(c.timeout)}
	nc, err := d.Dial("tcp", c.ep.addr)
	if err != nil {
		return err
	}
	if c.ep.tls != nil {
		tc := tls.Client(nc, c.ep.tls)
		tc.SetDeadline(now.Add(c.timeout))
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return err
		}
		nc = tc
	}
	c.nc, c.reused, c.deadline = nc, false, time.Time{}
	return nil
}

// exchange sends req (one complete request, written with one write) and
// reads the answer through its end, within the timeout counted from now.
// A connection the server closed while it was idle is redialled once,
// as browsers do, when not a byte of the answer had come; any other
// failure closes the connection and is returned.
func (c *conn) exchange(req []byte, now time.Time) (answer, error) {
	if c.nc == nil {
		if err := c.dial(now); err != nil {
			return answer{}, err
		}
	}
	// A deadline costs a timer update: set it only when the one in place
	// would bound this exchange by less than 99% of the timeout.
	if c.deadline.Sub(now) < c.timeout-c.timeout/100 {
		c.deadline = now.Add(c.timeout)
		if err := c.nc.SetDeadline(c.deadline); err != nil {
			c.close()
			return answer{}, err
		}
	}
	a, err := c.roundTrip(req)
	if errors.Is(err, errStaleConn) && c.reused {
		c.close()
		if err = c.dial(now); err != nil {
			return answer{}, err
		}
		c.deadline = now.Add(c.timeout)
		c.nc.SetDeadline(c.deadline)
		a, err = c.roundTrip(req)
	}
	if err != nil {
		c.close()
		return answer{}, err
	}
	c.reused = true
	return a, nil
}

// roundTrip writes req and reads one answer. It leaves the connection
// ready for the next request, or closed when the answer said so.
func (c *conn) roundTrip(req []byte) (answer, error) {
	if _, err := c.nc.Write(req); err != nil {
		if isReset(err) {
			return answer{}, errStaleConn
		}
		return answer{}, err
	}
	for {
		a, h, err := c.readHeader()
		if err != nil {
			return a, err
		}
		if a.status >= 100 && a.status < 200 && a.status != 101 {
			continue // an interim answer: the real one follows
		}
		if err := c.readBody(a, &h); err != nil {
			return a, err
		}
		if h.close {
			c.close()
		} else if c.r != c.w {
			return a, errTrailingBytes
		}
		c.r, c.w = 0, 0
		return a, nil
	}
}

// isReset reports whether err says the peer had closed the connection.
func isReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// head is what the header says about the body and the connection.
type head struct {
	contentLength int64 // -1: none given
	chunked       bool
	close         bool // the connection ends after this answer
}

// fill reads more of the answer into the buffer, after compacting it when
// full. It returns errStaleConn when the connection closed before any
// byte of an answer came.
func (c *conn) fill(started bool) error {
	if c.w == len(c.buf) {
		if c.r == 0 {
			return errHeaderTooBig
		}
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		return io.ErrNoProgress
	}
	if !started && isReset(err) {
		return errStaleConn
	}
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

var (
	crlf         = []byte("\r\n")
	crlfx2       = []byte("\r\n\r\n")
	http1        = []byte("HTTP/1.")
	hdrCL        = []byte("content-length")
	hdrTE        = []byte("transfer-encoding")
	hdrConn      = []byte("connection")
	hdrCS        = []byte("cache-status")
	tokClose     = []byte("close")
	tokKeepAlive = []byte("keep-alive")
	tokChunked   = []byte("chunked")
)

// readHeader reads and parses a status line and header. On return the
// buffer holds the start of the body at c.r.
func (c *conn) readHeader() (answer, head, error) {
	started := false
	var end int
	for {
		if i := bytes.Index(c.buf[c.r:c.w], crlfx2); i >= 0 {
			end = c.r + i + 4
			break
		}
		started = started || c.w > c.r
		if err := c.fill(started); err != nil {
			if errors.Is(err, errStaleConn) && c.w > c.r {
				err = io.ErrUnexpectedEOF
			}
			return answer{}, head{}, err
		}
	}
	h := head{contentLength: -1}
	lines := c.buf[c.r : end-2]
	c.r = end
	i := bytes.Index(lines, crlf)
	status := lines[:i]
	lines = lines[i+2:]
	// HTTP/1.x SSS reason
	if len(status) < 12 || !bytes.HasPrefix(status, http1) || status[8] != ' ' || (len(status) > 12 && status[12] != ' ') {
		return answer{}, h, errMalformed
	}
	code := 0
	for _, d := range status[9:12] {
		if d < '0' || d > '9' {
			return answer{}, h, errMalformed
		}
		code = code*10 + int(d-'0')
	}
	if code < 100 {
		return answer{}, h, errMalformed
	}
	a := answer{status: code}
	keepAlive := status[7] == '1' // HTTP/1.1 keeps alive unless told not to
	c.cs = c.cs[:0]
	for len(lines) > 0 {
		i := bytes.Index(lines, crlf)
		line := lines[:i]
		lines = lines[i+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return a, h, errMalformed
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case equalFold(name, hdrCL):
			n, ok := parseLength(value)
			if !ok || (h.contentLength >= 0 && h.contentLength != n) {
				return a, h, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
			h.contentLength = n
		case equalFold(name, hdrTE):
			h.chunked = hasToken(value, tokChunked)
		case equalFold(name, hdrConn):
			if hasToken(value, tokClose) {
				h.close = true
			}
			if hasToken(value, tokKeepAlive) {
				keepAlive = true
			}
		case equalFold(name, hdrCS):
			if len(c.cs) > 0 {
				c.cs = append(c.cs, ", "...)
			}
			c.cs = append(c.cs, value[:min(len(value), maxCacheStatus-len(c.cs))]...)
		}
	}
	h.close = h.close || !keepAlive
	a.cacheStatus = c.cs
	return a, h, nil
}

// readBody reads the answer's body and drops it.
func (c *conn) readBody(a answer, h *head) error {
	switch {
	case c.noBody || a.status == 204 || a.status == 304 || a.status == 101:
		if a.status == 101 {
			h.close = true // bench has nothing to say to an upgraded connection
		}
		return nil
	case h.chunked:
		return c.readChunked()
	case h.contentLength >= 0:
		return c.skip(h.contentLength)
	}
	// No length: the body ends when the connection does.
	h.close = true
	for {
		c.r = c.w
		if err := c.fill(true); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
	}
}

// skip drops the next n bytes of the answer.
func (c *conn) skip(n int64) error {
	for {
		if avail := int64(c.w - c.r); avail >= n {
			c.r += int(n)
			return nil
		} else {
			n -= avail
		}
		c.r, c.w = 0, 0
		if err := c.fill(true); err != nil {
			return err
		}
	}
}

// line returns the next CRLF-terminated line of the answer, without its
// CRLF, reading more as needed. It is valid until the next read.
func (c *conn) line() ([]byte, error) {
	for {
		if i := bytes.Index(c.buf[c.r:c.w], crlf); i >= 0 {
			l := c.buf[c.r : c.r+i]
			c.r += i + 2
			return l, nil
		}
		if err := c.fill(true); err != nil {
			if errors.Is(err, errHeaderTooBig) {
				return nil, fmt.Errorf("%w: chunk line too long", errMalformed)
			}
			return nil, err
		}
	}
}

// readChunked drops a chunked body and its trailer.
func (c *conn) readChunked() error {
	for {
		l, err := c.line()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i] // chunk extensions
		}
		l = bytes.TrimRight(l, " \t")
		if len(l) == 0 || len(l) > 15 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, l)
		}
		var n int64
		for _, d := range l {
			switch {
			case d >= '0' && d <= '9':
				n = n<<4 | int64(d-'0')
			case d >= 'a' && d <= 'f':
				n = n<<4 | int64(d-'a'+10)
			case d >= 'A' && d <= 'F':
				n = n<<4 | int64(d-'A'+10)
			default:
				return fmt.Errorf("%w: chunk size %q", errMalformed, l)
			}
		}
		if n == 0 {
			break
		}
		if err := c.skip(n); err != nil {
			return err
		}
		if l, err := c.line(); err != nil {
			return err
		} else if len(l) != 0 {
			return fmt.Errorf("%w: no CRLF after a chunk", errMalformed)
		}
	}
	for { // the trailer, up to its empty line
		l, err := c.line()
		if err != nil || len(l) == 0 {
			return err
		}
	}
}

// parseLength parses a Content-Length value.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range v {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// equalFold reports whether a equals the lower-case ASCII lower.
func equalFold(a, lower []byte) bool {
	if len(a) != len(lower) {
		return false
	}
	for i, c := range a {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds tok (lower
// case), ignoring case.
func hasToken(v, tok []byte) bool {
	for len(v) > 0 {
		var t []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			t, v = v, nil
		}
		if equalFold(bytes.Trim(t, " \t"), tok) {
			return true
		}
	}
	return false
}
