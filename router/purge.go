package router

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
)

// PurgeRequest is what POST /purge takes on the admin listener.
type PurgeRequest struct {
	// URLs are absolute ("https://example.com/a?b=1"), or paths when
	// exactly one host is cached.
	URLs []string `json:"urls"`
	// Keys are surrogate keys (tags).
	Keys []string `json:"keys"`
	// All makes every page unreachable at once.
	All bool `json:"all"`
	// Soft makes pages stale instead of gone: served while one request
	// refreshes them. Not for All.
	Soft bool `json:"soft"`
}

// PurgeResult says what a purge did.
type PurgeResult struct {
	URLs  int    `json:"urls"`
	Keys  int    `json:"keys"`
	All   bool   `json:"all"`
	Soft  bool   `json:"soft"`
	Error string `json:"error,omitempty"`
}

// maxPurgeItems bounds the URLs and keys of one purge request.
const maxPurgeItems = 10000

// A purgeError is a purge request that is wrong (400), as opposed to a
// store that failed (503).
type purgeError struct{ msg string }

func (e *purgeError) Error() string { return e.msg }

func badPurge(format string, args ...any) error { return &purgeError{fmt.Sprintf(format, args...)} }

// Purge carries out a purge. Each URL goes through the same key building
// as requests, so it purges exactly what a visitor of it would be served.
// A purge is one or two memcached operations per URL or key, whatever the
// number of pages, and every instance sharing the store honors it at the
// next request (within cache.tag_cache_ttl, when that is set).
func (r *Router) Purge(req *PurgeRequest) (PurgeResult, error) {
	res := PurgeResult{Soft: req.Soft}
	c := r.cache
	switch {
	case c == nil:
		return res, badPurge("the cache is off (cache.store = \"none\"): nothing to purge")
	case req.All && req.Soft:
		return res, badPurge("purge all cannot be soft: it replaces the namespace every key includes")
	case len(req.URLs)+len(req.Keys) > maxPurgeItems:
		return res, badPurge("%d URLs and keys in one request; at most %d", len(req.URLs)+len(req.Keys), maxPurgeItems)
	case !c.pages.KeepsTags() && (req.All || len(req.Keys) > 0):
		return res, badPurge("format \"raw\" keeps no tags or namespace: only URLs can be purged")
	}
	inputs := make([]pagecache.KeyInput, 0, len(req.URLs))
	for _, u := range req.URLs {
		in, err := r.purgeInput(u)
		if err != nil {
			return res, err
		}
		inputs = append(inputs, in)
	}
	for _, k := range req.Keys {
		if tags, err := pagecache.ParseTags(nil, []byte(k)); err != nil || len(tags) != 1 || tags[0] != k {
			return res, badPurge("key %.60q is not a surrogate key (printable ASCII, no spaces or commas, at most %d bytes)", k, pagecache.MaxTagLength)
		}
	}
	for i := range inputs {
		if err := r.purgeURL(&inputs[i], req.Soft); err != nil {
			return res, err
		}
		res.URLs++
		r.stats.Purges[purgeURL].Add(1)
	}
	for _, k := range req.Keys {
		if err := c.pages.PurgeKey(k, req.Soft); err != nil {
			return res, err
		}
		res.Keys++
		r.stats.Purges[purgeKey].Add(1)
	}
	if req.All {
		if err := c.pages.PurgeAll(); err != nil {
			return res, err
		}
		res.All = true
		r.stats.Purges[purgeAll].Add(1)
	}
	if req.Soft {
		r.stats.Purges[purgeSoft].Add(uint64(res.URLs + res.Keys))
	}
	return res, nil
}

// purgeURL purges one URL (under both schemes when the key has {scheme}).
func (r *Router) purgeURL(in *pagecache.KeyInput, soft bool) error {
	err := r.cache.pages.PurgeURL(in, soft)
	if errors.Is(err, pagecache.ErrUnkeyable) {
		return badPurge("the URL has more than 64 query parameters: it is never cached")
	}
	return err
}

