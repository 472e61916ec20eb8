package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// userAgent is sent unless -H sets another.
const userAgent = "userrouter-bench"

// A runSpec is one load run: what to request, how hard and for how long.
type runSpec struct {
	label     string   // under -compare, -names' name of the run ("A" or "B" by default), else ""
	urls      []string // absolute URLs, in popularity order for -zipf
	targets   []target
	endpoints []endpoint // the schemes and hosts of targets
	conns     int
	rate      float64 // 0: closed loop
	duration  time.Duration
	requests  int64
	warmup    time.Duration
	timeout   time.Duration
	method    string
	headers   []header
	zipf      float64
	pid       int  // -pid: the target process, whose RSS and CPU time are read; 0: none
	netpoll   bool // -netpoll: one goroutine per connection even where the event loop would do

	// tokens are API tokens, connection i sending the i-th (round robin)
	// in tokenHeader, whose value has "{token}" for it.
	tokens      []string
	tokenHeader header

	cookieName   string
	identified   []string // identified cookie values
	anon         []string // anonymous-session cookie values
	pIdentified  float64  // share of requests with an identified cookie
	pAnonSession float64  // share with an anonymous-session cookie
}

// schedule is the state the workers of one run share. Only tickets and
// stopped are written during the run, and only atomically.
type schedule struct {
	start        time.Time // warm-up starts
	measureStart time.Time // the measured window starts
	end          time.Time // no request starts at or after end, but see late
	// late bounds the open loop's late tickets: one due before end but
	// taken only after it (every connection was busy) is still sent until
	// late, its latency counted from its due time, so that a target that
	// keeps up but for a hiccup near the end is not short of requests.
	late  time.Time
	limit int64 // measured requests to send; 0: no count bound

	// Open loop: ticket i is due at start + offset(i); tickets below w0
	// fall in the warm-up; there are nTotal tickets due before end.
	interval float64 // ns between tickets
	w0       int64
	nTotal   int64

	tickets atomic.Int64 // tickets handed out (closed loop: measured requests started)
	stopped atomic.Bool
	stop    chan struct{} // closed on interruption
}

// offset returns when open-loop ticket i is due, after start.
func (s *schedule) offset(i int64) time.Duration {
	return time.Duration(float64(i) * s.interval)
}

// firstTicketAt returns the first ticket due at or after d.
func (s *schedule) firstTicketAt(d time.Duration) int64 {
	i := int64(math.Ceil(float64(d) / s.interval))
	for i > 0 && s.offset(i-1) >= d {
		i--
	}
	for s.offset(i) < d {
		i++
	}
	return i
}

// A runResult is the outcome of one run.
type runResult struct {
	spec        *runSpec
	elapsed     time.Duration // the measured window, until the last answer
	requests    uint64        // measured requests sent
	responses   uint64        // of which answered (any status)
	errors      uint64        // of which unanswered
	scheduled   uint64        // open loop: requests due in the measured window
	interrupted bool
	limitMissed bool // -requests was not reached before -duration ran out
	cost        runCost
	*merged
}

// rps returns answered requests per second over the measured window.
func (r *runResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.responses) / r.elapsed.Seconds()
}

// unsustained reports whether an open-loop run sent noticeably fewer
// requests than its schedule held: the target (or -c) could not keep up.
func (r *runResult) unsustained() bool {
	return r.spec.rate > 0 && !r.interrupted && float64(r.requests) < 0.97*float64(r.scheduled)
}

// mode names the run's loop.
func (s *runSpec) mode() string {
	if s.rate > 0 {
		return "open"
	}
	return "closed"
}

