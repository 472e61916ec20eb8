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

	"github.com/valyala/fasthttp"
)

// cacheStatusKey is the response header bench breaks down, in fasthttp's
// canonical form (PeekCanonical needs no normalizing copy).
var cacheStatusKey = []byte("Cache-Status")

// userAgent is sent unless -H sets another.
const userAgent = "userrouter-bench"

// A runSpec is one load run: what to request, how hard and for how long.
type runSpec struct {
	label    string   // "A" or "B" under -compare, else ""
	urls     []string // absolute URLs, in popularity order for -zipf
	pool     *clientPool
	targets  []target
	conns    int
	rate     float64 // 0: closed loop
	duration time.Duration
	requests int64
	warmup   time.Duration
	timeout  time.Duration
	method   string
	headers  []header
	zipf     float64

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
	end          time.Time // no request starts at or after end
	limit        int64     // measured requests to send; 0: no count bound

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

	var wg sync.WaitGroup
	for _, w := range workers {
		if spec.rate > 0 {
			wg.Go(w.openLoop)
		} else {
			wg.Go(w.closedLoop)
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

	recs := make([]*recorder, len(workers))
	for i, w := range workers {
		recs[i] = w.rec
	}
	r := &runResult{spec: spec, merged: mergeRecorders(recs), interrupted: s.stopped.Load()}
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

// A worker is one connection's worth of load: it owns its request,
// response, random source and recorder, and shares only the schedule.
type worker struct {
	spec *runSpec
	s    *schedule
	rec  *recorder
	req  fasthttp.Request
	resp fasthttp.Response
	rng  *rand.Rand
	zipf *rand.Zipf
	last int // the target req holds, or -1

	lastVisitor, lastKey int // the cookie req holds
	timer                *time.Timer
}

func newWorker(id int, spec *runSpec, s *schedule) *worker {
	w := &worker{
		spec:        spec,
		s:           s,
		rec:         newRecorder(time.Time{}, len(spec.identified), len(spec.anon)), // execute sets the start
		rng:         rand.New(rand.NewSource(time.Now().UnixNano() + int64(id)*7919)),
		last:        -1,
		lastVisitor: visitorNone,
	}
	if spec.zipf > 1 && len(spec.targets) > 1 {
		w.zipf = rand.NewZipf(w.rng, spec.zipf, 1, uint64(len(spec.targets)-1))
	}
	prepareRequest(&w.req, spec)
	if len(spec.tokens) > 0 {
		h := spec.tokenHeader
		w.req.Header.Set(h.name, strings.Replace(h.value, "{token}", spec.tokens[id%len(spec.tokens)], 1))
	}
	return w
}

// prepareRequest sets the parts of req that every request of spec shares:
// method, user agent and the -H headers.
func prepareRequest(req *fasthttp.Request, spec *runSpec) {
	req.Header.SetMethod(spec.method)
	req.Header.SetUserAgent(userAgent)
	for _, h := range spec.headers {
		if strings.EqualFold(h.name, "Host") {
			req.Header.SetHost(h.value)
			req.UseHostHeader = true
			continue
		}
		req.Header.Set(h.name, h.value)
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
		now = w.do(now, measured)
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
		from := due
		if d := time.Until(due); d > 0 {
			if !w.sleep(d) {
				return
			}
			// The worker was idle, waiting for the schedule: any delay
			// past due is the timer's (Go's wake-ups can be up to a
			// millisecond late on an idle machine), not the target's, so
			// the latency counts from the actual send.
			from = time.Now()
		} else if !time.Now().Before(s.end) {
			return // too late: the run ends on time; the ticket counts as not sent
		}
		w.do(from, i >= s.w0)
	}
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
// counted from intended. It returns when the answer (or error) came.
func (w *worker) do(intended time.Time, measured bool) (done time.Time) {
	t, visitor, key := w.pick()
	err := exchange(t.client, &w.req, &w.resp, w.spec.timeout)
	done = time.Now()
	w.rec.live.done.Add(1)
	if err != nil {
		w.rec.live.errs.Add(1)
	}
	if !measured {
		return done
	}
	w.rec.recordVisitor(visitor, key)
	if err != nil {
		w.rec.recordError(err, done)
		return done
	}
	w.rec.recordResponse(done.Sub(intended), done, w.resp.StatusCode(), w.resp.Header.PeekCanonical(cacheStatusKey))
	return done
}

// pick chooses the next target and visitor and sets up w.req for them. It
// touches the request only where it differs from the previous one.
func (w *worker) pick() (t *target, visitor, key int) {
	i := 0
	if n := len(w.spec.targets); n > 1 {
		if w.zipf != nil {
			i = int(w.zipf.Uint64())
		} else {
			i = w.rng.Intn(n)
		}
	}
	t = &w.spec.targets[i]
	if i != w.last {
		w.req.SetRequestURI(t.uri)
		w.last = i
	}

	visitor = visitorNone
	if w.spec.pIdentified > 0 || w.spec.pAnonSession > 0 {
		switch x := w.rng.Float64(); {
		case x < w.spec.pIdentified:
			visitor, key = visitorIdentified, w.rng.Intn(len(w.spec.identified))
		case x < w.spec.pIdentified+w.spec.pAnonSession:
			visitor, key = visitorAnon, w.rng.Intn(len(w.spec.anon))
		}
	}
	if visitor != w.lastVisitor || key != w.lastKey {
		switch visitor {
		case visitorNone:
			w.req.Header.DelCookie(w.spec.cookieName)
		case visitorIdentified:
			w.req.Header.SetCookie(w.spec.cookieName, w.spec.identified[key])
		case visitorAnon:
			w.req.Header.SetCookie(w.spec.cookieName, w.spec.anon[key])
		}
		w.lastVisitor, w.lastKey = visitor, key
	}
	return t, visitor, key
}

// preflight sends one request to each host of spec, so that an unreachable
// target fails at once with a clear message instead of a run full of
// errors. Any HTTP answer, whatever its status, will do.
func preflight(spec *runSpec) error {
	seen := map[*fasthttp.HostClient]bool{}
	for _, t := range spec.targets {
		if seen[t.client] {
			continue
		}
		seen[t.client] = true
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		prepareRequest(req, spec)
		req.SetRequestURI(t.uri)
		err := exchange(t.client, req, resp, spec.timeout)
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
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