// purgeInput turns a purge URL into what a key is built from.
func (r *Router) purgeInput(u string) (pagecache.KeyInput, error) {
	var in pagecache.KeyInput
	host, uri := "", u
	if rest, ok := strings.CutPrefix(u, "http://"); ok {
		host, uri = splitHost(rest)
	} else if rest, ok := strings.CutPrefix(u, "https://"); ok {
		host, uri = splitHost(rest)
	} else if strings.HasPrefix(u, "/") {
		if len(r.cache.hosts) != 1 {
			return in, badPurge("URL %.80q has no host: write it in full (https://host/path), since %s", u, hostsPhrase(len(r.cache.hosts)))
		}
		for h := range r.cache.hosts {
			host = h
		}
	} else {
		return in, badPurge("URL %.80q is neither http(s)://host/path nor /path", u)
	}
	lh, ok := lowerHost(nil, []byte(host))
	if !ok {
		return in, badPurge("URL %.80q has no valid host", u)
	}
	in.Host = lh
	in.Path, in.Query = pagecache.SplitURI([]byte(uri))
	return in, nil
}

func hostsPhrase(n int) string {
	if n == 0 {
		return "every host is cached"
	}
	return "several hosts are cached"
}

func splitHost(s string) (host, uri string) {
	if i := strings.IndexAny(s, "/?"); i >= 0 {
		return s[:i], s[i:]
	}
	return s, "/"
}

// purgeMethod answers PURGE /path on the main listener, the nginx
// cache_purge convention: the Host header names the site, "Soft-Purge: 1"
// makes it soft. Its outcome goes in the access log line (rec).
func (r *Router) purgeMethod(ctx *fasthttp.RequestCtx, rec *accessRecord) {
	who, ok := r.purgeAllowed(ctx, r.clientIP(ctx))
	if !ok {
		rec.cache = "purge; refused"
		return
	}
	soft := bytes.Equal(ctx.Request.Header.Peek("Soft-Purge"), []byte("1"))
	u := "http://" + string(ctx.Request.Header.Host()) + string(ctx.Request.Header.RequestURI())
	req := PurgeRequest{URLs: []string{u}, Soft: soft}
	res, err := r.Purge(&req)
	rec.cache = r.purgeAnswer(ctx, "PURGE", who, &req, res, err)
}

