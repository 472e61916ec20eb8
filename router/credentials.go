package router

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// CredentialOptions configures the checks of credentials (API keys,
// tokens) for the cache rules that serve them (pagecache.Rule.Credentials).
// Finder and Checker are required.
type CredentialOptions struct {
	// Finder takes the credential out of a request.
	Finder *sessioncheck.CredentialFinder
	// Checker tells a valid credential (Identified) from an invalid one
	// (Anonymous), under sessioncheck.CredentialKey; an error is a doubt.
	// A sessioncheck.Sessions with RuleExists, typically.
	Checker sessioncheck.Checker
	// HashKey keys the hash of a credential in the keys of per-credential
	// copies (HMAC-SHA256): the same on every instance sharing a store,
	// secret, at least 16 bytes. Required for per-credential rules.
	HashKey []byte
	// MaxPrivateFills bounds the per-credential copies one credential may
	// fill a minute on this instance; beyond it its misses are forwarded
	// without a fill (Cache-Status detail=credential-limit). Default
	// DefaultMaxPrivateFills.
	MaxPrivateFills int
}

// DefaultMaxPrivateFills is what a zero CredentialOptions.MaxPrivateFills
// means.
const DefaultMaxPrivateFills = 256

// credentials is the Router's credential state. It is safe for concurrent
// use.
type credentials struct {
	finder   *sessioncheck.CredentialFinder
	checker  sessioncheck.Checker
	macs     sync.Pool // hash.Hash: HMAC-SHA256 under the hash key
	maxFills int32
	// fills counts, by credential hash, the private fills of the last
	// minute (see admit).
	fills *otter.Cache[string, *atomic.Int32]
}

func newCredentials(o *CredentialOptions) (*credentials, error) {
	if o.Finder == nil || o.Checker == nil {
		return nil, errors.New("router: credential checks need a finder and a checker")
	}
	if len(o.HashKey) > 0 && len(o.HashKey) < 16 {
		return nil, errors.New("router: the credential hash key must be at least 16 bytes")
	}
	cr := &credentials{finder: o.Finder, checker: o.Checker, maxFills: int32(cmp.Or(o.MaxPrivateFills, DefaultMaxPrivateFills))}
	if len(o.HashKey) > 0 {
		key := append([]byte(nil), o.HashKey...)
		cr.macs.New = func() any { return hmac.New(sha256.New, key) }
	}
	var err error
	cr.fills, err = otter.New(&otter.Options[string, *atomic.Int32]{
		MaximumSize:      100_000,
		ExpiryCalculator: otter.ExpiryWriting[string, *atomic.Int32](time.Minute),
	})
	if err != nil {
		return nil, err
	}
	return cr, nil
}

// A credentialPath is what became of a request carrying a credential on
// a rule that serves them, for Cache-Status, counters and the access log.
type credentialPath uint8

const (
	credentialShared  credentialPath = iota // verified: the copy every credential shares
	credentialPrivate                       // verified: the credential's own copy
	credentialInvalid                       // none, or one the application does not know: forwarded
	credentialDoubt                         // could not be checked: forwarded
	numCredentialPaths
)

var credentialPathNames = [numCredentialPaths]string{"credential-shared", "credential-private", "credential-invalid", "credential-doubt"}

// CredentialPaths names the credential paths in the order of
// Stats.Credentials.
func CredentialPaths() []string { return credentialPathNames[:] }

// credentialDetail is appended to the Cache-Status of a verified request
// that names no detail of its own.
var credentialDetail = [numCredentialPaths]string{"; detail=credential-shared", "; detail=credential-private", "", ""}

const (
	statusCredentialInvalid = "userrouter; fwd=bypass; detail=credential-invalid"
	statusCredentialDoubt   = "userrouter; fwd=bypass; detail=credential-doubt"
	// A per-credential miss past CredentialOptions.MaxPrivateFills:
	// forwarded, no fill.
	statusCredentialLimit = "userrouter; fwd=miss; detail=credential-limit"
)

