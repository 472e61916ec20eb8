package pagecache

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

func TestVaryOf(t *testing.T) {
	p := NewPolicy(PolicyOptions{VaryHeaders: []string{"X-Device"}})
	for _, tc := range []struct {
		name, vary, want string
		ok               bool
	}{
		{"none", "", "", true},
		{"allowed only", "Accept-Encoding, Cookie, Authorization, x-device", "", true},
		{"one", "Accept-Language", "accept-language", true},
		{"sorted, unique, lower case", "User-Agent, accept-language,ACCEPT-LANGUAGE, Cookie", "accept-language,user-agent", true},
		{"empty elements", " , Accept-Language ,,", "accept-language", true},
		{"star", "Accept-Language, *", "", false},
		{"a forwarding header", "X-Forwarded-For", "", false},
		{"host", "Host", "", false},
		{"a conditional", "If-None-Match", "", false},
		{"four", "a, b, c, d", "a,b,c,d", true},
		{"five", "a, b, c, d, e", "", false},
		{"long name", strings.Repeat("x", 65), "", false},
		{"not a token", "Accept Language", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := p.varyOf([]byte(tc.vary))
			if got != tc.want || ok != tc.ok {
				t.Errorf("varyOf(%q): got %q, %v; want %q, %v", tc.vary, got, ok, tc.want, tc.ok)
			}
			if ok && got != "" && !validVaryList([]byte(got)) {
				t.Errorf("varyOf(%q) = %q, which a marker may not hold", tc.vary, got)
			}
		})
	}
}

func TestValidVaryList(t *testing.T) {
	for _, tc := range []struct {
		list string
		ok   bool
	}{
		{"accept-language", true},
		{"accept-language,user-agent", true},
		{"", false},
		{"user-agent,accept-language", false}, // unsorted
		{"a,a", false},
		{"Accept-Language", false},
		{"cookie", false},
		{"accept-language,authorization", false},
		{"accept-encoding", false},
		{"x-forwarded-for", false},
		{"*", false},
		{"a,b,c,d,e", false},
		{"a,,b", false},
	} {
		if got := validVaryList([]byte(tc.list)); got != tc.ok {
			t.Errorf("validVaryList(%q): got %v; want %v", tc.list, got, tc.ok)
		}
	}
}

