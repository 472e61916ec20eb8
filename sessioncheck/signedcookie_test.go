package sessioncheck

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// signedCookieFixtures are cookies Debian's Django made with the
// signed_cookies engine, each with what Django itself made of it
// (testdata/make_signed_cookies.py).
type signedCookieFixtures struct {
	SecretKey string `json:"secret_key"`
	Django    string `json:"django"`
	MadeAt    int64  `json:"made_at"`
	MaxAge    int64  `json:"max_age"`
	Rows      []struct {
		Name   string `json:"name"`
		Cookie string `json:"cookie"`
		// Session: the session Django loads holds _auth_user_id (not
		// null or ""): "identified" or "anonymous".
		Session string `json:"session"`
		// User: Django's auth finds the visitor logged in.
		User string `json:"user"`
	} `json:"rows"`
}

func loadSignedCookies(t testing.TB, data []byte) signedCookieFixtures {
	t.Helper()
	var fx signedCookieFixtures
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx.Rows) == 0 {
		t.Fatal("no signed cookie fixtures")
	}
	return fx
}

func signedCookieFile(t testing.TB) signedCookieFixtures {
	t.Helper()
	data, err := os.ReadFile("testdata/signed_cookies.json")
	if err != nil {
		t.Fatal(err)
	}
	return loadSignedCookies(t, data)
}

// verdictOf names what ParseSignedCookie made of a cookie.
func verdictOf(v Verdict, err error) string {
	if err != nil {
		return "doubt:" + Reason(err)
	}
	return v.String()
}

// unverifiedWant is what a cookie is without secret_key: what its payload
// says, but for the cookies whose only fault is their signature (read as
// their payload says: forwarded, and Django refuses them) and those whose
// payload was damaged (a doubt: forwarded).
func unverifiedWant(name, django string) string {
	switch {
	case strings.HasSuffix(name, "signed with another secret"):
		return "identified"
	case strings.HasSuffix(name, "payload tampered"):
		return "doubt:undecodable"
	}
	return django
}

// checkSignedCookieFixtures checks every fixture cookie with and without
// the secret key at the time they were made, and all of them expired
// past max_age.
func checkSignedCookieFixtures(t *testing.T, fx signedCookieFixtures) {
	t.Helper()
	if fx.MaxAge != int64(DefaultSignedCookieMaxAge/time.Second) {
		t.Fatalf("fixtures made with SESSION_COOKIE_AGE %d; want Django's default", fx.MaxAge)
	}
	signer := &DjangoSigner{Secrets: []string{fx.SecretKey}, Salt: SignedCookieSalt}
	rotated := &DjangoSigner{Secrets: []string{"the-new-secret", fx.SecretKey}, Salt: SignedCookieSalt}
	made := time.Unix(fx.MadeAt, 0)
	later := made.Add(DefaultSignedCookieMaxAge + time.Hour)
	seen := map[string]bool{}
	for _, r := range fx.Rows {
		c := []byte(r.Cookie)
		seen[r.Session] = true
		if r.User == "identified" && r.Session != "identified" {
			t.Fatalf("%s: Django logs the visitor in from a session without _auth_user_id", r.Name)
		}
		if got := verdictOf(ParseSignedCookie(c, signer, DefaultSignedCookieMaxAge, made)); got != r.Session {
			t.Errorf("%s, verified: got %s; Django's session says %s", r.Name, got, r.Session)
		}
		if got := verdictOf(ParseSignedCookie(c, rotated, DefaultSignedCookieMaxAge, made)); got != r.Session {
			t.Errorf("%s, verified under SECRET_KEY_FALLBACKS: got %s; Django's session says %s", r.Name, got, r.Session)
		}
		if got, want := verdictOf(ParseSignedCookie(c, nil, DefaultSignedCookieMaxAge, made)), unverifiedWant(r.Name, r.Session); got != want {
			t.Errorf("%s, unverified: got %s; want %s", r.Name, got, want)
		}
		for _, s := range []*DjangoSigner{signer, nil} {
			if got := verdictOf(ParseSignedCookie(c, s, DefaultSignedCookieMaxAge, later)); got != "anonymous" && got != "doubt:undecodable" {
				t.Errorf("%s, past max_age (verified %v): got %s; want anonymous", r.Name, s != nil, got)
			}
		}
	}
	if !seen["identified"] || !seen["anonymous"] {
		t.Errorf("the fixtures hold only %v verdicts", seen)
	}
}

