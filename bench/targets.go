package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// A target is one URL to request, the endpoint that serves it, and its
// request, built once before the run.
type target struct {
	uri string
	ep  int // index into the run's endpoints

	// req is the whole request without a session cookie. head is its
	// request line and headers ending with the start of a Cookie header
	// ("Cookie: ", or "Cookie: <-H value>; "), for the requests that
	// carry a session cookie: see withCookie.
	req, head []byte
}

// targetRefs returns the paths or URLs a run draws from, before they are
// resolved against a base URL: the -urls file's lines, the -paths
// /page/N, or the single reference "" (the base URL itself).
func targetRefs(cfg *config) ([]string, error) {
	switch {
	case cfg.urlsFile != "":
		return readLines("-urls", cfg.urlsFile)
	case cfg.paths > 0:
		refs := make([]string, cfg.paths)
		for i := range refs {
			refs[i] = "/page/" + strconv.Itoa(i)
		}
		return refs, nil
	}
	return []string{""}, nil
}

// resolveTargets turns refs into absolute URLs: a path (with or without a
// leading slash, with its query) is appended to base's path, so base
// http://h/app/ and /page/1 give http://h/app/page/1; an absolute URL is
// kept. base is "" when there is no -url. With sameHost (for -compare)
// every reference must be a path, so that it lands on each base. Errors
// are usage errors.
func resolveTargets(base string, refs []string, sameHost bool) ([]string, error) {
	var b *url.URL
	if base != "" {
		var err error
		if b, err = parseBaseURL(base); err != nil {
			return nil, usagef("%q: %v", base, err)
		}
	}
	out := make([]string, len(refs))
	for i, ref := range refs {
		if ref == "" {
			out[i] = b.String()
			continue
		}
		r, err := url.Parse(ref)
		if err != nil {
			return nil, usagef("-urls entry %d %q: %v", i+1, ref, err)
		}
		switch {
		case r.IsAbs() && sameHost:
			return nil, usagef("-urls entry %d %q is an absolute URL; with -compare give paths, which are joined to each base URL", i+1, ref)
		case r.IsAbs():
			if _, err := parseBaseURL(ref); err != nil {
				return nil, usagef("-urls entry %d %q: %v", i+1, ref, err)
			}
			out[i] = ref
		case b == nil:
			return nil, usagef("-urls entry %d %q is a relative path: give -url so it can be resolved, or list absolute URLs", i+1, ref)
		default:
			out[i] = joinPath(b, r)
		}
	}
	return out, nil
}

// joinPath appends ref's path and query to base's path.
func joinPath(base, ref *url.URL) string {
	s := base.Scheme + "://" + base.Host + strings.TrimSuffix(base.EscapedPath(), "/") + "/" + strings.TrimPrefix(ref.EscapedPath(), "/")
	if ref.RawQuery != "" {
		s += "?" + ref.RawQuery
	}
	return s
}

// clientPool hands out one fasthttp HostClient per scheme and host, for
// minting sessions (-mint), which needs Set-Cookie parsing and runs
// before the load; the load itself goes through conn.
type clientPool struct {
	conns   int
	timeout time.Duration
	clients map[string]*fasthttp.HostClient
}

func newClientPool(conns int, timeout time.Duration) *clientPool {
	return &clientPool{conns: conns, timeout: timeout, clients: map[string]*fasthttp.HostClient{}}
}

// client returns the HostClient for rawURL's scheme and host, creating it
// on first use. rawURL must have passed parseBaseURL.
func (p *clientPool) client(rawURL string) *fasthttp.HostClient {
	u, _ := url.Parse(rawURL)
	key := u.Scheme + "://" + u.Host
	if c, ok := p.clients[key]; ok {
		return c
	}
	tlsOn := u.Scheme == "https"
	port := u.Port()
	if port == "" {
		port = "80"
		if tlsOn {
			port = "443"
		}
	}
	c := &fasthttp.HostClient{
		Addr:     net.JoinHostPort(u.Hostname(), port),
		IsTLS:    tlsOn,
		MaxConns: p.conns,
		// Workers never want more connections than -c, but a connection
		// the server closed is given back a moment after its worker has
		// moved on: wait for it instead of failing with ErrNoFreeConns.
		MaxConnWaitTimeout: p.timeout,
		// One attempt per request: retries would hide errors and skew
		// latency. wrk does not retry either.
		MaxIdemponentCallAttempts: 1,
		NoDefaultUserAgentHeader:  true,
		DisablePathNormalizing:    true,
		// Bodies are streamed and discarded (see exchange), never held:
		// a huge or endless body, or a hostile Content-Length, costs no
		// memory. Headers must fit in the read buffer.
		StreamResponseBody: true,
		ReadBufferSize:     64 << 10,
		WriteBufferSize:    4 << 10,
		// LIFO: a worker takes back the connection it just released,
		// still warm in its caches.
		ConnPoolStrategy: fasthttp.LIFO,
	}
	if tlsOn {
		c.TLSConfig = &tls.Config{ServerName: u.Hostname()}
	}
	p.clients[key] = c
	return c
}