func TestAppendVaryValue(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"empty", "", "", true},
		{"lower case", "FR-fr", "fr-fr", true},
		{"list", " en-US, en;q=0.9 ,\tfr ; q = 0.5 ", "en-us,en;q=0.9,fr;q=0.5", true},
		{"inner runs", "Mozilla/5.0  (X11;\t Linux)", "mozilla/5.0 (x11;linux)", true},
		{"control bytes", "a\x00b\x7fc", "abc", true},
		{"obs-text kept", "caf\xc3\xa9", "caf\xc3\xa9", true},
		{"at the bound", strings.Repeat("a", MaxVaryValue), strings.Repeat("a", MaxVaryValue), true},
		{"over the bound", strings.Repeat("a", MaxVaryValue+1), "", false},
		{"long before normalising", strings.Repeat(" ", 300) + "en", "en", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := AppendVaryValue([]byte("x"), []byte(tc.in))
			if string(got) != "x"+tc.want || ok != tc.ok {
				t.Errorf("got %q, %v; want %q, %v", got[1:], ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzAppendVaryValue: a normalised value is bounded, has no control bytes,
// no upper case, no leading or trailing space, and normalising it again
// changes nothing (what a fill sends keys the same variant).
func FuzzAppendVaryValue(f *testing.F) {
	for _, s := range []string{"en-US, en;q=0.9", " a  b ", "A\tB,  C ; d", strings.Repeat("x ", 70)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := AppendVaryValue(nil, in)
		if !ok {
			if len(got) != 0 {
				t.Fatalf("refused, yet appended %q", got)
			}
			return
		}
		if len(got) > MaxVaryValue || bytes.ContainsFunc(got, func(r rune) bool { return r < ' ' || r == 0x7f || ('A' <= r && r <= 'Z') }) ||
			bytes.HasPrefix(got, []byte{' '}) || bytes.HasSuffix(got, []byte{' '}) || bytes.Contains(got, []byte("  ")) {
			t.Fatalf("%q normalised to %q", in, got)
		}
		if again, ok := AppendVaryValue(nil, got); !ok || !bytes.Equal(again, got) {
			t.Fatalf("%q normalised to %q, then to %q", in, got, again)
		}
	})
}

func BenchmarkAppendVaryValue(b *testing.B) {
	v := []byte("en-US,en;q=0.9, fr;q=0.8")
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = AppendVaryValue(dst[:0], v)
	}
}

// headers is a HeaderPeeker by lower-case name, as markers name headers.
type headers map[string][]byte

func (h headers) Peek(name string) []byte { return h[name] }

func lang(v string) headers { return headers{"accept-language": []byte(v)} }

func TestVariantsMemory(t *testing.T) {
	testVariants(t, func(t *testing.T) Store {
		m, err := NewMemory(MemoryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return m
	})
}

func TestVariantsMemcache(t *testing.T) {
	testVariants(t, memcacheAt(pagecachetest.Memcached(t)))
}

// testVariants walks the variants protocol: a marker written with the
// first varying answer, variants found by the request's values, a purge of
// the URL reaching each, and the bound on how many are filled.
func testVariants(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{MaxVariants: 2}, "")
	const names = "accept-language"

	// The first fill finds no marker: it writes one, and the answer as the
	// variant of the values its request carried.
	st, tk := v.lookup(url1, t0)
	if st != PageMissing {
		t.Fatalf("first lookup: got %s", stateName(st))
	}
	if err := v.c.Fence(&tk); err != nil {
		t.Fatal(err)
	}
	f := page("english")
	if r := v.c.PutVariants(&tk, names, &f); r != Storable || tk.Vary() != names {
		t.Fatalf("PutVariants: got %s, Vary %q", r, tk.Vary())
	}
	en, ok := v.c.Variant(&tk, names, lang("EN"))
	if !ok || en.Key() == tk.Key() || !strings.HasPrefix(en.Key(), v.prefix[:len(v.prefix)-2]+"h:") {
		t.Fatalf("Variant: %v, key %q (the page's %q); want a hashed key of its own", ok, en.Key(), tk.Key())
	}
	if r, _ := v.c.Put(&en, &f); r != Storable {
		t.Fatalf("put of the en variant: %s", r)
	}
	if !v.c.AdmitVariant(&en) {
		t.Fatal("the first variant is not admitted")
	}

	lookupVariant := func(what string, h HeaderPeeker, want State, body string) Ticket {
		t.Helper()
		st, tk := v.lookup(url1, t0.Add(time.Second))
		if st != PageVariants || tk.Vary() != names {
			t.Fatalf("%s: primary lookup got %s, Vary %q; want the marker", what, stateName(st), tk.Vary())
		}
		st, vt, ok := v.c.LookupVariant(&tk, h, &v.sc, &v.e, t0.Add(time.Second))
		if !ok || st != want || (want == PageFresh && string(v.e.Body) != body) {
			t.Errorf("%s: got %s (%v) %q; want %s %q", what, stateName(st), ok, v.e.Body, stateName(want), body)
		}
		return vt.Clone()
	}
	lookupVariant("en, as normalised", lang(" en"), PageFresh, "english")
	fr := lookupVariant("fr", lang("fr"), PageMissing, "")
	if err := v.c.Fence(&fr); err != nil {
		t.Fatal(err)
	}
	f = page("français")
	if r, _ := v.c.Put(&fr, &f); r != Storable {
		t.Fatalf("put of fr: %s", r)
	}
	lookupVariant("fr", lang("FR"), PageFresh, "français")
	lookupVariant("en again", lang("en"), PageFresh, "english")
	none := lookupVariant("no Accept-Language: a variant of its own", headers{}, PageMissing, "")

	// The bound: en and fr are counted; a third is refused, the two are not.
	if !v.c.AdmitVariant(&fr) || v.c.AdmitVariant(&none) || !v.c.AdmitVariant(&en) {
		t.Error("AdmitVariant with max 2: want en and fr admitted, a third refused")
	}

	// A value too long to key a variant.
	st, tk = v.lookup(url1, t0)
	if _, _, ok := v.c.LookupVariant(&tk, lang(strings.Repeat("x", MaxVaryValue+1)), &v.sc, &v.e, t0); ok {
		t.Error("a value over MaxVaryValue keyed a variant")
	}

	// A purge of the URL removes the marker and every variant, even once
	// a new marker is written.
	v.purgeURL(url1, false)
	st, tk = v.lookup(url1, t0.Add(time.Second))
	if st != PageMissing {
		t.Fatalf("after the purge: primary lookup got %s; want missing", stateName(st))
	}
	if err := v.c.Fence(&tk); err != nil {
		t.Fatal(err)
	}
	f = page("new")
	f.StoredAt = t0.Add(time.Second)
	if r := v.c.PutVariants(&tk, names, &f); r != Storable {
		t.Fatal(r)
	}
	lookupVariant("en after the purge", lang("en"), PageMissing, "")
	vt := lookupVariant("fr after the purge", lang("fr"), PageMissing, "")
	// The new marker's variants are counted anew.
	if !v.c.AdmitVariant(&vt) {
		t.Error("after a new marker: the first variant is refused")
	}

	// A marker written from a variant's ticket (the backend changed its
	// Vary) makes it the URL's ticket, naming the new headers.
	mt := vt
	if r := v.c.PutVariants(&mt, "accept-language,user-agent", &f); r != Storable || mt.Key() != tk.Key() || mt.Vary() != "accept-language,user-agent" {
		t.Errorf("PutVariants from a variant: %s, key %q, Vary %q; want the page's key %q", r, mt.Key(), mt.Vary(), tk.Key())
	}

	// Names "" is the URL's own page: a backend that stopped varying.
	if own, ok := v.c.Variant(&vt, "", nil); !ok || own.Key() != tk.Key() || own.Vary() != "" {
		t.Errorf("Variant with no names: %q %q; want the page's key %q", own.Key(), own.Vary(), tk.Key())
	}
}

// TestVariantsMarkerEnvelope: a marker round-trips, and one naming what no
// variant may be selected by (from a tampered store) is damaged.
func TestVariantsMarkerEnvelope(t *testing.T) {
	var e Entry
	m, _ := Encode(nil, &Page{Kind: KindVariants, Status: 200, FreshUntil: 5, KeepUntil: 5, Body: []byte("accept-language,user-agent")})
	if err := Decode(m, &e); err != nil || e.Kind != KindVariants || string(e.Body) != "accept-language,user-agent" {
		t.Errorf("marker: %v, kind %d, body %q", err, e.Kind, e.Body)
	}
	for _, body := range []string{"cookie", "authorization,x", "", "b,a", "*"} {
		m, _ := Encode(nil, &Page{Kind: KindVariants, Status: 200, Body: []byte(body)})
		if err := Decode(m, &e); err != ErrDamaged {
			t.Errorf("marker naming %q: got %v; want ErrDamaged", body, err)
		}
	}
	m, _ = Encode(nil, &Page{Kind: KindVariants + 1, Status: 200})
	if err := Decode(m, &e); err != ErrDamaged {
		t.Errorf("kind %d: got %v; want ErrDamaged", KindVariants+1, err)
	}
}
