package router

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// fileBody is the body of a hit whose stored value the store also keeps
// in a pagecache.File: the server writes the head, then the body goes from
// the file to the socket with sendfile(2), never through userrouter's
// memory (nginx serves its cached files so). fasthttp hands a body stream
// that is an io.WriterTo the server's buffered writer of the connection
// (Response.SetBodyStream, writeBodyFixedSize, copyZeroAlloc); WriteTo
// flushes the head from it, then sends the file through the connection's
// syscall.RawConn, which parks on the poller while the socket is full.
// When the file was released meanwhile (an eviction or a purge), or the
// writer is not the connection's, the body is written from the heap copy
// instead: the same bytes, never others (see pagecache.File).
type fileBody struct {
	f    *pagecache.File
	off  int64  // where the next byte is in the file
	left int64  // bytes still to send
	body []byte // the same bytes in the stored value
	rc   syscall.RawConn
	fd   int // the file's descriptor while acquired
	err  error
	step func(fd uintptr) bool // sendStep, made once per fileBody
	read int                   // Read's progress
}

var fileBodies = sync.Pool{New: func() any {
	b := new(fileBody)
	b.step = b.sendStep
	return b
}}

// setFileBody makes body, which e's File holds, the response's body sent
// from the file, when the connection is a plain TCP or unix socket
// (nothing between the server's writer and the kernel: no TLS); it
// reports false, having changed nothing, otherwise.
func setFileBody(ctx *fasthttp.RequestCtx, e *pagecache.Entry, body []byte) bool {
	f, off, ok := e.BodyFile()
	if !ok || len(body) != len(e.Body) {
		return false
	}
	rc := rawConn(ctx.Conn())
	if rc == nil {
		return false
	}
	b := fileBodies.Get().(*fileBody)
	b.f, b.off, b.left, b.body, b.rc, b.read = f, off, int64(len(body)), body, rc, 0
	ctx.Response.SetBodyStream(b, len(body))
	return true
}

// WriteTo sends the body to w, the server's writer of the connection.
func (b *fileBody) WriteTo(w io.Writer) (int64, error) {
	total := b.left
	bw, ok := w.(*bufio.Writer)
	fd, acquired := -1, false
	if ok && b.read == 0 {
		fd, acquired = b.f.Acquire()
	}
	if !acquired {
		n, err := w.Write(b.body[b.read:])
		b.read += n
		return int64(n), err
	}
	defer b.f.Release()
	if err := bw.Flush(); err != nil { // the head
		return 0, err
	}
	b.fd, b.err = fd, nil
	if err := b.rc.Write(b.step); err != nil {
		return total - b.left, err
	}
	return total - b.left, b.err
}

// errShortFile: the file ended before the body did (it cannot: a File is
// sealed at the value's length).
var errShortFile = errors.New("router: stored page file shorter than its body")

// sendStep sends what is left, until done (true), the socket is full
// (false: RawConn.Write waits for it to drain and calls again), or an
// error (true, in b.err).
func (b *fileBody) sendStep(sock uintptr) bool {
	for b.left > 0 {
		n, err := sendfile(int(sock), b.fd, &b.off, int(min(b.left, 1<<30)))
		if n > 0 {
			b.left -= int64(n)
		}
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			b.err = err
			return true
		case n == 0:
			b.err = errShortFile
			return true
		}
	}
	return true
}

// Read is the body for a writer that is not an io.ReaderFrom's caller of
// WriteTo (fasthttp always calls WriteTo): the heap copy.
func (b *fileBody) Read(p []byte) (int, error) {
	if b.read >= len(b.body) {
		return 0, io.EOF
	}
	n := copy(p, b.body[b.read:])
	b.read += n
	return n, nil
}

// Close returns b to its pool; fasthttp closes a body stream when it is
// done with the response.
func (b *fileBody) Close() error {
	*b = fileBody{step: b.step}
	fileBodies.Put(b)
	return nil
}

// rawConns holds each open connection's syscall.RawConn (making one
// allocates), while the servers NewServer made track their connections
// (trackConns): their ConnState hook drops it when the connection ends.
var (
	rawConns   sync.Map // net.Conn → syscall.RawConn
	trackConns atomic.Bool
)

// rawConn returns c's RawConn when c is a plain TCP or unix socket, else
// nil.
func rawConn(c net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	if !trackConns.Load() {
		rc, err := sc.SyscallConn()
		if err != nil {
			return nil
		}
		return rc
	}
	if v, ok := rawConns.Load(c); ok {
		return v.(syscall.RawConn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	rawConns.Store(c, rc)
	return rc
}

// connState forgets a connection's RawConn when it ends.
func connState(c net.Conn, s fasthttp.ConnState) {
	if s == fasthttp.StateClosed || s == fasthttp.StateHijacked {
		rawConns.Delete(c)
	}
}
