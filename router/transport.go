package router

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/valyala/fasthttp"
)

// relayTransport is the backends' HostClient transport. It does what
// fasthttp's own does for a streamed response (HostClient.StreamResponseBody),
// with two differences:
//
//   - the request URI goes out exactly as the client wrote it: HostClient
//     parses the URI (to check its scheme), and a parsed URI is written
//     back re-serialized, which would drop an empty query ("/?") and turn
//     an absolute-form target into origin-form; setting the raw bytes back
//     marks the URI unparsed, so Request.Write uses them as they are;
//   - a body of known length that fits the connection's read buffer is
//     read whole before Do returns and left there, in place: the response's
//     body stream (a *bufferedBody) reads it from the buffer, and writes it
//     straight from there into the client's write buffer (io.WriterTo).
//     The connection goes back to the pool when the stream is closed, read
//     or not. A small answer is thus copied once in user space, not three
//     times, and a body cut short is an error from Do (a clean 502), as
//     with nginx's proxy buffers.
//
// Anything else (a longer body, chunked, or read until close) streams as
// fasthttp streams it. The transport sets no deadline of its own: the
// connections renew theirs per read and write (deadlineConn). HostClient's
// ReadTimeout and WriteTimeout, and DoTimeout's and DoDeadline's limits,
// would be ignored (a request's timeout is not visible outside fasthttp):
// health probes, which need one, have a HostClient of their own.
type relayTransport struct{}

// maxInterim bounds the 1xx answers skipped before the final one, as
// fasthttp does.
const maxInterim = 100

func (relayTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (retry bool, err error) {
	req.SetRequestURIBytes(req.Header.RequestURI()) // as the client wrote it
	skipBody := resp.SkipBody || req.Header.IsHead()
	cc, err := hc.AcquireConn(0, req.ConnectionClose())
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	resp.ParseNetConn(conn)

	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		hc.CloseConn(cc)
		if isTimeout(err) {
			err = fasthttp.ErrTimeout
		}
		return true, err
	}

	br := hc.AcquireReader(conn)
	err = resp.Header.Read(br)
	for n := 0; err == nil; n++ {
		if s := resp.Header.StatusCode(); s < 100 || s > 199 || s == fasthttp.StatusSwitchingProtocols {
			break
		}
		if n >= maxInterim {
			err = errors.New("router: too many interim (1xx) responses")
			break
		}
		err = resp.Header.Read(br)
	}
	if err != nil {
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		return true, err // nothing usable arrived: HostClient asks RetryIfErr
	}

	closeConn := req.ConnectionClose() || resp.Header.ConnectionClose()
	lent := held{br: br, closeConn: closeConn}
	if dc, ok := conn.(*deadlineConn); ok && dc.doneFor == hc && dc.doneCC == any(cc) {
		lent.done = dc.done
	} else {
		lent.done = func(br *bufio.Reader, reuse bool) {
			hc.ReleaseReader(br)
			if reuse {
				hc.ReleaseConn(cc)
			} else {
				hc.CloseConn(cc)
			}
		}
		if ok {
			dc.done, dc.doneFor, dc.doneCC = lent.done, hc, cc
		}
	}
	size := resp.Header.ContentLength()
	switch s := resp.Header.StatusCode(); {
	case s < 100:
		// Not HTTP (fasthttp parses "000" to "099"): where its body ends
		// is unknown, so the connection is never used again.
		lent.release(false)
		return false, &bodyError{fmt.Errorf("router: backend answered status %d", s)}
	case skipBody || s < 200 || s == fasthttp.StatusNoContent || s == fasthttp.StatusNotModified:
		lent.release(s != fasthttp.StatusSwitchingProtocols) // no body (HEAD, 1xx, 204, 304)
		return false, nil
	case size >= 0 && size <= br.Size():
		body, err := br.Peek(size)
		if err != nil {
			lent.release(false)
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return false, &bodyError{err} // the answer began: never retried
		}
		resp.SetBodyStream(acquireBufferedBody(body, lent), size)
		return false, nil
	}
	// Streamed by fasthttp's own reader (it parses chunked framing), read
	// through a scratch response so that its end can return the
	// connection: a response's own stream closes without telling anyone.
	if size == -2 {
		lent.closeConn = true // read until close
	}
	scratch := fasthttp.AcquireResponse()
	scratch.StreamBody = true
	scratch.Header.SetContentLength(size)
	if err := scratch.ReadBody(br, 0); err != nil {
		fasthttp.ReleaseResponse(scratch)
		lent.release(false)
		return false, &bodyError{err}
	}
	resp.SetBodyStream(&streamedBody{r: scratch.BodyStream(), scratch: scratch, conn: lent}, size)
	return false, nil
}

// held is a backend connection lent to a response, and the reader over
// it: release gives both back to the HostClient, the connection to its
// pool when reuse is true and the connection may be reused, closed
// otherwise. done is the connection's own (see deadlineConn.done), so a
// forward allocates no function for it.
type held struct {
	br        *bufio.Reader
	done      func(br *bufio.Reader, reuse bool)
	closeConn bool // by the request or the answer, or read until close
}

func (h held) release(reuse bool) { h.done(h.br, reuse && !h.closeConn) }

// A bodyError says the backend's answer began (resp holds its head) but
// its body could not be read.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read response body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// bufferedBody is a response body held in its connection's read buffer.
// It is not safe for concurrent use (a response body never is).
type bufferedBody struct {
	b    []byte // what is left to read
	n    int    // the body's length
	conn held
}

var bufferedBodies = sync.Pool{New: func() any { return new(bufferedBody) }}

func acquireBufferedBody(b []byte, conn held) *bufferedBody {
	bb := bufferedBodies.Get().(*bufferedBody)
	*bb = bufferedBody{b: b, n: len(b), conn: conn}
	return bb
}

func (bb *bufferedBody) Read(p []byte) (int, error) {
	if len(bb.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, bb.b)
	bb.b = bb.b[n:]
	return n, nil
}

// WriteTo writes the rest of the body to w from the read buffer, without
// another copy of its own.
func (bb *bufferedBody) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(bb.b)
	bb.b = bb.b[n:]
	return int64(n), err
}

// Close drops the body from the read buffer, read or not, and returns the
// connection to the pool.
func (bb *bufferedBody) Close() error {
	if bb.conn.br == nil {
		return nil
	}
	_, err := bb.conn.br.Discard(bb.n) // buffered: cannot fail
	bb.conn.release(err == nil)
	*bb = bufferedBody{}
	bufferedBodies.Put(bb)
	return nil
}

// streamedBody is a body fasthttp streams from the connection; closing it
// returns the connection to the pool if the body was read to its end, and
// closes it otherwise.
type streamedBody struct {
	r       io.Reader
	scratch *fasthttp.Response
	conn    held
	eof     bool
}

func (s *streamedBody) Read(p []byte) (int, error) {
	if s.scratch == nil {
		return 0, io.ErrClosedPipe
	}
	n, err := s.r.Read(p)
	if errors.Is(err, io.EOF) {
		s.eof = true
	}
	return n, err
}

func (s *streamedBody) Close() error {
	if s.scratch == nil {
		return nil
	}
	fasthttp.ReleaseResponse(s.scratch) // releases the reader, not the connection
	s.scratch = nil
	s.conn.release(s.eof)
	return nil
}
