package sessioncheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Defaults of the identified keys of NewCacheRule.
const (
	// DefaultRailsIdentifiedKey is where Warden (Devise) keeps the logged-in
	// user of scope "user".
	DefaultRailsIdentifiedKey = "warden.user.user.key"
	// DefaultLaravelIdentifiedPrefix starts the key Laravel's SessionGuard
	// of guard "web" keeps its user id under: login_web_ followed by the
	// SHA-1 of its class name.
	DefaultLaravelIdentifiedPrefix = "login_web_"
)

// NewCacheRule returns the rule for the values a cache-backed session
// store (driver "redis" or "memcached") holds:
//
//   - "django": the session dict as Django's cache and cached_db engines
//     store it through a cache backend: pickled (ParsePickledSession);
//     a value in django_session's own format (a cached_db fallback row) is
//     read as the "django" rule of NewRule reads it.
//   - "rails_json": a JSON object, as the redis-session-store gem writes
//     with serializer: :json; identified when it has the member key
//     (default DefaultRailsIdentifiedKey).
//   - "laravel_php": PHP serialize() of the session array, as Laravel's
//     cache session handler writes through its Redis or memcached cache
//     store (a serialized string holding the serialized array); identified
//     when a key starts with key (default DefaultLaravelIdentifiedPrefix).
//   - "exists": any value means identified.
//
// signer is used by "django" for rows in django_session's format; it may
// be nil.
func NewCacheRule(name, key string, signer *DjangoSigner) (Rule, error) {
	switch name {
	case "django":
		return func(r Row) (Verdict, error) {
			var ok bool
			var err error
			if len(r.Value) > 0 && (r.Value[0] == opProto || isDigits(r.Value)) {
				ok, err = ParsePickledSession(r.Value)
			} else {
				ok, err = ParseDjangoSession(r.Value, signer)
			}
			if err != nil || !ok {
				return Anonymous, err
			}
			return Identified, nil
		}, nil
	case "rails_json":
		if key == "" {
			key = DefaultRailsIdentifiedKey
		}
		return func(r Row) (Verdict, error) { return cacheVerdict(ParseRailsJSONSession(r.Value, key)) }, nil
	case "laravel_php":
		if key == "" {
			key = DefaultLaravelIdentifiedPrefix
		}
		return func(r Row) (Verdict, error) { return cacheVerdict(ParseLaravelSession(r.Value, key)) }, nil
	case "exists":
		return RuleExists, nil
	}
	return nil, fmt.Errorf("sessioncheck: unknown rule %q for a cache-backed store (use \"django\", \"rails_json\", \"laravel_php\" or \"exists\")", name)
}

func cacheVerdict(identified bool, err error) (Verdict, error) {
	if err != nil || !identified {
		return Anonymous, err
	}
	return Identified, nil
}

// ParseRailsJSONSession reads a Rails session stored as a JSON object
// (redis-session-store with serializer: :json or :hybrid) and reports
// whether it has the member key, which Warden sets at login
// ("warden.user.<scope>.key"). A value that is not one JSON object (the
// gem's default serializer, Marshal, for one) returns ErrUndecodable.
func ParseRailsJSONSession(data []byte, key string) (bool, error) {
	if len(data) == 0 || len(data) > maxSessionData {
		return false, fmt.Errorf("%w: %d bytes", ErrUndecodable, len(data))
	}
	if bytes.HasPrefix(data, []byte{4, 8}) {
		return false, fmt.Errorf("%w: a Ruby Marshal dump; configure redis-session-store with serializer: :json", ErrUndecodable)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return false, fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	if m == nil {
		return false, fmt.Errorf("%w: null, not a session object", ErrUndecodable)
	}
	_, ok := m[key]
	return ok, nil
}

// Limits on a PHP-serialized session.
const maxPHPDepth = 64

// ParseLaravelSession reads a Laravel session stored by its cache session
// handler: PHP serialize() of the session array, which the Redis and
// memcached cache stores serialize once more (a string holding it). It
// reports whether a top-level key starts with prefix, as "login_web_…"
// does once SessionGuard has logged a user in. Objects, enums and
// references inside are read as syntax only, never instantiated. Anything
// but an array (an encrypted session, SESSION_ENCRYPT=true, for one), or
// nesting deeper than 64, returns ErrUndecodable.
func ParseLaravelSession(data []byte, prefix string) (bool, error) {
	if len(data) == 0 || len(data) > maxSessionData {
		return false, fmt.Errorf("%w: %d bytes", ErrUndecodable, len(data))
	}
	p := phpReader{b: data}
	if data[0] == 's' {
		// The cache store's serialize() around the session's.
		inner, err := p.str()
		if err == nil && p.i != len(p.b) {
			err = p.errf("data after the value")
		}
		if err != nil {
			return false, err
		}
		p = phpReader{b: inner}
	}
	if len(p.b) == 0 || p.b[0] != 'a' {
		return false, fmt.Errorf("%w: not a serialized PHP array (an encrypted session?)", ErrUndecodable)
	}
	found := false
	err := p.array(0, func(k []byte, isStr bool) {
		if isStr && bytes.HasPrefix(k, []byte(prefix)) {
			found = true
		}
	})
	if err == nil && p.i != len(p.b) {
		err = p.errf("data after the array")
	}
	if err != nil {
		return false, err
	}
	return found, nil
}

// phpReader walks PHP's serialize() format without building values.
type phpReader struct {
	b []byte
	i int
}

func (p *phpReader) errf(format string, a ...any) error {
	return fmt.Errorf("%w: PHP serialized data at byte %d: %s", ErrUndecodable, p.i, fmt.Sprintf(format, a...))
}

func (p *phpReader) expect(c byte) error {
	if p.i >= len(p.b) || p.b[p.i] != c {
		return p.errf("%q expected", c)
	}
	p.i++
	return nil
}

// until returns the bytes up to the next c, which it consumes.
func (p *phpReader) until(c byte) ([]byte, error) {
	j := bytes.IndexByte(p.b[p.i:], c)
	if j < 0 {
		return nil, p.errf("%q expected", c)
	}
	s := p.b[p.i : p.i+j]
	p.i += j + 1
	return s, nil
}

// count reads a non-negative decimal up to c.
func (p *phpReader) count(c byte) (int, error) {
	s, err := p.until(c)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(s))
	if err != nil || n < 0 || len(s) == 0 || s[0] == '+' || n > len(p.b) {
		return 0, p.errf("bad length %q", s)
	}
	return n, nil
}

