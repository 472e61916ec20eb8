package pagecache

import (
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
)

func TestSplitURIForms(t *testing.T) {
	for _, tc := range []struct {
		name, uri, path, query string
		hasQuery               bool
	}{
		{name: "origin form", uri: "/a/b?x=1", path: "/a/b", query: "x=1", hasQuery: true},
		{name: "absolute", uri: "https://example.com/a/b?x=1", path: "/a/b", query: "x=1", hasQuery: true},
		{name: "absolute with port and user", uri: "http://u@example.com:8080/a", path: "/a"},
		{name: "absolute without path", uri: "http://example.com", path: "/"},
		{name: "absolute with a query and no path", uri: "http://example.com?x=1", path: "/", query: "x=1", hasQuery: true},
		{name: "absolute with an empty query", uri: "http://example.com?", path: "/", query: "", hasQuery: true},
		{name: "absolute with a fragment and no path", uri: "http://example.com#top/x", path: "/"},
		{name: "a URL in the query", uri: "/go?to=http://other.example/x", path: "/go", query: "to=http://other.example/x", hasQuery: true},
		{name: "fragment", uri: "/a?b#c?d", path: "/a", query: "b", hasQuery: true},
		{name: "asterisk", uri: "*", path: "*"},
		{name: "empty", uri: "", path: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, q := SplitURI([]byte(tc.uri))
			if string(p) != tc.path || string(q) != tc.query || (q != nil) != tc.hasQuery {
				t.Errorf("SplitURI(%q): got %q, %q (query present %v); want %q, %q (%v)", tc.uri, p, q, q != nil, tc.path, tc.query, tc.hasQuery)
			}
		})
	}
}

func TestCleanPathTable(t *testing.T) {
	for _, tc := range []struct{ name, raw, want string }{
		{"clean already", "/blog/2026/11/a-post/", "/blog/2026/11/a-post/"},
		{"root", "/", "/"},
		{"encoded letter", "/%61dmin/", "/admin/"},
		{"encoded slash", "/admin%2Fusers", "/admin/users"},
		{"encoded dots", "/static/%2e%2e/admin/", "/admin/"},
		{"decoded once only", "/%2561dmin", "/%61dmin"},
		{"invalid escape kept", "/%zz/%4", "/%zz/%4"},
		{"repeated slashes", "///admin//x", "/admin/x"},
		{"dot segments", "/a/./b/../../admin/", "/admin/"},
		{"above the root", "/../../admin", "/admin"},
		{"trailing dot", "/admin/.", "/admin"},
		{"trailing dot slash", "/admin/./", "/admin/"},
		{"only slashes", "//", "/"},
		{"dot file", "/.well-known/x", "/.well-known/x"},
		{"not rooted", "a//b", "a//b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := CleanPath([]byte(tc.raw))
			if !ok {
				got = tc.raw
			}
			if got != tc.want {
				t.Errorf("CleanPath(%q): got %q; want %q", tc.raw, got, tc.want)
			}
		})
	}
}

// FuzzSplitURI: the path and query are cut out of the URI (no copy), the
// path holds no "?" or "#", the query no "#"; an origin-form URI is
// exactly path "?" query; and an absolute-form URI splits like its origin
// form, so that both forms of one request share a cache key.
func FuzzSplitURI(f *testing.F) {
	for _, s := range []string{"/a/b?x=1", "/", "", "*", "/a?", "?x", "#f", "/p?u=http://x/y", "/a#b?c", "//x", "/a b?c\x00d"} {
		f.Add(s, "example.com", false)
	}
	f.Add("?x=1", "example.com:8080", true)
	f.Add("", "u@h", false)
	f.Fuzz(func(t *testing.T, origin, authority string, https bool) {
		u := []byte(origin)
		p, q := SplitURI(u)
		if strings.ContainsAny(string(p), "?#") || strings.Contains(string(q), "#") {
			t.Fatalf("SplitURI(%q) = %q, %q", origin, p, q)
		}
		if !(within(p, u) || string(p) == "/") || !within(q, u) { // "/" for an absolute URI without a path
			t.Fatalf("SplitURI(%q) = %q, %q: not slices of it", origin, p, q)
		}
		if !strings.HasPrefix(origin, "/") {
			return
		}
		before, _, _ := strings.Cut(origin, "#")
		want := string(p)
		if q != nil {
			want += "?" + string(q)
		}
		if want != before {
			t.Fatalf("SplitURI(%q) = %q, %q; they do not make %q", origin, p, q, before)
		}

		// The same request in absolute form, where a path of "/" may be
		// left out.
		authority = strings.Map(func(r rune) rune {
			if strings.ContainsRune("/?#", r) {
				return -1
			}
			return r
		}, authority)
		scheme := "http"
		if https {
			scheme = "https"
		}
		for _, o := range []string{origin, strings.TrimPrefix(origin, "/")} {
			abs := scheme + "://" + authority + o
			if o != origin && o != "" && o[0] != '?' && o[0] != '#' {
				continue // not the same request
			}
			ap, aq := SplitURI([]byte(abs))
			if string(ap) != string(p) || string(aq) != string(q) || (aq != nil) != (q != nil) {
				t.Fatalf("SplitURI(%q) = %q, %q; want %q, %q as for %q", abs, ap, aq, p, q, origin)
			}
		}
	})
}

