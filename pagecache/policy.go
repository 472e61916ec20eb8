package pagecache

import (
	"bytes"
	"cmp"
	"maps"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// A Reason says why a response was not stored.
type Reason uint8

const (
	Storable         Reason = iota
	ReasonStatus            // the status is not in the cacheable set
	ReasonSetCookie         // a Set-Cookie remained after stripping the allowed ones
	ReasonPrivate           // Cache-Control: private
	ReasonNoStore           // Cache-Control: no-store
	ReasonNoCache           // Cache-Control: no-cache
	ReasonVary              // Vary is *, or names a header no variant can be selected by (see varyOf), or a value too long to key one
	ReasonTooLarge          // the body does not fit the store's item size limit
	ReasonTTL               // the freshness lifetime is zero
	ReasonEncoding          // a Content-Encoding other than gzip
	ReasonHeaders           // too many or too long headers to store
	ReasonRule              // a cache rule says not to cache
	ReasonStoreError        // the store failed to take it
	ReasonTags              // the surrogate keys break the limits
	ReasonPurged            // a purge may have overtaken the fill
	ReasonVariants          // the URL has max_variants variants already: forwarded, not stored
	NumReasons              // the number of reasons, for counter arrays
)

var reasonNames = [NumReasons]string{"stored", "status", "set-cookie", "private", "no-store", "no-cache", "vary", "too-large", "ttl", "encoding", "headers", "rule", "store-error", "tags", "purged", "variants"}

func (r Reason) String() string { return reasonNames[r] }

// A Rule sets the caching of the URLs it matches: the first rule whose Path
// (and Host, when set) matches a request applies.
type Rule struct {
	Path *regexp.Regexp // nil matches every path
	Host string         // "" matches every host
	// Cache false forwards matching requests without caching them.
	Cache bool
	// TTL is the freshness lifetime when the backend gives none (or always,
	// when HonorCacheControl is false).
	TTL time.Duration
	// HonorCacheControl follows the backend's Cache-Control and Expires
	// (private, no-store, no-cache, s-maxage, max-age); false ignores them
	// and stores for TTL.
	HonorCacheControl bool
	// StoreSetCookie stores responses that set cookies, with every
	// Set-Cookie removed from the stored copy. Only for pages whose cookies
	// are not personal.
	StoreSetCookie bool
	// Credentials is what becomes of requests carrying a credential (an
	// API key or token): forwarded (CredentialsBypass, the zero value),
	// or served from a copy for every verified credential, or from one
	// per credential. The router checks credentials; the policy only
	// carries the choice.
	Credentials Credentials
	// StorePrivate stores answers marked Cache-Control: private; only
	// with CredentialsPerCredential, whose copies are each served to one
	// credential alone.
	StorePrivate bool
}

// Credentials says how a Rule treats requests that carry a credential.
type Credentials uint8

const (
	// CredentialsBypass forwards them, never cached.
	CredentialsBypass Credentials = iota
	// CredentialsShared serves every verified credential one copy.
	CredentialsShared
	// CredentialsPerCredential keeps a copy per credential, served to
	// that credential alone.
	CredentialsPerCredential
)

var credentialsNames = [...]string{"bypass", "shared", "per-credential"}

func (c Credentials) String() string {
	if int(c) < len(credentialsNames) {
		return credentialsNames[c]
	}
	return "bypass"
}

// ParseCredentials reads a rule's credentials setting: "bypass" (or ""),
// "shared" or "per-credential".
func ParseCredentials(s string) (Credentials, bool) {
	if s == "" {
		return CredentialsBypass, true
	}
	for i, n := range credentialsNames {
		if s == n {
			return Credentials(i), true
		}
	}
	return CredentialsBypass, false
}

// DefaultMaxTTL is what a zero PolicyOptions.MaxTTL means.
const DefaultMaxTTL = 24 * time.Hour

// DefaultStatuses returns what an empty PolicyOptions.Statuses means.
func DefaultStatuses() []int { return []int{200, 203, 301, 404, 410} }

// PolicyOptions configures a Policy.
type PolicyOptions struct {
	// Statuses that may be stored. Default DefaultStatuses():
	// 200, 203, 301, 404, 410.
	Statuses []int
	// StripSetCookies names cookies whose Set-Cookie is removed from the
	// stored copy (csrftoken, say); any other Set-Cookie prevents storing.
	StripSetCookies []string
	// MaxTTL caps every freshness lifetime. Default DefaultMaxTTL.
	MaxTTL time.Duration
	// Grace is how long past freshness a page may be served stale while one
	// request refreshes it; the response's stale-while-revalidate wins when
	// set, must-revalidate forbids it. 0 disables serving stale.
	Grace time.Duration
	// StaleIfError is how long past freshness a page may be served stale
	// when the backend fails (down, timing out, answering 5xx), RFC 5861;
	// the response's stale-if-error wins when set, must-revalidate and
	// no-cache forbid it. 0 disables it.
	StaleIfError time.Duration
	// DropHeaders are response headers never stored with a page, besides
	// those no shared cache may store (see Policy.Stores).
	DropHeaders []string
	// VaryHeaders are request headers the key includes: a response may
	// Vary on them (and on Accept-Encoding, Cookie and Authorization) and
	// be stored as the URL's one page. Vary on any other header makes it a
	// variant (Decision.Vary).
	VaryHeaders []string
	// Rules, in order; Default applies when none matches.
	Rules   []Rule
	Default Rule
}

// neverStored are the response headers no stored page keeps (RFC 9111
// section 3.1): Set-Cookie (one visitor's cookies), the hop-by-hop headers
// (RFC 9110 section 7.6.1), the framing userrouter sets for each answer,
// and Age, which each hit computes anew. Lower case.
var neverStored = map[string]bool{
	"set-cookie": true, "set-cookie2": true,
	"connection": true, "keep-alive": true, "proxy-connection": true, "proxy-authenticate": true,
	"proxy-authorization": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
	"content-length": true, "age": true,
}

// A Policy decides whether and for how long a response is stored. It is
// safe for concurrent use.
type Policy struct {
	statuses [1000]bool
	strip    []string
	maxTTL   time.Duration
	grace    time.Duration
	sie      time.Duration
	drop     map[string]bool // lower case: neverStored and DropHeaders
	vary     map[string]bool // lower case
	rules    []Rule
	fallback Rule
}

// NewPolicy returns a Policy for o.
func NewPolicy(o PolicyOptions) *Policy {
	p := &Policy{
		strip:    o.StripSetCookies,
		maxTTL:   cmp.Or(o.MaxTTL, DefaultMaxTTL),
		grace:    o.Grace,
		sie:      o.StaleIfError,
		drop:     maps.Clone(neverStored),
		vary:     map[string]bool{"accept-encoding": true, "cookie": true, "authorization": true},
		rules:    o.Rules,
		fallback: o.Default,
	}
	statuses := o.Statuses
	if len(statuses) == 0 {
		statuses = DefaultStatuses()
	}
	for _, s := range statuses {
		if s >= 100 && s < 1000 {
			p.statuses[s] = true
		}
	}
	for _, h := range o.DropHeaders {
		p.drop[strings.ToLower(h)] = true
	}
	for _, h := range o.VaryHeaders {
		p.vary[strings.ToLower(h)] = true
	}
	return p
}

// Rule returns the rule for a request's host and path (the raw path and,
// when it differs, the cleaned one: either matching applies the rule).
func (p *Policy) Rule(host []byte, rawPath []byte, cleanPath string) *Rule {
	for i := range p.rules {
		r := &p.rules[i]
		if r.Host != "" && !bytes.EqualFold(host, []byte(r.Host)) {
			continue
		}
		if r.Path == nil || r.Path.Match(rawPath) || (cleanPath != "" && r.Path.MatchString(cleanPath)) {
			return r
		}
	}
	return &p.fallback
}

// Stores reports whether a response header may be stored with a page:
// every end-to-end header but DropHeaders. What a response itself names
// (Connection's tokens, no-cache="..." field lists: Decision.Unstored) is
// the caller's to leave out too.
func (p *Policy) Stores(name []byte) bool {
	var buf [64]byte
	if len(name) > len(buf) {
		return !p.drop[strings.ToLower(string(name))]
	}
	return !p.drop[string(lowerASCII(buf[:0], name))]
}

// lowerASCII appends b in lower case to dst.
func lowerASCII(dst, b []byte) []byte {
	for _, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// StripSetCookie reports whether a Set-Cookie value sets a cookie the
// operator allows to drop from stored pages.
func (p *Policy) StripSetCookie(setCookie []byte) bool {
	name, _, _ := bytes.Cut(setCookie, []byte{'='})
	name = bytes.TrimSpace(name)
	for _, s := range p.strip {
		if string(name) == s {
			return true
		}
	}
	return false
}

// A Response is what the policy looks at in a backend response.
type Response struct {
	Status        int
	CacheControl  []byte // every Cache-Control value, joined by ", "
	Expires, Date []byte
	Vary          []byte // every Vary value, joined by ", "
	Age           []byte // the Age header: what caches upstream held it
	// SurrogateControl is every Surrogate-Control value, joined by ", ":
	// its max-age and no-store win over Cache-Control's freshness.
	SurrogateControl []byte
	ContentEncoding  []byte
	// RequestTime is when the request was sent; Decide's now is when the
	// response came (RFC 9111 section 4.2.3's request_time and
	// response_time).
	RequestTime time.Time
	// SetCookie is true when a Set-Cookie remains after StripSetCookie.
	SetCookie bool
	// Validator is true when the response has an ETag or a Last-Modified:
	// a stored copy can be revalidated with a conditional request.
	Validator bool
}

// A Decision is the policy's answer for one response.
type Decision struct {
	Reason Reason        // Storable, or why not
	TTL    time.Duration // freshness lifetime
	Grace  time.Duration // how long it may then be served stale
	// Age is the response's corrected initial age (RFC 9111 section
	// 4.2.3): it was already that old when it came. Its freshness
	// lifetime, TTL, counts from then: what is left of it is TTL - Age.
	Age time.Duration
	// ErrorGrace is how long past freshness it may be served when the
	// backend fails (stale-if-error).
	ErrorGrace time.Duration
	// Keep is how long past freshness it stays in the store: Grace, then
	// ErrorGrace, or RevalidationKeep for a response with a validator.
	Keep time.Duration
	// Unstored is the field list of a qualified no-cache
	// (no-cache="X-Secret, X-Other"): those headers are not stored (RFC
	// 9111 section 5.2.2.4). It aliases Response.CacheControl; see Lists.
	Unstored []byte
	// Vary lists the request headers the response varies on that do not
	// select the URL's page (see PolicyOptions.VaryHeaders): lower case,
	// sorted, unique, joined by commas ("accept-language"). When not "" the
	// response is stored as the variant those headers' values select (see
	// Cache.Variant). It is set whatever Reason is: an answer that varies
	// was made for the values its request carried.
	Vary string
}

// RevalidationKeep is how long past its freshness a page with a validator
// (ETag, Last-Modified) stays in the store at least, so that it is
// revalidated with a conditional request rather than fetched again.
const RevalidationKeep = time.Hour

// DefaultStaleIfError is the stale-if-error the daemon configures when
// the config says nothing.
const DefaultStaleIfError = time.Hour

// Lists reports whether a field list (Decision.Unstored: names separated
// by commas) names a header, case-insensitively.
func Lists(list, name []byte) bool {
	for n := range bytes.SplitSeq(list, []byte{','}) {
		if bytes.EqualFold(bytes.TrimSpace(n), name) {
			return true
		}
	}
	return false
}

// Decide applies rule r and the policy to a response fetched at now.
func (p *Policy) Decide(r *Rule, resp *Response, now time.Time) Decision {
	vary, ok := p.varyOf(resp.Vary)
	d := p.decide(r, resp, now, ok)
	d.Vary = vary
	return d
}

// decide is Decide but for Decision.Vary; varyOK is false for a Vary no
// variant can be made of.
func (p *Policy) decide(r *Rule, resp *Response, now time.Time, varyOK bool) Decision {
	if !r.Cache {
		return Decision{Reason: ReasonRule}
	}
	if resp.Status < 100 || resp.Status >= len(p.statuses) || !p.statuses[resp.Status] {
		return Decision{Reason: ReasonStatus}
	}
	if resp.SetCookie && !r.StoreSetCookie {
		return Decision{Reason: ReasonSetCookie}
	}
	if ce := bytes.TrimSpace(resp.ContentEncoding); len(ce) > 0 && !bytes.EqualFold(ce, []byte("gzip")) && !bytes.EqualFold(ce, []byte("identity")) {
		return Decision{Reason: ReasonEncoding}
	}
	if !varyOK {
		return Decision{Reason: ReasonVary}
	}
	cc := parseCacheControl(resp.CacheControl)
	ttl, grace, sie := r.TTL, p.grace, p.sie
	// revalidate: stored only to be revalidated before each use
	// (no-cache, RFC 9111 section 5.2.2.4).
	revalidate := false
	var unstored []byte
	if r.HonorCacheControl {
		switch {
		case cc.private && !(r.StorePrivate && r.Credentials == CredentialsPerCredential):
			return Decision{Reason: ReasonPrivate} // qualified too: see the README
		case cc.noStore:
			return Decision{Reason: ReasonNoStore}
		}
		sc := parseSurrogateControl(resp.SurrogateControl)
		if sc.noStore {
			return Decision{Reason: ReasonNoStore}
		}
		switch {
		case sc.maxAge >= 0:
			ttl = sc.maxAge
			if sc.grace >= 0 {
				grace = sc.grace
			}
		case cc.sMaxAge >= 0:
			ttl = cc.sMaxAge
		case cc.maxAge >= 0:
			ttl = cc.maxAge
		case len(resp.Expires) > 0:
			ttl = expiresTTL(resp.Expires, resp.Date, now)
		}
		if cc.sMaxAge >= 0 && sc.maxAge < 0 {
			// s-maxage implies proxy-revalidate for a shared cache (RFC
			// 9111 section 5.2.2.10): no stale use by default, only what
			// the response grants itself (RFC 5861). Surrogate-Control's
			// max-age, when set, governs userrouter instead.
			grace, sie = 0, 0
		}
		if cc.swr >= 0 {
			grace = cc.swr
		}
		if cc.sie >= 0 {
			sie = cc.sie
		}
		unstored = cc.noCacheFields
		if cc.noCache {
			if !resp.Validator {
				return Decision{Reason: ReasonNoCache} // nothing to revalidate with
			}
			revalidate = true
		}
		// A cache must not serve stale what must-revalidate or no-cache
		// forbid (RFC 9111 section 4.2.4), whatever else is allowed.
		if cc.mustRevalidate || revalidate {
			grace, sie = 0, 0
		}
	}
	ttl = min(ttl, p.maxTTL)
	var age time.Duration
	if r.HonorCacheControl {
		age = initialAge(resp, now)
	}
	if revalidate || ttl <= age {
		// No freshness left: stale on arrival, never a hit. With a
		// validator it is kept, to be revalidated at the next request.
		if !resp.Validator {
			return Decision{Reason: ReasonTTL}
		}
		ttl, grace = age, 0
	}
	d := Decision{Reason: Storable, TTL: ttl, Grace: grace, Age: age, ErrorGrace: sie, Unstored: unstored}
	d.Keep = max(grace, sie)
	if resp.Validator {
		d.Keep = max(d.Keep, grace+RevalidationKeep)
	}
	return d
}

// initialAge is the age a response had when it came at now (RFC 9111
// section 4.2.3's corrected_age_value): its Age header, what caches
// upstream held it, plus the response delay. The apparent age (now less
// its Date) is left out, as Varnish does: it measures the backend's clock
// against this one, and a backend a few minutes behind would make every
// page stale on arrival.
func initialAge(resp *Response, now time.Time) time.Duration {
	var delay time.Duration
	if !resp.RequestTime.IsZero() {
		delay = max(0, now.Sub(resp.RequestTime))
	}
	if len(resp.Age) == 0 {
		return delay
	}
	return seconds(bytes.TrimSpace(resp.Age)) + delay
}

// cacheControl holds the directives the policy uses; durations are -1
// when absent.
type cacheControl struct {
	private, noStore, noCache, mustRevalidate bool
	maxAge, sMaxAge, swr, sie                 time.Duration
	// noCacheFields is a qualified no-cache's field list; noCache is then
	// false (the rest of the response may be used without revalidation).
	noCacheFields []byte
}

func parseCacheControl(v []byte) cacheControl {
	cc := cacheControl{maxAge: -1, sMaxAge: -1, swr: -1, sie: -1}
	for d := range directives(v) {
		name, arg, qualified := bytes.Cut(bytes.TrimSpace(d), []byte{'='})
		name = bytes.TrimSpace(name)
		arg = bytes.Trim(bytes.TrimSpace(arg), `"`)
		switch strings.ToLower(string(name)) {
		case "private":
			cc.private = true
		case "no-store":
			cc.noStore = true
		case "no-cache":
			if qualified && len(bytes.TrimSpace(arg)) > 0 {
				cc.noCacheFields = arg
			} else {
				cc.noCache = true
			}
		case "must-revalidate", "proxy-revalidate":
			cc.mustRevalidate = true
		case "max-age":
			cc.maxAge = seconds(arg)
		case "s-maxage":
			cc.sMaxAge = seconds(arg)
		case "stale-while-revalidate":
			cc.swr = seconds(arg)
		case "stale-if-error":
			cc.sie = seconds(arg)
		}
	}
	return cc
}

// directives yields the comma-separated directives of a header value,
// where commas inside a quoted string (a field list) do not separate. A
// value with an unterminated quote is split at every comma: a quote must
// not hide a "private" or "no-store" after it.
func directives(v []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		balanced := bytes.Count(v, []byte{'"'})%2 == 0
		quoted, start := false, 0
		for i, c := range v {
			switch {
			case c == '"' && balanced:
				quoted = !quoted
			case c == ',' && !quoted:
				if !yield(v[start:i]) {
					return
				}
				start = i + 1
			}
		}
		yield(v[start:])
	}
}

// surrogateControl is what the policy reads of Surrogate-Control (W3C
// Edge Architecture Specification 1.0, as Fastly and Varnish read it):
// max-age, in its "max-age=60+30" form too (fresh for 60 s, then 30 s of
// grace), and no-store. A directive targeted at another surrogate
// ("max-age=60;cdn") is not for userrouter; untargeted ones and those
// targeted at "userrouter" are. Durations are -1 when absent.
type surrogateControl struct {
	noStore       bool
	maxAge, grace time.Duration
}

func parseSurrogateControl(v []byte) surrogateControl {
	sc := surrogateControl{maxAge: -1, grace: -1}
	for d := range bytes.SplitSeq(v, []byte{','}) {
		d, target, targeted := bytes.Cut(bytes.TrimSpace(d), []byte{';'})
		if targeted && !bytes.EqualFold(bytes.TrimSpace(target), []byte("userrouter")) {
			continue
		}
		name, arg, _ := bytes.Cut(d, []byte{'='})
		switch strings.ToLower(string(bytes.TrimSpace(name))) {
		case "no-store":
			sc.noStore = true
		case "max-age":
			fresh, stale, plus := bytes.Cut(bytes.Trim(bytes.TrimSpace(arg), `"`), []byte{'+'})
			sc.maxAge = seconds(fresh)
			if plus {
				sc.grace = seconds(stale)
			}
		}
	}
	return sc
}

// seconds parses a delta-seconds argument (digits only); an invalid one
// counts as 0, which is the safe reading, and one above 2^31, however
// long, counts as 2^31 (RFC 9111 section 1.2.2).
func seconds(b []byte) time.Duration {
	if len(b) == 0 {
		return 0
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		n = min(n*10+int64(c-'0'), 1<<31)
	}
	return time.Duration(n) * time.Second
}

func expiresTTL(expires, date []byte, now time.Time) time.Duration {
	exp, err := http.ParseTime(string(expires))
	if err != nil {
		return 0 // an invalid Expires means already expired
	}
	base := now
	if d, err := http.ParseTime(string(date)); err == nil {
		base = d
	}
	return exp.Sub(base)
}
