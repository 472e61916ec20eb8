package router

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// BackendOptions configures a Backends pool. A zero timeout is no limit
// (no wait for a free connection, for ConnectTimeout); zero IdleTimeout
// and MaxConns are fasthttp's defaults (10s, 512); a zero FailTimeout
// never skips a backend.
type BackendOptions struct {
	// Addrs are "host:port" or "unix:/path" addresses (see SplitAddr).
	Addrs          []string
	ConnectTimeout time.Duration // dialing, and waiting for a free connection
	ReadTimeout    time.Duration // between two reads, first byte included
	WriteTimeout   time.Duration // between two writes
	IdleTimeout    time.Duration // a pooled connection unused this long is closed
	FailTimeout    time.Duration // a backend refusing connections is skipped this long
	MaxConns       int           // per backend
	MaxHeaderSize  int           // bounds a response's status line and headers
}

// Backends spreads requests round robin over the application servers and
// skips, for FailTimeout, a server that refused a connection.
// Backends is safe for concurrent use.
type Backends struct {
	list        []*backend
	next        atomic.Uint32
	failTimeout time.Duration

	// Health probes (see StartProbes).
	probing    bool
	stop       chan struct{}
	wg         sync.WaitGroup
	wasAllSick atomic.Bool
}

type backend struct {
	addr      string
	hc        *fasthttp.HostClient
	probeHC   *fasthttp.HostClient // health probes: fasthttp's transport, which honors DoTimeout
	dialer    *dialer
	downUntil atomic.Int64 // unix nanoseconds; 0 when healthy
	probe     *probeState  // nil without health probes
}

// ioBufferSize is the buffer each connection reads and writes through:
// large enough that a typical page (head and body) takes one system call.
const ioBufferSize = 32 << 10

// A DialError says a backend could not be connected to: no byte of the
// request was sent, so another backend may be tried with any method.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return fmt.Sprintf("connect to backend %s: %v", e.Addr, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

// NewBackends builds the pool; it does not connect yet.
func NewBackends(o BackendOptions) (*Backends, error) {
	if len(o.Addrs) == 0 {
		return nil, errors.New("router: no backend addresses")
	}
	b := &Backends{failTimeout: o.FailTimeout}
	for _, a := range o.Addrs {
		network, address, err := SplitAddr(a)
		if err != nil {
			return nil, fmt.Errorf("router: backend %w", err)
		}
		d := &dialer{network: network, address: address, label: a, connect: o.ConnectTimeout, read: o.ReadTimeout, write: o.WriteTimeout}
		hc := &fasthttp.HostClient{
			Addr:                          a,
			Dial:                          d.dial,
			MaxConns:                      o.MaxConns,
			MaxConnWaitTimeout:            o.ConnectTimeout,
			MaxIdleConnDuration:           o.IdleTimeout,
			ReadBufferSize:                max(o.MaxHeaderSize, ioBufferSize),
			WriteBufferSize:               ioBufferSize,
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: false,
			DisablePathNormalizing:        true,
			StreamResponseBody:            true,
			RetryIfErr:                    retryIfErr,
			Transport:                     relayTransport{},
		}
		probeHC := &fasthttp.HostClient{
			Addr:                     a,
			Dial:                     d.dial,
			MaxConns:                 1,
			MaxIdleConnDuration:      o.IdleTimeout,
			MaxResponseBodySize:      64 << 10,
			NoDefaultUserAgentHeader: true,
			DisablePathNormalizing:   true,
		}
		b.list = append(b.list, &backend{addr: a, hc: hc, probeHC: probeHC, dialer: d})
	}
	return b, nil
}

// Do sends req to a backend and reads the response head into resp; the body
// is left as resp's body stream, which the caller must close (releasing
// resp does). A backend that cannot be connected to is marked failed and
// the next one is tried, for any method, since nothing was sent. Requests
// already written are retried on the same backend only when idempotent and
// the connection closed before the response began (see retryIfErr).
func (b *Backends) Do(req *fasthttp.Request, resp *fasthttp.Response) error {
	if b.allSick() {
		return ErrBackendsSick // fast: no read timeout to wait for
	}
	n := uint32(len(b.list))
	start := b.next.Add(1)
	now := time.Now().UnixNano()
	var err error
	// Healthy backends first; when all are marked failed, try them anyway,
	// so that one backend coming back is found at once.
	for _, wantDown := range [2]bool{false, true} {
		for i := range n {
			be := b.list[(start+i)%n]
			if down := be.downUntil.Load() > now || be.sick(); down != wantDown {
				continue
			}
			err = be.hc.Do(req, resp)
			if err == nil {
				if wantDown {
					be.downUntil.Store(0)
				}
				return nil
			}
			var de *DialError // declared here: on the heap, it costs an allocation
			if !errors.As(err, &de) {
				return err
			}
			be.downUntil.Store(time.Now().Add(b.failTimeout).UnixNano())
		}
	}
	return err
}

