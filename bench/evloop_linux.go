//go:build linux

package main

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// The event loop runs the closed loop the way wrk does: one loop per
// -procs, each a goroutine locked to its thread, owning non-blocking
// sockets and waiting on them with epoll_wait. The answers one
// epoll_wait reports are read first, and the next requests of their
// connections written after them, together, as wrk's do when it asks for
// writability: the target gets its requests in bursts and handles
// several per wake-up, instead of one wake-up per request (measured on
// nginx: fewer context switches on both sides and less CPU per request,
// docs/bench.md). A request costs one write and (for an answer that
// fits the buffer) one read, without a goroutine parked and woken for
// it, and without Go's netpoller's read that first finds nothing. The
// parser is conn's (advance), fed by read(2).
//
// It serves closed-loop runs over plain HTTP; the open loop (-rate),
// HTTPS, and -netpoll use one goroutine per connection (worker.closedLoop
// and worker.openLoop) instead.

// epollBatch is how many events one epoll_wait returns at most.
const epollBatch = 256

// errTimedOut is a request that ran past -timeout under the event loop;
// classifyError counts it as a timeout.
var errTimedOut = os.ErrDeadlineExceeded

// An evloop is one event loop and the workers it runs. It is used by one
// goroutine, locked to its thread.
type evloop struct {
	spec    *runSpec
	s       *schedule
	epfd    int
	addrs   []syscall.Sockaddr // by endpoint
	conns   []evconn           // by the index epoll reports
	workers []*worker
	active  int // workers not done
	events  []syscall.EpollEvent
	// batching: the events of one epoll_wait are being handled; the
	// requests they start wait in pending, and are written after them.
	batching bool
	pending  []*worker
}

// An evconn is one of a loop's connections and the worker it belongs to.
type evconn struct {
	w  *worker
	c  *conn
	ep int // c's endpoint, an index of spec.endpoints and evloop.addrs
}

// A flight is a worker's request in flight under the event loop.
type flight struct {
	c          *conn
	id         int32 // c's index in evloop.conns
	req        []byte
	sent       int // bytes of req written
	intended   time.Time
	measured   bool
	visitor    int
	key        int
	retried    bool // sent again on a new connection after a stale one
	connecting bool // waiting for a non-blocking connect
	wantOut    bool // EPOLLOUT is asked for: connecting, or req not all written
	done       bool // the worker has sent its last request
}

// startEventLoops starts, in wg, the event loops that run spec's workers,
// and returns a function to call once wg is done. It returns false when
// the run goes through goroutines instead (see newEventLoops).
//
// GOMAXPROCS is raised, for the run, by the number of loops: each loop
// keeps its processor, through its waits too (see run), and the others
// remain for the rest of the process (the progress line, -pid's
// sampling, the collector; in tests, the servers measured). The loops
// are -procs, as wrk's threads are -t.
func startEventLoops(spec *runSpec, s *schedule, workers []*worker, wg *sync.WaitGroup) (after func(), ok bool) {
	loops := newEventLoops(spec, s, workers)
	if loops == nil {
		return nil, false
	}
	procs := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(len(loops) + procs)
	for _, l := range loops {
		wg.Go(l.run)
	}
	return func() { runtime.GOMAXPROCS(procs) }, true
}

// newEventLoops returns the event loops that run spec's workers, one per
// GOMAXPROCS at most, or nil when the run goes through goroutines
// instead: -netpoll, the open loop, HTTPS, or an address the loop cannot
// dial.
func newEventLoops(spec *runSpec, s *schedule, workers []*worker) []*evloop {
	if spec.netpoll || spec.rate > 0 || len(workers) == 0 {
		return nil
	}
	if _, ok := sockaddrs(spec); !ok {
		return nil
	}
	n := min(runtime.GOMAXPROCS(0), len(workers))
	loops := make([]*evloop, n)
	for i := range loops {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			for _, l := range loops[:i] {
				syscall.Close(l.epfd)
			}
			return nil
		}
		addrs, _ := sockaddrs(spec) // each loop its own: Connect writes into them
		loops[i] = &evloop{spec: spec, s: s, epfd: epfd, addrs: addrs, events: make([]syscall.EpollEvent, epollBatch)}
	}
	for i, w := range workers {
		l := loops[i%n]
		for ep, c := range w.conns {
			c.evid = int32(len(l.conns))
			l.conns = append(l.conns, evconn{w: w, c: c, ep: ep})
		}
		l.workers = append(l.workers, w)
		l.active++
	}
	return loops
}

// closeEpoll closes the loop's epoll descriptor.
func (l *evloop) closeEpoll() { syscall.Close(l.epfd) }

