package router

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// maxRefusedHosts bounds the distinct Host values whose first refusal is
// logged: a client sending a new Host with every request writes at most
// this many lines, then one a second through the rate-limited log.
const maxRefusedHosts = 256

// refusedHosts logs the first refusal of each Host outside cache.hosts
// (fwd=bypass; detail=host), so that a hosts list that does not match what
// the proxy sends says why nothing is cached, without a line per request.
// The refusals themselves are counted in userrouter_bypass_total{reason="host"}.
// refusedHosts is safe for concurrent use.
type refusedHosts struct {
	seen sync.Map // string → struct{}
	n    atomic.Int32
}

// refuseHost logs the refusal of the request's Host (raw, as received;
// malformed when valid is false) once for this host.
func (q *request) refuseHost(raw []byte, valid bool) {
	r := q.r
	host := truncate(raw, 255)
	if _, seen := r.refused.seen.Load(host); seen {
		return
	}
	msg := "Host not in cache.hosts: its requests are forwarded, never cached"
	if !valid {
		msg = "malformed Host: its requests are forwarded, never cached"
	}
	if r.refused.n.Load() >= maxRefusedHosts {
		// Past the hosts remembered (random Hosts, say): a rate-limited
		// line, built without the hint and the hosts' list.
		r.log.Log(slog.LevelWarn, "host", msg, slog.String("host", host))
		return
	}
	attrs := []slog.Attr{slog.String("host", host)}
	if valid {
		if hint := hostHint(strings.ToLower(host), r.cache.hosts); hint != "" {
			attrs = append(attrs, slog.String("hint", hint))
		}
	}
	if len(r.cache.hosts) > 0 {
		attrs = append(attrs, slog.String("cache.hosts", strings.Join(sortedKeys(r.cache.hosts, 8), ",")))
	}
	if _, seen := r.refused.seen.LoadOrStore(host, struct{}{}); seen {
		return
	}
	r.refused.n.Add(1)
	r.log.log.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}

// hostHint explains a refused host that cache.hosts lists with another
// port, or without one.
func hostHint(host string, hosts map[string]bool) string {
	name, _, err := net.SplitHostPort(host)
	if err == nil && hosts[name] {
		return "cache.hosts lists " + name + " without the port; list " + host + " too if clients reach userrouter with it (nginx's $host never has a port)"
	}
	if err != nil {
		name = host
	}
	for h := range hosts {
		if n, _, err := net.SplitHostPort(h); err == nil && n == name {
			return "cache.hosts lists " + h + " with a port, but the Host received is " + host + ": nginx's $host has no port, list " + name
		}
	}
	return ""
}

// sortedKeys returns at most n of m's keys, sorted, and "..." when there
// are more.
func sortedKeys(m map[string]bool, n int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) > n {
		keys = append(keys[:n], "...")
	}
	return keys
}
