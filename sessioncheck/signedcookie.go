package sessioncheck

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
)

// Django's signed_cookies session engine keeps the whole session in the
// cookie: signing.dumps(session, salt=SignedCookieSalt, compress=True),
// "payload:timestamp:signature", the payload URL-safe base64 of the JSON
// session dict (zlib-compressed, with a leading ".", when that is
// shorter), the timestamp base62 Unix seconds, the signature
// HMAC-SHA256 keyed with SHA-256(salt + "signer" + SECRET_KEY).
const (
	// SignedCookieSalt is the salt the engine signs with, whatever the
	// SessionStore class is called.
	SignedCookieSalt = "django.contrib.sessions.backends.signed_cookies"
	// DefaultSignedCookieMaxAge is Django's SESSION_COOKIE_AGE default,
	// two weeks: the engine loads a cookie signed at most this long ago.
	DefaultSignedCookieMaxAge = 1209600 * time.Second
	// SignedCookiePattern is the key pattern a signed session cookie
	// matches: base64url, "." and ":".
	SignedCookiePattern = `^[A-Za-z0-9_.:-]+$`
	// MaxSignedCookieLength bounds the cookie: browsers keep no cookie
	// over 4096 bytes. A longer one is a doubt.
	MaxSignedCookieLength = 4096
	// maxCookieInflated bounds the decompressed session (a 4 KB zlib
	// bomb inflates to 4 MB); a larger one is a doubt.
	maxCookieInflated = 1 << 20
	// maxCookieDepth bounds the session JSON's nesting; a deeper one is
	// a doubt (Python's json gives up near 1000).
	maxCookieDepth = 512
)

// ParseSignedCookie reads a signed_cookies session cookie as Django's
// SessionStore.load does, and tells whether its visitor is logged in (the
// session dict holds _auth_user_id). signer may be nil.
//
// Django loads any cookie that fails to load as an empty session, so
// whatever Django could not load is Anonymous, with no error: a cookie that
// is not "payload:timestamp:signature" with a base62 timestamp and a
// SHA-256 (or Django 3.2's legacy SHA-1) signature, one signed more than
// maxAge before now, and, when signer has Secrets, one whose signature
// matches none of them. Without Secrets the signature is not checked: the
// payload is readable without the key, and a forged cookie gains nothing
// (see the README).
//
// A payload that cannot be read although Django may have written it — not
// base64, broken zlib, not a JSON object (a pickled session), or over the
// bounds (MaxSignedCookieLength, 1 MiB inflated, 512 levels of nesting) —
// is a doubt, ErrUndecodable: the visitor is forwarded and Django decides.
func ParseSignedCookie(cookie []byte, signer *DjangoSigner, maxAge time.Duration, now time.Time) (Verdict, error) {
	if len(cookie) > MaxSignedCookieLength {
		return Anonymous, fmt.Errorf("%w: a signed cookie of %d bytes, over %d", ErrUndecodable, len(cookie), MaxSignedCookieLength)
	}
	i := bytes.LastIndexByte(cookie, ':')
	if i < 0 {
		return Anonymous, nil
	}
	signed, sig := cookie[:i], cookie[i+1:]
	j := bytes.LastIndexByte(signed, ':')
	if j < 0 {
		return Anonymous, nil
	}
	payload, ts := signed[:j], signed[j+1:]
	if (len(sig) != 43 && len(sig) != 27) || !allIn(sig, base64URL) {
		return Anonymous, nil // no signature Django makes
	}
	if signer != nil && len(signer.Secrets) > 0 && !signer.verifySigned(signed, sig) {
		return Anonymous, nil
	}
	stamp, ok := base62Decode(ts)
	if !ok {
		return Anonymous, nil
	}
	if now.Sub(time.Unix(stamp, 0)) > maxAge {
		return Anonymous, nil // expired: SignatureExpired
	}

	compressed := len(payload) > 0 && payload[0] == '.'
	if compressed {
		payload = payload[1:]
	}
	js := make([]byte, base64.RawURLEncoding.DecodedLen(len(payload)))
	n, err := base64.RawURLEncoding.Decode(js, payload)
	if err != nil {
		return Anonymous, fmt.Errorf("%w: signed cookie payload: %v", ErrUndecodable, err)
	}
	js = js[:n]
	if compressed {
		z := inflaters.Get().(*inflater)
		defer func() {
			if z.out.Cap() > 256<<10 {
				z.out = bytes.Buffer{}
			}
			inflaters.Put(z)
		}()
		if err := z.reset(js); err != nil {
			return Anonymous, fmt.Errorf("%w: signed cookie zlib: %v", ErrUndecodable, err)
		}
		z.out.Reset()
		inflated, err := z.out.ReadFrom(io.LimitReader(z.r, maxCookieInflated+1))
		if err != nil || inflated > maxCookieInflated {
			return Anonymous, fmt.Errorf("%w: signed cookie zlib payload broken or over %d bytes", ErrUndecodable, maxCookieInflated)
		}
		js = z.out.Bytes()
	}
	identified, err := scanSessionJSON(js)
	if err != nil {
		return Anonymous, fmt.Errorf("%w: signed cookie session: %v", ErrUndecodable, err)
	}
	if identified {
		return Identified, nil
	}
	return Anonymous, nil
}