// sockaddrs returns the addresses of spec's endpoints, or false when the
// event loop cannot dial one: HTTPS, a name that does not resolve, an
// IPv6 zone.
func sockaddrs(spec *runSpec) ([]syscall.Sockaddr, bool) {
	addrs := make([]syscall.Sockaddr, len(spec.endpoints))
	for i, ep := range spec.endpoints {
		if ep.tls != nil {
			return nil, false
		}
		ta, err := net.ResolveTCPAddr("tcp", ep.addr)
		if err != nil || ta.Zone != "" {
			return nil, false
		}
		if ip4 := ta.IP.To4(); ip4 != nil {
			sa := &syscall.SockaddrInet4{Port: ta.Port}
			copy(sa.Addr[:], ip4)
			addrs[i] = sa
		} else {
			sa := &syscall.SockaddrInet6{Port: ta.Port}
			copy(sa.Addr[:], ta.IP.To16())
			addrs[i] = sa
		}
	}
	return addrs, true
}

// run runs the loop's workers until each has sent its last request and
// had its answer (or error), then closes the epoll descriptor. Each
// worker's connections are closed when it retires.
func (l *evloop) run() {
	defer l.closeEpoll()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	now := time.Now()
	for _, w := range l.workers {
		if w.fl == nil {
			w.fl = &flight{}
		}
		l.start(w, now)
	}
	// Deadlines are checked every scanEvery, which bounds how late a
	// timed-out request is noticed.
	scanEvery := min(10*time.Millisecond, max(time.Millisecond, l.spec.timeout/100))
	nextScan := now.Add(scanEvery)
	for l.active > 0 {
		// The wait is a system call the scheduler is not told of: the
		// loop keeps its thread and processor through it, as wrk's
		// threads do, where a wait the scheduler knows of would hand the
		// processor over and wake a thread to take it back (measured:
		// more context switches, and less throughput from the target).
		// It lasts scanEvery at most; sysmon's preemption signal, every
		// 10 ms of a goroutine that never yields, ends it early (EINTR),
		// and the goroutine is then preempted at its next call, so a
		// garbage collection waits for the loop no longer than that.
		n, err := epollWait(l.epfd, l.events, int(scanEvery/time.Millisecond))
		if err != nil && err != syscall.EINTR {
			l.failAll(err)
			return
		}
		l.batching = true
		for _, ev := range l.events[:max(n, 0)] {
			l.ready(&l.conns[ev.Fd], ev.Events)
		}
		l.batching = false
		if len(l.pending) > 0 {
			l.flush(time.Now())
		}
		if now = time.Now(); !now.Before(nextScan) {
			l.expire(now)
			nextScan = now.Add(scanEvery)
		}
	}
}

// start begins w's next request at now, or retires w when the run is
// over for it, as worker.closedLoop does.
func (l *evloop) start(w *worker, now time.Time) {
	s, f := l.s, w.fl
	measured := !now.Before(s.measureStart)
	if s.stopped.Load() || !now.Before(s.end) || (measured && s.limit > 0 && s.tickets.Add(1) > s.limit) {
		f.done, f.c = true, nil
		l.active--
		w.closeConns() // an idle connection the server closes would wake the loop for nothing
		return
	}
	c, req, visitor, key := w.next()
	*f = flight{c: c, req: req, intended: now, measured: measured, visitor: visitor, key: key}
	f.id = c.evid
	c.deadline = now.Add(c.timeout)
	if l.batching {
		l.pending = append(l.pending, w)
		return
	}
	l.send(w)
}

// flush writes the requests started while a batch of events was handled,
// each timed from now, when it goes out.
func (l *evloop) flush(now time.Time) {
	for i, w := range l.pending {
		l.pending[i] = nil
		if f := w.fl; !f.done {
			f.intended, f.c.deadline = now, now.Add(f.c.timeout)
			l.send(w)
		}
	}
	l.pending = l.pending[:0]
}

// send writes what is left of w's request, dialling first when the
// connection is closed.
func (l *evloop) send(w *worker) {
	f := w.fl
	c := f.c
	if c.fd < 0 {
		if err := l.dial(f); err != nil {
			l.fail(w, err)
			return
		}
		if f.connecting {
			return
		}
	}
	if f.sent == 0 {
		c.begin()
	}
	for f.sent < len(f.req) {
		n, err := rawWrite(c.fd, f.req[f.sent:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			l.interest(f, true)
			return
		}
		if err != nil {
			l.lost(w, err)
			return
		}
		f.sent += n
	}
	l.interest(f, false)
}

// dial opens f's connection without blocking: connected, or connecting
// with f.connecting set.
func (l *evloop) dial(f *flight) error {
	c := f.c
	sa := l.addrs[l.conns[f.id].ep]
	family := syscall.AF_INET
	if _, ok := sa.(*syscall.SockaddrInet6); ok {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1) // as Go's net package does
	err = syscall.Connect(fd, sa)
	if err != nil && err != syscall.EINPROGRESS && err != syscall.EINTR {
		syscall.Close(fd)
		return os.NewSyscallError("connect", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: f.id}
	f.connecting, f.wantOut = err != nil, err != nil
	if f.wantOut {
		ev.Events |= syscall.EPOLLOUT
	}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		return os.NewSyscallError("epoll_ctl", err)
	}
	c.fd, c.reused, c.r, c.w = fd, false, 0, 0
	return nil
}

// interest asks epoll for writability of f's connection, or stops asking.
func (l *evloop) interest(f *flight, out bool) {
	if f.wantOut == out {
		return
	}
	f.wantOut = out
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: f.id}
	if out {
		ev.Events |= syscall.EPOLLOUT
	}
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, f.c.fd, &ev)
}

