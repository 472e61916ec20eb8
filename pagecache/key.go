package pagecache

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"path"
	"slices"
	"strings"
)

// MaxKeyLength is memcached's limit on a key.
const MaxKeyLength = 250

// maxQueryParams bounds the query parameters a cacheable URL may have; a
// URL with more is forwarded, not cached.
const maxQueryParams = 64

// DefaultKeyTemplate is what an empty KeyOptions.Template means.
const DefaultKeyTemplate = "page:{host}{uri}"

// KeyOptions configures a KeyTemplate.
type KeyOptions struct {
	// Template is the key with tokens: {scheme}, {host}, {path}, {query}
	// (normalized, without "?"), {uri} ({path} and "?{query}" when there
	// is one), {header:Name} and {cookie:Name} (see CookieValue). Default
	// DefaultKeyTemplate.
	Template string
	// IgnoreQueryParams are dropped from {query} and {uri}: names, or
	// prefixes ending in "*" ("utm_*").
	IgnoreQueryParams []string
	// SortQuery orders the remaining parameters by name, so that ?a=1&b=2
	// and ?b=2&a=1 share an entry.
	SortQuery bool
	// HashPrefix starts a key too long or too odd for memcached, which is
	// replaced by HashPrefix + base64url(SHA-256(key)). Default "ur:h:".
	HashPrefix string
}

// A KeyTemplate builds cache keys from requests. It is safe for concurrent
// use.
type KeyTemplate struct {
	segs       []segment
	drop       []string // exact names, or prefixes when they end in "*"
	sort       bool
	hashPrefix string
	headers    []string // names used by {header:...}
	cookies    []string // names used by {cookie:...}
}

type segment struct {
	literal string
	token   token
	header  string // the header or cookie name
}

type token uint8

const (
	tokLiteral token = iota
	tokScheme
	tokHost
	tokPath
	tokQuery
	tokURI
	tokHeader
	tokCookie
)

// NewKeyTemplate parses o.Template.
func NewKeyTemplate(o KeyOptions) (*KeyTemplate, error) {
	k := &KeyTemplate{sort: o.SortQuery, hashPrefix: o.HashPrefix}
	if k.hashPrefix == "" {
		k.hashPrefix = "ur:h:"
	}
	if !legalKey([]byte(k.hashPrefix)) || len(k.hashPrefix) > 100 {
		return nil, fmt.Errorf("pagecache: key hash prefix %q is not a short memcached key", k.hashPrefix)
	}
	tmpl := o.Template
	if tmpl == "" {
		tmpl = DefaultKeyTemplate
	}
	for rest := tmpl; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			k.segs = append(k.segs, segment{literal: rest})
			break
		}
		if i > 0 {
			k.segs = append(k.segs, segment{literal: rest[:i]})
		}
		j := strings.IndexByte(rest, '}')
		if j < i {
			return nil, fmt.Errorf("pagecache: key template %q: unclosed {", tmpl)
		}
		name := rest[i+1 : j]
		rest = rest[j+1:]
		seg := segment{}
		switch {
		case name == "scheme":
			seg.token = tokScheme
		case name == "host":
			seg.token = tokHost
		case name == "path":
			seg.token = tokPath
		case name == "query":
			seg.token = tokQuery
		case name == "uri":
			seg.token = tokURI
		case strings.HasPrefix(name, "header:") && len(name) > len("header:"):
			seg.token, seg.header = tokHeader, name[len("header:"):]
			k.headers = append(k.headers, seg.header)
		case strings.HasPrefix(name, "cookie:"):
			seg.token, seg.header = tokCookie, name[len("cookie:"):]
			if !validCookieName(seg.header) {
				return nil, fmt.Errorf("pagecache: key template %q: {%s}: %q is not a cookie name", tmpl, name, seg.header)
			}
			if !slices.Contains(k.cookies, seg.header) {
				k.cookies = append(k.cookies, seg.header)
			}
		default:
			return nil, fmt.Errorf("pagecache: key template %q: unknown token {%s} (use {scheme}, {host}, {path}, {query}, {uri}, {header:Name} or {cookie:Name})", tmpl, name)
		}
		k.segs = append(k.segs, seg)
	}
	for _, s := range k.segs {
		if s.token == tokLiteral && !legalKey([]byte(s.literal)) {
			return nil, fmt.Errorf("pagecache: key template %q: spaces and control characters are not allowed in memcached keys", tmpl)
		}
	}
	for _, p := range o.IgnoreQueryParams {
		if p == "" || p == "*" || strings.ContainsAny(p, "&=") {
			return nil, fmt.Errorf("pagecache: ignored query parameter %q is not a parameter name or name prefix like \"utm_*\"", p)
		}
		k.drop = append(k.drop, p)
	}
	return k, nil
}

