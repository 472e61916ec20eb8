package main

import (
	"errors"
	"io"
	"math/bits"
	"net"
	"os"
	"sort"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// Histogram geometry: latencies in microseconds from 1 µs to 60 s. The
// overall histogram keeps 3 significant digits (0.1% resolution); the
// per-Cache-Status ones keep 2 (1%), which is plenty for their p50/p99 and
// keeps them small (about 20 KB each, one per worker and distinct value).
const (
	histMin       = 1
	histMax       = 60_000_000
	histDigits    = 3
	kindHistDigit = 2
	// maxKinds bounds the distinct Cache-Status values a worker tracks,
	// and a report lists; further values are counted under otherHitKind
	// or otherKind, by whether they are hits.
	maxKinds = 32
	// maxOverflowMemo bounds the values past maxKinds whose verdict (hit
	// or not) a worker remembers, so that they are parsed once, not on
	// every answer; memoLen bounds the length of a value remembered.
	maxOverflowMemo = 1024
	memoLen         = 256
)

// The Cache-Status rows under which the values beyond maxKinds are
// counted: the hits, and the others.
const (
	otherHitKind = "(other hits)"
	otherKind    = "(other values)"
)

// Error kinds, in report order.
const (
	errRefused = iota // the target refused the connection
	errTimeout        // no complete answer (body included) within -timeout
	errClosed         // the connection closed or reset before an answer
	errOther          // anything else
	numErrKinds
)

// errKindNames are the report and JSON names of the error kinds.
var errKindNames = [numErrKinds]string{"connect_refused", "timeout", "connection_closed", "other"}

// classifyError maps a client error to one of the error kinds.
func classifyError(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errRefused
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, errStaleConn), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return errClosed
	}
	return errOther
}

// Visitor kinds: which cookie, if any, a request carried.
const (
	visitorNone = iota
	visitorIdentified
	visitorAnon
	numVisitorKinds
)

// A kindStat counts the responses that carried one Cache-Status value,
// or, for an overflow row, several (value is then otherHitKind or
// otherKind).
type kindStat struct {
	value    string
	overflow bool
	count    uint64
	hist     *hdrhistogram.Histogram
}

// A second holds what happened during one second of the measured window,
// by completion time.
type second struct {
	Responses uint64
	Errors    uint64
	LatSum    int64 // µs, for the mean
	LatMax    int64 // µs
}

// live holds the counters the progress line reads while the run goes on.
// Each worker owns one and is its only writer; the padding keeps workers
// off each other's cache lines.
type live struct {
	done atomic.Uint64 // requests finished, answered or not (warm-up included)
	errs atomic.Uint64 // requests that got no answer
	_    [48]byte
}

// A recorder accumulates one worker's measurements. It is not safe for
// concurrent use: each worker owns one, and the recorders are merged once
// the workers have stopped.
type recorder struct {
	start time.Time // the measured window's start, for the timeline

	hist      *hdrhistogram.Histogram // all answered requests, µs
	status    [600]uint64             // by status code
	badStatus uint64                  // status codes outside 0..599
	errs      [numErrKinds]uint64
	errSample [numErrKinds]string // the first error message of each kind

	kinds    []kindStat     // by Cache-Status value, in order of first sight
	kindIdx  map[string]int // value → index into kinds, for the tracked values
	overIdx  map[string]int // value past maxKinds → index of its overflow row
	otherIdx [2]int         // index of the overflow rows (non-hits, hits), or -1
	last     int            // index of the previous response's value, or -1

	visitors [numVisitorKinds]uint64
	keysUsed [numVisitorKinds][]uint64 // bit sets over the cookie lists

	timeline []second
	lastDone time.Time // the last measured completion

	live live
}

// newRecorder returns a recorder whose timeline starts at start.
// nIdentified and nAnon size the bit sets of cookie keys used.
func newRecorder(start time.Time, nIdentified, nAnon int) *recorder {
	r := &recorder{
		start:    start,
		hist:     hdrhistogram.New(histMin, histMax, histDigits),
		kindIdx:  make(map[string]int),
		otherIdx: [2]int{-1, -1},
		last:     -1,
	}
	r.keysUsed[visitorIdentified] = make([]uint64, (nIdentified+63)/64)
	r.keysUsed[visitorAnon] = make([]uint64, (nAnon+63)/64)
	return r
}

