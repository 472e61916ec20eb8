package sessioncheck

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// outcome names what ParseDjangoSession made of a row, as the fixtures do.
func outcome(identified bool, err error) string {
	switch {
	case err != nil:
		return "doubt"
	case identified:
		return "identified"
	}
	return "anonymous"
}

func TestParseDjangoSession(t *testing.T) {
	fx := sessiontest.LoadFixtures(t)
	verify := &DjangoSigner{Secrets: []string{fx.SecretKey}}
	for _, row := range fx.Rows {
		if row.Expired {
			continue // decodable; the store's query is what hides it
		}
		t.Run(row.Name, func(t *testing.T) {
			if got := outcome(ParseDjangoSession([]byte(row.SessionData), nil)); got != row.Want {
				t.Errorf("without secret: got %s; want %s", got, row.Want)
			}
			want := row.Want
			if row.WantVerified != "" {
				want = row.WantVerified
			}
			if got := outcome(ParseDjangoSession([]byte(row.SessionData), verify)); got != want {
				t.Errorf("with secret: got %s; want %s", got, want)
			}
		})
	}
	// SECRET_KEY_FALLBACKS: a rotated-out key still verifies.
	rotated := &DjangoSigner{Secrets: []string{"the-new-key", fx.SecretKey}}
	if ok, err := ParseDjangoSession([]byte(fx.Rows[0].SessionData), rotated); err != nil || !ok {
		t.Errorf("with the secret among fallbacks: got %v, %v; want identified", ok, err)
	}
	if _, err := ParseDjangoSession([]byte(fx.Rows[0].SessionData), &DjangoSigner{Secrets: []string{"wrong"}}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("with a wrong secret: got %v; want ErrBadSignature", err)
	}
}

// signSession builds session_data as django.core.signing does, here with
// the SHA-1 signature of Django 3.1-3.2's DEFAULT_HASHING_ALGORITHM="sha1".
func signSHA1(t *testing.T, js, secret string) []byte {
	payload := base64.RawURLEncoding.EncodeToString([]byte(js))
	signed := payload + ":1xUakS"
	sig := base64.RawURLEncoding.EncodeToString(saltedHMAC(sha1.New, "django.contrib.sessions.SessionStoresigner", secret, []byte(signed)))
	return []byte(signed + ":" + sig)
}

func TestParseDjangoSessionCases(t *testing.T) {
	compressed := func(js string) []byte {
		var b bytes.Buffer
		w := zlib.NewWriter(&b)
		w.Write([]byte(js))
		w.Close()
		return []byte("." + base64.RawURLEncoding.EncodeToString(b.Bytes()) + ":1xUakS:" + strings.Repeat("A", 43))
	}
	plain := func(js string) []byte {
		return []byte(base64.RawURLEncoding.EncodeToString([]byte(js)) + ":1xUakS:" + strings.Repeat("A", 43))
	}
	legacy := func(payload string) []byte {
		return []byte(base64.StdEncoding.EncodeToString([]byte(payload)))
	}
	var bomb bytes.Buffer
	w := zlib.NewWriter(&bomb)
	w.Write([]byte(`{"x":"`))
	w.Write(bytes.Repeat([]byte("a"), maxSessionInflated+10))
	w.Close()

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"signed, identified", plain(`{"_auth_user_id":"7","_auth_user_backend":"b"}`), "identified"},
		{"signed, integer user id", plain(`{"_auth_user_id":7}`), "identified"},
		{"signed, null user id", plain(`{"_auth_user_id":null}`), "anonymous"},
		{"signed, empty user id", plain(`{"_auth_user_id":""}`), "anonymous"},
		{"signed, nested key does not count", plain(`{"cart":{"_auth_user_id":"7"}}`), "anonymous"},
		{"signed, empty dict", plain(`{}`), "anonymous"},
		{"compressed, identified", compressed(`{"_auth_user_id":"7"}`), "identified"},
		{"signed with padding", []byte(base64.URLEncoding.EncodeToString([]byte(`{"a":1}`)) + ":1xUakS:" + strings.Repeat("A", 43)), "anonymous"},
		{"legacy, identified", legacy(strings.Repeat("a", 40) + `:{"_auth_user_id":"1"}`), "identified"},
		{"legacy, wrapped in lines", wrapLines(legacy(strings.Repeat("a", 40) + `:{"_auth_user_id":"1","padding":"` + strings.Repeat("x", 80) + `"}`)), "identified"},
		{"legacy, pickled", legacy(strings.Repeat("a", 40) + ":\x80\x02}q\x01."), "doubt"},
		{"legacy without hash", legacy(`{"_auth_user_id":"1"}`), "doubt"},
		{"signed, pickled", plain("\x80\x04\x95}"), "doubt"},
		{"JSON array", plain(`[1,2]`), "doubt"},
		{"no timestamp", []byte("abc:def"), "doubt"},
		{"bad base64", []byte("!!!:1xUakS:" + strings.Repeat("A", 43)), "doubt"},
		{"bad zlib", []byte(".AAAA:1xUakS:" + strings.Repeat("A", 43)), "doubt"},
		{"zlib bomb", []byte("." + base64.RawURLEncoding.EncodeToString(bomb.Bytes()) + ":1xUakS:" + strings.Repeat("A", 43)), "doubt"},
		{"empty", nil, "doubt"},
		{"too large", bytes.Repeat([]byte("a"), maxSessionData+1), "doubt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := outcome(ParseDjangoSession(tc.data, nil)); got != tc.want {
				t.Errorf("got %s; want %s", got, tc.want)
			}
		})
	}

	signed := signSHA1(t, `{"_auth_user_id":"3"}`, "s3")
	if got := outcome(ParseDjangoSession(signed, &DjangoSigner{Secrets: []string{"s3"}})); got != "identified" {
		t.Errorf("SHA-1 signature: got %s; want identified", got)
	}
	if got := outcome(ParseDjangoSession(signed, &DjangoSigner{Secrets: []string{"other"}})); got != "doubt" {
		t.Errorf("SHA-1 signature, wrong secret: got %s; want doubt", got)
	}
}

