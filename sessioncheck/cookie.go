package sessioncheck

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// MaxKeyLength bounds a session key, whatever the key pattern allows: no
// framework's keys come close, and a bound keeps every lookup small.
const MaxKeyLength = 256

// KeyResult says what a Cookie header held under the session cookie's name.
type KeyResult uint8

const (
	// NoCookie: the application reads no session cookie. Anonymous.
	NoCookie KeyResult = iota
	// KeyFound: the key the application reads. Look it up.
	KeyFound
	// BadKey: the application reads a value that no key the pattern
	// allows can equal, even ignoring ASCII case and trailing spaces as
	// MariaDB compares. Anonymous, and no query is sent.
	BadKey
	// Ambiguous: userrouter's reading may differ from the application's.
	// A doubt: forward the visitor to the backend.
	Ambiguous
)

var keyResultNames = [...]string{"no-cookie", "key-found", "bad-key", "ambiguous-cookie"}

func (r KeyResult) String() string {
	if int(r) < len(keyResultNames) {
		return keyResultNames[r]
	}
	return fmt.Sprintf("KeyResult(%d)", r)
}

// Duplicates says which value of a repeated session cookie the
// application reads.
type Duplicates uint8

const (
	// DuplicatesLast reads the last value, as Django (and Python's
	// http.cookies) does. The default.
	DuplicatesLast Duplicates = iota
	// DuplicatesFirst reads the first value, as Rack (Rails) and PHP do.
	DuplicatesFirst
	// DuplicatesDoubt answers Ambiguous when the repeated values differ,
	// for an application whose choice is unknown. Equal values are read.
	DuplicatesDoubt
)

var duplicatesNames = [...]string{"last", "first", "doubt"}

func (d Duplicates) String() string {
	if int(d) < len(duplicatesNames) {
		return duplicatesNames[d]
	}
	return fmt.Sprintf("Duplicates(%d)", d)
}

// A KeyFinder finds the session key in a Cookie header. It reads the key
// as Django's parse_cookie does; where a reading could differ, it answers
// Ambiguous, and the visitor is forwarded, never guessed anonymous.
//
// Django splits the header on ";" only, splits each chunk at its first "="
// (a chunk without one has an empty name), strips whitespace from name and
// value, unquotes a value in double quotes (backslash escapes and \ooo
// octal ones), and keeps the last value of a repeated name (see
// Duplicates). Django strips Unicode whitespace; KeyFinder strips only
// Python's ASCII whitespace (" \t\n\v\f\r" and \x1c-\x1f), so a byte of
// 0x80 or above at the edge of a name that holds the cookie name, or
// anywhere in the session cookie's value, is Ambiguous. Bytes elsewhere in
// the header, control bytes included, do not change what Django reads and
// do not matter.
//
// The value is then judged as the session store would: MariaDB's default
// collations ignore case and trailing spaces, so a value passes when, with
// trailing spaces removed, it matches the key pattern ignoring ASCII case.
// A passing value is returned as Django holds it (unquoted, case and
// trailing spaces kept), and the store's own comparison decides; one
// longer than MaxKeyLength (a key padded with spaces) is Ambiguous. A value
// with a control byte or a byte of 0x80 or above (accents compare equal to
// letters) is Ambiguous; any other failing value is BadKey.
//
// KeyFinder is safe for concurrent use. Find does not allocate, except to
// unquote a value holding a backslash.
type KeyFinder struct {
	name []byte
	// pattern is the key pattern made caseless.
	pattern *regexp.Regexp
	// class and minLen/maxLen replace pattern when it is a single
	// anchored character class repeated, like ^[a-z0-9]{32}$: a table
	// lookup per byte instead of a regexp run. The table holds both
	// cases of every letter the class holds.
	class          *[256]bool
	minLen, maxLen int
	dups           Duplicates
	// maxKey replaces MaxKeyLength when not 0 (WithMaxLength).
	maxKey int
}

// NewKeyFinder returns a KeyFinder for the cookie name and a key pattern,
// a regexp a key must match in full (anchor it with ^ and $). The name must
// be an HTTP token, as cookie names are. Repeated cookies are read with
// DuplicatesLast.
func NewKeyFinder(name, pattern string) (*KeyFinder, error) {
	if !isToken(name) {
		return nil, fmt.Errorf("sessioncheck: cookie name %q is not a token", name)
	}
	if _, err := regexp.Compile(pattern); err != nil {
		return nil, fmt.Errorf("sessioncheck: key pattern %q: %w", pattern, err)
	}
	re, err := regexp.Compile("(?i)" + pattern)
	if err != nil {
		return nil, fmt.Errorf("sessioncheck: key pattern %q: %w", pattern, err)
	}
	f := &KeyFinder{name: []byte(name), pattern: re}
	f.class, f.minLen, f.maxLen = simpleClass(pattern)
	return f, nil
}

// WithDuplicates returns a copy of f that reads a repeated session cookie
// as d says.
func (f *KeyFinder) WithDuplicates(d Duplicates) *KeyFinder {
	g := *f
	g.dups = d
	return &g
}

// WithMaxLength returns a copy of f that admits keys of up to n bytes
// instead of MaxKeyLength: for cookies that hold the session itself,
// Django's signed_cookies, which the Checker bounds.
func (f *KeyFinder) WithMaxLength(n int) *KeyFinder {
	g := *f
	g.maxKey = n
	return &g
}

func (f *KeyFinder) maxKeyLength() int {
	if f.maxKey > 0 {
		return f.maxKey
	}
	return MaxKeyLength
}

