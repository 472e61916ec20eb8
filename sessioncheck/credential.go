package sessioncheck

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Credentials (API keys, tokens) are checked as sessions are: a
// CredentialFinder takes the credential out of the Authorization header
// (or a query parameter), CredentialKey makes it a key, and a Sessions
// over a store whose query uses :key (and :user) with RuleExists tells
// whether the application knows it: Identified means valid, a missing
// row invalid, an error a doubt. The verdict cache, coalescing, bounds
// and breaker are the sessions'.

// MaxCredentialLength bounds a credential's user and key together: the
// lookup key is at most MaxKeyLength bytes.
const MaxCredentialLength = MaxKeyLength - 1

// CredentialKey appends to dst the key a credential is looked up under:
// user, a NUL byte, then key. No user or key holds a NUL (CredentialFinder
// refuses them), and no session key either, so SplitCredentialKey reads
// it back unambiguously.
func CredentialKey(dst, user, key []byte) []byte {
	dst = append(dst, user...)
	dst = append(dst, 0)
	return append(dst, key...)
}

// SplitCredentialKey returns the user and key parts of a CredentialKey; a
// key without a NUL (a session key) is all key.
func SplitCredentialKey(k string) (user, key string) {
	if i := strings.IndexByte(k, 0); i >= 0 {
		return k[:i], k[i+1:]
	}
	return "", k
}

// CredentialOptions says where a credential comes from.
type CredentialOptions struct {
	// Scheme is the Authorization scheme ("Token", "ApiKey", "Bearer"),
	// compared without regard to case; "" reads no header.
	Scheme string
	// Pattern, when set, must match the credentials after the scheme in
	// full; its named groups "key" (required) and "user" (optional) are
	// the parts looked up ("ApiKey user:key": `(?P<user>[^:]+):(?P<key>.+)`).
	// Without it the whole of them is the key.
	Pattern string
	// QueryParam, when set, is a query parameter carrying the key.
	QueryParam string
}

// A CredentialFinder takes a credential out of a request's Authorization
// header or query. It is safe for concurrent use.
type CredentialFinder struct {
	scheme     string
	re         *regexp.Regexp
	user, key  int // the pattern's groups; user -1 when it has none
	queryParam []byte
}

// NewCredentialFinder checks o.
func NewCredentialFinder(o CredentialOptions) (*CredentialFinder, error) {
	f := &CredentialFinder{scheme: o.Scheme, user: -1}
	if o.Scheme == "" && o.QueryParam == "" {
		return nil, errors.New("sessioncheck: a credential needs a scheme or a query parameter")
	}
	if o.Scheme != "" && !isToken(o.Scheme) {
		return nil, fmt.Errorf("sessioncheck: credential scheme %q is not an HTTP token", o.Scheme)
	}
	if o.QueryParam != "" {
		if strings.ContainsAny(o.QueryParam, "&=?#% +") {
			return nil, fmt.Errorf("sessioncheck: credential query parameter %q is not a parameter name", o.QueryParam)
		}
		f.queryParam = []byte(o.QueryParam)
	}
	if o.Pattern != "" {
		re, err := regexp.Compile(`^(?:` + o.Pattern + `)$`)
		if err != nil {
			return nil, fmt.Errorf("sessioncheck: credential pattern: %w", err)
		}
		f.re, f.key = re, re.SubexpIndex("key")
		f.user = re.SubexpIndex("user")
		if f.key < 0 {
			return nil, fmt.Errorf("sessioncheck: credential pattern %q has no (?P<key>...) group", o.Pattern)
		}
	}
	return f, nil
}

// A Found says what a CredentialFinder found.
type Found uint8