// TestSignedCookieDjangoFixtures reads the committed cookies, no Python
// needed.
func TestSignedCookieDjangoFixtures(t *testing.T) {
	checkSignedCookieFixtures(t, signedCookieFile(t))
}

// TestSignedCookieAgreesWithDjango has Debian's Django make a fresh set of
// cookies and judge them, then judge many more: Go-made ones and cookies
// damaged at random. With the secret key, userrouter reads from every
// cookie the session Django loads from it, every time.
func TestSignedCookieAgreesWithDjango(t *testing.T) {
	python := sessiontest.Env(t, "USERROUTER_TEST_PYTHON")
	out, err := exec.Command(python, "testdata/make_signed_cookies.py").Output()
	if err != nil {
		t.Fatalf("Django: %v", err)
	}
	fx := loadSignedCookies(t, out)
	t.Logf("cookies made by Django %s", fx.Django)
	checkSignedCookieFixtures(t, fx)

	signer := &DjangoSigner{Secrets: []string{fx.SecretKey}, Salt: SignedCookieSalt}
	made := time.Unix(fx.MadeAt, 0)
	var cookies []string
	for _, s := range []map[string]any{
		{"_auth_user_id": "7"},
		{"_auth_user_id": 7, "cart": strings.Repeat("item,", 100)},
		{"_auth_user_id": nil},
		{"_auth_user_id": ""},
		{"cart": []int{1, 2}},
		{"_auth_user_id": "1", "x": map[string]any{"y": []any{1.5, "z", true, nil}}},
	} {
		c, err := signer.Encode(s, made.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		cookies = append(cookies, c)
	}
	rng := rand.New(rand.NewPCG(1, uint64(fx.MadeAt)))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:"
	for range 300 {
		c := []byte(fx.Rows[rng.IntN(len(fx.Rows))].Cookie)
		switch rng.IntN(3) {
		case 0:
			c[rng.IntN(len(c))] = alphabet[rng.IntN(len(alphabet))]
		case 1:
			c = c[:rng.IntN(len(c))]
		default:
			i := rng.IntN(len(c))
			c = append(c[:i:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, c[i:]...)...)
		}
		cookies = append(cookies, string(c))
	}
	req, _ := json.Marshal(map[string]any{"cookies": cookies, "at": fx.MadeAt})
	cmd := exec.Command(python, "testdata/make_signed_cookies.py", "--judge")
	cmd.Stdin = bytes.NewReader(req)
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("Django: %v", err)
	}
	var django []string
	if err := json.Unmarshal(out, &django); err != nil || len(django) != len(cookies) {
		t.Fatalf("Django printed %s: %v", out, err)
	}
	agree := 0
	for i, c := range cookies {
		if got := verdictOf(ParseSignedCookie([]byte(c), signer, DefaultSignedCookieMaxAge, made)); got != django[i] {
			t.Errorf("%q: got %s; Django's session says %s", c, got, django[i])
		} else {
			agree++
		}
	}
	t.Logf("%d of %d cookies judged as Django judges them", agree, len(cookies))
}

// signCookie signs an arbitrary payload as signing.dumps does, for cookies
// Django would never make.
func signCookie(secret string, data []byte, compress bool, stamp int64) string {
	payload := base64.RawURLEncoding.EncodeToString(data)
	if compress {
		var z bytes.Buffer
		w := zlib.NewWriter(&z)
		w.Write(data)
		w.Close()
		payload = "." + base64.RawURLEncoding.EncodeToString(z.Bytes())
	}
	signed := payload + ":" + base62Encode(stamp)
	return signed + ":" + base64.RawURLEncoding.EncodeToString(saltedHMAC(sha256.New, SignedCookieSalt+"signer", secret, []byte(signed)))
}

// signRaw signs payload as it is, base64 or not.
func signRaw(secret, payload string, stamp int64) string {
	signed := payload + ":" + base62Encode(stamp)
	return signed + ":" + base64.RawURLEncoding.EncodeToString(saltedHMAC(sha256.New, SignedCookieSalt+"signer", secret, []byte(signed)))
}

