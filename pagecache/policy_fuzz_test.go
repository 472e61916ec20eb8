package pagecache

import (
	"cmp"
	"math/big"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// maxDelta is the largest delta-seconds the policy represents: RFC 9111
// section 1.2.2 says a larger one, or one that overflows, counts as 2^31.
const maxDelta = time.Duration(1<<31) * time.Second

func TestParseCacheControl(t *testing.T) {
	const absent = -1
	s := func(n int64) time.Duration { return time.Duration(n) * time.Second }
	for _, tc := range []struct {
		name                                      string
		in                                        string
		private, noStore, noCache, mustRevalidate bool
		maxAge, sMaxAge, swr                      time.Duration
		sie                                       time.Duration // 0 for absent
		fields                                    string
	}{
		{name: "empty", in: "", maxAge: absent, sMaxAge: absent, swr: absent},
		{name: "django cache_page", in: "max-age=600", maxAge: s(600), sMaxAge: absent, swr: absent},
		{name: "django never_cache", in: "max-age=0, no-cache, no-store, must-revalidate, private", private: true, noStore: true, noCache: true, mustRevalidate: true, maxAge: 0, sMaxAge: absent, swr: absent},
		{name: "varnish style", in: "public, max-age=120, s-maxage=3600, stale-while-revalidate=30, stale-if-error=86400", maxAge: s(120), sMaxAge: s(3600), swr: s(30), sie: s(86400)},
		{name: "any case and spacing", in: " Private ,\tNO-STORE,Max-Age = 60 ", private: true, noStore: true, maxAge: s(60), sMaxAge: absent, swr: absent},
		{name: "private with fields", in: `private="Set-Cookie, X-User", max-age=60`, private: true, maxAge: s(60), sMaxAge: absent, swr: absent},
		{name: "no-cache with fields", in: `no-cache="Set-Cookie", s-maxage=5`, fields: "Set-Cookie", maxAge: absent, sMaxAge: s(5), swr: absent},
		{name: "no-cache with a list", in: `no-cache="X-A, X-B", max-age=5`, fields: "X-A, X-B", maxAge: s(5), sMaxAge: absent, swr: absent},
		{name: "no-cache with an empty list", in: `no-cache=""`, noCache: true, maxAge: absent, sMaxAge: absent, swr: absent},
		{name: "quoted argument", in: `max-age="60"`, maxAge: s(60), sMaxAge: absent, swr: absent},
		{name: "a quoted no-store is not a directive", in: `community="UCI, no-store"`, maxAge: absent, sMaxAge: absent, swr: absent},
		{name: "proxy-revalidate", in: "proxy-revalidate, max-age=5", mustRevalidate: true, maxAge: s(5), sMaxAge: absent, swr: absent},
		{name: "max-age without value", in: "max-age", maxAge: 0, sMaxAge: absent, swr: absent},
		{name: "max-age empty value", in: "max-age=", maxAge: 0, sMaxAge: absent, swr: absent},
		{name: "negative", in: "max-age=-1", maxAge: 0, sMaxAge: absent, swr: absent},
		{name: "signed is not delta-seconds", in: "max-age=+60", maxAge: 0, sMaxAge: absent, swr: absent},
		{name: "fraction", in: "max-age=1.5", maxAge: 0, sMaxAge: absent, swr: absent},
		{name: "text", in: "max-age=soon", maxAge: 0, sMaxAge: absent, swr: absent},
		{name: "2^31 is the cap", in: "max-age=2147483648", maxAge: maxDelta, sMaxAge: absent, swr: absent},
		{name: "above the cap", in: "max-age=2147483649", maxAge: maxDelta, sMaxAge: absent, swr: absent},
		{name: "int64 overflow counts as 2^31", in: "max-age=99999999999999999999, s-maxage=99999999999999999999", maxAge: maxDelta, sMaxAge: maxDelta, swr: absent},
		{name: "leading zeros", in: "s-maxage=000000000000000000000000000060", maxAge: absent, sMaxAge: s(60), swr: absent},
		{name: "duplicates: the last one is read", in: "max-age=60, max-age=3600", maxAge: s(3600), sMaxAge: absent, swr: absent},
		{name: "garbage", in: ",,;==\"\",\x00\xff=", maxAge: absent, sMaxAge: absent, swr: absent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseCacheControl([]byte(tc.in))
			want := cacheControl{private: tc.private, noStore: tc.noStore, noCache: tc.noCache, mustRevalidate: tc.mustRevalidate,
				maxAge: tc.maxAge, sMaxAge: tc.sMaxAge, swr: tc.swr, sie: cmp.Or(tc.sie, absent)}
			if tc.fields != "" {
				want.noCacheFields = []byte(tc.fields)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parseCacheControl(%q): got %+v; want %+v", tc.in, got, want)
			}
		})
	}
}