// execute runs spec's load and returns the merged measurements. Progress
// lines go to progress when it is not nil. It returns early, with what was
// measured so far, when ctx is done. Every request is bounded by
// spec.timeout, so execute returns at the latest timeout after the
// measured window ends.
func execute(ctx context.Context, spec *runSpec, progress io.Writer) *runResult {
	s := &schedule{limit: spec.requests, stop: make(chan struct{})}
	workers := make([]*worker, spec.conns)
	for i := range workers {
		workers[i] = newWorker(i, spec, s)
	}

	// The clock starts once the workers are ready.
	now := time.Now()
	s.start, s.measureStart = now, now.Add(spec.warmup)
	s.end = s.measureStart.Add(spec.duration)
	if spec.duration == 0 {
		s.end = time.Unix(1<<62, 0) // bounded by -requests alone
	}
	s.late = s.end.Add(lateGrace(spec))
	for _, w := range workers {
		w.rec.start = s.measureStart
	}
	if spec.rate > 0 {
		s.interval = 1e9 / spec.rate
		s.w0 = s.firstTicketAt(spec.warmup)
		s.nTotal = math.MaxInt64
		if spec.duration > 0 {
			s.nTotal = s.firstTicketAt(spec.warmup + spec.duration)
		}
		if s.limit > 0 {
			s.nTotal = min(s.nTotal, s.w0+s.limit)
		}
	}

	// An interruption that came before (under -compare, during the
	// previous run) stops the workers before their first request;
	// AfterFunc would run too late to.
	s.stopped.Store(ctx.Err() != nil)
	stopWatch := context.AfterFunc(ctx, func() {
		s.stopped.Store(true)
		close(s.stop)
	})
	defer stopWatch()

	var watch *procWatch
	if spec.pid > 0 {
		watch = watchProc(spec.pid)
	}
	cpu0 := selfCPU()
	var wg sync.WaitGroup
	afterLoops, evloop := startEventLoops(spec, s, workers, &wg)
	if evloop {
		defer afterLoops()
	} else {
		for _, w := range workers {
			if spec.rate > 0 {
				wg.Go(w.openLoop)
			} else {
				wg.Go(w.closedLoop)
			}
		}
	}
	if progress != nil {
		done := make(chan struct{})
		var pw sync.WaitGroup
		pw.Go(func() { showProgress(progress, s, workers, done) })
		wg.Wait()
		close(done)
		pw.Wait()
	} else {
		wg.Wait()
	}

	cpu, wallEnd := selfCPU()-cpu0, time.Now()
	recs := make([]*recorder, len(workers))
	var finished uint64
	for i, w := range workers {
		recs[i] = w.rec
		finished += w.rec.live.done.Load()
		w.closeConns() // the next run starts from cold connections, as this one did
	}
	r := &runResult{spec: spec, merged: mergeRecorders(recs), interrupted: s.stopped.Load()}
	r.cost = newRunCost(spec, cpu, wallEnd.Sub(s.start), finished)
	if watch != nil {
		r.cost.target = watch.finish()
	}
	for _, n := range r.visitors {
		r.requests += n
	}
	for _, n := range r.errs {
		r.errors += n
	}
	r.responses = r.requests - r.errors
	// The measured window ends with the last answer; a run that went the
	// whole -duration (not cut short by -requests or an interruption)
	// lasted at least that long even if its last answer came early, as
	// it does in a slow open loop.
	end := r.lastDone
	limitReached := spec.requests > 0 && int64(r.requests) >= spec.requests
	switch {
	case r.interrupted:
		end = latest(end, time.Now())
	case spec.duration > 0 && !limitReached:
		end = latest(end, s.end)
	}
	if end.After(s.measureStart) {
		r.elapsed = end.Sub(s.measureStart)
	}
	if spec.rate > 0 {
		r.scheduled = uint64(max(0, s.nTotal-s.w0))
		if spec.duration == 0 {
			r.scheduled = uint64(s.limit)
		}
	}
	r.limitMissed = spec.requests > 0 && int64(r.requests) < spec.requests && !r.interrupted
	return r
}

