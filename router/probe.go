package router

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// ProbeOptions configures the health probe of every backend, as Varnish's
// probes: every Interval a GET of Path (with Host, when set) that must
// answer 2xx or 3xx within Timeout; a backend is healthy while at least
// Threshold of the last Window probes passed. A sick backend gets no
// request; while every backend is sick, requests fail at once with
// ErrBackendsSick (503 with Retry-After; anonymous visitors get a stale
// page where stale-if-error allows).
type ProbeOptions struct {
	Path              string
	Host              string
	Interval, Timeout time.Duration
	Window, Threshold int
	// OnChange, when set, is told each time a backend turns sick (err is
	// the last probe's failure) or healthy (err nil); OnAllSick each time
	// every backend turns sick (true) or one comes back (false).
	OnChange  func(addr string, err error)
	OnAllSick func(bool)
}

// Probe defaults, as Varnish's.
const (
	DefaultProbeInterval  = 5 * time.Second
	DefaultProbeTimeout   = 2 * time.Second
	DefaultProbeWindow    = 8
	DefaultProbeThreshold = 3
)

// ErrBackendsSick: every backend failed its health probes; nothing was
// sent.
var ErrBackendsSick = errors.New("router: every backend is sick (failing its health probe)")

// probeState is a backend's probe history: the last Window results as
// bits (1 passed), most recent lowest.
type probeState struct {
	sick    atomic.Bool
	mu      sync.Mutex
	history uint64
	lastErr error
}

// StartProbes starts probing every backend; Close stops it. A backend is
// healthy until its probes say otherwise.
func (b *Backends) StartProbes(o ProbeOptions) {
	if o.Path == "" {
		return
	}
	if o.Interval <= 0 {
		o.Interval = DefaultProbeInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbeTimeout
	}
	o.Window = min(max(o.Window, 1), 64)
	o.Threshold = min(max(o.Threshold, 1), o.Window)
	b.probing = true
	b.stop = make(chan struct{})
	for _, be := range b.list {
		be.probe = &probeState{history: 1<<o.Window - 1}
		b.wg.Add(1)
		go b.probeLoop(be, o)
	}
}

// Close stops the probes.
func (b *Backends) Close() error {
	if b.stop != nil {
		close(b.stop)
		b.wg.Wait()
		b.stop = nil
	}
	return nil
}

func (b *Backends) probeLoop(be *backend, o ProbeOptions) {
	defer b.wg.Done()
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		req.Reset()
		req.Header.SetMethod(fasthttp.MethodGet)
		req.SetRequestURI(o.Path)
		req.Header.SetHost(o.Host)
		if o.Host == "" {
			req.Header.SetHost(be.addr)
		}
		req.Header.SetUserAgent("userrouter (health probe)")
		resp.Reset()
		err := be.probeHC.DoTimeout(req, resp, o.Timeout)
		if err == nil && (resp.StatusCode() < 200 || resp.StatusCode() > 399) {
			err = fmt.Errorf("probe %s answered %d", o.Path, resp.StatusCode())
		}
		b.record(be, o, err)
	}
}

// record adds a probe's result to be's history and reports changes.
func (b *Backends) record(be *backend, o ProbeOptions, err error) {
	p := be.probe
	p.mu.Lock()
	p.history = p.history << 1 & (1<<o.Window - 1)
	if err == nil {
		p.history |= 1
	}
	p.lastErr = err
	sick := bits.OnesCount64(p.history) < o.Threshold
	changed := p.sick.Swap(sick) != sick
	p.mu.Unlock()
	if !changed {
		return
	}
	if o.OnChange != nil {
		o.OnChange(be.addr, err)
	}
	all := b.allSick()
	if b.wasAllSick.Swap(all) != all && o.OnAllSick != nil {
		o.OnAllSick(all)
	}
}

// sick reports whether be failed its probes.
func (be *backend) sick() bool { return be.probe != nil && be.probe.sick.Load() }

// probeError is the last probe's failure of a sick backend, or nil.
func (be *backend) probeError() error {
	if !be.sick() {
		return nil
	}
	be.probe.mu.Lock()
	defer be.probe.mu.Unlock()
	if be.probe.lastErr == nil {
		return errors.New("failing its health probe")
	}
	return be.probe.lastErr
}

// allSick reports whether every backend failed its probes.
func (b *Backends) allSick() bool {
	if !b.probing {
		return false
	}
	for _, be := range b.list {
		if !be.sick() {
			return false
		}
	}
	return true
}
