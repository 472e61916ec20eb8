package main

import (
	"strings"
)

// A cacheMember is one cache's entry in an RFC 9211 Cache-Status field:
// the cache's name and its parameters in the order they were sent.
type cacheMember struct {
	Name   string
	Params []cacheParam
}

// A cacheParam is one parameter of a Cache-Status member. Value is empty
// for a bare key such as "hit" or "stored" (a structured-field true).
type cacheParam struct {
	Key, Value string
}

// parseCacheStatus splits an RFC 9211 Cache-Status field value into its
// members. It is lenient: it never fails, it skips empty members, it keeps
// quoted strings (with their quotes) intact, and it trims optional white
// space around members, names, keys and values. Keys are lower-cased, as
// structured fields require. It allocates; bench calls it once per
// distinct value, never per request.
func parseCacheStatus(v string) []cacheMember {
	var members []cacheMember
	for _, m := range splitOutsideQuotes(v, ',') {
		parts := splitOutsideQuotes(m, ';')
		name := strings.TrimSpace(parts[0])
		if name == "" && len(parts) == 1 {
			continue
		}
		cm := cacheMember{Name: name}
		for _, p := range parts[1:] {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			k, val, _ := strings.Cut(p, "=")
			cm.Params = append(cm.Params, cacheParam{
				Key:   strings.ToLower(strings.TrimSpace(k)),
				Value: strings.TrimSpace(val),
			})
		}
		members = append(members, cm)
	}
	return members
}

// splitOutsideQuotes splits s at every sep that is not inside a
// double-quoted string (backslash escapes honoured). It always returns at
// least one element.
func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// A cacheClass says what the caches did with one Cache-Status value.
type cacheClass struct {
	// Class is "hit" when a cache served the response, "fwd=<reason>"
	// (fwd=miss, fwd=bypass, ...) when it went to the origin, "none" when
	// the response had no Cache-Status header, and "other" when the value
	// names neither hit nor fwd.
	Class string
	// Detail is what the deciding member says beyond hit or fwd, its other
	// parameters joined by "; ": "stored", "collapsed", "detail=stale",
	// "detail=identified". Empty when there is nothing more.
	Detail string
	// Hit reports whether Class is "hit".
	Hit bool
}

// classifyCacheStatus tells what one Cache-Status value says. A response
// counts as a hit when the first parameter after a member's cache name is
// "hit": some cache on the way served it without asking the origin. When
// several members are present (one per cache, the origin's side first),
// the first hit decides; without a hit the last member (the cache closest
// to the client) does. The empty value means "no header" and yields class
// "none".
func classifyCacheStatus(v string) cacheClass {
	if strings.TrimSpace(v) == "" {
		return cacheClass{Class: "none"}
	}
	members := parseCacheStatus(v)
	if len(members) == 0 {
		return cacheClass{Class: "none"}
	}
	decide := members[len(members)-1]
	for _, m := range members {
		if len(m.Params) > 0 && m.Params[0].Key == "hit" {
			decide = m
			break
		}
	}
	var c cacheClass
	var rest []string
	for i, p := range decide.Params {
		switch {
		case i == 0 && p.Key == "hit":
			c.Class, c.Hit = "hit", true
		case c.Class == "" && p.Key == "fwd":
			c.Class = "fwd=" + p.Value
		default:
			rest = append(rest, p.String())
		}
	}
	if c.Class == "" {
		c.Class = "other"
	}
	c.Detail = strings.Join(rest, "; ")
	return c
}

// String formats p as it appears in a Cache-Status field.
func (p cacheParam) String() string {
	if p.Value == "" {
		return p.Key
	}
	return p.Key + "=" + p.Value
}
