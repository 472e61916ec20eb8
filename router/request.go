package router

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/sessioncheck"
)

// request is one request while the Router serves it: the fasthttp
// context, what classification learned of it, what its access log line
// needs, whether its connection must close, and working memory. Every
// step of Handle is a method of the request. Requests are pooled and do
// not outlive Handle: what runs after it (a background fill) copies what
// it needs first.
type request struct {
	r   *Router
	ctx *fasthttp.RequestCtx

	// What classification learned: the host lower-cased (into w.host),
	// the path and query as the request URI has them, the cache rule, and
	// whether any Cookie header is not empty.
	host, path, query []byte
	rule              *pagecache.Rule
	cookies           bool

	log accessRecord // read only when the Router has an access log

	// closeConn: the connection closes after this response, whatever
	// later steps do to it (see closeAfter).
	closeConn bool

	// revalidate: w.entry is a stale page the lookup found (in its grace
	// or past it), to be revalidated by the fill; staleKey, when not "",
	// names it in the store and says it may be served if the backend
	// fails (stale-if-error).
	revalidate bool
	staleKey   string

	// refreshes is the cache's count of background refreshes done when
	// the lookup began (see backgroundFill).
	refreshes uint64

	// reentered: a fill's answer was made for another variant than the
	// visitor's, whose own was then looked up (once at most: see
	// elsewhere).
	reentered bool

	// cred is the verified credential of a request served under a
	// credentials rule (aliasing the request; Key nil otherwise), and
	// credPath whether it shares the copy or has its own.
	cred     sessioncheck.Credential
	credPath credentialPath

	w *work
}

// work is a request's working memory, kept with it in the pool.
type work struct {
	host  [256]byte
	key   []byte // the base key, from the template
	cpart []byte // a per-credential copy's private key part
	ckey  []byte // a credential's lookup key (sessioncheck.CredentialKey)
	mac   [sha256.Size]byte
	url   []byte // the URL's base key, when the template has {cookie:Name}
	in    pagecache.KeyInput
	pages pagecache.Scratch
	entry pagecache.Entry
}

// accessRecord is what the handler learns about a request for its line.
type accessRecord struct {
	start    time.Time
	upstream time.Duration // waiting for backends
	verdict  string        // who the visitor is: "anonymous", "doubt-timeout"...
	// cache, when set, is the line's cache field for an answer without
	// Cache-Status: a PURGE's outcome ("purge; urls=1").
	cache string
}

var requests = sync.Pool{New: func() any { return &request{w: &work{key: make([]byte, 0, 512)}} }}

// acquire returns a pooled request for ctx.
func (r *Router) acquire(ctx *fasthttp.RequestCtx) *request {
	q := requests.Get().(*request)
	q.r, q.ctx = r, ctx
	q.log.verdict = "-"
	if r.access != nil {
		q.log.start = time.Now()
	}
	return q
}

// release gives q back to the pool, keeping its working memory only.
func (q *request) release() {
	*q = request{w: q.w}
	requests.Put(q)
}

// waited adds time spent waiting for a backend to the access log line.
func (q *request) waited(start time.Time) {
	if q.r.access != nil {
		q.log.upstream += time.Since(start)
	}
}