// wrapLines breaks base64 into 76-byte lines, as base64.encodestring did.
func wrapLines(b []byte) []byte {
	var out []byte
	for len(b) > 76 {
		out = append(append(out, b[:76]...), '\n')
		b = b[76:]
	}
	return append(append(out, b...), '\n')
}

func FuzzParseDjangoSession(f *testing.F) {
	fx := sessiontest.LoadFixtures(f)
	for _, row := range fx.Rows {
		f.Add([]byte(row.SessionData))
	}
	f.Add([]byte(".eJx:a:b"))
	f.Add([]byte("::"))
	signer := &DjangoSigner{Secrets: []string{fx.SecretKey}}
	f.Fuzz(func(t *testing.T, data []byte) {
		ok1, err1 := ParseDjangoSession(data, nil)
		ok2, err2 := ParseDjangoSession(data, signer)
		if err1 != nil && ok1 || err2 != nil && ok2 {
			t.Fatal("identified together with an error")
		}
		if err1 == nil && err2 == nil && ok1 != ok2 {
			t.Fatal("verification changed the verdict of valid data")
		}
		if err1 != nil && !errors.Is(err1, ErrUndecodable) {
			t.Fatalf("unexpected error kind: %v", err1)
		}
	})
}

func BenchmarkParseDjangoSession(b *testing.B) {
	fx := sessiontest.LoadFixtures(b)
	for _, row := range fx.Rows[:2] {
		data := []byte(row.SessionData)
		b.Run(strings.ReplaceAll(row.Name, " ", "-"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ParseDjangoSession(data, nil)
			}
		})
	}
}

// TestEncodeDjangoSession: what Encode writes, ParseDjangoSession reads and
// verifies, and a real Django decodes to the same dict.
func TestEncodeDjangoSession(t *testing.T) {
	s := &DjangoSigner{Secrets: []string{"origin-secret"}}
	now := time.Unix(1790000000, 0)
	small := map[string]any{"_auth_user_id": "7"}
	large := map[string]any{"_auth_user_id": "8", "cart": strings.Repeat("item,", 100)}
	anon := map[string]any{"cart": []int{1, 2}}
	var encoded []string
	for _, tc := range []struct {
		session    map[string]any
		identified bool
		compressed bool
	}{{small, true, false}, {large, true, true}, {anon, false, false}} {
		data, err := s.Encode(tc.session, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.HasPrefix(data, "."); got != tc.compressed {
			t.Errorf("%s: compressed %v; want %v", data, got, tc.compressed)
		}
		if ok, err := ParseDjangoSession([]byte(data), s); ok != tc.identified || err != nil {
			t.Errorf("%s: read back as %v, %v; want %v", data, ok, err, tc.identified)
		}
		if _, err := ParseDjangoSession([]byte(data), &DjangoSigner{Secrets: []string{"other"}}); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s under another secret: %v; want a bad signature", data, err)
		}
		encoded = append(encoded, data)
	}
	if _, err := (&DjangoSigner{}).Encode(small, now); err == nil {
		t.Error("Encode without a secret: no error")
	}
	if got := base62Encode(1790000000); got != "1x8elk" { // Django 3.2: baseconv.base62.encode(1790000000)
		t.Errorf("base62Encode = %s", got)
	}

	python := sessiontest.Env(t, "USERROUTER_TEST_PYTHON")
	script := `
import json, sys
from django.conf import settings
settings.configure(SECRET_KEY="origin-secret", INSTALLED_APPS=["django.contrib.sessions"])
import django
django.setup()
from django.contrib.sessions.backends.db import SessionStore
print(json.dumps([SessionStore().decode(line) for line in sys.stdin.read().split()]))
`
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(encoded, "\n"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Django: %v\n%s", err, out)
	}
	var decoded []map[string]any
	if err := json.Unmarshal(out, &decoded); err != nil {
		t.Fatalf("Django printed %s: %v", out, err)
	}
	want, _ := json.Marshal([]any{small, large, anon})
	if got, _ := json.Marshal(decoded); string(got) != string(want) {
		t.Errorf("Django decoded %s; want %s", got, want)
	}
}