func TestParseSignedCookieCases(t *testing.T) {
	const secret = "case-secret"
	now := time.Unix(1790000000, 0)
	ts := now.Unix() - 60
	sign := func(js string) string { return signCookie(secret, []byte(js), false, ts) }
	deep := strings.Repeat("[", maxCookieDepth) + strings.Repeat("]", maxCookieDepth)
	tooDeep := strings.Repeat("[", maxCookieDepth+1) + strings.Repeat("]", maxCookieDepth+1)
	for _, tc := range []struct {
		name, cookie string
		want         string // verified and unverified, unless wantPlain is set
		wantPlain    string
	}{
		{name: "empty", cookie: "", want: "anonymous"},
		{name: "a database session key", cookie: "abcdefghijklmnopqrstuvwxyz012345", want: "anonymous"},
		{name: "one colon", cookie: "abc:def", want: "anonymous"},
		{name: "signature of another length", cookie: sign(`{"_auth_user_id":"1"}`) + "A", want: "anonymous"},
		{name: "bad timestamp", cookie: strings.Replace(sign(`{"_auth_user_id":"1"}`), ":", ":-", 1), want: "anonymous"},
		{name: "logged in", cookie: sign(`{"_auth_user_id":"1"}`), want: "identified"},
		{name: "number id", cookie: sign(`{"_auth_user_id":1}`), want: "identified"},
		{name: "null id", cookie: sign(`{"_auth_user_id":null}`), want: "anonymous"},
		{name: "empty id", cookie: sign(`{"_auth_user_id":""}`), want: "anonymous"},
		{name: "id nested, not top level", cookie: sign(`{"x":{"_auth_user_id":"1"}}`), want: "anonymous"},
		{name: "escaped name", cookie: sign(`{"\u005fauth_user_id":"1"}`), want: "identified"},
		{name: "repeated name, last wins", cookie: sign(`{"_auth_user_id":"1","_auth_user_id":null}`), want: "anonymous"},
		{name: "repeated name, last wins (2)", cookie: sign(`{"_auth_user_id":null,"_auth_user_id":"2"}`), want: "identified"},
		{name: "NaN, Infinity, -Infinity", cookie: sign(`{"a":NaN,"b":[Infinity,-Infinity,-0.5e+3],"_auth_user_id":"1"}`), want: "identified"},
		{name: "Latin-1 bytes in a string", cookie: sign("{\"a\":\"caf\xe9\",\"_auth_user_id\":\"1\"}"), want: "identified"},
		{name: "whitespace", cookie: sign(" {\n\"_auth_user_id\" :\t\"1\" }\r\n"), want: "identified"},
		{name: "deep, within the bound", cookie: sign(`{"a":` + deep[1:len(deep)-1] + `,"_auth_user_id":"1"}`), want: "identified"},
		{name: "too deep", cookie: sign(`{"a":` + tooDeep[1:len(tooDeep)-1] + `}`), want: "doubt:undecodable"},
		{name: "too deep, compressed", cookie: signCookie(secret, []byte(`{"a":`+strings.Repeat("[", 5000)+`}`), true, ts), want: "doubt:undecodable"},
		{name: "a list, not a dict", cookie: sign(`["_auth_user_id"]`), want: "doubt:undecodable"},
		{name: "data after the dict", cookie: sign(`{"_auth_user_id":"1"}x`), want: "doubt:undecodable"},
		{name: "trailing comma", cookie: sign(`{"_auth_user_id":"1",}`), want: "doubt:undecodable"},
		{name: "control character", cookie: sign("{\"a\":\"\x01\"}"), want: "doubt:undecodable"},
		{name: "leading zero", cookie: sign(`{"a":01}`), want: "doubt:undecodable"},
		{name: "pickled (PickleSerializer)", cookie: sign("\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\r_auth_user_id\x94\x8c\x011\x94s."), want: "doubt:undecodable"},
		{name: "not base64", cookie: signRaw(secret, "e30.e30", ts), want: "doubt:undecodable"},
		{name: "not zlib", cookie: signRaw(secret, ".e30", ts), want: "doubt:undecodable"},
		{name: "zlib bomb", cookie: signCookie(secret, []byte(`{"a":"`+strings.Repeat("0", 2<<20)+`"}`), true, ts), want: "doubt:undecodable"},
		{name: "compressed, within the bound", cookie: signCookie(secret, []byte(`{"_auth_user_id":"1","a":"`+strings.Repeat("0", 512<<10)+`"}`), true, ts), want: "identified"},
		{name: "over 4096 bytes", cookie: sign(`{"a":"` + strings.Repeat("x", 4000) + `"}`), want: "doubt:undecodable"},
		{name: "expired a second ago", cookie: signCookie(secret, []byte(`{"_auth_user_id":"1"}`), false, now.Unix()-int64(DefaultSignedCookieMaxAge/time.Second)-1), want: "anonymous"},
		{name: "expires in a second", cookie: signCookie(secret, []byte(`{"_auth_user_id":"1"}`), false, now.Unix()-int64(DefaultSignedCookieMaxAge/time.Second)+1), want: "identified"},
		{name: "signed in the future", cookie: signCookie(secret, []byte(`{"_auth_user_id":"1"}`), false, now.Unix()+3600), want: "identified"},
		{name: "timestamp past int64", cookie: strings.Replace(sign(`{"_auth_user_id":"1"}`), ":"+base62Encode(ts)+":", ":zzzzzzzzzzzzzzzz:", 1), want: "anonymous", wantPlain: "identified"},
		{name: "signed with another key", cookie: signCookie("other", []byte(`{"_auth_user_id":"1"}`), false, ts), want: "anonymous", wantPlain: "identified"},
		{name: "signed with another salt", cookie: func() string {
			c, _ := (&DjangoSigner{Secrets: []string{secret}}).Encode(map[string]any{"_auth_user_id": "1"}, now)
			return c
		}(), want: "anonymous", wantPlain: "identified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signer := &DjangoSigner{Secrets: []string{secret}, Salt: SignedCookieSalt}
			if got := verdictOf(ParseSignedCookie([]byte(tc.cookie), signer, DefaultSignedCookieMaxAge, now)); got != tc.want {
				t.Errorf("verified: got %s; want %s", got, tc.want)
			}
			want := tc.want
			if tc.wantPlain != "" {
				want = tc.wantPlain
			}
			if got := verdictOf(ParseSignedCookie([]byte(tc.cookie), nil, DefaultSignedCookieMaxAge, now)); got != want {
				t.Errorf("unverified: got %s; want %s", got, want)
			}
		})
	}
}