// Find returns the session key in a Cookie header value, as KeyFinder's
// doc says. The key aliases header (or, when unquoting decoded an escape,
// is a new slice): copy it before header is reused. Any result but
// KeyFound comes with a nil key.
func (f *KeyFinder) Find(header []byte) ([]byte, KeyResult) {
	// Chunks named, or perhaps named, the session cookie.
	var (
		n                     int
		first, last           []byte // their values
		firstMaybe, lastMaybe bool   // whether their names are only perhaps it
		anyMaybe, differ      bool
	)
	for rest := header; len(rest) > 0; {
		var chunk []byte
		if i := bytes.IndexByte(rest, ';'); i >= 0 {
			chunk, rest = rest[:i], rest[i+1:]
		} else {
			chunk, rest = rest, nil
		}
		i := bytes.IndexByte(chunk, '=')
		if i < 0 {
			continue // Django names it "": never the session cookie
		}
		name := trimSpace(chunk[:i])
		maybe := false
		if !bytes.Equal(name, f.name) {
			// Django strips Unicode whitespace too: a name that holds
			// the cookie name and ends in a non-ASCII byte may be it.
			if len(name) <= len(f.name) || name[0] < 0x80 && name[len(name)-1] < 0x80 ||
				!bytes.Contains(name, f.name) {
				continue
			}
			maybe = true
		}
		value := trimSpace(chunk[i+1:])
		n++
		if n == 1 {
			first, firstMaybe = value, maybe
		} else if !maybe && !bytes.Equal(value, first) {
			differ = true
		}
		last, lastMaybe = value, maybe
		anyMaybe = anyMaybe || maybe
	}
	if n == 0 {
		return nil, NoCookie
	}
	var value []byte
	switch f.dups {
	case DuplicatesLast:
		if lastMaybe {
			return nil, Ambiguous
		}
		value = last
	case DuplicatesFirst:
		if firstMaybe {
			return nil, Ambiguous
		}
		value = first
	default:
		if anyMaybe || differ {
			return nil, Ambiguous
		}
		value = first
	}
	return f.judge(value)
}

// FindLines returns the session key in a request's Cookie header lines,
// as Find does for one. Servers join several lines differently: gunicorn
// joins them with "," (so Django reads the first line's cookies, with the
// next line glued onto the first line's last value), others with "; ". When
// a line after the first holds the cookie name, the readings may differ:
// Ambiguous. Otherwise the first line decides; a key it yields is safe to
// look up either way (gunicorn's reading would be a key no store holds),
// and a value it refuses stays refused unless the pattern admits the ","
// gunicorn adds.
func (f *KeyFinder) FindLines(lines [][]byte) ([]byte, KeyResult) {
	switch len(lines) {
	case 0:
		return nil, NoCookie
	case 1:
		return f.Find(lines[0])
	}
	for _, line := range lines[1:] {
		if bytes.Contains(line, f.name) {
			return nil, Ambiguous
		}
	}
	key, res := f.Find(lines[0])
	if res == BadKey && (f.class == nil || f.class[',']) {
		return nil, Ambiguous
	}
	return key, res
}

// judge turns the value Django reads, whitespace stripped but still
// quoted, into Find's answer.
func (f *KeyFinder) judge(value []byte) ([]byte, KeyResult) {
	if len(value) == 0 {
		return nil, BadKey
	}
	if !printable(value) {
		return nil, Ambiguous
	}
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
		if bytes.IndexByte(value, '\\') >= 0 {
			value = unescape(value)
			if !printable(value) {
				return nil, Ambiguous // an octal escape made it so
			}
		}
	}
	canon := bytes.TrimRight(value, " ")
	if !f.valid(canon) {
		return nil, BadKey
	}
	if len(value) > f.maxKeyLength() {
		return nil, Ambiguous // a valid key padded with spaces
	}
	return value, KeyFound
}

// valid reports whether key matches the pattern, ignoring ASCII case, and
// MaxKeyLength (or WithMaxLength's).
func (f *KeyFinder) valid(key []byte) bool {
	if len(key) == 0 || len(key) > f.maxKeyLength() {
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

// unescape decodes backslash escapes as Python's http.cookies._unquote
// does: \ooo (the first digit 0-3) is that byte, \ followed by anything
// but a newline is what follows it, and any other backslash stays.
func unescape(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) || s[i+1] == '\n' {
			out = append(out, c)
			continue
		}
		if i+3 < len(s) && '0' <= s[i+1] && s[i+1] <= '3' && isOctal(s[i+2]) && isOctal(s[i+3]) {
			out = append(out, (s[i+1]-'0')<<6|(s[i+2]-'0')<<3|(s[i+3]-'0'))
			i += 3
			continue
		}
		out = append(out, s[i+1])
		i++
	}
	return out
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

// printable reports whether b is all printable ASCII, space included.
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// trimSpace strips what Python's str.strip strips among ASCII bytes:
// space, \t\n\v\f\r and \x1c-\x1f.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' || 0x1c <= c && c <= 0x1f }

// isToken reports whether s is a non-empty HTTP token (RFC 9110).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c < 0x80 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// simpleClass recognizes ^[class]{m,n}$ (or *, +, {m}) over ASCII and
// returns its byte table, holding both cases of each letter, and length
// bounds (maxLen -1 for none); nil when the pattern has any other shape.
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
			switch {
			case 'a' <= r && r <= 'z':
				table[r-'a'+'A'] = true
			case 'A' <= r && r <= 'Z':
				table[r-'A'+'a'] = true
			}
		}
	}
	return &table, minLen, maxLen
}
