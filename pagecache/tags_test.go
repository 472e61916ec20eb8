package pagecache

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseTags(t *testing.T) {
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "t%d ", i)
		}
		return b.String()
	}
	long := strings.Repeat("x", MaxTagLength)
	for _, tc := range []struct {
		name  string
		have  []string
		value string
		want  []string
		err   bool
	}{
		{name: "empty", value: "", want: nil},
		{name: "only separators", value: " ,\t, ", want: nil},
		{name: "fastly style", value: "blog.post:7 blog.post author/3", want: []string{"blog.post:7", "blog.post", "author/3"}},
		{name: "commas and tabs", value: "a,b\tc, d", want: []string{"a", "b", "c", "d"}},
		{name: "duplicates dropped", value: "a a b a", want: []string{"a", "b"}},
		{name: "added to earlier tags", have: []string{"a"}, value: "b a", want: []string{"a", "b"}},
		{name: "punctuation", value: `!"#$%&'()*+-./:;<=>?@[\]^_{|}~`, want: []string{`!"#$%&'()*+-./:;<=>?@[\]^_{|}~`}},
		{name: "longest tag", value: long, want: []string{long}},
		{name: "tag too long", value: long + "x", err: true},
		{name: "most tags", value: many(MaxTagsPerPage), want: strings.Fields(many(MaxTagsPerPage))},
		{name: "too many tags", value: many(MaxTagsPerPage + 1), err: true},
		{name: "too many in all", have: strings.Fields(many(MaxTagsPerPage)), value: "another", err: true},
		{name: "a duplicate past the limit is fine", have: strings.Fields(many(MaxTagsPerPage)), value: "t0", want: strings.Fields(many(MaxTagsPerPage))},
		{name: "header too long", value: strings.Repeat("a ", MaxTagHeader/2) + "b", err: true},
		{name: "non-ASCII", value: "caf\xc3\xa9", err: true},
		{name: "control byte", value: "a\x00b", err: true},
		{name: "DEL", value: "a\x7f", err: true},
		{name: "newline", value: "a\nb", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTags(slices.Clone(tc.have), []byte(tc.value))
			if tc.err {
				if !errors.Is(err, ErrTags) {
					t.Errorf("got %v; want an error wrapping ErrTags", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// wantTags is an independent reading of ParseTags's documented contract:
// the tags of have and value, in order, without duplicates, or ok false
// when value breaks a limit.
func wantTags(have []string, value string) (tags []string, ok bool) {
	if len(value) > MaxTagHeader {
		return nil, false
	}
	tags = slices.Clone(have)
	for _, tag := range strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		if len(tag) > MaxTagLength || strings.ContainsFunc(tag, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			return nil, false
		}
		if !slices.Contains(tags, tag) {
			tags = append(tags, tag)
		}
	}
	return tags, len(tags) <= MaxTagsPerPage
}

// FuzzParseTags: the tags of one or two header values are exactly those
// the contract describes, each within the limits; a value that breaks a
// limit is an error, never a silently shorter list; and the tags joined by
// spaces parse back to themselves.
func FuzzParseTags(f *testing.F) {
	f.Add("blog.post:7 blog.post", "author/3,blog.post", uint16(0))
	f.Add("a,b\tc, d", "", uint16(0))
	f.Add("a a a", "a", uint16(300))
	f.Add("t", strings.Repeat("y", MaxTagLength+1), uint16(0))
	f.Add("caf\xc3\xa9", "\x00", uint16(1))
	f.Add("", "", uint16(MaxTagsPerPage))
	f.Add(" ,,\t", "x\x7f", uint16(MaxTagsPerPage+1))
	f.Fuzz(func(t *testing.T, a, b string, n uint16) {
		// n generated tags come first: they reach MaxTagsPerPage.
		var have []string
		for i := range int(n % 512) {
			have = append(have, fmt.Sprintf("g%d", i))
		}
		first := strings.Join(have, " ")
		values := []string{first, a, b}
		if len(first) > MaxTagHeader {
			values = []string{a, b}
			have = nil
		}

		var tags []string
		want, wantOK := []string(nil), true
		for _, v := range values {
			var err error
			before := slices.Clone(tags)
			tags, err = ParseTags(tags, []byte(v))
			w, ok := wantTags(want, v)
			if ok != (err == nil) {
				t.Fatalf("ParseTags(%d tags, %q): error %v; the contract says ok=%v", len(before), v, err, ok)
			}
			if err != nil {
				if !errors.Is(err, ErrTags) {
					t.Fatalf("error %v does not wrap ErrTags", err)
				}
				if len(tags) < len(before) || !slices.Equal(tags[:len(before)], before) {
					t.Fatalf("an error lost the caller's tags: had %q, got %q", before, tags)
				}
				wantOK = false
				break
			}
			if !slices.Equal(tags, w) {
				t.Fatalf("ParseTags(%q): got %q; want %q", v, tags, w)
			}
			want = w
		}
		if !wantOK {
			return
		}
		if len(tags) > MaxTagsPerPage {
			t.Fatalf("%d tags; at most %d", len(tags), MaxTagsPerPage)
		}
		for i, tag := range tags {
			if len(tag) == 0 || len(tag) > MaxTagLength || strings.ContainsFunc(tag, func(r rune) bool { return r < 0x21 || r > 0x7e || r == ',' }) {
				t.Fatalf("tag %q breaks the limits", tag)
			}
			if slices.Contains(tags[:i], tag) {
				t.Fatalf("tag %q twice", tag)
			}
		}

		// Each value's own tags, joined, parse back to themselves.
		for _, v := range values {
			own, err := ParseTags(nil, []byte(v))
			if err != nil {
				t.Fatalf("ParseTags(%q) alone: %v", v, err)
			}
			again, err := ParseTags(nil, []byte(strings.Join(own, " ")))
			if err != nil || !slices.Equal(again, own) {
				t.Fatalf("round trip of %q: got %q, %v", own, again, err)
			}
		}
	})
}

func BenchmarkParseTags(b *testing.B) {
	v := []byte("blog.post:7 blog.post author/3 section:news tag:go tag:memcached")
	tags := make([]string, 0, 16)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if tags, err = ParseTags(tags[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}