func TestSignedCookiesChecker(t *testing.T) {
	fx := signedCookieFile(t)
	made := time.Unix(fx.MadeAt, 0)
	c, err := NewSignedCookies(SignedCookieOptions{Secrets: []string{fx.SecretKey}, Now: func() time.Time { return made }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for round := range 2 {
		for _, r := range fx.Rows {
			v, err := c.Check(ctx, []byte(r.Cookie))
			if got := verdictOf(v, err); got != r.Session {
				t.Errorf("round %d, %s: got %s; Django's session says %s", round, r.Name, got, r.Session)
			}
		}
	}
	n := uint64(len(fx.Rows))
	if c.Stats.Lookups.Load() != 2*n || c.Stats.CacheHits.Load() != n || c.Stats.Queries.Load() != 0 {
		t.Errorf("lookups %d, cache hits %d, queries %d; want %d, %d, 0", c.Stats.Lookups.Load(), c.Stats.CacheHits.Load(), c.Stats.Queries.Load(), 2*n, n)
	}
	// Doubts are not cached.
	long := []byte(strings.Repeat("a", MaxSignedCookieLength) + ":0:" + strings.Repeat("A", 43))
	for range 2 {
		if _, err := c.Check(ctx, long); !errors.Is(err, ErrUndecodable) {
			t.Errorf("an over-long cookie: %v; want a doubt", err)
		}
	}
	if hits := c.Stats.CacheHits.Load(); hits != n {
		t.Errorf("a doubt was answered from the cache (%d hits; want %d)", hits, n)
	}
	if d := c.Stats.Doubts[ReasonIndex(ErrUndecodable)].Load(); d != 2 {
		t.Errorf("%d undecodable doubts counted; want 2", d)
	}
	if v, err := c.Check(ctx, nil); v != Anonymous || err != nil {
		t.Errorf("no cookie: %v, %v; want anonymous", v, err)
	}
}

// TestSignedCookieKeyFinder: the key pattern and length main sets for
// signed_cookies hand every Django cookie to the Checker, and refuse
// values no Django cookie can be.
func TestSignedCookieKeyFinder(t *testing.T) {
	kf, err := NewKeyFinder("sessionid", SignedCookiePattern)
	if err != nil {
		t.Fatal(err)
	}
	kf = kf.WithMaxLength(16 << 10)
	for _, r := range signedCookieFile(t).Rows {
		if key, res := kf.Find([]byte("csrftoken=x; sessionid=" + r.Cookie)); res != KeyFound || string(key) != r.Cookie {
			t.Errorf("%s: %v %q", r.Name, res, key)
		}
	}
	long := strings.Repeat("a", 5000) + ":0:" + strings.Repeat("A", 43)
	if key, res := kf.Find([]byte("sessionid=" + long)); res != KeyFound || len(key) != len(long) {
		t.Errorf("a 5 KB cookie: %v; want it found (the Checker doubts it)", res)
	}
	for _, v := range []string{"a b", "a=b", "a/b", "a+b", `"a\"b"`} {
		if _, res := kf.Find([]byte("sessionid=" + v)); res != BadKey {
			t.Errorf("%q: %v; want bad-key", v, res)
		}
	}
}

// FuzzSignedCookie checks that no cookie panics the decoder or gets past
// its bounds; that checking the signature only ever turns identified into
// anonymous; and that the JSON scanner accepts exactly the objects
// encoding/json does (less Python's NaN and Infinity, which it also takes).
func FuzzSignedCookie(f *testing.F) {
	fx := signedCookieFile(f)
	for _, r := range fx.Rows {
		f.Add([]byte(r.Cookie))
	}
	for _, js := range []string{`{"_auth_user_id":"1"}`, `{"a":[1,{"b":null}],"_auth_user_id":null}`, `{"a":NaN}`, `[]`, `{"\u005f":1}`} {
		f.Add([]byte(js))
		f.Add([]byte(signCookie(fx.SecretKey, []byte(js), false, fx.MadeAt)))
		f.Add([]byte(signCookie(fx.SecretKey, []byte(js), true, fx.MadeAt)))
	}
	signer := &DjangoSigner{Secrets: []string{fx.SecretKey}, Salt: SignedCookieSalt}
	made := time.Unix(fx.MadeAt, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseSignedCookie(data, signer, DefaultSignedCookieMaxAge, made)
		pv, perr := ParseSignedCookie(data, nil, DefaultSignedCookieMaxAge, made)
		for _, e := range []error{err, perr} {
			if e != nil && !errors.Is(e, ErrUndecodable) {
				t.Fatalf("%q: %v; want only ErrUndecodable doubts", data, e)
			}
		}
		if err == nil && perr == nil && v == Identified && pv != Identified {
			t.Fatalf("%q: identified only when verified", data)
		}
		if len(data) > MaxSignedCookieLength && (err == nil || perr == nil) {
			t.Fatalf("%q: %d bytes read", data, len(data))
		}

		// The JSON scanner against encoding/json.
		_, serr := scanSessionJSON(data)
		var obj map[string]json.RawMessage
		jerr := json.Unmarshal(data, &obj)
		python := bytes.Contains(data, []byte("NaN")) || bytes.Contains(data, []byte("Infinity"))
		deepish := bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) >= maxCookieDepth
		if jerr == nil && obj != nil && serr != nil && !python && !deepish {
			t.Fatalf("%q: encoding/json reads an object; the scanner: %v", data, serr)
		}
		if jerr != nil && serr == nil && !python && utf8Valid(data) {
			t.Fatalf("%q: the scanner reads an object; encoding/json: %v", data, jerr)
		}
	})
}

