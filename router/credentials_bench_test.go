package router

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// tokenTable is a credential store in memory, for benchmarks: the
// verdict cache in front of it is the real one.
type tokenTable map[string]bool

func (m tokenTable) Lookup(_ context.Context, key string, _ time.Time) (sessioncheck.Row, error) {
	if _, k := sessioncheck.SplitCredentialKey(key); m[k] {
		return sessioncheck.Row{Value: []byte("1")}, nil
	}
	return sessioncheck.Row{}, sessioncheck.ErrNoRow
}

func (tokenTable) Close() error { return nil }

// credentialHitRouter returns a Router holding /api/<mode>/ for a valid
// token under a rule of that mode, and a request context asking for it.
func credentialHitRouter(tb testing.TB, mode pagecache.Credentials) (*Router, *fasthttp.RequestCtx, string) {
	tb.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(strings.Repeat(`{"channel": "one"},`, 2<<10/19)))
	}))
	tb.Cleanup(backend.Close)
	b, _ := NewBackends(testBackendOptions(backendAddr(backend)))
	store, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	keys, _ := pagecache.NewKeyTemplate(pagecache.KeyOptions{})
	checker, err := sessioncheck.New(sessioncheck.Options{Store: tokenTable{tokenA: true}, Rule: sessioncheck.RuleExists})
	if err != nil {
		tb.Fatal(err)
	}
	finder, _ := sessioncheck.NewCredentialFinder(sessioncheck.CredentialOptions{Scheme: "Token"})
	rule := pagecache.Rule{Path: regexp.MustCompile("^/api/"), Cache: true, TTL: time.Hour, HonorCacheControl: true, Credentials: mode}
	r, err := New(Options{Backends: b, Keys: testKeys,
		Credentials: &CredentialOptions{Finder: finder, Checker: checker, HashKey: []byte("0123456789abcdef-bench")},
		Cache: &CacheOptions{Store: store, Keys: keys,
			Policy: pagecache.NewPolicy(pagecache.PolicyOptions{Rules: []pagecache.Rule{rule}})}})
	if err != nil {
		tb.Fatal(err)
	}
	raw := "GET /api/" + mode.String() + "/ HTTP/1.1\r\nHost: example.com\r\nAccept-Encoding: gzip\r\nAuthorization: Token " + tokenA + "\r\nCookie: sessionid=" + strings.Repeat("c", 32) + "\r\n\r\n"
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	r.Handle(ctx) // the fill
	want := "userrouter; hit; detail=credential-shared"
	if mode == pagecache.CredentialsPerCredential {
		want = "userrouter; hit; detail=credential-private"
	}
	if cs := string(ctx.Response.Header.Peek("Cache-Status")); !strings.HasPrefix(cs, "userrouter; fwd=miss; stored") {
		tb.Fatalf("fill: %q", cs)
	}
	ctx.Response.Reset()
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	return r, ctx, want
}

func serveCredentialHit(tb testing.TB, r *Router, ctx *fasthttp.RequestCtx, want string) {
	ctx.Response.Reset()
	r.Handle(ctx)
	if cs := ctx.Response.Header.Peek("Cache-Status"); string(cs) != want {
		tb.Fatalf("got %q; want %q", cs, want)
	}
}

// BenchmarkCredentialHit is the router's cost of a hit for a verified
// token (the verdict cached): BenchmarkHit's, plus the credential's
// parsing and verdict, and for a per-credential copy its keyed hash.
func BenchmarkCredentialHit(b *testing.B) {
	for _, mode := range []pagecache.Credentials{pagecache.CredentialsShared, pagecache.CredentialsPerCredential} {
		b.Run(mode.String(), func(b *testing.B) {
			r, ctx, want := credentialHitRouter(b, mode)
			b.ReportAllocs()
			for b.Loop() {
				serveCredentialHit(b, r, ctx, want)
			}
		})
	}
}