// escaped matches a valid percent escape: a path holding one is not
// clean twice over (CleanPath decodes once, as applications do).
var escaped = regexp.MustCompile(`%[0-9a-fA-F]{2}`)

// FuzzCleanPath: a rooted result has no empty, "." or ".." segment, so
// it never contains "//" or "/../"; it is what percent-decoding once and
// path.Clean make (keeping a trailing slash); ok is false only for a path
// that is clean already; and cleaning is idempotent for a result without
// escapes left. The result is for matching rules only, never part of a
// key (keys use the raw path and KeyTemplate.Fit), so it is not held to
// memcached's rules.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{
		"/blog/2026/11/a-post/", "/", "", "/%61dmin/", "/admin%2Fusers", "/static/%2e%2e/admin/", "/%2561dmin",
		"/%zz/%4", "/%", "///admin//x", "/a/./b/../../admin/", "/../../admin", "/admin/.", "/.well-known/x",
		"a//b", "/%2F%2F", "/a/%2e", "/search?q=%2e%2e", "/\x00%00/ /",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, in := range []string{raw, string(firstPath(raw))} {
			clean, ok := CleanPath([]byte(in))
			out := clean
			if !ok {
				out = in
				if strings.Contains(in, "%") || strings.Contains(in, "//") || strings.Contains(in, "/.") {
					t.Fatalf("CleanPath(%q): ok false, yet it is not clean", in)
				}
			}
			if strings.HasPrefix(out, "/") {
				if strings.Contains(out, "//") || strings.Contains(out+"/", "/./") || strings.Contains(out+"/", "/../") {
					t.Fatalf("CleanPath(%q) = %q: an empty, . or .. segment left", in, out)
				}
			}
			if dec, err := url.PathUnescape(in); err == nil && strings.HasPrefix(dec, "/") {
				want := path.Clean(dec)
				if strings.HasSuffix(dec, "/") && want != "/" {
					want += "/"
				}
				if out != want {
					t.Fatalf("CleanPath(%q) = %q; decoding and path.Clean make %q", in, out, want)
				}
			}
			if !escaped.MatchString(out) {
				again, ok := CleanPath([]byte(out))
				if ok && again != out {
					t.Fatalf("CleanPath(%q) = %q, and cleaning that gives %q", in, out, again)
				}
			}
		}
	})
}

// firstPath is the path the router cleans: the one SplitURI gives.
func firstPath(uri string) []byte {
	p, _ := SplitURI([]byte(uri))
	return p
}

func BenchmarkSplitURI(b *testing.B) {
	uri := []byte("/blog/2026/11/a-post-title/?page=2&utm_source=newsletter")
	b.ReportAllocs()
	for b.Loop() {
		SplitURI(uri)
	}
}

func BenchmarkCleanPath(b *testing.B) {
	for _, bc := range []struct{ name, raw string }{
		{"clean", "/blog/2026/11/a-post-title/"},
		{"escaped", "/blog/2026/11/caf%C3%A9//../a-post-title/"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw := []byte(bc.raw)
			b.ReportAllocs()
			for b.Loop() {
				CleanPath(raw)
			}
		})
	}
}
