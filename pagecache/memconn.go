package pagecache

import (
	"bufio"
	"context"
	"net"
	"time"
)

// memcacheReadBuffer is how much of a reply one read from a memcached
// connection takes: a 13 KB page and its counters come in one read call.
const memcacheReadBuffer = 64 << 10

// A mcServer is one memcached server as the read path sees it: the slots
// bounding the operations in flight to it (shared with the writes made
// through gomemcache) and its idle connections. It is safe for concurrent
// use.
type mcServer struct {
	addr  net.Addr
	slots chan struct{}
	idle  chan *mcConn
}

// A mcConn is a read-path connection: reads go through a large buffer
// (memcacheReadBuffer), requests are built in w, reused. A mcConn is used
// by one operation at a time, and is given back to its server's idle
// connections only at a reply boundary: after any error it is closed.
type mcConn struct {
	nc net.Conn
	r  *bufio.Reader
	w  []byte
	// A storage command's writev vector (memwrite.go): bufs, which the
	// write consumes, over vec.
	bufs net.Buffers
	vec  [3][]byte
}

// conn returns an idle connection to s, or dials one within timeout.
func (s *mcServer) conn(timeout time.Duration) (*mcConn, error) {
	select {
	case c := <-s.idle:
		return c, nil
	default:
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.Dial(s.addr.Network(), s.addr.String())
	if err != nil {
		return nil, err
	}
	return &mcConn{nc: nc, r: bufio.NewReaderSize(nc, memcacheReadBuffer), w: make([]byte, 0, 512)}, nil
}

// put keeps c, at a reply boundary, for the next operation; when as many
// are idle as there are slots, or the store is closed, c is closed.
func (s *mcServer) put(c *mcConn, closed bool) {
	if !closed {
		select {
		case s.idle <- c:
			return
		default:
		}
	}
	c.nc.Close()
}

// closeIdle closes the idle connections.
func (s *mcServer) closeIdle() {
	for {
		select {
		case c := <-s.idle:
			c.nc.Close()
		default:
			return
		}
	}
}

// writeBufferKeep is the largest write buffer a gomemcache connection
// keeps between commands; a larger one (a large item was set) is dropped.
const writeBufferKeep = 64 << 10

// coalescedConn is a gomemcache connection whose writes are held until
// the reply is read, then sent in one call. gomemcache writes a command
// through a 4 KiB bufio.Writer of its own: a set of a 13 KB page took
// three write calls (the full buffer, the rest of the value, then the
// final CRLF), each a syscall and a segment. Every gomemcache command is
// followed by the read of its reply, so nothing written is left unsent;
// a failed write shows as the read's error, after which gomemcache closes
// the connection. Deadlines are gomemcache's own, set before it writes.
type coalescedConn struct {
	net.Conn
	w []byte
}

func (c *coalescedConn) Write(p []byte) (int, error) {
	c.w = append(c.w, p...)
	return len(p), nil
}

func (c *coalescedConn) Read(p []byte) (int, error) {
	if len(c.w) > 0 {
		_, err := c.Conn.Write(c.w)
		if cap(c.w) > writeBufferKeep {
			c.w = nil
		} else {
			c.w = c.w[:0]
		}
		if err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// dialCoalesced dials like gomemcache does and wraps the connection.
func dialCoalesced(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &coalescedConn{Conn: nc}, nil
}
