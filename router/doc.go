// Package router is userrouter's fasthttp request handler: it decides for
// each request whether it may be served from the page cache and otherwise
// forwards it to the backend, unchanged apart from hop-by-hop headers.
//
// What it does not serve itself reaches a backend exactly as the client
// sent it (method, raw URI, headers, body) and comes back exactly as the
// backend answered, streamed, so large downloads and slow chunked
// responses pass with bounded memory. A backend that cannot be reached
// answers 502, one that is too slow 504, and one whose connections are all
// busy 503, each with a short plain body and a rate-limited log line.
package router
