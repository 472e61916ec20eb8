package pagecache

import (
	"net/http"
	"regexp"
	"testing"
	"time"
)

func TestPolicyDecide(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	p := NewPolicy(PolicyOptions{Grace: 10 * time.Second, MaxTTL: time.Hour, VaryHeaders: []string{"Accept-Language"},
		Default: Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})
	def := p.Rule([]byte("h"), []byte("/"), "")
	ignoring := &Rule{Cache: true, TTL: 5 * time.Minute}
	withCookies := &Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true, StoreSetCookie: true}
	for _, tc := range []struct {
		name   string
		rule   *Rule
		resp   Response
		reason Reason
		ttl    time.Duration
		grace  time.Duration
	}{
		{"plain 200", def, Response{Status: 200}, Storable, time.Minute, 10 * time.Second},
		{"404", def, Response{Status: 404}, Storable, time.Minute, 10 * time.Second},
		{"302", def, Response{Status: 302}, ReasonStatus, 0, 0},
		{"500", def, Response{Status: 500}, ReasonStatus, 0, 0},
		{"set-cookie", def, Response{Status: 200, SetCookie: true}, ReasonSetCookie, 0, 0},
		{"set-cookie allowed by rule", withCookies, Response{Status: 200, SetCookie: true}, Storable, time.Minute, 10 * time.Second},
		{"private", def, Response{Status: 200, CacheControl: []byte("max-age=60, private")}, ReasonPrivate, 0, 0},
		{"private with fields", def, Response{Status: 200, CacheControl: []byte(`private="Set-Cookie"`)}, ReasonPrivate, 0, 0},
		{"no-store", def, Response{Status: 200, CacheControl: []byte("No-Store")}, ReasonNoStore, 0, 0},
		{"no-cache", def, Response{Status: 200, CacheControl: []byte("no-cache")}, ReasonNoCache, 0, 0},
		{"cache-control ignored by rule", ignoring, Response{Status: 200, CacheControl: []byte("private, no-store, max-age=0")}, Storable, 5 * time.Minute, 10 * time.Second},
		{"s-maxage wins, and forbids the default grace", def, Response{Status: 200, CacheControl: []byte("max-age=10, s-maxage=300")}, Storable, 300 * time.Second, 0},
		{"s-maxage with the response's own grace", def, Response{Status: 200, CacheControl: []byte("s-maxage=300, stale-while-revalidate=20")}, Storable, 300 * time.Second, 20 * time.Second},
		{"max-age", def, Response{Status: 200, CacheControl: []byte("public, max-age=30")}, Storable, 30 * time.Second, 10 * time.Second},
		{"max-age=0", def, Response{Status: 200, CacheControl: []byte("max-age=0")}, ReasonTTL, 0, 0},
		{"bad max-age counts as 0", def, Response{Status: 200, CacheControl: []byte("max-age=soon")}, ReasonTTL, 0, 0},
		{"capped", def, Response{Status: 200, CacheControl: []byte("max-age=31536000")}, Storable, time.Hour, 10 * time.Second},
		{"expires", def, Response{Status: 200, Expires: []byte("Sat, 21 Nov 2026 12:02:00 GMT"), Date: []byte("Sat, 21 Nov 2026 12:00:00 GMT")}, Storable, 2 * time.Minute, 10 * time.Second},
		{"expired", def, Response{Status: 200, Expires: []byte("Sat, 21 Nov 2026 11:00:00 GMT")}, ReasonTTL, 0, 0},
		{"invalid expires", def, Response{Status: 200, Expires: []byte("0")}, ReasonTTL, 0, 0},
		{"stale-while-revalidate", def, Response{Status: 200, CacheControl: []byte("max-age=5, stale-while-revalidate=60")}, Storable, 5 * time.Second, time.Minute},
		{"must-revalidate", def, Response{Status: 200, CacheControl: []byte("max-age=5, must-revalidate")}, Storable, 5 * time.Second, 0},
		{"vary accept-encoding", def, Response{Status: 200, Vary: []byte("Accept-Encoding, Cookie")}, Storable, time.Minute, 10 * time.Second},
		{"vary on a key header", def, Response{Status: 200, Vary: []byte("accept-language")}, Storable, time.Minute, 10 * time.Second},
		{"vary on user-agent: a variant", def, Response{Status: 200, Vary: []byte("Accept-Encoding, User-Agent")}, Storable, time.Minute, 10 * time.Second},
		{"vary on x-forwarded-for", def, Response{Status: 200, Vary: []byte("X-Forwarded-For")}, ReasonVary, 0, 0},
		{"vary star", def, Response{Status: 200, Vary: []byte("*")}, ReasonVary, 0, 0},
		{"gzip", def, Response{Status: 200, ContentEncoding: []byte("gzip")}, Storable, time.Minute, 10 * time.Second},
		{"brotli", def, Response{Status: 200, ContentEncoding: []byte("br")}, ReasonEncoding, 0, 0},
		{"rule says no", &Rule{Cache: false}, Response{Status: 200}, ReasonRule, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.rule, &tc.resp, now)
			if d.Reason != tc.reason || (d.Reason == Storable && (d.TTL != tc.ttl || d.Grace != tc.grace)) {
				t.Errorf("got %v ttl %v grace %v; want %v ttl %v grace %v", d.Reason, d.TTL, d.Grace, tc.reason, tc.ttl, tc.grace)
			}
		})
	}
}

