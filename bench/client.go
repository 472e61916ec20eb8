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

// A conn is one keep-alive connection to an endpoint, its read buffer and
// the state of the answer being parsed. It is not safe for concurrent use:
// each worker owns its own. The parser is fed, not pulling: advance parses
// what the buffer holds and says whether the answer is complete, so the
// blocking path (roundTrip, through Go's netpoller) and the event loop
// (evloop_linux.go, non-blocking sockets under epoll) share it.
type conn struct {
	ep       endpoint
	timeout  time.Duration
	nc       net.Conn  // the blocking path's connection; nil when closed or under the event loop
	fd       int       // the event loop's socket; -1 when none
	evid     int32     // the event loop's index of the conn
	deadline time.Time // the deadline set on nc; under the event loop, this exchange's
	reused   bool      // the connection has carried a response already

	buf    []byte // readBufSize
	r, w   int    // unread data is buf[r:w]
	cs     []byte // Cache-Status, copied out of buf
	noBody bool   // the request is HEAD: answers have no body

	// The answer being parsed.
	st   parseState
	got  bool  // a byte of this exchange's answer came
	left int64 // stBody, stChunkData: bytes still to skip
	ans  answer
	hd   head
}

// parseState is where the parser is in an answer.
type parseState uint8

const (
	stHeader     parseState = iota // status line and header, up to the blank line
	stBody                         // c.left bytes of a Content-Length body
	stChunkSize                    // a chunk-size line
	stChunkData                    // c.left bytes of chunk data
	stChunkEnd                     // the CRLF after chunk data
	stTrailer                      // trailer lines, up to the blank line
	stUntilClose                   // a body that ends when the connection does
)

// newConn returns a conn to ep; it dials on first use. Every exchange is
// bounded by timeout, the connection included.
func newConn(ep endpoint, timeout time.Duration, head bool) *conn {
	return &conn{ep: ep, timeout: timeout, noBody: head, fd: -1, buf: make([]byte, readBufSize)}
}

