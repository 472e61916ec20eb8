package sessioncheck

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const djangoKey = "abcdefghijklmnopqrstuvwxyz012345"

// otherKey is a second well-formed key, for repeated cookies.
const otherKey = "zyxwvutsrqponmlkjihgfedcba543210"

// keyCase is one Cookie header and what Find must make of it.
type keyCase struct {
	name   string
	header string
	key    string
	want   KeyResult
}

// keyCases is TestKeyFinder's table, for the default finder: cookie
// "sessionid", pattern ^[a-z0-9]{32}$, the last of repeated values.
var keyCases = []keyCase{
	// What a browser sends.
	{"no header", "", "", NoCookie},
	{"other cookies", "csrftoken=abc; _ga=GA1.2.3", "", NoCookie},
	{"alone", "sessionid=" + djangoKey, djangoKey, KeyFound},
	{"among others", "csrftoken=x;sessionid=" + djangoKey + "; _ga=1", djangoKey, KeyFound},
	{"attributes after it", "sessionid=" + djangoKey + "; Path=/; $Version=1", djangoKey, KeyFound},

	// Separators and whitespace Django strips.
	{"spaces around", "  sessionid = " + djangoKey + " ;a=b", djangoKey, KeyFound},
	{"leading semicolon", "; sessionid=" + djangoKey, djangoKey, KeyFound},
	{"empty chunks", ";;sessionid=" + djangoKey + ";;", djangoKey, KeyFound},
	{"tab, VT, FF, CR, LF", "\tsessionid\x0b=\x0c" + djangoKey + "\r\n", djangoKey, KeyFound},
	{"\\x1c-\\x1f", "\x1csessionid\x1d=\x1e" + djangoKey + "\x1f", djangoKey, KeyFound},
	{"comma does not separate", "sessionid=" + djangoKey + ",a=b", "", BadKey},
	{"comma-joined after another cookie", "a=b,sessionid=" + djangoKey, "", NoCookie},

	// Names.
	{"a longer name is another cookie", "xsessionid=" + djangoKey + "; sessionid2=" + djangoKey, "", NoCookie},
	{"name is case-sensitive", "SessionID=" + djangoKey, "", NoCookie},
	{"no equals sign", "sessionid; other=1", "", NoCookie},
	{"no equals sign, then the cookie", "sessionid; sessionid=" + djangoKey, djangoKey, KeyFound},
	{"bare key, no name", djangoKey, "", NoCookie},
	{"empty names", "=" + djangoKey + "; =x; =", "", NoCookie},
	{"empty name, value holds the cookie", "=sessionid=" + djangoKey, "", NoCookie},
	{"control byte before the name", "\x01sessionid=" + djangoKey, "", NoCookie},
	{"NUL inside the name", "session\x00id=" + djangoKey, "", NoCookie},

	// Values.
	{"value holds =", "sessionid=" + djangoKey + "=", "", BadKey},
	{"value starts with =", "sessionid==" + djangoKey, "", BadKey},
	{"empty", "sessionid=", "", BadKey},
	{"spaces only", "sessionid=   ", "", BadKey},
	{"too short", "sessionid=abc", "", BadKey},
	{"upper case", "sessionid=" + strings.ToUpper(djangoKey), strings.ToUpper(djangoKey), KeyFound},
	{"mixed case", "sessionid=AbCdefghijklmnopqrstuvwxyz01234Z", "AbCdefghijklmnopqrstuvwxyz01234Z", KeyFound},
	{"quote in key", "sessionid=" + djangoKey[:30] + "'1", "", BadKey},
	{"very long", "sessionid=" + strings.Repeat("a", 10000), "", BadKey},
	{"very long, key-like", "sessionid=" + strings.Repeat(djangoKey, 313), "", BadKey},

	// Quoted values: Python's _unquote.
	{"quoted", `sessionid="` + djangoKey + `"`, djangoKey, KeyFound},
	{"quoted, spaces outside", `sessionid= "` + djangoKey + `" `, djangoKey, KeyFound},
	{"quoted, every byte escaped", `sessionid="\` + strings.Join(strings.Split(djangoKey, ""), `\`) + `"`, djangoKey, KeyFound},
	{"quoted, octal", `sessionid="\141\142c` + djangoKey[3:] + `"`, djangoKey, KeyFound},
	{"quoted, not octal past \\3", `sessionid="\400` + djangoKey[3:] + `"`, "400" + djangoKey[3:], KeyFound},
	{"quoted, two octal digits", `sessionid="\14` + djangoKey[2:] + `"`, "14" + djangoKey[2:], KeyFound},
	{"quoted, octal to non-ASCII", `sessionid="\351` + djangoKey[1:] + `"`, "", Ambiguous},
	{"quoted, octal to NUL", `sessionid="` + djangoKey + `\000"`, "", Ambiguous},
	{"quoted, octal to space", `sessionid="` + djangoKey + `\040"`, djangoKey + " ", KeyFound},
	{"quoted, escaped backslash", `sessionid="` + djangoKey[:31] + `\\"`, "", BadKey},
	{"quoted, escaped quote", `sessionid="` + djangoKey + `\""`, "", BadKey},
	{"quoted, trailing backslash", `sessionid="` + djangoKey + `\"`, "", BadKey},
	{"quoted, empty", `sessionid=""`, "", BadKey},
	{"one quote", `sessionid="`, "", BadKey},
	{"opening quote only", `sessionid="` + djangoKey, "", BadKey},
	{"closing quote only", `sessionid=` + djangoKey + `"`, "", BadKey},
	{"quoted, trailing spaces kept", `sessionid="` + djangoKey + `  "`, djangoKey + "  ", KeyFound},
	{"quoted, leading spaces kept", `sessionid="  ` + djangoKey + `"`, "", BadKey},
	{"quoted, upper case", `sessionid="` + strings.ToUpper(djangoKey) + ` "`, strings.ToUpper(djangoKey) + " ", KeyFound},
	{"quoted, padded past MaxKeyLength", `sessionid="` + djangoKey + strings.Repeat(" ", 300) + `"`, "", Ambiguous},
	{"quoted, trailing tab", `sessionid="` + djangoKey + "\t\"", "", Ambiguous},

	// Repeated: the last wins, as in Django.
	{"twice", "sessionid=" + otherKey + "; sessionid=" + djangoKey, djangoKey, KeyFound},
	{"twice, equal", "sessionid=" + djangoKey + "; sessionid=" + djangoKey, djangoKey, KeyFound},
	{"twice, first empty", "sessionid=; sessionid=" + djangoKey, djangoKey, KeyFound},
	{"twice, last empty", "sessionid=" + djangoKey + "; sessionid=", "", BadKey},
	{"twice, last bad", "sessionid=" + djangoKey + "; sessionid=x", "", BadKey},

	// Non-ASCII: UTF-8 whitespace Django strips, and accents MariaDB ignores.
	{"NBSP before the name", "\xc2\xa0sessionid=" + djangoKey, "", Ambiguous},
	{"NBSP after the name", "sessionid\xc2\xa0=" + djangoKey, "", Ambiguous},
	{"ideographic space before the name", "\xe3\x80\x80 sessionid=" + djangoKey, "", Ambiguous},
	{"not whitespace, still unsure", "\xc3\xa9sessionid=" + djangoKey, "", Ambiguous},
	{"non-ASCII inside a longer name", "x\xc2\xa0sessionid=" + djangoKey, "", NoCookie},
	{"NBSP name, then the cookie", "\xc2\xa0sessionid=x; sessionid=" + djangoKey, djangoKey, KeyFound},
	{"the cookie, then an NBSP name", "sessionid=" + djangoKey + "; \xc2\xa0sessionid=x", "", Ambiguous},
	{"NBSP before the value", "sessionid=\xc2\xa0" + djangoKey, "", Ambiguous},
	{"NEL after the value", "sessionid=" + djangoKey + "\xc2\x85", "", Ambiguous},
	{"line separator around the value", "sessionid=\xe2\x80\xa8" + djangoKey + "\xe2\x80\xa8", "", Ambiguous},
	{"accent in the value", "sessionid=" + djangoKey[:30] + "é5", "", Ambiguous},
	{"invalid UTF-8 in the value", "sessionid=" + djangoKey[:31] + "\xff", "", Ambiguous},
	{"non-ASCII in another cookie", "a=\xc3\xa9\xff; sessionid=" + djangoKey, djangoKey, KeyFound},

	// Control bytes matter only in the session cookie's value.
	{"NUL after the key", "sessionid=" + djangoKey + "\x00", "", Ambiguous},
	{"NUL inside the key", "sessionid=" + djangoKey[:16] + "\x00" + djangoKey[16:], "", Ambiguous},
	{"DEL in the key", "sessionid=" + djangoKey + "\x7f", "", Ambiguous},
	{"tab inside the value", "sessionid=abc\tdef", "", Ambiguous},
	{"control byte elsewhere", "a=\x01; sessionid=" + djangoKey, djangoKey, KeyFound},
	{"NUL in another name", "\x00a=b; sessionid=" + djangoKey, djangoKey, KeyFound},
	{"control bytes in an overridden value", "sessionid=\x00\x01; sessionid=" + djangoKey, djangoKey, KeyFound},

	// Attacks: refused without a query, or passed whole to a placeholder.
	{"injection", "sessionid=' OR '1'='1", "", BadKey},
	{"injection, union", "sessionid=x' UNION SELECT session_data FROM django_session -- ", "", BadKey},
	{"injection, stacked", `sessionid=abc";DROP TABLE django_session;--`, "", BadKey},
	{"injection, quoted", `sessionid="' OR 1=1 -- "`, "", BadKey},
	{"injection, LIKE wildcard", "sessionid=%", "", BadKey},
}

func newDefaultFinder(t testing.TB) *KeyFinder {
	t.Helper()
	f, err := NewKeyFinder("sessionid", "^[a-z0-9]{32}$")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestKeyFinder(t *testing.T) {
	f := newDefaultFinder(t)
	if f.class == nil {
		t.Error("the default pattern did not get the table matcher")
	}
	general, err := NewKeyFinder("sessionid", "^[a-z0-9]{32}$|^never$")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range keyCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, kf := range []*KeyFinder{f, general} {
				key, got := kf.Find([]byte(tc.header))
				if got != tc.want || string(key) != tc.key || (got != KeyFound && key != nil) {
					t.Errorf("got %q, %v; want %q, %v", key, got, tc.key, tc.want)
				}
			}
		})
	}
}