// base62Decode is django.utils.baseconv.base62.decode for the
// timestamps signing writes, digits only (Django would read a negative one
// as expired, so refusing it changes nothing). One too large for int64 is
// in the far future, and so not expired, as for Django.
func base62Decode(s []byte) (int64, bool) {
	if len(s) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range s {
		var d int64
		switch {
		case '0' <= c && c <= '9':
			d = int64(c - '0')
		case 'A' <= c && c <= 'Z':
			d = int64(c-'A') + 10
		case 'a' <= c && c <= 'z':
			d = int64(c-'a') + 36
		default:
			return 0, false
		}
		if n > (1<<62)/62 {
			n = 1 << 62 // saturate: far in the future
			continue
		}
		n = n*62 + d
	}
	return n, true
}

// scanSessionJSON reads a session dict as Python's json.loads does (with
// NaN, Infinity and -Infinity, which json.dumps writes for such floats)
// and reports whether it holds _auth_user_id with a value other than null
// or "". The last of repeated names wins, as in Python. Anything but one
// object, or nesting deeper than maxCookieDepth, is an error.
func scanSessionJSON(b []byte) (bool, error) {
	s := jsonScanner{b: b}
	s.space()
	if s.i >= len(b) || b[s.i] != '{' {
		return false, errors.New("not a JSON object (a pickled session?)")
	}
	s.i++
	var auth []byte
	found := false
	s.space()
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			s.space()
			name, escaped, err := s.str()
			if err != nil {
				return false, err
			}
			s.space()
			if s.peek() != ':' {
				return false, s.errf("':' expected")
			}
			s.i++
			s.space()
			start := s.i
			if err := s.value(1); err != nil {
				return false, err
			}
			if isAuthUserKey(name, escaped) {
				auth, found = b[start:s.i], true
			}
			s.space()
			switch s.peek() {
			case ',':
				s.i++
				continue
			case '}':
				s.i++
			default:
				return false, s.errf("',' or '}' expected")
			}
			break
		}
	}
	s.space()
	if s.i != len(b) {
		return false, s.errf("data after the object")
	}
	if !found {
		return false, nil
	}
	switch string(auth) {
	case "null", `""`:
		return false, nil
	}
	return true, nil
}

// isAuthUserKey reports whether a member name (between its quotes) is
// "_auth_user_id", unescaping it when it holds escapes.
func isAuthUserKey(name []byte, escaped bool) bool {
	const key = "_auth_user_id"
	if !escaped {
		return string(name) == key
	}
	var s string
	quoted := make([]byte, 0, len(name)+2)
	quoted = append(append(append(quoted, '"'), name...), '"')
	return json.Unmarshal(quoted, &s) == nil && s == key
}

// jsonScanner walks JSON as Python's json module accepts it, without
// building values.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) errf(msg string) error {
	return fmt.Errorf("JSON at byte %d: %s", s.i, msg)
}

// value skips one value at nesting depth (the enclosing object's).
func (s *jsonScanner) value(depth int) error {
	switch c := s.peek(); {
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '{' || c == '[':
		if depth >= maxCookieDepth {
			return s.errf(fmt.Sprintf("nested deeper than %d", maxCookieDepth))
		}
		return s.container(depth + 1)
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	for _, lit := range [...]string{"true", "false", "null", "NaN", "Infinity"} {
		if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
			s.i += len(lit)
			return nil
		}
	}
	return s.errf("a value expected")
}

// container skips an object or an array, s.i on its opening bracket.
func (s *jsonScanner) container(depth int) error {
	isObject := s.b[s.i] == '{'
	end := byte(']')
	if isObject {
		end = '}'
	}
	s.i++
	s.space()
	if s.peek() == end {
		s.i++
		return nil
	}
	for {
		s.space()
		if isObject {
			if _, _, err := s.str(); err != nil {
				return err
			}
			s.space()
			if s.peek() != ':' {
				return s.errf("':' expected")
			}
			s.i++
			s.space()
		}
		if err := s.value(depth); err != nil {
			return err
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
		case end:
			s.i++
			return nil
		default:
			return s.errf("',' or a closing bracket expected")
		}
	}
}