// A worker is one connection's worth of load: it owns its connections
// (one per endpoint), request buffer, random source and recorder, and
// shares only the schedule.
type worker struct {
	spec  *runSpec
	s     *schedule
	rec   *recorder
	conns []*conn // by endpoint
	req   []byte  // the request being sent, when it carries a cookie
	// tokenLine, when set, is the -tokens header line this worker's
	// requests carry (its connection's token), added into tok.
	tokenLine, tok []byte
	rng            *rand.Rand
	zipf           *rand.Zipf
	timer          *time.Timer
	fl             *flight // the request in flight, under the event loop
}

func newWorker(id int, spec *runSpec, s *schedule) *worker {
	w := &worker{
		spec: spec,
		s:    s,
		rec:  newRecorder(time.Time{}, len(spec.identified), len(spec.anon)), // execute sets the start
		rng:  rand.New(rand.NewSource(time.Now().UnixNano() + int64(id)*7919)),
	}
	if spec.zipf > 1 && len(spec.targets) > 1 {
		w.zipf = rand.NewZipf(w.rng, spec.zipf, 1, uint64(len(spec.targets)-1))
	}
	head := spec.method == "HEAD"
	for _, ep := range spec.endpoints {
		w.conns = append(w.conns, newConn(ep, spec.timeout, head))
	}
	if len(spec.tokens) > 0 {
		h := spec.tokenHeader
		w.tokenLine = []byte(h.name + ": " + strings.Replace(h.value, "{token}", spec.tokens[id%len(spec.tokens)], 1) + "\r\n")
	}
	return w
}

// closeConns closes the worker's connections.
func (w *worker) closeConns() {
	for _, c := range w.conns {
		c.close()
	}
}

// closedLoop sends requests back to back until the run ends.
func (w *worker) closedLoop() {
	s := w.s
	// Each request starts the moment the previous answer was taken in,
	// so that answer's time stamp serves as the next start: one clock
	// read per request, not two.
	now := time.Now()
	for !s.stopped.Load() {
		if !now.Before(s.end) {
			return
		}
		measured := !now.Before(s.measureStart)
		if measured && s.limit > 0 && s.tickets.Add(1) > s.limit {
			return
		}
		now = w.do(now, now, measured)
	}
}

// openLoop takes the next ticket of the schedule, waits for its due time
// and sends it. When every worker is busy (waiting for the target) a
// ticket is taken late, and its latency counts from its due time: the
// correction for coordinated omission.
func (w *worker) openLoop() {
	s := w.s
	for !s.stopped.Load() {
		i := s.tickets.Add(1) - 1
		if i >= s.nTotal {
			return
		}
		due := s.start.Add(s.offset(i))
		from, now := due, time.Now()
		if d := due.Sub(now); d > 0 {
			if !w.sleep(d) {
				return
			}
			// The worker was idle, waiting for the schedule: any delay
			// past due is the timer's (Go's wake-ups can be up to a
			// millisecond late on an idle machine), not the target's, so
			// the latency counts from the actual send.
			now = time.Now()
			from = now
		} else if !now.Before(s.late) {
			return // too late: the run ends on time; the ticket counts as not sent
		}
		w.do(from, now, i >= s.w0)
	}
}

// lateGrace is how long after the end of an open-loop run the tickets due
// before it are still sent: 1% of -duration, at least 100ms, at most
// -timeout.
func lateGrace(spec *runSpec) time.Duration {
	return min(spec.timeout, max(100*time.Millisecond, spec.duration/100))
}

// sleep waits for d, or returns false when the run is interrupted first.
func (w *worker) sleep(d time.Duration) bool {
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	select {
	case <-w.timer.C:
		return true
	case <-w.s.stop:
		w.timer.Stop()
		return false
	}
}

// do sends one request and, when measured, records it with its latency
// counted from intended. now is the time, read just before. It returns
// when the answer (or error) came.
func (w *worker) do(intended, now time.Time, measured bool) (done time.Time) {
	c, req, visitor, key := w.next()
	a, err := c.exchange(req, now)
	done = time.Now()
	w.record(intended, done, measured, visitor, key, a, err)
	return done
}