// clampMicros converts d to whole microseconds within the histogram's range.
func clampMicros(d time.Duration) int64 {
	us := d.Microseconds()
	if us < histMin {
		return histMin
	}
	if us > histMax {
		return histMax
	}
	return us
}

// recordResponse records one answered request: its latency, status code
// and Cache-Status value (nil or empty when absent). done is when the
// answer arrived. It does not allocate once the value has been seen
// before by this worker.
func (r *recorder) recordResponse(latency time.Duration, done time.Time, status int, cacheStatus []byte) {
	us := clampMicros(latency)
	r.hist.RecordValue(us) //nolint:errcheck // clamped into range
	if uint(status) < uint(len(r.status)) {
		r.status[status]++
	} else {
		r.badStatus++
	}

	k := r.kind(cacheStatus)
	ks := &r.kinds[k]
	ks.count++
	ks.hist.RecordValue(us) //nolint:errcheck // clamped into range

	sec := r.slot(done)
	sec.Responses++
	sec.LatSum += us
	sec.LatMax = max(sec.LatMax, us)
	r.lastDone = done
}

// recordError records one request that got no answer.
func (r *recorder) recordError(err error, done time.Time) {
	k := classifyError(err)
	r.errs[k]++
	if r.errSample[k] == "" {
		r.errSample[k] = err.Error()
	}
	r.slot(done).Errors++
	r.lastDone = done
}

// recordVisitor records which cookie a measured request carried: kind is
// a visitor kind, key the index of the cookie in its list.
func (r *recorder) recordVisitor(kind, key int) {
	r.visitors[kind]++
	if kind != visitorNone {
		r.keysUsed[kind][key/64] |= 1 << (key % 64)
	}
}

// kind returns the index of v's entry in r.kinds, adding it on first sight.
func (r *recorder) kind(v []byte) int {
	if r.last >= 0 && r.kinds[r.last].value == string(v) {
		return r.last
	}
	i, ok := r.kindIdx[string(v)] // no allocation: the compiler avoids the copy
	if !ok {
		i, ok = r.overIdx[string(v)]
	}
	if !ok {
		i = r.addKind(string(v))
	}
	r.last = i
	return i
}

// addKind adds a kindStat for value v while fewer than maxKinds values
// are tracked. Past that, v counts under an overflow row, otherHitKind or
// otherKind by whether it is a hit, so that the hit ratio stays right when
// a value changes from answer to answer (RFC 9211's ttl parameter does).
func (r *recorder) addKind(v string) int {
	if len(r.kindIdx) < maxKinds {
		r.kinds = append(r.kinds, kindStat{value: v, hist: hdrhistogram.New(histMin, histMax, kindHistDigit)})
		r.kindIdx[v] = len(r.kinds) - 1
		return len(r.kinds) - 1
	}
	hit := 0
	if classifyCacheStatus(v).Hit {
		hit = 1
	}
	i := r.otherIdx[hit]
	if i < 0 {
		label := [2]string{otherKind, otherHitKind}[hit]
		r.kinds = append(r.kinds, kindStat{value: label, overflow: true, hist: hdrhistogram.New(histMin, histMax, kindHistDigit)})
		i = len(r.kinds) - 1
		r.otherIdx[hit] = i
	}
	if len(v) <= memoLen {
		if r.overIdx == nil || len(r.overIdx) >= maxOverflowMemo {
			r.overIdx = make(map[string]int) // start afresh: values drift
		}
		r.overIdx[v] = i
	}
	return i
}

// slot returns the timeline entry for the second in which t falls.
func (r *recorder) slot(t time.Time) *second {
	i := int(t.Sub(r.start) / time.Second)
	if i < 0 {
		i = 0
	}
	for len(r.timeline) <= i {
		r.timeline = append(r.timeline, second{})
	}
	return &r.timeline[i]
}

// A kindResult is the merged count and latency of one Cache-Status value,
// or of an overflow row.
type kindResult struct {
	Value string
	cacheClass
	Count    uint64
	Hist     *hdrhistogram.Histogram
	overflow bool
}

