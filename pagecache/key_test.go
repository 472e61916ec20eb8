package pagecache

import (
	"net/http"
	"strings"
	"testing"
)

func TestKeyTemplate(t *testing.T) {
	hdr := http.Header{"Accept-Language": {"fr"}}
	in := func(host, uri string) *KeyInput {
		p, q := SplitURI([]byte(uri))
		return &KeyInput{Scheme: []byte("https"), Host: []byte(host), Path: p, Query: q, Header: headerPeeker(hdr)}
	}
	for _, tc := range []struct {
		name string
		opts KeyOptions
		in   *KeyInput
		want string
	}{
		{"default", KeyOptions{}, in("example.com", "/a/b?x=1"), "page:example.com/a/b?x=1"},
		{"no query", KeyOptions{}, in("example.com", "/a"), "page:example.com/a"},
		{"nginx style", KeyOptions{Template: "page:{uri}"}, in("example.com", "/a?x=1"), "page:/a?x=1"},
		{"every token", KeyOptions{Template: "{scheme}://{host}{path}|{query}|{header:Accept-Language}"}, in("example.com", "/a?x=1"), "https://example.com/a|x=1|fr"},
		{"tracking parameters dropped", KeyOptions{IgnoreQueryParams: []string{"utm_*", "fbclid"}}, in("h", "/a?utm_source=x&b=2&fbclid=y&utm_medium=z&fbclid2=k"), "page:h/a?b=2&fbclid2=k"},
		{"only tracking parameters", KeyOptions{IgnoreQueryParams: []string{"utm_*"}}, in("h", "/a?utm_source=x"), "page:h/a"},
		{"sorted", KeyOptions{SortQuery: true}, in("h", "/a?b=2&a=1&c&a=0"), "page:h/a?a=1&a=0&b=2&c"},
		{"empty parameters dropped when normalizing", KeyOptions{SortQuery: true}, in("h", "/a?&b=2&&a=1&"), "page:h/a?a=1&b=2"},
		{"kept as is without normalizing", KeyOptions{}, in("h", "/a?&b=2&&"), "page:h/a?&b=2&&"},
		{"absolute URI", KeyOptions{}, in("h", "http://other.example/p?q"), "page:h/p?q"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := NewKeyTemplate(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := k.Append(nil, tc.in, nil)
			if !ok || string(got) != tc.want {
				t.Errorf("got %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

func TestKeyTemplateHashesIllegalKeys(t *testing.T) {
	k, _ := NewKeyTemplate(KeyOptions{HashPrefix: "ur:h:"})
	long := &KeyInput{Host: []byte("h"), Path: []byte("/" + strings.Repeat("x", 300))}
	spaced := &KeyInput{Host: []byte("h"), Path: []byte("/a b")}
	ctl := &KeyInput{Host: []byte("h"), Path: []byte("/a\x01")}
	seen := map[string]bool{}
	for _, in := range []*KeyInput{long, spaced, ctl} {
		a, _ := k.Append(nil, in, nil)
		b, _ := k.Append([]byte("prefix-kept:"), in, nil)
		if !strings.HasPrefix(string(a), "ur:h:") || len(a) > MaxKeyLength || !legalKey(a) {
			t.Errorf("%q: got key %q", in.Path, a)
		}
		if string(b) != "prefix-kept:"+string(a) {
			t.Errorf("%q: the same request gave %q and %q", in.Path, a, b)
		}
		if seen[string(a)] {
			t.Errorf("two requests share key %q", a)
		}
		seen[string(a)] = true
	}
}

func TestKeyTemplateTooManyParams(t *testing.T) {
	k, _ := NewKeyTemplate(KeyOptions{SortQuery: true})
	q := strings.Repeat("a=1&", maxQueryParams+1)
	if _, ok := k.Append(nil, &KeyInput{Host: []byte("h"), Path: []byte("/"), Query: []byte(q)}, nil); ok {
		t.Error("a query with too many parameters got a key")
	}
}

func TestKeyTemplateErrors(t *testing.T) {
	for _, o := range []KeyOptions{
		{Template: "page:{hots}{uri}"},
		{Template: "page:{host"},
		{Template: "page {host}"},
		{IgnoreQueryParams: []string{""}},
		{IgnoreQueryParams: []string{"a=b"}},
		{HashPrefix: "has space"},
	} {
		if _, err := NewKeyTemplate(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestSplitURIAndCleanPath(t *testing.T) {
	for _, tc := range []struct{ uri, path, query string }{
		{"/a?b=1", "/a", "b=1"}, {"/a", "/a", ""}, {"/a?", "/a", ""}, {"*", "*", ""},
		{"http://h/x?y", "/x", "y"}, {"http://h", "/", ""}, {"/a#frag", "/a", ""}, {"/p?u=http://x/y", "/p", "u=http://x/y"},
	} {
		p, q := SplitURI([]byte(tc.uri))
		if string(p) != tc.path || string(q) != tc.query {
			t.Errorf("SplitURI(%q) = %q, %q; want %q, %q", tc.uri, p, q, tc.path, tc.query)
		}
	}
	for _, tc := range []struct{ raw, clean string }{
		{"/admin/", ""}, {"/%61dmin/", "/admin/"}, {"//admin//x", "/admin/x"}, {"/a/../admin/", "/admin/"}, {"/./admin", "/admin"}, {"/%zz", "/%zz"},
	} {
		got, ok := CleanPath([]byte(tc.raw))
		if got != tc.clean || ok != (tc.clean != "") {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", tc.raw, got, ok, tc.clean)
		}
	}
}

// FuzzKeyTemplate: whatever the request, the key is one memcached accepts,
// and the same request always gets the same key.
func FuzzKeyTemplate(f *testing.F) {
	f.Add("example.com", "/a?b=1", "fr")
	f.Add("h", strings.Repeat("/x", 200), "")
	f.Add("h", "/a b?c\x00d", "é")
	f.Add("", "", "")
	k1, _ := NewKeyTemplate(KeyOptions{Template: "page:{scheme}:{host}{uri}:{header:Accept-Language}", IgnoreQueryParams: []string{"utm_*"}, SortQuery: true})
	k2, _ := NewKeyTemplate(KeyOptions{})
	f.Fuzz(func(t *testing.T, host, uri, lang string) {
		p, q := SplitURI([]byte(uri))
		in := &KeyInput{Scheme: []byte("http"), Host: []byte(host), Path: p, Query: q, Header: headerPeeker(http.Header{"Accept-Language": {lang}})}
		for _, k := range []*KeyTemplate{k1, k2} {
			a, ok := k.Append(nil, in, nil)
			if !ok {
				continue
			}
			if len(a) == 0 || len(a) > MaxKeyLength || !legalKey(a) {
				t.Fatalf("illegal key %q", a)
			}
			b, _ := k.Append(make([]byte, 0, 7), in, nil)
			if string(a) != string(b) {
				t.Fatalf("keys differ: %q and %q", a, b)
			}
		}
	})
}

func BenchmarkKeyTemplate(b *testing.B) {
	k, _ := NewKeyTemplate(KeyOptions{IgnoreQueryParams: []string{"utm_*", "fbclid", "gclid"}})
	in := &KeyInput{Host: []byte("www.example.com"), Path: []byte("/blog/2026/11/a-post-title/"), Query: []byte("page=2&utm_source=newsletter")}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = k.Append(buf[:0], in, nil)
	}
}

type headerPeeker http.Header

func (h headerPeeker) Peek(name string) []byte { return []byte(http.Header(h).Get(name)) }