// utf8Valid: encoding/json takes invalid UTF-8 in strings too, but the
// fuzzer's other differences (none known) are easier to read without it.
func utf8Valid(b []byte) bool { return strings.ToValidUTF8(string(b), "\uFFFD") == string(b) }

func BenchmarkParseSignedCookie(b *testing.B) {
	fx := signedCookieFile(b)
	signer := &DjangoSigner{Secrets: []string{fx.SecretKey}, Salt: SignedCookieSalt}
	made := time.Unix(fx.MadeAt, 0)
	for _, r := range fx.Rows[:2] {
		b.Run(r.Name, func(b *testing.B) {
			c := []byte(r.Cookie)
			b.ReportAllocs()
			for b.Loop() {
				if v, err := ParseSignedCookie(c, signer, DefaultSignedCookieMaxAge, made); v != Identified || err != nil {
					b.Fatal(v, err)
				}
			}
		})
	}
}

// BenchmarkSignedCookiesCached is the per-request cost of a visitor whose
// signed cookie was seen recently: find it in the header, answer from the
// verdict cache.
func BenchmarkSignedCookiesCached(b *testing.B) {
	fx := signedCookieFile(b)
	c, err := NewSignedCookies(SignedCookieOptions{Secrets: []string{fx.SecretKey}})
	if err != nil {
		b.Fatal(err)
	}
	kf, _ := NewKeyFinder("sessionid", SignedCookiePattern)
	kf = kf.WithMaxLength(16 << 10)
	header := []byte("csrftoken=abc; sessionid=" + fx.Rows[1].Cookie + "; theme=dark")
	ctx := context.Background()
	key, _ := kf.Find(header)
	c.Check(ctx, key)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key, _ := kf.Find(header)
			if _, err := c.Check(ctx, key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