// HasHost reports whether the template uses {host}: without it, pages of
// every Host share keys, so only listed hosts may be cached.
func (k *KeyTemplate) HasHost() bool {
	return slices.ContainsFunc(k.segs, func(s segment) bool { return s.token == tokHost })
}

// HasScheme reports whether the template uses {scheme}: a purge by URL
// then covers both schemes.
func (k *KeyTemplate) HasScheme() bool {
	return slices.ContainsFunc(k.segs, func(s segment) bool { return s.token == tokScheme })
}

// HasQuery reports whether the template uses {query} or {uri}: without
// either, the query is no input of the page and a fill sends none.
func (k *KeyTemplate) HasQuery() bool {
	return slices.ContainsFunc(k.segs, func(s segment) bool { return s.token == tokQuery || s.token == tokURI })
}

// AppendFillURI appends the request target a fill of in sends: the raw
// path and, when the template keys on the query, the query as the key
// holds it (ignored parameters dropped, sorted when asked). A page stored
// under a key is so rendered from that key's inputs alone: a parameter the
// key ignores ("?utm_source=<script>") never reaches the backend in a
// fill. ok is false when Append would refuse in too.
func (k *KeyTemplate) AppendFillURI(dst []byte, in *KeyInput) (uri []byte, ok bool) {
	start := len(dst)
	dst = append(dst, in.Path...)
	if len(in.Query) == 0 || !k.HasQuery() {
		return dst, true
	}
	q := len(dst)
	dst = append(dst, '?')
	if dst, ok = k.appendQuery(dst, in.Query); !ok {
		return dst[:start], false
	}
	if len(dst) == q+1 {
		dst = dst[:q]
	}
	return dst, true
}

// Headers lists the request headers the key includes: a response may Vary
// on them and still be cached.
func (k *KeyTemplate) Headers() []string { return k.headers }

// Cookies lists the cookies the key includes ({cookie:Name}): a fill
// sends these, with the values the key holds, and no other cookie.
func (k *KeyTemplate) Cookies() []string { return k.cookies }

// AppendURLBase appends the key of in's URL: Append's, with every
// {cookie:Name} part empty, as a purge by URL (which knows no cookies)
// builds it. Its URL counter is the one the pages of every cookie value
// of the URL record (Cache.LookupURL), so a purge by URL reaches them all.
func (k *KeyTemplate) AppendURLBase(dst []byte, in *KeyInput) (key []byte, ok bool) {
	u := *in
	u.Cookies = nil
	return k.Append(dst, &u, nil)
}

// CookiesValid reports whether every cookie the key includes has a value
// CookieValue accepts in in: when it is false, Append refuses in too.
func (k *KeyTemplate) CookiesValid(in *KeyInput) bool {
	for _, name := range k.cookies {
		if _, ok := CookieValue(in.Cookies, name); !ok {
			return false
		}
	}
	return true
}

// MaxCookieValue bounds the value of a cookie a key includes
// ({cookie:Name}): a language, currency or theme is short.
const MaxCookieValue = 64