func TestKeyFinderDuplicates(t *testing.T) {
	base := newDefaultFinder(t)
	last, first, doubt := base.WithDuplicates(DuplicatesLast), base.WithDuplicates(DuplicatesFirst), base.WithDuplicates(DuplicatesDoubt)
	if base.dups != DuplicatesLast {
		t.Errorf("a new KeyFinder reads %v duplicates; want last", base.dups)
	}
	type want struct {
		key string
		res KeyResult
	}
	k, o := want{djangoKey, KeyFound}, want{otherKey, KeyFound}
	bad, amb := want{"", BadKey}, want{"", Ambiguous}
	for _, tc := range []struct {
		name               string
		header             string
		last, first, doubt want
	}{
		{"once", "sessionid=" + djangoKey, k, k, k},
		{"differ", "sessionid=" + djangoKey + "; sessionid=" + otherKey, o, k, amb},
		{"equal", "sessionid=" + djangoKey + "; a=b; sessionid=" + djangoKey, k, k, k},
		{"equal but for whitespace", "sessionid=" + djangoKey + ";sessionid= " + djangoKey + "\t", k, k, k},
		{"equal once unquoted", "sessionid=" + djangoKey + `; sessionid="` + djangoKey + `"`, k, k, amb},
		{"first empty", "sessionid=; sessionid=" + djangoKey, k, bad, amb},
		{"both bad", "sessionid=x; sessionid=x", bad, bad, bad},
		{"three", "sessionid=" + djangoKey + "; sessionid=x; sessionid=" + otherKey, o, k, amb},
		{"perhaps-named first", "\xc2\xa0sessionid=x; sessionid=" + djangoKey, k, amb, amb},
		{"perhaps-named last", "sessionid=" + djangoKey + "; sessionid\xe3\x80\x80=x", amb, k, amb},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				f    *KeyFinder
				want want
			}{{last, tc.last}, {first, tc.first}, {doubt, tc.doubt}} {
				key, got := c.f.Find([]byte(tc.header))
				if got != c.want.res || string(key) != c.want.key {
					t.Errorf("%v: got %q, %v; want %q, %v", c.f.dups, key, got, c.want.key, c.want.res)
				}
			}
		})
	}
	// An unknown setting doubts.
	if key, got := base.WithDuplicates(9).Find([]byte("sessionid=" + djangoKey + "; sessionid=" + otherKey)); got != Ambiguous {
		t.Errorf("Duplicates(9): got %q, %v; want %q, %v", key, got, "", Ambiguous)
	}
}