// quoted reads `n:"…"` (the bytes, n of them) at p.i.
func (p *phpReader) quoted() ([]byte, error) {
	n, err := p.count(':')
	if err != nil {
		return nil, err
	}
	if err := p.expect('"'); err != nil {
		return nil, err
	}
	if n > len(p.b)-p.i {
		return nil, p.errf("string past the end")
	}
	s := p.b[p.i : p.i+n]
	p.i += n
	return s, p.expect('"')
}

// str reads s:n:"…"; whole.
func (p *phpReader) str() ([]byte, error) {
	if err := p.expect('s'); err != nil {
		return nil, err
	}
	if err := p.expect(':'); err != nil {
		return nil, err
	}
	s, err := p.quoted()
	if err != nil {
		return nil, err
	}
	return s, p.expect(';')
}

// array reads a:n:{…} at p.i, telling key about each key of its own.
func (p *phpReader) array(depth int, key func(k []byte, isStr bool)) error {
	if err := p.expect('a'); err != nil {
		return err
	}
	if err := p.expect(':'); err != nil {
		return err
	}
	return p.members(depth, key)
}

// members reads n:{key value …}.
func (p *phpReader) members(depth int, key func(k []byte, isStr bool)) error {
	if depth >= maxPHPDepth {
		return p.errf("nested deeper than %d", maxPHPDepth)
	}
	n, err := p.count(':')
	if err != nil {
		return err
	}
	if err := p.expect('{'); err != nil {
		return err
	}
	for range n {
		if p.i >= len(p.b) {
			return p.errf("array past the end")
		}
		switch p.b[p.i] {
		case 's':
			k, err := p.str()
			if err != nil {
				return err
			}
			if key != nil {
				key(k, true)
			}
		case 'i':
			if err := p.value(depth); err != nil {
				return err
			}
			if key != nil {
				key(nil, false)
			}
		default:
			return p.errf("a key must be a string or an int")
		}
		if err := p.value(depth); err != nil {
			return err
		}
	}
	return p.expect('}')
}

// value skips one value at p.i.
func (p *phpReader) value(depth int) error {
	if p.i+1 >= len(p.b) {
		return p.errf("value expected")
	}
	c := p.b[p.i]
	if c == 'N' {
		p.i++
		return p.expect(';')
	}
	p.i++
	if err := p.expect(':'); err != nil {
		return err
	}
	switch c {
	case 'b':
		v, err := p.until(';')
		if err != nil || (string(v) != "0" && string(v) != "1") {
			return p.errf("bad bool")
		}
		return nil
	case 'i':
		v, err := p.until(';')
		if err != nil {
			return err
		}
		if _, err := strconv.ParseInt(string(v), 10, 64); err != nil {
			return p.errf("bad int %q", v)
		}
		return nil
	case 'd':
		v, err := p.until(';')
		if err != nil {
			return err
		}
		switch string(v) {
		case "INF", "-INF", "NAN":
			return nil
		}
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			return p.errf("bad float %q", v)
		}
		return nil
	case 'r', 'R':
		// A reference to an earlier value: a number, nothing to follow.
		v, err := p.until(';')
		if err != nil {
			return err
		}
		if _, err := strconv.ParseUint(string(v), 10, 32); err != nil {
			return p.errf("bad reference %q", v)
		}
		return nil
	case 's':
		if _, err := p.quoted(); err != nil {
			return err
		}
		return p.expect(';')
	case 'E':
		// An enum case, "Class:Case": read, not resolved.
		if _, err := p.quoted(); err != nil {
			return err
		}
		return p.expect(';')
	case 'a':
		return p.members(depth+1, nil)
	case 'O':
		// An object: its class name and properties, read as syntax only.
		if _, err := p.quoted(); err != nil {
			return err
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		return p.members(depth+1, nil)
	case 'C':
		// An object with its own serialization: the class name and the
		// length of what it wrote, skipped.
		if _, err := p.quoted(); err != nil {
			return err
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		n, err := p.count(':')
		if err != nil {
			return err
		}
		if err := p.expect('{'); err != nil {
			return err
		}
		if n > len(p.b)-p.i {
			return p.errf("object past the end")
		}
		p.i += n
		return p.expect('}')
	}
	return p.errf("unknown type %q", c)
}
