package pagecache

import (
	"bytes"
	"strings"
	"testing"
)

func TestCookieValue(t *testing.T) {
	long := strings.Repeat("a", MaxCookieValue)
	for _, tc := range []struct {
		name   string
		lines  []string
		want   string
		absent bool // a nil value
		ok     bool
	}{
		{name: "absent", lines: nil, absent: true, ok: true},
		{name: "absent among others", lines: []string{"sessionid=abc; theme=dark"}, absent: true, ok: true},
		{name: "plain", lines: []string{"lang=pt-BR"}, want: "pt-BR", ok: true},
		{name: "among others, spaces", lines: []string{"a=1;  lang = fr ;b=2"}, want: "fr", ok: true},
		{name: "quoted", lines: []string{`lang="de"`}, want: "de", ok: true},
		{name: "empty is absent", lines: []string{"lang="}, absent: true, ok: true},
		{name: "empty quoted is absent", lines: []string{`lang=""`}, absent: true, ok: true},
		{name: "no value", lines: []string{"lang"}, absent: true, ok: true},
		{name: "longest", lines: []string{"lang=" + long}, want: long, ok: true},
		{name: "too long", lines: []string{"lang=" + long + "a"}},
		{name: "bad byte", lines: []string{"lang=fr<script>"}},
		{name: "percent", lines: []string{"lang=fr%20"}},
		{name: "non-ASCII", lines: []string{"lang=fr\xc3\xa9"}},
		{name: "inner quote", lines: []string{`lang=f"r`}},
		{name: "twice, same value", lines: []string{"lang=fr; x=1; lang=fr"}, want: "fr", ok: true},
		{name: "twice, different values", lines: []string{"lang=fr; lang=en"}},
		{name: "twice, one empty", lines: []string{"lang=fr; lang="}},
		{name: "name case differs", lines: []string{"Lang=fr"}, absent: true, ok: true},
		{name: "a longer name", lines: []string{"language=fr; xlang=en"}, absent: true, ok: true},
		{name: "several lines, not in them", lines: []string{"a=1", "b=2"}, absent: true, ok: true},
		{name: "several lines, in one", lines: []string{"a=1", "lang=fr"}},
		{name: "several lines, one empty", lines: []string{"lang=fr", ""}, want: "fr", ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lines [][]byte
			for _, l := range tc.lines {
				lines = append(lines, []byte(l))
			}
			got, ok := CookieValue(lines, "lang")
			if ok != tc.ok || string(got) != tc.want || (tc.absent && got != nil) || (ok && !tc.absent && got == nil) {
				t.Errorf("got %q (nil %v), %v; want %q (nil %v), %v", got, got == nil, ok, tc.want, tc.absent, tc.ok)
			}
		})
	}
}

func TestKeyTemplateCookie(t *testing.T) {
	k, err := NewKeyTemplate(KeyOptions{Template: "page:{host}{uri}|{cookie:lang}|{cookie:cur}|{cookie:lang}"})
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Cookies(); len(got) != 2 || got[0] != "lang" || got[1] != "cur" {
		t.Errorf("Cookies() = %q; want [lang cur]", got)
	}
	in := func(cookies ...string) *KeyInput {
		var lines [][]byte
		for _, c := range cookies {
			lines = append(lines, []byte(c))
		}
		return &KeyInput{Host: []byte("h"), Path: []byte("/a"), Cookies: lines}
	}
	for _, tc := range []struct {
		name string
		in   *KeyInput
		want string
		ok   bool
	}{
		{"none", in(), "page:h/a|||", true},
		{"empty is absent", in("lang=; cur="), "page:h/a|||", true},
		{"both", in("sessionid=x; cur=EUR; lang=fr"), "page:h/a|fr|EUR|fr", true},
		{"one refused", in("lang=fr; cur=<b>"), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := k.Append(nil, tc.in, nil)
			if ok != tc.ok || string(got) != tc.want {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
			if k.CookiesValid(tc.in) != tc.ok {
				t.Errorf("CookiesValid = %v; want %v", !tc.ok, tc.ok)
			}
		})
	}
	for _, bad := range []string{"{cookie:}", "{cookie:a b}", "{cookie:a;b}", "{cookie:a=b}"} {
		if _, err := NewKeyTemplate(KeyOptions{Template: "page:" + bad}); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func FuzzCookieValue(f *testing.F) {
	f.Add([]byte("a=1; lang=fr"), []byte(""))
	f.Add([]byte(`lang="pt-BR"`), []byte("lang=pt-BR"))
	f.Add([]byte("lang=fr; lang=en"), []byte{})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		lines := [][]byte{a}
		if len(b) > 0 {
			lines = append(lines, b)
		}
		v, ok := CookieValue(lines, "lang")
		if !ok {
			if v != nil {
				t.Fatalf("refused with a value %q", v)
			}
			return
		}
		if len(v) > MaxCookieValue || !cookieValueBytes(v) || (v != nil && len(v) == 0) {
			t.Fatalf("value %q outside the bounds", v)
		}
		// The value the key holds is the one a fill sends: parsed again,
		// it is the same.
		if v != nil {
			again, ok := CookieValue([][]byte{append([]byte("lang="), v...)}, "lang")
			if !ok || !bytes.Equal(again, v) {
				t.Fatalf("%q read back as %q, %v", v, again, ok)
			}
		}
	})
}

func BenchmarkCookieValue(b *testing.B) {
	lines := [][]byte{[]byte("csrftoken=abcdefghijklmnopqrstuvwxyz012345; sessionid=0123456789abcdefghijklmnopqrstuv; django_language=pt-br; _ga=GA1.2.3.4")}
	b.ReportAllocs()
	for b.Loop() {
		if v, ok := CookieValue(lines, "django_language"); !ok || len(v) != 5 {
			b.Fatal(v, ok)
		}
	}
}
