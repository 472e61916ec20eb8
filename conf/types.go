package conf

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in the config file as a string in Go
// syntax: "250ms", "1.5s", "2m", "1h30m". "0s" (or "0") means none.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText writes d the way the config file spells it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func parseDuration(s string) (Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write a number with a unit, like \"250ms\", \"2s\" or \"1m\"", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return Duration(d), nil
}

// Size is a byte count written either as an integer or as a string with a
// unit: "512", "64KiB", "1MiB", "2GiB". K, M and G (with or without "B" or
// "iB") are powers of 1024, as in nginx and memcached's -I.
type Size int64

// MarshalText writes s with the largest unit that divides it exactly.
func (s Size) MarshalText() ([]byte, error) {
	n := int64(s)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return []byte(strconv.FormatInt(n/u.mult, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(n, 10)), nil
}

func parseSize(s string) (Size, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"gib", 1 << 30}, {"gb", 1 << 30}, {"g", 1 << 30},
		{"mib", 1 << 20}, {"mb", 1 << 20}, {"m", 1 << 20},
		{"kib", 1 << 10}, {"kb", 1 << 10}, {"k", 1 << 10},
		{"b", 1},
	} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("%q is not a size: write bytes or a number with a unit, like \"64KiB\" or \"1MiB\"", s)
	}
	return Size(n * mult), nil
}

// Regexp is a regular expression in Go's syntax (RE2), compiled when the
// config is loaded. The zero value holds none.
type Regexp struct{ *regexp.Regexp }

func mustRegexp(s string) Regexp { return Regexp{regexp.MustCompile(s)} }

// UnmarshalText compiles b.
func (r *Regexp) UnmarshalText(b []byte) error {
	re, err := regexp.Compile(string(b))
	if err != nil {
		return fmt.Errorf("is not a regexp: %v", err)
	}
	r.Regexp = re
	return nil
}

// MarshalText writes r's source.
func (r Regexp) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String returns r's source, "" for none.
func (r Regexp) String() string {
	if r.Regexp == nil {
		return ""
	}
	return r.Regexp.String()
}

// Regexps returns rs as the compiled regexps the libraries take.
func Regexps(rs []Regexp) []*regexp.Regexp {
	out := make([]*regexp.Regexp, len(rs))
	for i, r := range rs {
		out[i] = r.Regexp
	}
	return out
}

// Prefix is an IP network, written as a CIDR ("10.0.0.0/8") or as one IP
// address (a /32 or /128). Host bits are masked off.
type Prefix netip.Prefix

func mustPrefix(s string) Prefix { return Prefix(netip.MustParsePrefix(s)) }

// UnmarshalText parses b.
func (p *Prefix) UnmarshalText(b []byte) error {
	s := string(b)
	if q, err := netip.ParsePrefix(s); err == nil {
		*p = Prefix(q.Masked())
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("%q is not an IP address or CIDR like \"10.0.0.0/8\"", s)
	}
	*p = Prefix(netip.PrefixFrom(a, a.BitLen()))
	return nil
}

// MarshalText writes p as a CIDR ("10.0.0.1/32" for one address).
func (p Prefix) MarshalText() ([]byte, error) { return netip.Prefix(p).MarshalText() }

// Prefixes returns ps as the netip.Prefix values the libraries take.
func Prefixes(ps []Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = netip.Prefix(p)
	}
	return out
}

// FileMode is a file's permission bits, written in octal: "0660".
type FileMode os.FileMode

// UnmarshalText parses b.
func (m *FileMode) UnmarshalText(b []byte) error {
	n, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || n > 0o777 {
		return fmt.Errorf("%q is not a file mode: write octal digits like \"0660\"", b)
	}
	*m = FileMode(n)
	return nil
}

// MarshalText writes m in octal.
func (m FileMode) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "%04o", uint32(m)), nil }

// Location is a time zone, written as "UTC" or an IANA name such as
// "Europe/Paris", loaded when the config is.
type Location struct{ *time.Location }

// UnmarshalText loads the zone b names.
func (l *Location) UnmarshalText(b []byte) error {
	loc, err := time.LoadLocation(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a time zone: write \"UTC\" or a name like \"Europe/Paris\"", b)
	}
	l.Location = loc
	return nil
}

// MarshalText writes the zone's name.
func (l Location) MarshalText() ([]byte, error) { return []byte(l.Location.String()), nil }

// Level is a log level: "debug", "info", "warn" or "error".
type Level slog.Level

var levels = []struct {
	name  string
	level slog.Level
}{{"debug", slog.LevelDebug}, {"info", slog.LevelInfo}, {"warn", slog.LevelWarn}, {"error", slog.LevelError}}

// UnmarshalText parses b.
func (l *Level) UnmarshalText(b []byte) error {
	for _, v := range levels {
		if string(b) == v.name {
			*l = Level(v.level)
			return nil
		}
	}
	return fmt.Errorf("%q is not one of \"debug\", \"info\", \"warn\", \"error\"", b)
}

// MarshalText writes l's name.
func (l Level) MarshalText() ([]byte, error) {
	for _, v := range levels {
		if slog.Level(l) == v.level {
			return []byte(v.name), nil
		}
	}
	return nil, fmt.Errorf("conf: no name for log level %d", l)
}