// allDown reports whether every backend is marked failed: none could be
// connected to within FailTimeout.
func (b *Backends) allDown() bool {
	now := time.Now().UnixNano()
	for _, be := range b.list {
		if be.downUntil.Load() <= now {
			return false
		}
	}
	return true
}

// retryIfErr allows a retry only when it is safe and useful: an idempotent
// method, no streamed body (fasthttp checks that too), and a connection
// that failed before any response byte came back — typically a pooled
// keep-alive connection the backend had just closed. A timeout is never
// retried: the backend may still be working on the first attempt.
func retryIfErr(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if !idempotent(req.Header.Method()) || isTimeout(err) {
		return false, false
	}
	return false, errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func idempotent(method []byte) bool {
	switch string(method) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodOptions,
		fasthttp.MethodTrace, fasthttp.MethodPut, fasthttp.MethodDelete:
		return true
	}
	return false
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// dialer connects to one backend. Its connections time out between two
// reads or two writes, like nginx's proxy_read_timeout and
// proxy_send_timeout, rather than over a whole response: a large download
// keeps flowing while bytes keep coming.
type dialer struct {
	network, address, label string
	connect, read, write    time.Duration
}

func (d *dialer) dial(string) (net.Conn, error) {
	c, err := net.DialTimeout(d.network, d.address, d.connect)
	if err != nil {
		return nil, &DialError{Addr: d.label, Err: err}
	}
	return &deadlineConn{Conn: c, read: d.read, write: d.write}, nil
}

// deadlineConn renews its deadline before each Read and Write. A deadline
// set by its user (fasthttp) still applies when it is earlier.
type deadlineConn struct {
	net.Conn
	read, write           time.Duration
	readHard, writeHard   time.Time
	readUntil, writeUntil time.Time

	// done gives this connection and a reader over it back to doneFor,
	// the HostClient that holds it as doneCC (its *fasthttp.clientConn),
	// or closes it (relayTransport's held.release). It is made by the
	// connection's first request and kept: a function per request would
	// be an allocation per forward.
	done    func(br *bufio.Reader, reuse bool)
	doneFor *fasthttp.HostClient
	doneCC  any
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.read > 0 {
		if err := c.renew(&c.readUntil, c.readHard, c.read, c.Conn.SetReadDeadline); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.write > 0 {
		if err := c.renew(&c.writeUntil, c.writeHard, c.write, c.Conn.SetWriteDeadline); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// renew moves the deadline to now+d (or the hard deadline, if earlier). It
// skips the runtime call while the current deadline is still at least 15/16
// of d away, so a stream of small reads costs one time.Now each.
func (c *deadlineConn) renew(until *time.Time, hard time.Time, d time.Duration, set func(time.Time) error) error {
	now := time.Now()
	if !until.IsZero() && until.Sub(now) > d-d/16 {
		return nil
	}
	t := now.Add(d)
	if !hard.IsZero() && hard.Before(t) {
		t = hard
	}
	*until = t
	return set(t)
}

// SetReadDeadline sets a hard read deadline; the zero time removes it.
// HostClient clears both deadlines before every request: when there is
// no hard deadline to remove, that changes nothing here, and the renewed
// deadline stays armed rather than costing a runtime timer update per
// request to clear and one to set again.
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() && c.readHard.IsZero() {
		return nil
	}
	c.readHard, c.readUntil = t, time.Time{}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline is SetReadDeadline's counterpart for writes.
func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() && c.writeHard.IsZero() {
		return nil
	}
	c.writeHard, c.writeUntil = t, time.Time{}
	return c.Conn.SetWriteDeadline(t)
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.readHard, c.readUntil, c.writeHard, c.writeUntil = t, time.Time{}, t, time.Time{}
	return c.Conn.SetDeadline(t)
}