func TestPolicyRulesAndHeaders(t *testing.T) {
	news := Rule{Path: regexp.MustCompile("^/news/"), Cache: true, TTL: time.Hour}
	admin := Rule{Path: regexp.MustCompile("^/admin/"), Cache: false}
	onlyB := Rule{Path: regexp.MustCompile("^/"), Host: "b.example", Cache: true, TTL: time.Second}
	p := NewPolicy(PolicyOptions{Rules: []Rule{news, admin, onlyB}, Default: Rule{Cache: true, TTL: time.Minute}, DropHeaders: []string{"x-debug"}, StripSetCookies: []string{"csrftoken"}})
	for _, tc := range []struct {
		host, path, clean string
		ttl               time.Duration
		cache             bool
	}{
		{"a.example", "/news/1", "", time.Hour, true},
		{"a.example", "/%61dmin/", "/admin/", 0, false},
		{"B.example", "/page", "", time.Second, true},
		{"a.example", "/page", "", time.Minute, true},
	} {
		r := p.Rule([]byte(tc.host), []byte(tc.path), tc.clean)
		if r.Cache != tc.cache || (r.Cache && r.TTL != tc.ttl) {
			t.Errorf("%s%s: got %+v", tc.host, tc.path, r)
		}
	}
	// Every end-to-end header is stored (RFC 9111 section 3.1) but
	// Set-Cookie, the hop-by-hop ones, the framing, Age and the operator's.
	for name, want := range map[string]bool{"content-type": true, "X-Frame-Options": true, "X-Custom": true, "Date": true, "Server": true,
		"Access-Control-Allow-Origin": true, "Surrogate-Key": true,
		"Set-Cookie": false, "set-cookie2": false, "Connection": false, "Keep-Alive": false, "Transfer-Encoding": false,
		"Content-Length": false, "Age": false, "X-Debug": false, "x-DEBUG": false} {
		if p.Stores([]byte(name)) != want {
			t.Errorf("Stores(%s) = %v; want %v", name, !want, want)
		}
	}
	for sc, want := range map[string]bool{"csrftoken=abc; Path=/": true, " csrftoken=x": true, "sessionid=abc": false, "csrftoken2=x": false} {
		if p.StripSetCookie([]byte(sc)) != want {
			t.Errorf("StripSetCookie(%q) = %v", sc, !want)
		}
	}
}