const (
	// NoCredential: no Authorization header, and no query parameter.
	NoCredential Found = iota
	// CredentialFound: one credential, of the configured form.
	CredentialFound
	// OtherAuthorization: an Authorization header of another scheme: not
	// a credential userrouter checks.
	OtherAuthorization
	// BadCredential: the scheme or parameter, but not a credential the
	// pattern and bounds accept (the application may read it otherwise:
	// forward it).
	BadCredential
	// SeveralCredentials: more than one Authorization header, or a header
	// and the query parameter both: which one the application reads is
	// its own business.
	SeveralCredentials
)

// A Credential is what a CredentialFinder found, aliasing the request.
type Credential struct {
	// Header is the whole Authorization value, when the credential came
	// from it; Query the "name=value" of the query parameter otherwise.
	Header, Query []byte
	// User and Key are the parts looked up (User empty without one).
	User, Key []byte
}

// Find reads the credential of a request whose Authorization header lines
// are auth and whose raw query (without "?") is query. It does not
// allocate.
func (f *CredentialFinder) Find(auth [][]byte, query []byte) (Credential, Found) {
	var c Credential
	found := NoCredential
	lines := 0
	for _, v := range auth {
		if len(v) == 0 {
			continue
		}
		lines++
		if lines > 1 {
			return Credential{}, SeveralCredentials
		}
		if f.scheme == "" || len(v) <= len(f.scheme) || !strings.EqualFold(string(v[:len(f.scheme)]), f.scheme) || v[len(f.scheme)] != ' ' {
			found = OtherAuthorization
			continue
		}
		c.Header = v
		found = f.parts(&c, bytes.TrimLeft(v[len(f.scheme):], " "))
	}
	if f.queryParam != nil && len(query) > 0 {
		for p := range bytes.SplitSeq(query, []byte{'&'}) {
			name, value, _ := bytes.Cut(p, []byte{'='})
			exact := bytes.Equal(name, f.queryParam)
			if !exact && !decodesTo(name, f.queryParam) {
				continue
			}
			if found != NoCredential {
				// A second parameter, or a header besides.
				return Credential{}, SeveralCredentials
			}
			c.Query, c.User, c.Key, found = p, nil, value, CredentialFound
			if !exact || !unreserved(value) {
				// An escaped name ("api%5Fkey") is the parameter to the
				// application, which decodes it, but not to the page key,
				// which drops the name as written: never served from the
				// cache.
				found = BadCredential
			}
		}
	}
	if found != CredentialFound {
		c = Credential{}
	}
	return c, found
}

// parts splits the credentials after the scheme into user and key.
func (f *CredentialFinder) parts(c *Credential, cred []byte) Found {
	if f.re == nil {
		c.Key = cred
	} else {
		m := f.re.FindSubmatchIndex(cred)
		if m == nil || m[2*f.key] < 0 {
			return BadCredential
		}
		c.Key = cred[m[2*f.key]:m[2*f.key+1]]
		if f.user >= 0 && m[2*f.user] >= 0 {
			c.User = cred[m[2*f.user]:m[2*f.user+1]]
		}
	}
	if len(c.Key) == 0 || len(c.User)+len(c.Key) > MaxCredentialLength || !visible(c.Key) || !visible(c.User) {
		return BadCredential
	}
	return CredentialFound
}

// decodesTo reports whether the raw query parameter name decodes to want
// as a web framework reads it: %XX escapes, and '+' for a space. It does
// not allocate.
func decodesTo(name, want []byte) bool {
	j := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			if i+2 >= len(name) {
				return false
			}
			hi, ok1 := unhex(name[i+1])
			lo, ok2 := unhex(name[i+2])
			if !ok1 || !ok2 {
				return false
			}
			c = hi<<4 | lo
			i += 2
		}
		if j >= len(want) || want[j] != c {
			return false
		}
		j++
	}
	return j == len(want)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// visible reports whether b is printable ASCII without spaces.
func visible(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// unreserved reports whether b is a non-empty run of URL unreserved
// characters (RFC 3986): nothing to decode, read the same by everyone.
func unreserved(b []byte) bool {
	if len(b) == 0 || len(b) > MaxCredentialLength {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
