// Package router is userrouter's fasthttp request handler: it decides for
// each request whether it may be served from the page cache and otherwise
// forwards it to the backend, unchanged apart from hop-by-hop headers.
//
// One request, and the function that does each step (every step is a
// method of the pooled per-request state, request, unless named on
// Router):
//
//  1. Router.Handle takes a request from the pool. framingOK refuses
//     framing a front proxy could read otherwise (400, connection closed);
//     originForm turns an absolute-form target into origin form.
//  2. route classifies: PURGE goes to Router.purgeMethod; not GET or HEAD,
//     a body, an Upgrade, a host not cached, a bypass path, query
//     parameter or cookie, Range, or a rule with cache = false is
//     forwarded by bypass (fwd=bypass; detail=<reason>). A credential
//     (credential: Authorization, or the credentials query parameter) is
//     forwarded too (detail=authorization), unless the rule serves
//     credentials: then it is checked (CredentialOptions.Checker) and a
//     valid one goes on to step 4, keyed by the shared page or, for
//     per-credential rules, by its own copy (pagecache.Cache.LookupPrivate),
//     its fills carrying it (setCredential); no credential, an invalid or
//     a doubtful one is forwarded (detail=credential-invalid,
//     credential-doubt).
//  3. route reads the session key (sessioncheck.KeyFinder.FindLines) and
//     asks the Checker; identified visitors are forwarded, and so is any
//     doubt (doubt, detail=doubt-<reason>), never guessed anonymous.
//  4. anonymous builds the page key (pagecache.KeyTemplate.Append) and
//     asks pagecache.Cache.Lookup: a fresh page is served by serve
//     (serveEntry: status, headers, Age, conditionals, gunzip for clients
//     without gzip), a stale one too while backgroundFill refreshes it.
//  5. miss: a visitor without cookies is the fill (fillFromVisitor, whose
//     concurrent misses wait in flights); one with cookies is forwarded
//     and backgroundFill fills the cache. A fill (Router.fill) sends
//     fillRequest's credential-free request (or carrying the one verified
//     credential under a credentials rule), fenced by
//     pagecache.Cache.Fence, decides with pagecache.Policy.Decide, and
//     stores with pagecache.Cache.Put or marks the URL uncacheable.
//  6. forward relays anything else to a backend as the client sent it and
//     the answer back as the backend sent it, streamed (prepare, relayWith);
//     a successful POST, PUT, PATCH or DELETE first purges the pages it
//     changed (invalidate).
//  7. finish leaves the connection at a request boundary (an unread body
//     drained, up to 64 KiB) or closed; Router.done writes the access log
//     line and pools the request.
//
// The page protocol itself (generations, fences, purges) is
// pagecache.Cache's; router keeps what is HTTP. A backend that cannot be
// reached answers 502, one that is too slow 504, and one whose connections
// are all busy 503, each with a short plain body and a rate-limited log
// line.
package router