func TestKeyFinderLines(t *testing.T) {
	f := newDefaultFinder(t)
	general, _ := NewKeyFinder("sessionid", "^[a-z0-9,]{32,40}$|^never$")
	for _, tc := range []struct {
		name  string
		f     *KeyFinder
		lines []string
		key   string
		want  KeyResult
	}{
		{"none", f, nil, "", NoCookie},
		{"one", f, []string{"a=1; sessionid=" + djangoKey}, djangoKey, KeyFound},
		{"one, empty", f, []string{""}, "", NoCookie},
		{"cookie in the first line", f, []string{"sessionid=" + djangoKey, "a=1"}, djangoKey, KeyFound},
		{"cookie in a later line", f, []string{"a=1", "sessionid=" + djangoKey}, "", Ambiguous},
		{"name in a later line's value", f, []string{"sessionid=" + djangoKey, "a=sessionid"}, "", Ambiguous},
		{"no cookie anywhere", f, []string{"a=1", "b=2", "c=3"}, "", NoCookie},
		{"bad key, pattern without ','", f, []string{"sessionid=abc", "def"}, "", BadKey},
		{"bad key, pattern with ','", general, []string{"sessionid=abc", "def"}, "", Ambiguous},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lines [][]byte
			for _, l := range tc.lines {
				lines = append(lines, []byte(l))
			}
			key, got := tc.f.FindLines(lines)
			if got != tc.want || string(key) != tc.key {
				t.Errorf("got %q, %v; want %q, %v", key, got, tc.key, tc.want)
			}
		})
	}
}

func TestKeyFinderPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		simple  bool
		key     string
		ok      bool
	}{
		{"^[a-z0-9]{32}$", true, djangoKey, true},
		{"^[a-z0-9]{32}$", true, strings.ToUpper(djangoKey), true},  // MariaDB ignores case
		{"^[a-zA-Z0-9]{40}$", true, strings.Repeat("aZ", 20), true}, // Laravel
		{"^[a-zA-Z0-9]{40}$", true, strings.Repeat("aZ", 19), false},
		{"^[A-Z0-9]{26}$", true, strings.Repeat("a", 26), true},
		{"^[0-9a-f]{8,64}$", true, "deadbeef", true},
		{"^[0-9a-f]{8,64}$", true, "DEADBEEF", true},
		{"^[0-9a-f]+$", true, "cafe", true},
		{"^[0-9a-f]+$", true, "", false},
		{"^[0-9a-f]+$", true, "cafg", false},
		{"^s:[A-Za-z0-9_-]+\\.[A-Za-z0-9+/]+$", false, "s:abc.def", true}, // express, signed
		{"^s:[A-Za-z0-9_-]+\\.[A-Za-z0-9+/]+$", false, "S:abc.def", true},
		{"^s:[A-Za-z0-9_-]+\\.[A-Za-z0-9+/]+$", false, "abc", false},
		{"[a-z]{4}", false, "xxabcdxx", true}, // unanchored: operator's choice
	} {
		f, err := NewKeyFinder("sid", tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if (f.class != nil) != tc.simple {
			t.Errorf("%s: table matcher %v; want %v", tc.pattern, f.class != nil, tc.simple)
		}
		key, got := f.Find([]byte("sid=" + tc.key))
		if (got == KeyFound) != tc.ok || tc.ok && string(key) != tc.key {
			t.Errorf("%s: %q gave %q, %v; want found=%v", tc.pattern, tc.key, key, got, tc.ok)
		}
	}
	if _, err := NewKeyFinder("sid", "("); err == nil {
		t.Error("a bad pattern was accepted")
	}
	for _, name := range []string{"", "a b", "a=b", "a;b", "sid\t", "sïd", "a\x00"} {
		if _, err := NewKeyFinder(name, "^x$"); err == nil {
			t.Errorf("cookie name %q was accepted", name)
		}
	}
}