// close closes the connection; the next exchange dials a new one.
func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
	c.closeFD()
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
	c.begin()
	for {
		done, err := c.advance()
		if err != nil {
			return c.ans, err
		}
		if !done {
			err = c.fill()
		}
		if err != nil {
			done, err = c.ended(err)
			if err != nil {
				return c.ans, err
			}
		}
		if done {
			return c.ans, c.finish()
		}
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

// room makes room at the end of the buffer for a read, moving the unread
// data to its start when the buffer is full. It fails when the unread
// data fills the whole buffer: a header or chunk line that long.
func (c *conn) room() error {
	if c.r == c.w {
		c.r, c.w = 0, 0
		return nil
	}
	if c.w < len(c.buf) {
		return nil
	}
	if c.r == 0 {
		if c.st == stHeader {
			return errHeaderTooBig
		}
		return fmt.Errorf("%w: chunk line too long", errMalformed)
	}
	c.w = copy(c.buf, c.buf[c.r:c.w])
	c.r = 0
	return nil
}

// fill reads more of the answer into the buffer, through the blocking
// connection. Its errors (io.EOF included) go to ended.
func (c *conn) fill() error {
	if err := c.room(); err != nil {
		return err
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		c.got = true
		return nil
	}
	if err == nil {
		return io.ErrNoProgress
	}
	return err
}

// begin readies the parser for the answer to a request just sent.
func (c *conn) begin() {
	c.st, c.got, c.left = stHeader, false, 0
	c.ans, c.hd = answer{}, head{}
}

// ended reports what a read's error err means for the answer: complete
// (a body that ends with the connection, at EOF), errStaleConn (the
// connection had closed before a byte of the answer came), or a failure.
func (c *conn) ended(err error) (done bool, _ error) {
	switch {
	case c.st == stUntilClose && errors.Is(err, io.EOF):
		return true, nil
	case !c.got && isReset(err):
		return false, errStaleConn
	case errors.Is(err, io.EOF):
		return false, io.ErrUnexpectedEOF
	}
	return false, err
}

// finish ends a complete answer: it closes the connection when the answer
// said so, and otherwise checks that nothing unasked followed it.
func (c *conn) finish() error {
	if c.hd.close {
		c.close()
		return nil
	}
	if c.r != c.w {
		return errTrailingBytes
	}
	c.r, c.w = 0, 0
	return nil
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

// advance parses as much of the answer as the buffer holds, dropping body
// bytes as they come. It reports whether the answer is complete; when it
// is not, the caller reads more (after room) and calls it again.
func (c *conn) advance() (done bool, err error) {
	for {
		switch c.st {
		case stHeader:
			i := bytes.Index(c.buf[c.r:c.w], crlfx2)
			if i < 0 {
				return false, nil
			}
			end := c.r + i + 4
			lines := c.buf[c.r : end-2]
			c.r = end
			if err := c.parseHeader(lines); err != nil {
				return false, err
			}
			a := c.ans
			switch {
			case a.status >= 100 && a.status < 200 && a.status != 101:
				continue // an interim answer: the real one follows
			case c.noBody || a.status == 204 || a.status == 304 || a.status == 101:
				if a.status == 101 {
					c.hd.close = true // bench has nothing to say to an upgraded connection
				}
				return true, nil
			case c.hd.chunked:
				c.st = stChunkSize
			case c.hd.contentLength >= 0:
				c.st, c.left = stBody, c.hd.contentLength
			default:
				c.st, c.hd.close = stUntilClose, true
			}
		case stBody, stChunkData:
			n := min(c.left, int64(c.w-c.r))
			c.r += int(n)
			c.left -= n
			if c.left > 0 {
				return false, nil
			}
			if c.st == stBody {
				return true, nil
			}
			c.st = stChunkEnd
		case stChunkSize:
			l, ok := c.line()
			if !ok {
				return false, nil
			}
			n, err := parseChunkSize(l)
			if err != nil {
				return false, err
			}
			if n == 0 {
				c.st = stTrailer
			} else {
				c.st, c.left = stChunkData, n
			}
		case stChunkEnd:
			l, ok := c.line()
			if !ok {
				return false, nil
			}
			if len(l) != 0 {
				return false, fmt.Errorf("%w: no CRLF after a chunk", errMalformed)
			}
			c.st = stChunkSize
		case stTrailer:
			l, ok := c.line()
			if !ok {
				return false, nil
			}
			if len(l) == 0 {
				return true, nil
			}
		case stUntilClose:
			c.r = c.w
			return false, nil
		}
	}
}

// line returns the next CRLF-terminated line in the buffer, without its
// CRLF, or false when the buffer does not hold a whole line yet.
func (c *conn) line() ([]byte, bool) {
	i := bytes.Index(c.buf[c.r:c.w], crlf)
	if i < 0 {
		return nil, false
	}
	l := c.buf[c.r : c.r+i]
	c.r += i + 2
	return l, true
}

// parseHeader parses a status line and header, lines (without the blank
// line that ends them), into c.ans and c.hd.
func (c *conn) parseHeader(lines []byte) error {
	h := head{contentLength: -1}
	c.ans, c.hd = answer{}, h
	i := bytes.Index(lines, crlf)
	status := lines
	if i >= 0 {
		status, lines = lines[:i], lines[i+2:]
	} else {
		lines = nil
	}
	// HTTP/1.x SSS reason
	if len(status) < 12 || !bytes.HasPrefix(status, http1) || status[8] != ' ' || (len(status) > 12 && status[12] != ' ') {
		return errMalformed
	}
	code := 0
	for _, d := range status[9:12] {
		if d < '0' || d > '9' {
			return errMalformed
		}
		code = code*10 + int(d-'0')
	}
	if code < 100 {
		return errMalformed
	}
	c.ans.status = code
	keepAlive := status[7] == '1' // HTTP/1.1 keeps alive unless told not to
	c.cs = c.cs[:0]
	for len(lines) > 0 {
		line := lines
		if i := bytes.Index(lines, crlf); i >= 0 {
			line, lines = lines[:i], lines[i+2:]
		} else {
			lines = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errMalformed
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case equalFold(name, hdrCL):
			n, ok := parseLength(value)
			if !ok || (h.contentLength >= 0 && h.contentLength != n) {
				return fmt.Errorf("%w: Content-Length %q", errMalformed, value)
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
			c.cs = append(c.cs, value[:min(len(value), max(0, maxCacheStatus-len(c.cs)))]...)
		}
	}
	h.close = h.close || !keepAlive
	c.hd = h
	c.ans.cacheStatus = c.cs
	return nil
}

// parseChunkSize parses a chunk-size line, extensions and all.
func parseChunkSize(l []byte) (int64, error) {
	if i := bytes.IndexByte(l, ';'); i >= 0 {
		l = l[:i] // chunk extensions
	}
	l = bytes.TrimRight(l, " \t")
	if len(l) == 0 || len(l) > 15 {
		return 0, fmt.Errorf("%w: chunk size %q", errMalformed, l)
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
			return 0, fmt.Errorf("%w: chunk size %q", errMalformed, l)
		}
	}
	return n, nil
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