// str reads a string, s.i on its opening quote, and returns what is
// between the quotes and whether it holds an escape. Like Python's
// json.loads (strict), it refuses control characters; bytes of 0x80 and
// above are characters (Django decodes the JSON as Latin-1).
func (s *jsonScanner) str() ([]byte, bool, error) {
	if s.peek() != '"' {
		return nil, false, s.errf("a string expected")
	}
	s.i++
	start, escaped := s.i, false
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], escaped, nil
		case c < 0x20:
			return nil, false, s.errf("a control character in a string")
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return nil, false, s.errf("an unterminated escape")
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) || !allIn(s.b[s.i+2:s.i+6], "0123456789abcdefABCDEF") {
					return nil, false, s.errf("a bad \\u escape")
				}
				s.i += 6
			default:
				return nil, false, s.errf("a bad escape")
			}
		default:
			s.i++
		}
	}
	return nil, false, s.errf("an unterminated string")
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)? or
// -Infinity, as Python's json does.
func (s *jsonScanner) number() error {
	if s.peek() == '-' {
		s.i++
		if bytes.HasPrefix(s.b[s.i:], []byte("Infinity")) {
			s.i += len("Infinity")
			return nil
		}
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		digits()
	default:
		return s.errf("a digit expected")
	}
	if s.peek() == '.' {
		s.i++
		if digits() == 0 {
			return s.errf("a digit expected after '.'")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if digits() == 0 {
			return s.errf("a digit expected in the exponent")
		}
	}
	return nil
}

// SignedCookieOptions configures SignedCookies. Zero values mean the
// defaults of Options.
type SignedCookieOptions struct {
	// Secrets are SECRET_KEY followed by SECRET_KEY_FALLBACKS; empty, the
	// signature is not checked.
	Secrets []string
	// MaxAge is SESSION_COOKIE_AGE. Default DefaultSignedCookieMaxAge.
	MaxAge time.Duration
	// CacheEntries bounds the verdict cache: at most CacheEntries × 512
	// bytes of cookies are kept (cookies are up to 4096 bytes long).
	CacheEntries int
	// TTLIdentified and TTLAnonymous: how long verdicts are cached, ±10%.
	TTLIdentified, TTLAnonymous time.Duration
	// Stats, when set, is counted into; nil means a new one.
	Stats *Stats
	// Now, when set, replaces time.Now (tests).
	Now func() time.Time
}

// SignedCookies is the Checker for Django's signed_cookies session engine:
// the session is the cookie, so there is no store to ask, only
// ParseSignedCookie, with a verdict cache in front (decoding and verifying
// costs microseconds; a cached verdict costs no allocation). Doubts are
// not cached. SignedCookies is safe for concurrent use.
type SignedCookies struct {
	signer *DjangoSigner
	maxAge time.Duration
	now    func() time.Time
	ttl    [2]time.Duration
	cache  *otter.Cache[string, kind]

	Stats *Stats
}

var _ Checker = (*SignedCookies)(nil)

// NewSignedCookies returns a SignedCookies.
func NewSignedCookies(o SignedCookieOptions) (*SignedCookies, error) {
	c := &SignedCookies{
		maxAge: cmp.Or(o.MaxAge, DefaultSignedCookieMaxAge),
		now:    o.Now,
		Stats:  o.Stats,
	}
	if len(o.Secrets) > 0 {
		c.signer = &DjangoSigner{Secrets: o.Secrets, Salt: SignedCookieSalt}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.Stats == nil {
		c.Stats = new(Stats)
	}
	c.ttl[kindAnonymous] = cmp.Or(o.TTLAnonymous, DefaultTTLAnonymous)
	c.ttl[kindIdentified] = cmp.Or(o.TTLIdentified, DefaultTTLIdentified)
	entries := cmp.Or(o.CacheEntries, DefaultCacheEntries)
	cache, err := otter.New(&otter.Options[string, kind]{
		MaximumWeight: uint64(entries) * 512,
		Weigher:       func(key string, _ kind) uint32 { return uint32(len(key)) + 64 },
		ExpiryCalculator: otter.ExpiryCreatingFunc(func(e otter.Entry[string, kind]) time.Duration {
			ttl := c.ttl[e.Value]
			return ttl - ttl/10 + rand.N(ttl/5+1)
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("sessioncheck: verdict cache: %w", err)
	}
	c.cache = cache
	return c, nil
}

// Check returns the verdict for a signed session cookie's value; an error
// is a doubt. A cookie seen recently is answered from the cache without
// allocating.
func (c *SignedCookies) Check(_ context.Context, cookie []byte) (Verdict, error) {
	c.Stats.Lookups.Add(1)
	if len(cookie) == 0 {
		c.Stats.Anonymous.Add(1)
		return Anonymous, nil
	}
	if k, ok := c.cache.GetIfPresent(unsafe.String(&cookie[0], len(cookie))); ok {
		c.Stats.CacheHits.Add(1)
		return c.verdict(k), nil
	}
	v, err := ParseSignedCookie(cookie, c.signer, c.maxAge, c.now())
	if err != nil {
		c.Stats.Doubts[ReasonIndex(err)].Add(1)
		return Anonymous, err
	}
	k := kindAnonymous
	if v == Identified {
		k = kindIdentified
	}
	c.cache.Set(string(cookie), k)
	return c.verdict(k), nil
}

func (c *SignedCookies) verdict(k kind) Verdict {
	if k == kindIdentified {
		c.Stats.Identified.Add(1)
		return Identified
	}
	c.Stats.Anonymous.Add(1)
	return Anonymous
}

// Close does nothing: there is no store.
func (c *SignedCookies) Close() error { return nil }