func TestKeyResultString(t *testing.T) {
	for r, want := range map[KeyResult]string{NoCookie: "no-cookie", KeyFound: "key-found", BadKey: "bad-key", Ambiguous: "ambiguous-cookie", 200: "KeyResult(200)"} {
		if got := r.String(); got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	}
}

// pyEscape is the pattern of Python's http.cookies._unquote.
var pyEscape = regexp.MustCompile(`\\(?:([0-3][0-7][0-7])|(.))`)

// pyIsSpace is Python's str.isspace for one character.
func pyIsSpace(r rune) bool {
	switch {
	case r == ' ', '\t' <= r && r <= '\r', 0x1c <= r && r <= 0x1f, r == 0x85, r == 0xa0, r == 0x1680,
		0x2000 <= r && r <= 0x200a, r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f, r == 0x3000:
		return true
	}
	return false
}

// djangoValues reads header as django.http.cookie.parse_cookie does,
// written from its source as plainly as possible, with none of Find's
// shortcuts: the values of the chunks named name, in order, unquoted. It
// is the fuzz test's oracle, and TestKeyFinderAgreesWithDjango checks it
// against Django itself.
func djangoValues(header, name string) []string {
	var values []string
	for _, chunk := range strings.Split(header, ";") {
		key, val, ok := strings.Cut(chunk, "=")
		if !ok {
			key, val = "", chunk
		}
		key, val = strings.TrimFunc(key, pyIsSpace), strings.TrimFunc(val, pyIsSpace)
		if key != name {
			continue
		}
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = pyEscape.ReplaceAllStringFunc(val[1:len(val)-1], func(m string) string {
				if len(m) == 4 && '0' <= m[1] && m[1] <= '3' {
					n, _ := strconv.ParseUint(m[1:], 8, 8)
					return string(rune(n)) // Python's chr
				}
				return m[1:]
			})
		}
		values = append(values, val)
	}
	return values
}

// A modelFinder is a KeyFinder beside its key check as the store's
// comparison sees it: lower is the pattern, written in lower case, that
// a value must match once lower-cased and right-trimmed of spaces.
type modelFinder struct {
	f     *KeyFinder
	lower *regexp.Regexp
}

func newModelFinder(t testing.TB, pattern string, d Duplicates) modelFinder {
	t.Helper()
	f, err := NewKeyFinder("sessionid", pattern)
	if err != nil {
		t.Fatal(err)
	}
	return modelFinder{f.WithDuplicates(d), regexp.MustCompile(pattern)}
}

// modelFinders are the finders the fuzz and Django tests check: the table
// matcher and the regexp engine, with each Duplicates setting.
func modelFinders(t testing.TB) []modelFinder {
	var mf []modelFinder
	for _, pattern := range []string{"^[a-z0-9]{32}$", "^[a-z0-9]{32}$|^never$"} {
		for _, d := range []Duplicates{DuplicatesLast, DuplicatesFirst, DuplicatesDoubt} {
			mf = append(mf, newModelFinder(t, pattern, d))
		}
	}
	return mf
}

// expected is what Find must answer when the application reads value
// (present false: no session cookie), where it can be exact.
func (m modelFinder) expected(value string, present bool) (string, KeyResult) {
	canon := strings.ToLower(strings.TrimRight(value, " "))
	switch {
	case !present:
		return "", NoCookie
	case value == "":
		return "", BadKey
	case !printable([]byte(value)):
		return "", Ambiguous
	case len(canon) > MaxKeyLength || !m.lower.MatchString(canon):
		return "", BadKey
	case len(value) > MaxKeyLength:
		return "", Ambiguous
	}
	return value, KeyFound
}

// rejected reports whether the application, reading value, can hold no
// session: no value, one Django does not look up (shorter than 8), or an
// ASCII one no key equals even ignoring case and trailing spaces.
func (m modelFinder) rejected(value *string) bool {
	if value == nil || len(*value) < 8 {
		return true
	}
	canon := strings.ToLower(strings.TrimRight(*value, " "))
	return printable([]byte(*value)) && !m.lower.MatchString(canon)
}

