package sessioncheck

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// djangoReading is what Django makes of one Cookie header.
type djangoReading struct {
	Last *string  `json:"last"` // request.COOKIES[name], nil when absent
	All  []string `json:"all"`  // the value of each chunk of that name, in order
}

// readAsDjango runs Django's parse_cookie (testdata/django_parse_cookie.py)
// on each header, decoded as WSGI and Django decode it.
func readAsDjango(t *testing.T, python, name string, headers []string) []djangoReading {
	t.Helper()
	req := struct {
		Name    string   `json:"name"`
		Headers [][]byte `json:"headers"` // base64, as encoding/json writes []byte
	}{Name: name}
	for _, h := range headers {
		req.Headers = append(req.Headers, []byte(h))
	}
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/django_parse_cookie.py")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s testdata/django_parse_cookie.py: %v\n%s", python, err, stderr.Bytes())
	}
	var readings []djangoReading
	if err := json.Unmarshal(out, &readings); err != nil {
		t.Fatal(err)
	}
	if len(readings) != len(headers) {
		t.Fatalf("Django read %d headers; want %d", len(readings), len(headers))
	}
	return readings
}

// djangoHeaders returns TestKeyFinder's headers, variants of a session
// cookie built from pieces of every form, and random headers made of
// fragments that matter to the parse: several thousand in all.
func djangoHeaders() []string {
	var headers []string
	for _, tc := range keyCases {
		headers = append(headers, tc.header)
	}
	prefixes := []string{"", "a=b; ", "; ", ";", "sessionid=" + otherKey + "; ", "sessionid; ",
		"\xc2\xa0sessionid=x; ", "=x;", "a=\x01\xff; ", "sessionid=; "}
	names := []string{"sessionid", " sessionid ", "\tsessionid\r", "SESSIONID", "sessionid\x1f", "\x1csessionid",
		"\xc2\xa0sessionid", "\xe3\x80\x80sessionid", "sessionid\xc2\x85", "xsessionid", "\x00sessionid", "sessionid\x7f"}
	separators := []string{"=", " = ", "=\x0b", "\x1e=\x1d"}
	values := []string{djangoKey, strings.ToUpper(djangoKey), `"` + djangoKey + `"`, `"` + djangoKey + `  "`,
		`"  ` + djangoKey + `"`, `"\141` + djangoKey[1:] + `"`, `"\351` + djangoKey[1:] + `"`, `"\a\b\c` + djangoKey[3:] + `"`,
		`"\400` + djangoKey[3:] + `"`, `"` + djangoKey + `\040"`, `"` + djangoKey + `\"`, `"` + djangoKey + `\""`, "", "abc",
		"' OR '1'='1", djangoKey + "\xc2\xa0", "\xc2\xa0" + djangoKey, djangoKey + "\x00", djangoKey + "\t",
		djangoKey + "=", `"` + djangoKey, djangoKey[:31] + "é", djangoKey[:31] + "\xff", `""`, `"`,
		`"` + djangoKey + strings.Repeat(" ", 300) + `"`, strings.Repeat("a", 10000), "Ab" + djangoKey[2:]}
	suffixes := []string{"", "; a=b", "; sessionid=" + otherKey, ";sessionid=", " ;", "; \xc2\xa0sessionid=x",
		",x=1", "; sessionid=" + djangoKey, "; sessionid=\x00"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range names {
		for _, sep := range separators {
			for _, value := range values {
				for range 3 {
					p, s := prefixes[rng.IntN(len(prefixes))], suffixes[rng.IntN(len(suffixes))]
					headers = append(headers, p+name+sep+value+s)
				}
			}
		}
	}
	fragments := []string{"sessionid", "sessionid", "=", "=", ";", ";", " ", "\t", `"`, `\`, `\141`, `\351`, `\0`,
		djangoKey, strings.ToUpper(djangoKey[:16]), djangoKey[16:], "a", "\xc2\xa0", "\xe3\x80\x80", "\x00", "\xff", ",", "x=y", "\x1f"}
	for range 4000 {
		var b strings.Builder
		for range 1 + rng.IntN(10) {
			b.WriteString(fragments[rng.IntN(len(fragments))])
		}
		headers = append(headers, b.String())
	}
	return headers
}

// TestKeyFinderAgreesWithDjango checks Find against Django's own
// parse_cookie (Debian's python3-django, via USERROUTER_TEST_PYTHON): a key
// found is the one Django reads, byte for byte; a header found anonymous is
// one Django reads no session from; Ambiguous is allowed but rare where the
// header is plain ASCII. It checks the fuzz test's model of parse_cookie
// against Django too.
func TestKeyFinderAgreesWithDjango(t *testing.T) {
	python := sessiontest.Env(t, "USERROUTER_TEST_PYTHON")
	headers := djangoHeaders()
	readings := readAsDjango(t, python, "sessionid", headers)
	finders := modelFinders(t)
	var plain, plainAmbiguous int
	counts := map[KeyResult]int{}
	for i, h := range headers {
		django := readings[i]
		if utf8.ValidString(h) {
			values := djangoValues(h, "sessionid")
			var last *string
			if len(values) > 0 {
				last = &values[len(values)-1]
			}
			if !slices.Equal(values, django.All) || (last == nil) != (django.Last == nil) || last != nil && *last != *django.Last {
				t.Errorf("%q: the model reads %q; Django reads %q (last %q)", h, values, django.All, deref(django.Last))
			}
		}
		for j, m := range finders {
			key, got := m.f.Find([]byte(h))
			// What Django would read if it took the repeated cookie as
			// this finder is set to.
			read := django.All
			switch m.f.dups {
			case DuplicatesLast:
				read = nil
				if django.Last != nil {
					read = []string{*django.Last}
				}
			case DuplicatesFirst:
				read = read[:min(1, len(read))]
			}
			switch got {
			case KeyFound:
				if len(read) == 0 || slices.ContainsFunc(read, func(v string) bool { return v != string(key) }) {
					t.Errorf("%v %q: got %q, %v; Django reads %q", m.f.dups, h, key, got, read)
				}
			case NoCookie, BadKey:
				for _, v := range read {
					if !m.rejected(&v) {
						t.Errorf("%v %q: got %q, %v; Django reads %q", m.f.dups, h, key, got, v)
					}
				}
			}
			if j != 0 {
				continue
			}
			counts[got]++
			if printable([]byte(h)) {
				plain++
				if got == Ambiguous {
					plainAmbiguous++
				}
			}
		}
	}
	t.Logf("%d headers: %v; %d of %d plain ASCII ones ambiguous", len(headers), counts, plainAmbiguous, plain)
	if plain == 0 || plainAmbiguous*50 > plain {
		t.Errorf("%d of %d plain ASCII headers ambiguous; want at most 2%%", plainAmbiguous, plain)
	}
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}
