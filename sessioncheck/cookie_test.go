package sessioncheck

import (
	"bytes"
	"strings"
	"testing"
)

const djangoKey = "abcdefghijklmnopqrstuvwxyz012345"

func TestKeyFinder(t *testing.T) {
	f, err := NewKeyFinder("sessionid", "^[a-z0-9]{32}$")
	if err != nil {
		t.Fatal(err)
	}
	if f.class == nil {
		t.Error("the default pattern did not get the table matcher")
	}
	for _, tc := range []struct {
		name   string
		header string
		key    string
		want   KeyResult
	}{
		{"no header", "", "", NoCookie},
		{"other cookies", "csrftoken=abc; _ga=GA1.2.3", "", NoCookie},
		{"alone", "sessionid=" + djangoKey, djangoKey, KeyFound},
		{"among others", "csrftoken=x;sessionid=" + djangoKey + "; _ga=1", djangoKey, KeyFound},
		{"spaces around", "  sessionid = " + djangoKey + " ;a=b", djangoKey, KeyFound},
		{"quoted", `sessionid="` + djangoKey + `"`, djangoKey, KeyFound},
		{"a longer name is another cookie", "xsessionid=" + djangoKey + "; sessionid2=" + djangoKey, "", NoCookie},
		{"name is case-sensitive", "SessionID=" + djangoKey, "", NoCookie},
		{"twice", "sessionid=" + djangoKey + "; sessionid=" + djangoKey, "", Duplicate},
		{"twice, one empty", "sessionid=; sessionid=" + djangoKey, "", Duplicate},
		{"empty", "sessionid=", "", BadKey},
		{"too short", "sessionid=abc", "", BadKey},
		{"upper case", "sessionid=" + strings.ToUpper(djangoKey), "", BadKey},
		{"quote in key", "sessionid=" + djangoKey[:30] + "'1", "", BadKey},
		{"injection", "sessionid=' OR '1'='1", "", BadKey},
		{"unicode", "sessionid=" + djangoKey[:30] + "é", "", BadKey},
		{"very long", "sessionid=" + strings.Repeat("a", 10000), "", BadKey},
		{"NUL byte", "sessionid=" + djangoKey + "\x00", "", Malformed},
		{"control char elsewhere", "a=\x01; sessionid=" + djangoKey, "", Malformed},
		{"no equals sign", "sessionid; other=1", "", NoCookie},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, got := f.Find([]byte(tc.header))
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
		{"^[a-zA-Z0-9]{40}$", true, strings.Repeat("aZ", 20), true}, // Laravel
		{"^[a-zA-Z0-9]{40}$", true, strings.Repeat("aZ", 19), false},
		{"^[0-9a-f]{8,64}$", true, "deadbeef", true},
		{"^[0-9a-f]+$", true, "cafe", true},
		{"^[0-9a-f]+$", true, "", false},
		{"^s:[A-Za-z0-9_-]+\\.[A-Za-z0-9+/]+$", false, "s:abc.def", true}, // express, signed
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
		_, got := f.Find([]byte("sid=" + tc.key))
		if (got == KeyFound) != tc.ok {
			t.Errorf("%s: %q gave %v; want found=%v", tc.pattern, tc.key, got, tc.ok)
		}
	}
	if _, err := NewKeyFinder("sid", "("); err == nil {
		t.Error("a bad pattern was accepted")
	}
}

func FuzzKeyFinder(f *testing.F) {
	for _, s := range []string{"", "sessionid=" + djangoKey, "a=1; sessionid=x; sessionid=y", "sessionid=\"\"", "=;;=", "sessionid=\x00"} {
		f.Add([]byte(s))
	}
	simple, _ := NewKeyFinder("sessionid", "^[a-z0-9]{32}$")
	general, _ := NewKeyFinder("sessionid", "^[a-z0-9]{32}$|^x+$")
	f.Fuzz(func(t *testing.T, header []byte) {
		for _, kf := range []*KeyFinder{simple, general} {
			key, res := kf.Find(header)
			if res == KeyFound {
				if len(key) == 0 || len(key) > MaxKeyLength || !kf.pattern.Match(key) || !bytes.Contains(header, key) {
					t.Fatalf("found %q in %q", key, header)
				}
			} else if key != nil {
				t.Fatalf("result %v with key %q", res, key)
			}
		}
	})
}

var benchHeaders = []struct{ name, header string }{
	{"no-cookie", ""},
	{"other-cookies", "csrftoken=0123456789abcdef0123456789abcdef; _ga=GA1.2.3.4"},
	{"session", "csrftoken=0123456789abcdef0123456789abcdef; sessionid=" + djangoKey + "; _ga=GA1.2.3.4"},
}

func BenchmarkKeyFinder(b *testing.B) {
	f, _ := NewKeyFinder("sessionid", "^[a-z0-9]{32}$")
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