// check fails t unless the finder's answer for header is the model's
// for the finder's Duplicates setting: exactly, or Ambiguous where the
// header holds non-ASCII bytes Find does not decode. For DuplicatesDoubt
// only soundness is checked: every value read must agree with the answer.
func (m modelFinder) check(t *testing.T, header []byte) {
	t.Helper()
	f := m.f
	key, got := f.Find(header)
	if got != KeyFound && key != nil {
		t.Fatalf("%q: result %v with key %q", header, got, key)
	}
	values := djangoValues(string(header), string(f.name))
	if f.dups == DuplicatesDoubt {
		for _, v := range values {
			if got == KeyFound && v != string(key) || got == BadKey && !m.rejected(&v) {
				t.Fatalf("%q: got %q, %v; but %q is read too", header, key, got, v)
			}
		}
		if got == NoCookie && len(values) > 0 {
			t.Fatalf("%q: got %q, %v; but %q is read", header, key, got, values)
		}
		return
	}
	var value string
	if len(values) > 0 {
		value = values[len(values)-1]
		if f.dups == DuplicatesFirst {
			value = values[0]
		}
	}
	wantKey, want := m.expected(value, len(values) > 0)
	if got == want && string(key) == wantKey {
		return
	}
	if got == Ambiguous && bytes.ContainsFunc(header, func(r rune) bool { return r >= 0x80 }) {
		return
	}
	t.Fatalf("%q: got %q, %v; want %q, %v", header, key, got, wantKey, want)
}

func FuzzKeyFinder(f *testing.F) {
	for _, tc := range keyCases {
		f.Add([]byte(tc.header))
	}
	for _, s := range []string{"a=1; sessionid=x; sessionid=y", "sessionid=\"\"", "=;;=", `sessionid="\\\"\`} {
		f.Add([]byte(s))
	}
	finders := modelFinders(f)
	simple := finders[0].f
	f.Fuzz(func(t *testing.T, header []byte) {
		for _, m := range finders {
			m.check(t, header)
			key, res := m.f.Find(header)
			if res != KeyFound {
				continue
			}
			canon := bytes.ToLower(bytes.TrimRight(key, " "))
			if len(key) == 0 || len(key) > MaxKeyLength || !printable(key) || !m.lower.Match(canon) {
				t.Fatalf("found %q in %q", key, header)
			}
			if !bytes.Contains(header, key) && !bytes.Contains(header, []byte{'\\'}) {
				t.Fatalf("found %q, not in %q", key, header)
			}
		}
		lines := bytes.Split(header, []byte{'\n'})
		key, res := simple.FindLines(lines)
		if len(lines) > 1 && res != Ambiguous {
			if k1, r1 := simple.Find(lines[0]); r1 != res || !bytes.Equal(k1, key) {
				t.Fatalf("%q: FindLines gave %q, %v; Find on the first line %q, %v", lines, key, res, k1, r1)
			}
		}
	})
}

var benchHeaders = []struct{ name, header string }{
	{"no-cookie", ""},
	{"other-cookies", "csrftoken=0123456789abcdef0123456789abcdef; _ga=GA1.2.3.4"},
	{"session", "csrftoken=0123456789abcdef0123456789abcdef; sessionid=" + djangoKey + "; _ga=GA1.2.3.4"},
	{"many-cookies", strings.Repeat("_ga_0123456789=GS1.1.1700000000.1.1.1700000000.0.0.0; ", 20) + "sessionid=" + djangoKey},
	{"quoted", `sessionid="` + djangoKey + `"`},
	{"repeated", "sessionid=" + djangoKey + "; csrftoken=x; sessionid=" + djangoKey},
}

func BenchmarkKeyFinder(b *testing.B) {
	f := newDefaultFinder(b)
	for _, h := range benchHeaders {
		b.Run(h.name, func(b *testing.B) {
			header := []byte(h.header)
			b.ReportAllocs()
			for b.Loop() {
				f.Find(header)
			}
		})
	}
}