// ServePurgeAPI answers POST /purge on the admin listener.
func (r *Router) ServePurgeAPI(ctx *fasthttp.RequestCtx) {
	peer, _ := peerAddr(ctx.RemoteAddr())
	who, ok := r.purgeAllowed(ctx, peer)
	if !ok {
		return
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		jsonAnswer(ctx, fasthttp.StatusMethodNotAllowed, PurgeResult{Error: "POST a JSON body: {\"urls\": [], \"keys\": [], \"all\": false, \"soft\": false}"})
		return
	}
	var req PurgeRequest
	dec := json.NewDecoder(bytes.NewReader(ctx.PostBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		jsonAnswer(ctx, fasthttp.StatusBadRequest, PurgeResult{Error: "the body is not a purge request: " + err.Error() + "; send {\"urls\": [], \"keys\": [], \"all\": false, \"soft\": false}"})
		return
	}
	if dec.More() {
		jsonAnswer(ctx, fasthttp.StatusBadRequest, PurgeResult{Error: "the body holds more than one JSON object"})
		return
	}
	res, err := r.Purge(&req)
	r.purgeAnswer(ctx, "admin", who, &req, res, err)
}

// purgeAnswer answers a purge and logs it: through what (via: "PURGE" on
// the main listener, "admin" for the API), from whom, what was asked and
// how many were purged. It returns the outcome for the access log.
func (r *Router) purgeAnswer(ctx *fasthttp.RequestCtx, via string, who purgeClient, req *PurgeRequest, res PurgeResult, err error) string {
	attrs := []slog.Attr{slog.String("via", via), slog.String("client", who.ip.String()), slog.String("allow", who.allow.String()),
		slog.String("token", who.token), slog.Int("urls", res.URLs), slog.Int("keys", res.Keys), slog.Bool("all", res.All),
		slog.Bool("soft", req.Soft), slog.String("what", purgeWhat(req))}
	var pe *purgeError
	switch {
	case errors.As(err, &pe):
		res.Error = pe.msg
		r.log.Log(slog.LevelWarn, "purge-bad", "purge refused: bad request", append(attrs, slog.String("error", pe.msg))...)
		jsonAnswer(ctx, fasthttp.StatusBadRequest, res)
		return "purge; bad-request"
	case err != nil:
		res.Error = "the store failed; what is counted was purged: " + err.Error()
		r.log.Log(slog.LevelError, "purge", "purge failed", append(attrs, slog.String("error", err.Error()))...)
		jsonAnswer(ctx, fasthttp.StatusServiceUnavailable, res)
		return "purge; store-error"
	}
	r.log.log.LogAttrs(context.Background(), slog.LevelInfo, "purged", attrs...)
	jsonAnswer(ctx, fasthttp.StatusOK, res)
	out := "purge; urls=" + strconv.Itoa(res.URLs) + "; keys=" + strconv.Itoa(res.Keys)
	if res.All {
		out += "; all"
	}
	if res.Soft {
		out += "; soft"
	}
	return out
}

// purgeWhat lists what a purge asked for, bounded for a log line: the
// first URLs and keys, each at most 200 bytes, and how many more.
func purgeWhat(req *PurgeRequest) string {
	var b strings.Builder
	n := 0
	add := func(kind, s string) {
		if n < 10 {
			if n > 0 {
				b.WriteString(" ")
			}
			b.WriteString(kind)
			b.WriteString(truncate([]byte(s), 200))
		}
		n++
	}
	if req.All {
		add("all", "")
	}
	for _, u := range req.URLs {
		add("url:", u)
	}
	for _, k := range req.Keys {
		add("key:", k)
	}
	if n > 10 {
		fmt.Fprintf(&b, " (%d more)", n-10)
	}
	return b.String()
}

// A purgeClient is who a purge came from, for its log line: the address,
// the purge.allow entry that admitted it, and the token's id ("none"
// without purge.token; otherwise "sha256:" and the first 8 hex digits of
// the configured token's SHA-256, which tells tokens apart across a
// rotation without writing them in the log).
type purgeClient struct {
	ip    netip.Addr
	allow netip.Prefix
	token string
}

// purgeAllowed checks the client address against purge.allow and the
// bearer token, answering 403 (and logging) when they fail.
func (r *Router) purgeAllowed(ctx *fasthttp.RequestCtx, client netip.Addr) (purgeClient, bool) {
	who := purgeClient{ip: client, token: "none"}
	why := ""
	var allowed bool
	who.allow, allowed = r.purgeFromAllowed(client)
	switch {
	case !client.IsValid() || !allowed:
		why = "address not in purge.allow"
	case r.purgeToken != "":
		got, ok := bytes.CutPrefix(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization), []byte("Bearer "))
		if !ok || subtle.ConstantTimeCompare(bytes.TrimSpace(got), []byte(r.purgeToken)) != 1 {
			why = "missing or wrong bearer token"
		}
		sum := sha256.Sum256([]byte(r.purgeToken))
		who.token = "sha256:" + hex.EncodeToString(sum[:4])
	}
	if why == "" {
		return who, true
	}
	r.stats.PurgesRefused.Add(1)
	r.log.Log(slog.LevelWarn, "purge-refused", "purge refused", slog.String("client", client.String()), slog.String("why", why),
		slog.String("uri", truncate(ctx.Request.Header.RequestURI(), 200)))
	jsonAnswer(ctx, fasthttp.StatusForbidden, PurgeResult{Error: "purge refused: " + why})
	return who, false
}

// purgeFromAllowed returns the purge.allow entry holding a.
func (r *Router) purgeFromAllowed(a netip.Addr) (netip.Prefix, bool) {
	for _, p := range r.purgeAllow {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// clientIP is the address a purge on the main listener came from: the
// peer, or, behind a trusted proxy, X-Real-IP or the last address it
// added to X-Forwarded-For.
func (r *Router) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, local := peerAddr(ctx.RemoteAddr())
	if ok, _ := trusted(ctx.RemoteAddr(), r.trusted); !ok && !local {
		return peer
	}
	h := &ctx.Request.Header
	if a, err := netip.ParseAddr(string(bytes.TrimSpace(h.Peek("X-Real-IP")))); err == nil {
		return a.Unmap()
	}
	if xff := h.Peek(fasthttp.HeaderXForwardedFor); len(xff) > 0 {
		last := xff[bytes.LastIndexByte(xff, ',')+1:]
		if a, err := netip.ParseAddr(string(bytes.TrimSpace(last))); err == nil {
			return a.Unmap()
		}
	}
	return peer
}

// peerAddr is the connection's peer; a unix socket peer counts as
// loopback (local is true).
func peerAddr(addr net.Addr) (a netip.Addr, local bool) {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(tcp.IP); ok {
			return a.Unmap(), false
		}
		return netip.Addr{}, false
	}
	return netip.MustParseAddr("127.0.0.1"), true
}

func jsonAnswer(ctx *fasthttp.RequestCtx, status int, v any) {
	b, _ := json.Marshal(v)
	ctx.Response.Header.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBody(append(b, '\n'))
}