// TestDecideLongLifetimesStayStored: a page the policy stores for longer
// than memcached's relative limit (30 days) still gets an expiration in the
// future, so the store keeps it.
func TestDecideLongLifetimesStayStored(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	p := NewPolicy(PolicyOptions{MaxTTL: 24 * time.Hour, Default: Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})
	d := p.Decide(&p.fallback, &Response{Status: 200, CacheControl: []byte("max-age=60, stale-while-revalidate=99999999999999999999")}, now)
	if d.Reason != Storable || d.Grace != maxDelta {
		t.Fatalf("got %v grace %v; want stored with grace %v", d.Reason, d.Grace, maxDelta)
	}
	if exp := expiration(d.TTL+d.Grace, now); int64(exp) <= now.Unix() {
		t.Errorf("expiration for %v: got %d, not after now (%d)", d.TTL+d.Grace, exp, now.Unix())
	}
}

func TestExpiration(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const maxInt32 = 1<<31 - 1
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		want int32
	}{
		{"none", 0, 0},
		{"rounded up", 1500 * time.Millisecond, 2},
		{"under a second", time.Nanosecond, 1},
		{"negative", -time.Second, 1},
		{"30 days is relative", 30 * 24 * time.Hour, 30 * 24 * 3600},
		{"beyond is absolute", 31 * 24 * time.Hour, 1_800_000_000 + 31*24*3600},
		{"past 2038 is capped", maxDelta, maxInt32},
		{"the longest duration", time.Duration(1<<63 - 1), maxInt32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := expiration(tc.ttl, now); got != tc.want {
				t.Errorf("expiration(%v): got %d; want %d", tc.ttl, got, tc.want)
			}
		})
	}
}

