package pagecache

import (
	"bufio"
	"context"
	"net"
)

// memcacheReadBuffer is how much of a reply one read from a memcached
// connection takes. gomemcache reads through a 4 KiB bufio.Reader of its
// own: a 13 KB page and its counters came in three or four read calls.
// With this buffer underneath, a reply of up to 64 KiB comes in one.
const memcacheReadBuffer = 64 << 10

// bufferedConn is a memcached connection whose reads go through a large
// buffer (see memcacheReadBuffer); writes and deadlines are the socket's.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// dialBuffered dials like gomemcache does and wraps the connection.
func dialBuffered(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: nc, r: bufio.NewReaderSize(nc, memcacheReadBuffer)}, nil
}