// next picks the next request: the connection it goes on, its bytes, and
// the visitor kind and cookie index to record.
func (w *worker) next() (c *conn, req []byte, visitor, key int) {
	t, req, visitor, key := w.pick()
	if w.tokenLine != nil {
		// Before the blank line that ends the head: copied, never
		// allocated once tok has grown to the longest request.
		w.tok = append(append(append(w.tok[:0], req[:len(req)-2]...), w.tokenLine...), "\r\n"...)
		req = w.tok
	}
	return w.conns[t.ep], req, visitor, key
}

// record counts a finished request, and, when measured, records its
// answer a (or its error) with the latency from intended to done.
func (w *worker) record(intended, done time.Time, measured bool, visitor, key int, a answer, err error) {
	w.rec.live.done.Add(1)
	if err != nil {
		w.rec.live.errs.Add(1)
	}
	if !measured {
		return
	}
	w.rec.recordVisitor(visitor, key)
	if err != nil {
		w.rec.recordError(err, done)
		return
	}
	w.rec.recordResponse(done.Sub(intended), done, a.status, a.cacheStatus)
}

// pick chooses the next target and visitor and returns the request to
// send: the target's own bytes, or, with a session cookie, the worker's
// buffer holding them with the cookie (copied, never allocated, once the
// buffer has grown to the longest request).
func (w *worker) pick() (t *target, req []byte, visitor, key int) {
	i := 0
	if n := len(w.spec.targets); n > 1 {
		if w.zipf != nil {
			i = int(w.zipf.Uint64())
		} else {
			i = w.rng.Intn(n)
		}
	}
	t = &w.spec.targets[i]

	visitor = visitorNone
	if w.spec.pIdentified > 0 || w.spec.pAnonSession > 0 {
		switch x := w.rng.Float64(); {
		case x < w.spec.pIdentified:
			visitor, key = visitorIdentified, w.rng.Intn(len(w.spec.identified))
			w.req = t.withCookie(w.req[:0], w.spec.cookieName, w.spec.identified[key])
			return t, w.req, visitor, key
		case x < w.spec.pIdentified+w.spec.pAnonSession:
			visitor, key = visitorAnon, w.rng.Intn(len(w.spec.anon))
			w.req = t.withCookie(w.req[:0], w.spec.cookieName, w.spec.anon[key])
			return t, w.req, visitor, key
		}
	}
	return t, t.req, visitor, key
}

// preflight sends one request to each endpoint of spec, so that an
// unreachable target fails at once with a clear message instead of a run
// full of errors. Any HTTP answer, whatever its status, will do.
func preflight(spec *runSpec) error {
	seen := make([]bool, len(spec.endpoints))
	for _, t := range spec.targets {
		if seen[t.ep] {
			continue
		}
		seen[t.ep] = true
		c := newConn(spec.endpoints[t.ep], spec.timeout, spec.method == "HEAD")
		_, err := c.exchange(t.req, time.Now())
		c.close()
		if err != nil {
			return fmt.Errorf("cannot reach %s: %s", t.uri, explainError(err, spec.timeout))
		}
	}
	return nil
}

// explainError says what a client error means and what to do about it.
func explainError(err error, timeout time.Duration) string {
	switch classifyError(err) {
	case errRefused:
		return "connection refused: nothing listens there; start the target or fix the URL"
	case errTimeout:
		return fmt.Sprintf("no complete answer within -timeout %v; check the address, or raise -timeout if the target is just slow", timeout)
	case errClosed:
		return "the connection closed before an answer (" + err.Error() + "); is it an HTTP server, and is the scheme (http/https) right?"
	}
	if errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return err.Error() + "; check the address"
	}
	return err.Error()
}

// latest returns the later of a and b.
func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