// TestDecideCorrectedAge: the freshness lifetime counts from the
// response's corrected initial age (RFC 9111 section 4.2.3), its Age header
// plus the response delay; the backend's Date is not compared with this
// clock.
func TestDecideCorrectedAge(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	p := NewPolicy(PolicyOptions{Default: Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})
	for _, tc := range []struct {
		name, cc, age string
		sent          time.Duration // before now
		date          time.Time
		reason        Reason
		wantAge       time.Duration
	}{
		{name: "stale on arrival", cc: "max-age=3600", age: "3600", reason: ReasonTTL},
		{name: "older than its lifetime", cc: "max-age=3600", age: "7200", reason: ReasonTTL},
		{name: "the delay completes it", cc: "max-age=10", age: "9", sent: time.Second, reason: ReasonTTL},
		{name: "some left", cc: "max-age=3600", age: "100", sent: 250 * time.Millisecond, reason: Storable, wantAge: 100*time.Second + 250*time.Millisecond},
		{name: "no Age: the delay alone", cc: "max-age=60", sent: 40 * time.Millisecond, reason: Storable, wantAge: 40 * time.Millisecond},
		{name: "an invalid Age is 0", cc: "max-age=60", age: "soon", reason: Storable},
		{name: "an old Date is the backend's clock, not an age", cc: "max-age=60", date: now.Add(-time.Hour), reason: Storable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &Response{Status: 200, CacheControl: []byte(tc.cc), Age: []byte(tc.age), RequestTime: now.Add(-tc.sent)}
			if !tc.date.IsZero() {
				resp.Date = []byte(tc.date.Format(http.TimeFormat))
			}
			d := p.Decide(&p.fallback, resp, now)
			if d.Reason != tc.reason || d.Age != tc.wantAge {
				t.Errorf("got %s with age %v; want %s with age %v", d.Reason, d.Age, tc.reason, tc.wantAge)
			}
		})
	}
}

// TestDecideSurrogateControl: Surrogate-Control's max-age and no-store win
// over Cache-Control for userrouter; directives targeted at another
// surrogate do not apply; Cache-Control's private still forbids storing.
func TestDecideSurrogateControl(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	p := NewPolicy(PolicyOptions{Grace: 10 * time.Second, Default: Rule{Cache: true, TTL: time.Minute, HonorCacheControl: true}})
	for _, tc := range []struct {
		name, cc, sc string
		reason       Reason
		ttl, grace   time.Duration
	}{
		{name: "no-store wins", cc: "public, max-age=600", sc: "no-store", reason: ReasonNoStore},
		{name: "max-age wins", cc: "max-age=600, s-maxage=300", sc: "max-age=30", reason: Storable, ttl: 30 * time.Second, grace: 10 * time.Second},
		{name: "max-age with grace", cc: "max-age=600", sc: "max-age=30+90", reason: Storable, ttl: 30 * time.Second, grace: 90 * time.Second},
		{name: "targeted at userrouter", sc: `max-age=5;userrouter, max-age=9999;cdn`, reason: Storable, ttl: 5 * time.Second, grace: 10 * time.Second},
		{name: "targeted elsewhere", cc: "max-age=600", sc: "no-store;cdn", reason: Storable, ttl: 600 * time.Second, grace: 10 * time.Second},
		{name: "private still forbids", cc: "private", sc: "max-age=600", reason: ReasonPrivate},
		{name: "must-revalidate still forbids grace", cc: "must-revalidate", sc: "max-age=60+60", reason: Storable, ttl: time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(&p.fallback, &Response{Status: 200, CacheControl: []byte(tc.cc), SurrogateControl: []byte(tc.sc)}, now)
			if d.Reason != tc.reason || d.TTL != tc.ttl || d.Grace != tc.grace {
				t.Errorf("got %s ttl %v grace %v; want %s ttl %v grace %v", d.Reason, d.TTL, d.Grace, tc.reason, tc.ttl, tc.grace)
			}
		})
	}
}
