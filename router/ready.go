package router

import (
	"context"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// A Readiness is what /readyz reports: every dependency checked.
type Readiness struct {
	// Status is "ok", "degraded" (a store is failing: pages come from the
	// backends, visitors with sessions are forwarded) or "down" (no
	// backend can be reached: nothing can be served).
	Status string                `json:"status"`
	Checks map[string]CheckState `json:"checks"`
}

// CheckState is one dependency's state.
type CheckState struct {
	OK        bool    `json:"ok"`
	Error     string  `json:"error,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
}

// Ready checks the backends (a connection to each, or its health probe's
// verdict), the page store and the session store, concurrently, each
// within timeout.
func (r *Router) Ready(ctx context.Context, timeout time.Duration) Readiness {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	checks := map[string]func(context.Context) error{}
	for _, be := range r.backends.list {
		checks["backend "+be.addr] = be.check
	}
	if r.cache != nil {
		// A store that cannot be pinged (in memory) is always up.
		checks["page store"] = func(context.Context) error { return nil }
		if p, ok := r.cache.Store.(pagecache.Pinger); ok {
			checks["page store"] = p.Ping
		}
	}
	if p, ok := r.sessions.(sessioncheck.Pinger); ok {
		checks["session store"] = p.Ping
	}
	res := Readiness{Status: "ok", Checks: map[string]CheckState{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range checks {
		wg.Go(func() {
			start := time.Now()
			err := check(ctx)
			st := CheckState{OK: err == nil, LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
			if err != nil {
				st.Error = err.Error()
			}
			mu.Lock()
			res.Checks[name] = st
			mu.Unlock()
		})
	}
	wg.Wait()
	backendUp := false
	for name, st := range res.Checks {
		switch {
		case st.OK && strings.HasPrefix(name, "backend "):
			backendUp = true
		case !st.OK:
			res.Status = "degraded"
		}
	}
	if !backendUp {
		res.Status = "down"
	}
	return res
}

// check opens a connection to the backend and closes it.
func (b *backend) check(ctx context.Context) error {
	if b.probe != nil {
		return b.probeError() // the HTTP probe knows more than a connection
	}
	d := net.Dialer{Timeout: b.dialer.connect}
	c, err := d.DialContext(ctx, b.dialer.network, b.dialer.address)
	if err != nil {
		return err
	}
	return c.Close()
}