// ready handles the events epoll reported for one connection.
func (l *evloop) ready(ec *evconn, events uint32) {
	w, c := ec.w, ec.c
	f := w.fl
	if f.done || f.c != c {
		// Not the connection of the request in flight: the server closed
		// an idle one (or said something unasked). Close it; the next
		// request on it redials.
		c.close()
		return
	}
	if f.connecting {
		if events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		f.connecting = false
		if errno, err := syscall.GetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || errno != 0 {
			if err == nil {
				err = syscall.Errno(errno)
			}
			l.fail(w, os.NewSyscallError("connect", err))
			return
		}
		l.send(w)
		return
	}
	if f.sent < len(f.req) {
		if events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
			l.send(w)
		}
		return
	}
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
		l.read(w)
	}
}

// read reads once from the connection of w's request, parses what came
// and, when the answer is complete, records it and starts the next
// request.
func (l *evloop) read(w *worker) {
	c := w.fl.c
	if err := c.room(); err != nil {
		l.fail(w, err)
		return
	}
	n, err := rawRead(c.fd, c.buf[c.w:])
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	done := false
	if n > 0 {
		c.w += n
		c.got = true
		if done, err = c.advance(); err != nil {
			l.fail(w, err)
			return
		}
	} else {
		if err == nil {
			err = io.EOF
		}
		if done, err = c.ended(err); err != nil {
			l.lost(w, err)
			return
		}
	}
	if done {
		a := c.ans
		err = c.finish()
		c.reused = true
		if err != nil {
			c.close()
		}
		l.finish(w, a, err)
	}
}

// lost handles a connection that failed while sending or before the
// answer: a keep-alive connection the server had closed while idle is
// redialled once, as conn.exchange does.
func (l *evloop) lost(w *worker, err error) {
	f := w.fl
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		err = errStaleConn
		if f.c.got {
			err = syscall.ECONNRESET
		}
	}
	if errors.Is(err, errStaleConn) && f.c.reused && !f.retried {
		f.c.close()
		f.retried, f.sent = true, 0
		l.send(w)
		return
	}
	l.fail(w, err)
}

// fail ends w's request with err and closes its connection.
func (l *evloop) fail(w *worker, err error) {
	w.fl.c.close()
	l.finish(w, answer{}, err)
}

// finish records w's request and starts the next.
func (l *evloop) finish(w *worker, a answer, err error) {
	f := w.fl
	done := time.Now()
	w.record(f.intended, done, f.measured, f.visitor, f.key, a, err)
	l.start(w, done)
}

// expire fails the requests in flight past their deadline.
func (l *evloop) expire(now time.Time) {
	for i := range l.conns {
		ec := &l.conns[i]
		if f := ec.w.fl; !f.done && f.c == ec.c && now.After(ec.c.deadline) {
			l.fail(ec.w, errTimedOut)
		}
	}
}

// failAll ends every request in flight with err, and the loop with them.
func (l *evloop) failAll(err error) {
	for i := range l.conns {
		ec := &l.conns[i]
		if f := ec.w.fl; !f.done && f.c == ec.c {
			f.c.close()
			f.done = true
			ec.w.record(f.intended, time.Now(), f.measured, f.visitor, f.key, answer{}, err)
		}
	}
	l.active = 0
}

// closeFD closes the event loop's socket of c, if any; closing it also
// takes it out of its epoll set.
func (c *conn) closeFD() {
	if c.fd >= 0 {
		syscall.Close(c.fd)
		c.fd = -1
	}
}

// rawRead, rawWrite and epollWait make system calls without telling Go's
// scheduler (syscall.RawSyscall): through syscall.Read and the like each
// call enters and leaves the scheduler's syscall state, and a call that
// lasts has its processor handed over. Reads and writes never block (the
// sockets are non-blocking); epollWait blocks msec at most, on a thread
// the loop has to itself (see evloop.run). p must not be empty.
func rawRead(fd int, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func epollWait(epfd int, events []syscall.EpollEvent, msec int) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