// CookieValue returns the value of the cookie name in the raw Cookie
// header lines, as a key includes it ({cookie:Name}): spaces around it and
// one pair of double quotes (RFC 6265 section 4.1.1) removed. An absent
// cookie and an empty one are the same, a nil value: the application
// sees no choice either way. ok is false, and the request must not be
// cached, when the value is longer than MaxCookieValue, holds a byte other
// than ASCII letters, digits, "-", "_", "." and "+" ("pt-BR", "EUR",
// "dark"), when the cookie is sent twice with different values (which
// one the application reads depends on the framework), or when it is in a
// request of several Cookie lines (servers join them differently: gunicorn
// with ",", which glues the next line onto a value). Names are compared
// exactly, as browsers and frameworks do.
func CookieValue(lines [][]byte, name string) (value []byte, ok bool) {
	found, nonEmpty := false, 0
	for _, line := range lines {
		if len(line) > 0 {
			nonEmpty++
		}
		for rest := line; len(rest) > 0; {
			var pair []byte
			if i := bytes.IndexByte(rest, ';'); i >= 0 {
				pair, rest = rest[:i], rest[i+1:]
			} else {
				pair, rest = rest, nil
			}
			n, v, _ := bytes.Cut(pair, []byte{'='})
			if string(bytes.TrimSpace(n)) != name {
				continue
			}
			v = bytes.TrimSpace(v)
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if len(v) > MaxCookieValue || !cookieValueBytes(v) {
				return nil, false
			}
			if len(v) == 0 {
				v = nil
			}
			if found && !bytes.Equal(v, value) {
				return nil, false
			}
			found, value = true, v
		}
	}
	if found && nonEmpty > 1 {
		return nil, false
	}
	return value, true
}

func cookieValueBytes(v []byte) bool {
	for _, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '+':
		default:
			return false
		}
	}
	return true
}

