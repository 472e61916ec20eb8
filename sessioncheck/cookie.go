package sessioncheck

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"
)

// MaxKeyLength bounds a session key, whatever the key pattern allows: no
// framework's keys come close, and a bound keeps every lookup small.
const MaxKeyLength = 256

// KeyResult says what a Cookie header held under the session cookie's name.
type KeyResult uint8

const (
	NoCookie  KeyResult = iota // no session cookie: an anonymous visitor
	KeyFound                   // one well-formed key: look it up
	Duplicate                  // the name appears more than once
	Malformed                  // the header holds bytes no cookie may hold
	BadKey                     // the value fails the key pattern or MaxKeyLength
)

var keyResultNames = [...]string{"no-cookie", "key-found", "duplicate-cookie", "malformed-cookie", "bad-key"}

func (r KeyResult) String() string { return keyResultNames[r] }

// A KeyFinder finds the session key in a Cookie header. A visitor whose
// header has no key, the name twice, bytes no cookie may hold, or a key the
// pattern rejects is anonymous: the application would ignore such a key and
// start a fresh session, and no query is sent for it. KeyFinder is safe for
// concurrent use and does not allocate.
type KeyFinder struct {
	name    []byte
	pattern *regexp.Regexp
	// class and minLen/maxLen replace pattern when it is a single
	// anchored character class repeated, like ^[a-z0-9]{32}$: a table
	// lookup per byte instead of a regexp run.
	class          *[256]bool
	minLen, maxLen int
}

// NewKeyFinder returns a KeyFinder for the cookie name and a key pattern,
// a regexp a key must match in full (anchor it with ^ and $).
func NewKeyFinder(name, pattern string) (*KeyFinder, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("sessioncheck: key pattern %q: %w", pattern, err)
	}
	f := &KeyFinder{name: []byte(name), pattern: re}
	f.class, f.minLen, f.maxLen = simpleClass(pattern)
	return f, nil
}

// Find returns the session key in a Cookie header value. The key aliases
// header: copy it before header is reused.
func (f *KeyFinder) Find(header []byte) ([]byte, KeyResult) {
	var key []byte
	found := false
	for rest := header; len(rest) > 0; {
		var pair []byte
		if i := bytes.IndexByte(rest, ';'); i >= 0 {
			pair, rest = rest[:i], rest[i+1:]
		} else {
			pair, rest = rest, nil
		}
		pair = trimOWS(pair)
		for _, c := range pair {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return nil, Malformed
			}
		}
		name, value, ok := bytes.Cut(pair, []byte{'='})
		if !ok || !bytes.Equal(trimOWS(name), f.name) {
			continue
		}
		if found {
			return nil, Duplicate
		}
		found = true
		key = trimOWS(value)
		if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
			key = key[1 : len(key)-1]
		}
	}
	if !found {
		return nil, NoCookie
	}
	if !f.valid(key) {
		return nil, BadKey
	}
	return key, KeyFound
}

func (f *KeyFinder) valid(key []byte) bool {
	if len(key) == 0 || len(key) > MaxKeyLength {
		return false
	}
	if f.class == nil {
		return f.pattern.Match(key)
	}
	if len(key) < f.minLen || (f.maxLen >= 0 && len(key) > f.maxLen) {
		return false
	}
	for _, c := range key {
		if !f.class[c] {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// simpleClass recognizes ^[class]{m,n}$ (or *, +, {m}) over ASCII and
// returns its byte table and length bounds (maxLen -1 for none); nil when
// the pattern has any other shape.
func simpleClass(pattern string) (*[256]bool, int, int) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, 0, 0
	}
	if re.Op != syntax.OpConcat || len(re.Sub) != 3 ||
		re.Sub[0].Op != syntax.OpBeginText || re.Sub[2].Op != syntax.OpEndText {
		return nil, 0, 0
	}
	rep := re.Sub[1]
	var minLen, maxLen int
	var class *syntax.Regexp
	switch rep.Op {
	case syntax.OpRepeat:
		minLen, maxLen, class = rep.Min, rep.Max, rep.Sub[0]
	case syntax.OpStar:
		minLen, maxLen, class = 0, -1, rep.Sub[0]
	case syntax.OpPlus:
		minLen, maxLen, class = 1, -1, rep.Sub[0]
	default:
		return nil, 0, 0
	}
	if class.Op != syntax.OpCharClass {
		return nil, 0, 0
	}
	var table [256]bool
	for i := 0; i+1 < len(class.Rune); i += 2 {
		lo, hi := class.Rune[i], class.Rune[i+1]
		if hi > 0x7f {
			return nil, 0, 0 // keep non-ASCII classes on the regexp engine
		}
		for r := lo; r <= hi; r++ {
			table[r] = true
		}
	}
	return &table, minLen, maxLen
}