// credential routes a request under a rule that may take credentials
// (steps 3 and 4 of the package doc, for APIs): done is false for a
// request with no credential under a rule that bypasses them, which goes
// on as any visitor. Otherwise the request is forwarded, or served from
// the shared copy or its credential's own.
func (q *request) credential() (o outcome, done bool) {
	r, mode := q.r, q.rule.Credentials
	h := &q.ctx.Request.Header
	var cred sessioncheck.Credential
	found := sessioncheck.NoCredential
	if r.creds != nil {
		cred, found = r.creds.finder.Find(h.PeekAll(fasthttp.HeaderAuthorization), q.query)
	} else if len(h.Peek(fasthttp.HeaderAuthorization)) > 0 {
		found = sessioncheck.OtherAuthorization
	}
	switch {
	case mode == pagecache.CredentialsBypass && found == sessioncheck.NoCredential:
		return 0, false
	case mode == pagecache.CredentialsBypass, found == sessioncheck.OtherAuthorization, r.creds == nil:
		return q.bypass(bypassAuthorization), true
	case found == sessioncheck.SeveralCredentials:
		return q.credentialDoubt(sessioncheck.ErrAmbiguousCookie, false), true
	case found != sessioncheck.CredentialFound:
		return q.credentialInvalid(), true
	}
	q.w.ckey = sessioncheck.CredentialKey(q.w.ckey[:0], cred.User, cred.Key)
	v, err := r.creds.checker.Check(q.ctx, q.w.ckey)
	if err != nil {
		return q.credentialDoubt(err, true), true
	}
	if v != sessioncheck.Identified {
		return q.credentialInvalid(), true
	}
	q.cred, q.credPath = cred, credentialShared
	if mode == pagecache.CredentialsPerCredential {
		q.credPath = credentialPrivate
	}
	r.stats.Credentials[q.credPath].Add(1)
	q.log.verdict = credentialPathNames[q.credPath]
	// The credential is who the visitor is: their cookies are no input of
	// the copy, and never reach a fill.
	q.cookies = false
	return q.anonymous(), true
}

func (q *request) credentialInvalid() outcome {
	q.r.stats.Credentials[credentialInvalid].Add(1)
	q.log.verdict = credentialPathNames[credentialInvalid]
	return q.forwardAs(statusCredentialInvalid, outcomeBypass)
}

// credentialDoubt forwards a request whose credential could not be
// checked; checked says the store was asked (and its failure is logged).
func (q *request) credentialDoubt(err error, checked bool) outcome {
	r := q.r
	r.stats.Credentials[credentialDoubt].Add(1)
	r.stats.CredentialDoubts[sessioncheck.ReasonIndex(err)].Add(1)
	q.log.verdict = credentialPathNames[credentialDoubt]
	if checked && (errors.Is(err, sessioncheck.ErrTimeout) || errors.Is(err, sessioncheck.ErrStore) || errors.Is(err, sessioncheck.ErrBusy)) {
		r.log.Log(slog.LevelWarn, "credential-store", "credential store failing; requests with credentials are forwarded",
			slog.String("reason", sessioncheck.Reason(err)), slog.String("error", err.Error()))
	}
	return q.forwardAs(statusCredentialDoubt, outcomeDoubt)
}

// appendHash appends the private part of a per-credential copy's key: a
// separator and the keyed hash of the credential, base64url. sum is
// scratch space (the request's, so that nothing is allocated). ok is false
// without a hash key.
func (cr *credentials) appendHash(dst []byte, c *sessioncheck.Credential, sum *[sha256.Size]byte) ([]byte, bool) {
	if cr.macs.New == nil {
		return dst, false
	}
	m := cr.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(c.User)
	m.Write(nul)
	m.Write(c.Key)
	dst = append(dst, "|c:"...)
	dst = base64.RawURLEncoding.AppendEncode(dst, m.Sum(sum[:0]))
	cr.macs.Put(m)
	return dst, true
}

var nul = []byte{0}

// admit reports whether the credential whose hash part is private may
// fill one more private copy this minute.
func (cr *credentials) admit(private []byte) bool {
	n, _ := cr.fills.SetIfAbsent(string(private), new(atomic.Int32))
	return n.Add(1) <= cr.maxFills
}

// setCredential gives a fill request the verified credential of the
// visitor it is made for, and nothing else of theirs: the Authorization
// header as they sent it, or the query parameter appended to the URI
// (the key template ignores it).
func (q *request) setCredential(req *fasthttp.Request) {
	switch {
	case q.cred.Header != nil:
		req.Header.SetBytesV(fasthttp.HeaderAuthorization, q.cred.Header)
	case q.cred.Query != nil:
		uri := req.Header.RequestURI()
		sep := byte('?')
		for _, c := range uri {
			if c == '?' {
				sep = '&'
				break
			}
		}
		b := append(append(append([]byte(nil), uri...), sep), q.cred.Query...)
		req.SetRequestURIBytes(b)
	}
}

// addCacheStatus adds the Cache-Status entry s, naming the credential
// path of a verified request when s names no detail of its own.
func (q *request) addCacheStatus(h *fasthttp.ResponseHeader, s string) {
	if q.cred.Key == nil {
		h.Add(headerCacheStatus, s)
		return
	}
	var b [192]byte
	q.addCacheStatusBytes(h, append(b[:0], s...))
}

// addCacheStatusBytes is addCacheStatus for an entry built in a buffer.
func (q *request) addCacheStatusBytes(h *fasthttp.ResponseHeader, s []byte) {
	if d := credentialDetail[q.credPath]; q.cred.Key != nil && d != "" && !containsFold(s, strDetail) {
		var b [192]byte
		h.AddBytesV(headerCacheStatus, append(append(b[:0], s...), d...))
		return
	}
	h.AddBytesV(headerCacheStatus, s)
}

var strDetail = []byte("detail=")