// ccDirectives is an independent reading of a Cache-Control list: the
// lower-case names of its comma-separated members.
// A quoted string's commas do not separate directives (unless a quote is
// left open); a no-cache with a field list is "no-cache=" (it forbids
// nothing but those fields).
func ccDirectives(cc string) map[string]bool {
	names := map[string]bool{}
	var parts []string
	quoted, start := false, 0
	balanced := strings.Count(cc, `"`)%2 == 0 // else every comma separates
	for i := 0; i < len(cc); i++ {
		switch {
		case cc[i] == '"' && balanced:
			quoted = !quoted
		case cc[i] == ',' && !quoted:
			parts = append(parts, cc[start:i])
			start = i + 1
		}
	}
	for _, d := range append(parts, cc[start:]) {
		name, arg, _ := strings.Cut(d, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "no-cache" && strings.TrimSpace(strings.Trim(strings.TrimSpace(arg), `"`)) != "" {
			name = "no-cache="
		}
		names[name] = true
	}
	return names
}

// wantSeconds is delta-seconds as RFC 9111 section 1.2.2 reads it: digits
// only, larger than 2^31 counting as 2^31; anything else counts as 0.
func wantSeconds(arg string) time.Duration {
	if arg == "" || strings.Trim(arg, "0123456789") != "" {
		return 0
	}
	n, _ := new(big.Int).SetString(arg, 10)
	if n.Cmp(big.NewInt(1<<31)) > 0 {
		return maxDelta
	}
	return time.Duration(n.Int64()) * time.Second
}

// FuzzParseCacheControl fuzzes the Cache-Control parser and the Decide
// path that reads it, with every input of a Response, and a forbidding
// directive (private, no-store, no-cache) spliced anywhere into the list,
// in any case, with or without a (quoted) argument.
func FuzzParseCacheControl(f *testing.F) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	const grace, maxTTL = 10 * time.Second, time.Hour
	p := NewPolicy(PolicyOptions{Grace: grace, MaxTTL: maxTTL, VaryHeaders: []string{"Accept-Language"}, StripSetCookies: []string{"csrftoken"},
		Default: Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})
	honoring := &p.fallback
	// ignoring is the explicit opt-out: it stores whatever Cache-Control says.
	ignoring := &Rule{Cache: true, TTL: 5 * time.Minute}

	httpDate := func(t time.Time) string { return t.UTC().Format(http.TimeFormat) }
	for _, cc := range []string{
		"max-age=600",
		"max-age=0, no-cache, no-store, must-revalidate, private",
		"public, max-age=120, s-maxage=3600, stale-while-revalidate=30, stale-if-error=86400",
		"s-maxage=300, max-age=0",
		`private="Set-Cookie", max-age=60`,
		`no-cache="Set-Cookie, Set-Cookie2", max-age=60`,
		`community="UCI, no-store", max-age=60`,
		`ext="a, max-age=999", max-age=30`,
		"max-age=60, max-age=3600",
		"max-age=99999999999999999999",
		"s-maxage=99999999999999999999, stale-while-revalidate=99999999999999999999",
		"max-age=-5, s-maxage=+5",
		`max-age="60"`,
		"MAX-AGE=60, Must-Revalidate",
		"",
		",,, ;=",
		"\x00\xff garbage",
	} {
		f.Add(cc, "", "", "", "", uint16(200), uint8(0), uint16(0), uint16(0), "")
	}
	f.Add("public", httpDate(now.Add(2*time.Minute)), httpDate(now), "Accept-Encoding", "", uint16(200), uint8(1), uint16(3), uint16(0xffff), "")
	f.Add("", httpDate(now.Add(-time.Hour)), "", "accept-language, cookie", "csrftoken=abc; Path=/", uint16(404), uint8(2), uint16(0), uint16(0x5555), `"Set-Cookie, X"`)
	f.Add("max-age=60", "0", "Tue, 15 Nov 1994 08:12:31 GMT", "*", "sessionid=abc", uint16(301), uint8(3), uint16(99), uint16(0x0f0f), "x")
	f.Add("max-age=60", "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "User-Agent", "", uint16(200), uint8(0), uint16(0), uint16(0), "")

	f.Fuzz(func(t *testing.T, cc, expires, date, vary, setCookie string, status uint16, inject uint8, pos, shape uint16, arg string) {
		// The parser alone: flags as an independent reading finds them,
		// durations absent (-1) or within [0, 2^31 s].
		names := ccDirectives(cc)
		pc := parseCacheControl([]byte(cc))
		if pc.private != names["private"] || pc.noStore != names["no-store"] || pc.noCache != names["no-cache"] {
			t.Fatalf("parseCacheControl(%q) = %+v; directives %v", cc, pc, names)
		}
		for _, d := range []time.Duration{pc.maxAge, pc.sMaxAge, pc.swr} {
			if d != -1 && (d < 0 || d > maxDelta) {
				t.Fatalf("parseCacheControl(%q) = %+v: a duration out of range", cc, pc)
			}
		}
		if got, want := seconds([]byte(arg)), wantSeconds(arg); got != want {
			t.Fatalf("seconds(%q) = %v; want %v", arg, got, want)
		}

		// Splice a forbidding directive into the list.
		spliced := false
		if k := inject % 4; k > 0 {
			d := []byte([...]string{"", "private", "no-store", "no-cache"}[k])
			for i := range d {
				if d[i] != '-' && shape>>(i%16)&1 == 1 {
					d[i] = d[i] - 'a' + 'A'
				}
			}
			dir := string(d)
			switch {
			case arg != "" && shape&0x8000 != 0:
				dir += `="` + arg + `"`
			case arg != "":
				dir += "=" + arg
			}
			if shape&0x4000 != 0 {
				dir = " \t" + dir + " "
			}
			i := int(pos) % (len(cc) + 1)
			// Spliced inside a quoted string, it is text, not a directive
			// (unless a quote is left open: then every comma separates).
			spliced = strings.Count(cc[:i], `"`)%2 == 0 || strings.Count(cc+dir, `"`)%2 == 1
			cc = cc[:i] + "," + dir + "," + cc[i:]
		}

		resp := &Response{Status: int(status), CacheControl: []byte(cc), Expires: []byte(expires), Date: []byte(date), Vary: []byte(vary)}
		if shape&0x2000 != 0 {
			resp.ContentEncoding = []byte("gzip")
		}
		resp.SetCookie = setCookie != "" && !p.StripSetCookie([]byte(setCookie))
		d := p.Decide(honoring, resp, now)

		if d.Reason >= NumReasons {
			t.Fatalf("reason %d out of range", d.Reason)
		}
		if d.Reason != Storable {
			if d.TTL != 0 || d.Grace != 0 {
				t.Fatalf("not stored (%v) yet TTL %v grace %v", d.Reason, d.TTL, d.Grace)
			}
		} else {
			if d.TTL <= 0 || d.TTL > maxTTL || d.Grace < 0 || d.Grace > max(grace, maxDelta) {
				t.Fatalf("stored with TTL %v grace %v; want TTL in (0, %v], grace in [0, %v]", d.TTL, d.Grace, maxTTL, maxDelta)
			}
			if exp := expiration(d.TTL+d.Grace, now); exp <= 0 || (exp > 30*24*3600 && int64(exp) <= now.Unix()) {
				t.Fatalf("stored for %v, but memcached would get expiration %d: expired at once", d.TTL+d.Grace, exp)
			}
			names := ccDirectives(cc)
			for _, forbid := range []string{"private", "no-store", "no-cache"} {
				if names[forbid] {
					t.Fatalf("Cache-Control %q has %s, yet stored", cc, forbid)
				}
			}
			if names["must-revalidate"] || names["proxy-revalidate"] {
				if d.Grace != 0 {
					t.Fatalf("Cache-Control %q: must-revalidate, yet grace %v", cc, d.Grace)
				}
			}
			if !p.statuses[resp.Status] {
				t.Fatalf("status %d stored", resp.Status)
			}
			if name, _, _ := strings.Cut(setCookie, "="); setCookie != "" && strings.TrimSpace(name) != "csrftoken" {
				t.Fatalf("Set-Cookie %q stored", setCookie)
			}
			// Every other header Vary names selects a variant: none is
			// ignored, and never Cookie or Authorization.
			var want []string
			for _, v := range strings.Split(vary, ",") {
				switch v = strings.ToLower(strings.TrimSpace(v)); v {
				case "", "accept-encoding", "cookie", "authorization", "accept-language":
				case "*":
					t.Fatalf("Vary %q stored", vary)
				default:
					if !slices.Contains(want, v) {
						want = append(want, v)
					}
				}
			}
			slices.Sort(want)
			if d.Vary != strings.Join(want, ",") || len(want) > MaxVaryHeaders {
				t.Fatalf("Vary %q stored with Decision.Vary %q; want %q", vary, d.Vary, strings.Join(want, ","))
			}
			if !names["max-age"] && !names["s-maxage"] && expires != "" {
				exp, err := http.ParseTime(expires)
				base := now
				if dt, err := http.ParseTime(date); err == nil {
					base = dt
				}
				if err != nil || !exp.After(base) {
					t.Fatalf("Expires %q (Date %q) is past or invalid, yet stored for %v", expires, date, d.TTL)
				}
			}
		}
		// A spliced no-cache with a field list ("no-cache=0") forbids only
		// those fields: the response may be stored without them. An
		// argument with a quote in it may open a quoted string that the
		// rest of the list closes (no-cache="  then  ,x"): its list is
		// then longer than arg, and qualified too.
		argList := strings.TrimSpace(strings.Trim(strings.TrimSpace(arg), `"`)) != "" || strings.Contains(arg, `"`)
		if qualified := inject%4 == 3 && argList; spliced && !qualified && d.Reason == Storable {
			t.Fatalf("Cache-Control %q has a forbidding directive, yet stored", cc)
		}

		// A rule that ignores Cache-Control decides the same without it.
		di := p.Decide(ignoring, resp, now)
		bare := *resp
		bare.CacheControl, bare.Expires, bare.Date = nil, nil, nil
		if dn := p.Decide(ignoring, &bare, now); !reflect.DeepEqual(di, dn) {
			t.Fatalf("a rule ignoring Cache-Control: got %+v with %q and %+v without", di, cc, dn)
		}
	})
}

func BenchmarkParseCacheControl(b *testing.B) {
	for _, bc := range []struct{ name, cc string }{
		{"typical", "public, max-age=600, s-maxage=3600, stale-while-revalidate=30"},
		{"never_cache", "max-age=0, no-cache, no-store, must-revalidate, private"},
		{"mixed case", "Public, Max-Age=600"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v := []byte(bc.cc)
			b.ReportAllocs()
			for b.Loop() {
				parseCacheControl(v)
			}
		})
	}
}

func BenchmarkDecide(b *testing.B) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	p := NewPolicy(PolicyOptions{Grace: 10 * time.Second, Default: Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})
	resp := &Response{Status: 200, CacheControl: []byte("public, max-age=600, stale-while-revalidate=30"), Vary: []byte("Accept-Encoding"), ContentEncoding: []byte("gzip")}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(&p.fallback, resp, now); d.Reason != Storable {
			b.Fatal(d.Reason)
		}
	}
}
