package main

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A faultMode is what a faultProxy does to the traffic it carries.
type faultMode int32

const (
	// faultPass forwards both ways.
	faultPass faultMode = iota
	// faultRefuse closes the listener and every connection: connects are
	// refused, as by a host whose service is down.
	faultRefuse
	// faultBlackhole accepts connections and never answers; existing
	// connections stall (nothing more is forwarded either way), as on a
	// host that is hung or a network path that drops packets.
	faultBlackhole
	// faultCut forwards requests but cuts every connection in the middle
	// of the next chunk the target sends: half of it reaches the client,
	// then both sides are closed.
	faultCut
	// faultSlow forwards both ways but holds every chunk the target sends
	// for faultSlowDelay first, as a saturated database does.
	faultSlow
)

// faultSlowDelay is what faultSlow adds to each answer: the issue's
// "+300 ms".
const faultSlowDelay = 300 * time.Millisecond

func (m faultMode) String() string {
	return [...]string{"pass", "refuse", "blackhole", "cut", "slow"}[m]
}

// faultProxy is a TCP proxy on a fixed loopback address in front of one
// target, switchable at run time between the faultModes. Leaving a fault
// for faultPass closes the connections the fault left behind (stalled
// ones in particular), so clients start afresh as after a real outage.
// faultProxy is safe for concurrent use.
type faultProxy struct {
	name, target, addr string

	mode atomic.Int32

	mu     sync.Mutex
	ln     net.Listener // nil while refusing
	conns  map[*proxyConn]struct{}
	closed bool
	wg     sync.WaitGroup

	accepted atomic.Int64 // connections accepted, in any mode
}

// proxyConn is one client connection and, unless blackholed at accept,
// its connection to the target.
type proxyConn struct {
	client, server net.Conn
	once           sync.Once
	dead           chan struct{} // closed by kill
}

func (c *proxyConn) kill() {
	c.once.Do(func() {
		close(c.dead)
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	})
}

// newFaultProxy starts a proxy to target in faultPass mode; it is closed
// when the test ends.
func newFaultProxy(t *testing.T, name, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{name: name, target: target, addr: ln.Addr().String(), ln: ln, conns: map[*proxyConn]struct{}{}}
	p.wg.Add(1)
	go p.accept(ln)
	t.Cleanup(p.Close)
	return p
}

// Mode returns the proxy's current mode.
func (p *faultProxy) Mode() faultMode { return faultMode(p.mode.Load()) }

// Set switches the proxy to m.
func (p *faultProxy) Set(m faultMode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("faultproxy: closed")
	}
	old := faultMode(p.mode.Swap(int32(m)))
	if old == m {
		return nil
	}
	if m == faultRefuse || old != faultPass {
		// Refusing drops everything; leaving a fault drops what it
		// stalled or half cut.
		for c := range p.conns {
			c.kill()
			delete(p.conns, c)
		}
	}
	switch {
	case m == faultRefuse:
		p.ln.Close()
		p.ln = nil
	case p.ln == nil:
		// Listen again on the same port: Go sets SO_REUSEADDR, so the
		// connections closed above in TIME_WAIT do not stand in the way.
		var ln net.Listener
		var err error
		for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
			if ln, err = net.Listen("tcp", p.addr); err == nil {
				break
			}
			if time.Since(start) > 2*time.Second {
				return fmt.Errorf("faultproxy %s: listen again on %s: %w", p.name, p.addr, err)
			}
		}
		p.ln = ln
		p.wg.Add(1)
		go p.accept(ln)
	}
	return nil
}

// Close stops the proxy and closes every connection.
func (p *faultProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	if p.ln != nil {
		p.ln.Close()
	}
	for c := range p.conns {
		c.kill()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *faultProxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed: refusing, or the proxy is done
		}
		p.accepted.Add(1)
		p.serve(c)
	}
}

// serve takes one accepted connection.
func (p *faultProxy) serve(client net.Conn) {
	pc := &proxyConn{client: client, dead: make(chan struct{})}
	if p.Mode() == faultBlackhole {
		// Accepted, never read, never answered: held until the fault ends.
		if !p.track(pc) {
			pc.kill()
		}
		return
	}
	server, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		client.Close()
		return
	}
	pc.server = server
	if !p.track(pc) {
		pc.kill()
		return
	}
	p.wg.Add(2)
	go p.pipe(pc, server, client, true)
	go p.pipe(pc, client, server, false)
}

// track registers a connection; false when the mode changed meanwhile in
// a way that drops it (or the proxy closed).
func (p *faultProxy) track(pc *proxyConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.Mode() == faultRefuse {
		return false
	}
	p.conns[pc] = struct{}{}
	return true
}

func (p *faultProxy) untrack(pc *proxyConn) {
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
}

// pipe copies src to dst; fromTarget says the direction. In faultBlackhole
// it stops forwarding and waits for the connection's end; in faultCut,
// from the target, it forwards half a chunk and cuts.
func (p *faultProxy) pipe(pc *proxyConn, src, dst net.Conn, fromTarget bool) {
	defer p.wg.Done()
	defer p.untrack(pc)
	defer pc.kill()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			switch p.Mode() {
			case faultBlackhole:
				<-pc.dead // stalled: what was read is dropped
				return
			case faultCut:
				if fromTarget {
					dst.Write(buf[:n/2])
					return
				}
			case faultSlow:
				if fromTarget {
					select {
					case <-time.After(faultSlowDelay):
					case <-pc.dead:
						return
					}
				}
			case faultRefuse:
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or error: the whole connection ends
		}
	}
}