// validCookieName: an RFC 9110 token, as RFC 6265 defines cookie names.
func validCookieName(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// A HeaderPeeker returns a request header's value; *fasthttp.RequestHeader
// is one.
type HeaderPeeker interface {
	Peek(name string) []byte
}

// KeyInput is the part of a request a key is built from. The slices alias
// the request.
type KeyInput struct {
	Scheme []byte
	Host   []byte // lower case
	Path   []byte // raw, as sent
	Query  []byte // raw, without "?"
	Header HeaderPeeker
	// Cookies are the request's raw Cookie header lines, every one, for
	// {cookie:Name}.
	Cookies [][]byte
}

// Append appends the key for in, followed by suffix, to dst. A key longer
// than MaxKeyLength or holding bytes memcached refuses is replaced by the
// hash prefix and the hash of what it would have been, so the same request
// always gets the same legal key. ok is false when the request has too many
// query parameters to normalize, or a cookie the key includes has a value
// CookieValue refuses: do not cache it.
func (k *KeyTemplate) Append(dst []byte, in *KeyInput, suffix []byte) (key []byte, ok bool) {
	start := len(dst)
	for _, s := range k.segs {
		switch s.token {
		case tokLiteral:
			dst = append(dst, s.literal...)
		case tokScheme:
			dst = append(dst, in.Scheme...)
		case tokHost:
			dst = append(dst, in.Host...)
		case tokPath:
			dst = append(dst, in.Path...)
		case tokQuery:
			if dst, ok = k.appendQuery(dst, in.Query); !ok {
				return dst[:start], false
			}
		case tokURI:
			dst = append(dst, in.Path...)
			q := len(dst)
			dst = append(dst, '?')
			if dst, ok = k.appendQuery(dst, in.Query); !ok {
				return dst[:start], false
			}
			if len(dst) == q+1 {
				dst = dst[:q] // no query left: no "?"
			}
		case tokHeader:
			if in.Header != nil {
				dst = append(dst, in.Header.Peek(s.header)...)
			}
		case tokCookie:
			v, ok := CookieValue(in.Cookies, s.header)
			if !ok {
				return dst[:start], false
			}
			dst = append(dst, v...)
		}
	}
	dst = append(dst, suffix...)
	return k.Fit(dst, start), true
}

// Fit makes dst[start:] a legal memcached key: one too long or holding
// bytes memcached refuses is replaced by the hash prefix and its hash.
func (k *KeyTemplate) Fit(dst []byte, start int) []byte {
	if key := dst[start:]; len(key) > MaxKeyLength || !legalKey(key) {
		sum := sha256.Sum256(key)
		dst = append(dst[:start], k.hashPrefix...)
		dst = base64.RawURLEncoding.AppendEncode(dst, sum[:])
	}
	return dst
}

// appendQuery appends the query without ignored parameters, sorted when
// asked. Parameters keep their raw bytes.
func (k *KeyTemplate) appendQuery(dst, q []byte) ([]byte, bool) {
	if len(q) == 0 {
		return dst, true
	}
	if len(k.drop) == 0 && !k.sort {
		return append(dst, q...), true
	}
	var params [maxQueryParams][]byte
	n := 0
	for rest := q; len(rest) > 0; {
		var p []byte
		if i := bytes.IndexByte(rest, '&'); i >= 0 {
			p, rest = rest[:i], rest[i+1:]
		} else {
			p, rest = rest, nil
		}
		if len(p) == 0 || k.dropped(p) {
			continue
		}
		if n == maxQueryParams {
			return dst, false
		}
		params[n] = p
		n++
	}
	if k.sort {
		slices.SortStableFunc(params[:n], func(a, b []byte) int { return bytes.Compare(paramName(a), paramName(b)) })
	}
	for i, p := range params[:n] {
		if i > 0 {
			dst = append(dst, '&')
		}
		dst = append(dst, p...)
	}
	return dst, true
}

func paramName(p []byte) []byte {
	if i := bytes.IndexByte(p, '='); i >= 0 {
		return p[:i]
	}
	return p
}

func (k *KeyTemplate) dropped(p []byte) bool {
	name := paramName(p)
	for _, d := range k.drop {
		if prefix, ok := strings.CutSuffix(d, "*"); ok {
			if bytes.HasPrefix(name, []byte(prefix)) {
				return true
			}
		} else if string(name) == d {
			return true
		}
	}
	return false
}

// legalKey is memcached's rule: no spaces, no control characters.
func legalKey(k []byte) bool {
	for _, c := range k {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// SplitURI splits a raw request URI into its path and query. An absolute
// URI ("http://host/p?q") yields its path, "/" when it has none
// ("http://host?q"); "*" yields "*".
func SplitURI(uri []byte) (p, query []byte) {
	root := false
	if i := bytes.Index(uri, []byte("://")); i >= 0 && bytes.IndexByte(uri[:i], '/') < 0 {
		rest := uri[i+3:]
		j := bytes.IndexAny(rest, "/?#")
		if j < 0 {
			return []byte("/"), nil
		}
		uri, root = rest[j:], rest[j] != '/'
	}
	if i := bytes.IndexByte(uri, '#'); i >= 0 {
		uri = uri[:i]
	}
	p = uri
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		p, query = uri[:i], uri[i+1:]
	}
	if root {
		p = []byte("/")
	}
	return p, query
}

// CleanPath is the path an application routes on: percent-decoded, with
// ".", ".." and repeated slashes resolved. Bypass rules match it as well as
// the raw path, so "/%61dmin/" and "//admin/" still meet a rule for
// "/admin/". ok is false when it equals raw (the common case, no copy).
func CleanPath(raw []byte) (clean string, ok bool) {
	if bytes.IndexByte(raw, '%') < 0 && !bytes.Contains(raw, []byte("//")) && !bytes.Contains(raw, []byte("/.")) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' && i+2 < len(raw) {
			if v, ok := unhex(raw[i+1], raw[i+2]); ok {
				b.WriteByte(v)
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	p := b.String()
	if p == "" || p[0] != '/' {
		return p, true
	}
	clean = path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean, true
}

func unhex(a, b byte) (byte, bool) {
	h := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10, true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	x, ok1 := h(a)
	y, ok2 := h(b)
	return x<<4 | y, ok1 && ok2
}