// newKindResult returns an empty kindResult for value v, classified.
func newKindResult(v string, overflow bool) kindResult {
	k := kindResult{Value: v, overflow: overflow, Hist: hdrhistogram.New(histMin, histMax, kindHistDigit)}
	switch {
	case !overflow:
		k.cacheClass = classifyCacheStatus(v)
	case v == otherHitKind:
		k.cacheClass = cacheClass{Class: "hit", Hit: true}
	default:
		k.cacheClass = cacheClass{Class: "other"}
	}
	return k
}

// add counts count answers, with latencies h, in k.
func (k *kindResult) add(count uint64, h *hdrhistogram.Histogram) {
	k.Count += count
	k.Hist.Merge(h)
}

// foldRare returns kinds, sorted by count, with the values past the
// maxKinds most frequent counted under the overflow rows: each worker
// tracks maxKinds values of its own, and together they may have seen
// many more.
func foldRare(kinds []kindResult) []kindResult {
	byCount := func(ks []kindResult) {
		sort.SliceStable(ks, func(i, j int) bool { return ks[i].Count > ks[j].Count })
	}
	byCount(kinds)
	var out []kindResult
	var other [2]*kindResult // non-hits, hits
	for _, k := range kinds {
		if !k.overflow && len(out) < maxKinds {
			out = append(out, k)
			continue
		}
		hit := 0
		if k.Hit {
			hit = 1
		}
		if other[hit] == nil {
			o := newKindResult([2]string{otherKind, otherHitKind}[hit], true)
			other[hit] = &o
		}
		other[hit].add(k.Count, k.Hist)
	}
	for _, o := range other {
		if o != nil {
			out = append(out, *o)
		}
	}
	byCount(out)
	return out
}

// merged is the sum of every worker's recorder.
type merged struct {
	hist      *hdrhistogram.Histogram
	status    map[int]uint64
	badStatus uint64
	errs      [numErrKinds]uint64
	errSample [numErrKinds]string
	kinds     []kindResult // by count, largest first
	visitors  [numVisitorKinds]uint64
	keysUsed  [numVisitorKinds]int
	timeline  []second
	lastDone  time.Time
}

// mergeRecorders adds up the recorders. Call it only after every worker
// has stopped.
func mergeRecorders(rs []*recorder) *merged {
	m := &merged{hist: hdrhistogram.New(histMin, histMax, histDigits), status: map[int]uint64{}}
	type kindKey struct {
		value    string
		overflow bool
	}
	byValue := map[kindKey]int{}
	var used [numVisitorKinds][]uint64
	for _, r := range rs {
		m.hist.Merge(r.hist)
		for code, n := range r.status {
			if n > 0 {
				m.status[code] += n
			}
		}
		m.badStatus += r.badStatus
		for k := range numErrKinds {
			m.errs[k] += r.errs[k]
			if m.errSample[k] == "" {
				m.errSample[k] = r.errSample[k]
			}
		}
		for _, ks := range r.kinds {
			key := kindKey{ks.value, ks.overflow}
			i, ok := byValue[key]
			if !ok {
				i = len(m.kinds)
				byValue[key] = i
				m.kinds = append(m.kinds, newKindResult(ks.value, ks.overflow))
			}
			m.kinds[i].add(ks.count, ks.hist)
		}
		for k := range numVisitorKinds {
			m.visitors[k] += r.visitors[k]
			if used[k] == nil {
				used[k] = make([]uint64, len(r.keysUsed[k]))
			}
			for i, w := range r.keysUsed[k] {
				used[k][i] |= w
			}
		}
		for len(m.timeline) < len(r.timeline) {
			m.timeline = append(m.timeline, second{})
		}
		for i, s := range r.timeline {
			t := &m.timeline[i]
			t.Responses += s.Responses
			t.Errors += s.Errors
			t.LatSum += s.LatSum
			t.LatMax = max(t.LatMax, s.LatMax)
		}
		if r.lastDone.After(m.lastDone) {
			m.lastDone = r.lastDone
		}
	}
	for k := range numVisitorKinds {
		for _, w := range used[k] {
			m.keysUsed[k] += bits.OnesCount64(w)
		}
	}
	m.kinds = foldRare(m.kinds)
	return m
}