// exchange sends req with client and reads the answer to its end within
// timeout, discarding the body as it arrives (the pool's clients stream
// bodies), so that no answer, whatever its size, is held in memory. The
// error is the request's or, when the body broke off or came too slowly,
// the body's. Minting goes through here; the load goes through conn.
func exchange(client *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) error {
	err := client.DoTimeout(req, resp, timeout)
	if body := resp.BodyStream(); err == nil && body != nil {
		_, err = io.Copy(io.Discard, body)
	}
	// Closing a stream read to its end gives the connection back for
	// the next request; any other is closed.
	if cerr := resp.CloseBodyStream(); err == nil {
		err = cerr
	}
	return err
}

// closeIdle closes every idle connection of the pool's clients.
func (p *clientPool) closeIdle() {
	for _, c := range p.clients {
		c.CloseIdleConnections()
	}
}

// makeTargets builds each URL's request and names its endpoint, one
// per scheme and host, in endpoints.
func makeTargets(urls []string, method string, headers []header) (targets []target, endpoints []endpoint) {
	idx := map[string]int{}
	targets = make([]target, len(urls))
	for i, raw := range urls {
		u, _ := url.Parse(raw) // each passed parseBaseURL
		key := u.Scheme + "://" + u.Host
		ep, ok := idx[key]
		if !ok {
			ep = len(endpoints)
			idx[key] = ep
			endpoints = append(endpoints, newEndpoint(raw))
		}
		t := &targets[i]
		t.uri, t.ep = raw, ep
		t.head, t.req = buildRequest(method, u, headers)
	}
	return targets, endpoints
}

// buildRequest returns the request for u: req, the whole request (with
// the -H Cookie header when there is one), and head, the start of the
// request that carries a session cookie (see target). The headers
// are the ones fasthttp sent before bench had its own client: Host,
// User-Agent (both overridden by -H), -H headers, and Content-Length: 0
// for methods that may carry a body.
func buildRequest(method string, u *url.URL, headers []header) (head, req []byte) {
	host, ua, cookie := u.Host, userAgent, ""
	var rest []header
	for _, h := range headers {
		switch {
		case strings.EqualFold(h.name, "Host"):
			host = h.value
		case strings.EqualFold(h.name, "User-Agent"):
			ua = h.value
		case strings.EqualFold(h.name, "Cookie"):
			cookie = h.value
		default:
			rest = append(rest, h)
		}
	}
	head = fmt.Appendf(nil, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n", method, u.RequestURI(), host, ua)
	for _, h := range rest {
		head = fmt.Appendf(head, "%s: %s\r\n", h.name, h.value)
	}
	if method != "GET" && method != "HEAD" {
		head = append(head, "Content-Length: 0\r\n"...)
	}
	req = append([]byte(nil), head...)
	if cookie != "" {
		req = fmt.Appendf(req, "Cookie: %s\r\n", cookie)
		head = fmt.Appendf(head, "Cookie: %s; ", cookie)
	} else {
		head = append(head, "Cookie: "...)
	}
	return head, append(req, "\r\n"...)
}

// withCookie appends to dst t's request carrying the session cookie
// name=value.
func (t *target) withCookie(dst []byte, name, value string) []byte {
	dst = append(dst, t.head...)
	dst = append(dst, name...)
	dst = append(dst, '=')
	dst = append(dst, value...)
	return append(dst, "\r\n\r\n"...)
}

// describeTargets names the URLs of a run for the report: the URL itself
// when there is one, else the first and the count.
func describeTargets(urls []string) string {
	if len(urls) == 1 {
		return urls[0]
	}
	return fmt.Sprintf("%s and %d more", urls[0], len(urls)-1)
}

// prepareRequest sets the parts of a fasthttp request that every request
// of spec shares: method, user agent and the -H headers. The load itself
// goes through conn; minting goes through fasthttp.
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
