package sessioncheck

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Rails fixtures, hand-made in the shape redis-session-store 0.11 (Rails
// 7, serializer: :json) writes: JSON.generate of the session hash. Devise
// 4.9 (Warden) stores the user of scope "user" as
// "warden.user.user.key" => [[id], salt] at sign-in; Rails adds
// "session_id" and "_csrf_token"; the flash is stored as
// {"discard": [...], "flashes": {...}}.
var railsCases = []struct {
	name, value string
	key         string
	auth, doubt bool
}{
	{"devise login", `{"session_id":"7b0e8c7c2d3f4a5b6c7d8e9f0a1b2c3d","warden.user.user.key":[[1],"$2a$12$uJ2x0b8Hk3Zq9m1VnN4yEe"],"_csrf_token":"Yx3b9Vv0Zx8QbT1r4Qv2p0Pq7y0d6j1G4s3n2b1m0kI="}`, "", true, false},
	{"anonymous with csrf", `{"session_id":"7b0e8c7c2d3f4a5b6c7d8e9f0a1b2c3d","_csrf_token":"Yx3b9Vv0Zx8QbT1r4Qv2p0Pq7y0d6j1G4s3n2b1m0kI="}`, "", false, false},
	{"signed out, flash", `{"session_id":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","flash":{"discard":[],"flashes":{"notice":"Signed out successfully."}},"_csrf_token":"abc="}`, "", false, false},
	{"admin scope", `{"warden.user.admin.key":[[7],"salt"]}`, "warden.user.admin.key", true, false},
	{"admin scope, user key asked", `{"warden.user.admin.key":[[7],"salt"]}`, "", false, false},
	{"escaped name", `{"warden.user.user\u002ekey":[[1],"s"]}`, "", true, false},
	{"empty object", `{}`, "", false, false},
	{"Marshal", "\x04\b{\x06I\"\x0fsession_id\x06:\x06ETI\"%abc\x06;\x00T", "", false, true},
	{"array", `[1]`, "", false, true},
	{"null", `null`, "", false, true},
	{"truncated", `{"session_id":"7b`, "", false, true},
	{"empty", ``, "", false, true},
}

func TestParseRailsJSONSession(t *testing.T) {
	for _, c := range railsCases {
		t.Run(c.name, func(t *testing.T) {
			key := c.key
			if key == "" {
				key = DefaultRailsIdentifiedKey
			}
			got, err := ParseRailsJSONSession([]byte(c.value), key)
			if c.doubt {
				if !errors.Is(err, ErrUndecodable) {
					t.Fatalf("got %v, %v; want ErrUndecodable", got, err)
				}
				return
			}
			if err != nil || got != c.auth {
				t.Fatalf("got %v, %v; want %v", got, err, c.auth)
			}
		})
	}
}

func FuzzParseRailsJSONSession(f *testing.F) {
	for _, c := range railsCases {
		f.Add([]byte(c.value))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ok, err := ParseRailsJSONSession(data, DefaultRailsIdentifiedKey)
		if err != nil && (ok || !errors.Is(err, ErrUndecodable)) {
			t.Fatalf("got %v, %v", ok, err)
		}
	})
}

func BenchmarkParseRailsJSONSession(b *testing.B) {
	data := []byte(railsCases[0].value)
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := ParseRailsJSONSession(data, DefaultRailsIdentifiedKey); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// phpString is PHP's serialize() of a string.
func phpString(s string) string { return fmt.Sprintf("s:%d:\"%s\";", len(s), s) }

// Laravel fixtures, hand-made in the shape Laravel 11's session Store
// saves through CacheBasedSessionHandler with SESSION_DRIVER=redis (or
// memcached): serialize($attributes), which the Redis cache store's put()
// serializes again (a string). After login SessionGuard adds
// "login_web_" . sha1(SessionGuard::class) => the user id; a validation
// failure flashes an Illuminate\Support\ViewErrorBag object ("errors").
var (
	laravelAnon  = `a:3:{s:6:"_token";s:40:"pG1aXrX0bD3uRk8tWb5sQv2yZc7nEe9fHh4jLm6o";s:9:"_previous";a:1:{s:3:"url";s:22:"http://localhost/login";}s:6:"_flash";a:2:{s:3:"old";a:0:{}s:3:"new";a:0:{}}}`
	laravelLogin = `a:4:{s:6:"_token";s:40:"pG1aXrX0bD3uRk8tWb5sQv2yZc7nEe9fHh4jLm6o";s:9:"_previous";a:1:{s:3:"url";s:26:"http://localhost/dashboard";}s:6:"_flash";a:2:{s:3:"old";a:0:{}s:3:"new";a:0:{}}s:50:"login_web_59ba36addc2b2f9401580f014c7f58ea4e30989d";i:1;}`
	laravelError = `a:3:{s:6:"_token";s:40:"pG1aXrX0bD3uRk8tWb5sQv2yZc7nEe9fHh4jLm6o";s:6:"errors";O:31:"Illuminate\Support\ViewErrorBag":1:{s:7:"` + "\x00*\x00" + `bags";a:1:{s:7:"default";O:29:"Illuminate\Support\MessageBag":2:{s:11:"` + "\x00*\x00" + `messages";a:1:{s:5:"email";a:1:{i:0;s:26:"These credentials are bad.";}}s:9:"` + "\x00*\x00" + `format";s:8:":message";}}}s:6:"_flash";a:2:{s:3:"old";a:1:{i:0;s:6:"errors";}s:3:"new";a:0:{}}}`
)

var laravelCases = []struct {
	name, value string
	auth, doubt bool
}{
	{"login, cache store", phpString(laravelLogin), true, false},
	{"anonymous, cache store", phpString(laravelAnon), false, false},
	{"validation errors (objects)", phpString(laravelError), false, false},
	{"login, bare array", laravelLogin, true, false},
	{"scalars", `a:6:{s:1:"n";N;s:1:"b";b:1;s:1:"i";i:-3;s:1:"d";d:0.5;s:1:"e";E:11:"Suit:Hearts";s:1:"r";r:1;}`, false, false},
	{"custom serialized object", `a:1:{s:1:"c";C:11:"ArrayObject":5:{x:i:0}}`, false, false},
	{"int keys", `a:1:{i:0;s:1:"x";}`, false, false},
	{"encrypted", phpString("eyJpdiI6IjEyMyJ9"), false, true},
	{"length too long", `s:9999:"a:0:{}";`, false, true},
	{"truncated", `a:1:{s:6:"_token";`, false, true},
	{"trailing data", `a:0:{}x`, false, true},
	{"float key", `a:1:{d:1.5;N;}`, false, true},
	{"too deep", strings.Repeat(`a:1:{i:0;`, 70) + "N;" + strings.Repeat("}", 70), false, true},
	{"json", `{"login_web_x":1}`, false, true},
	{"empty", ``, false, true},
}

func TestParseLaravelSession(t *testing.T) {
	for _, c := range laravelCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseLaravelSession([]byte(c.value), DefaultLaravelIdentifiedPrefix)
			if c.doubt {
				if !errors.Is(err, ErrUndecodable) {
					t.Fatalf("got %v, %v; want ErrUndecodable", got, err)
				}
				return
			}
			if err != nil || got != c.auth {
				t.Fatalf("got %v, %v; want %v", got, err, c.auth)
			}
		})
	}
	// Another guard: login_admin_.
	if got, err := ParseLaravelSession([]byte(laravelLogin), "login_admin_"); got || err != nil {
		t.Errorf("login_admin_: got %v, %v; want false", got, err)
	}
}

func FuzzParseLaravelSession(f *testing.F) {
	for _, c := range laravelCases {
		f.Add([]byte(c.value))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ok, err := ParseLaravelSession(data, DefaultLaravelIdentifiedPrefix)
		if err != nil && (ok || !errors.Is(err, ErrUndecodable)) {
			t.Fatalf("got %v, %v", ok, err)
		}
	})
}

func BenchmarkParseLaravelSession(b *testing.B) {
	data := []byte(phpString(laravelLogin))
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := ParseLaravelSession(data, DefaultLaravelIdentifiedPrefix); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func TestKeyTemplate(t *testing.T) {
	for _, c := range []struct{ tmpl, key, want string }{
		{DefaultKeyTemplate, "abc", ":1:django.contrib.sessions.cacheabc"},
		{"session:{key}", "abc", "session:abc"},
		{"myapp:session:2::{key_sha256}", "abc", "myapp:session:2::ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"{key}", "abc", "abc"},
	} {
		kt, err := ParseKeyTemplate(c.tmpl)
		if err != nil {
			t.Fatalf("%q: %v", c.tmpl, err)
		}
		if got := kt.Key(c.key); got != c.want {
			t.Errorf("%q: got %q; want %q", c.tmpl, got, c.want)
		}
	}
	for _, bad := range []string{"session:", "{id}", "{key", "a b{key}", ""} {
		if _, err := ParseKeyTemplate(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestMemcacheValue(t *testing.T) {
	for _, c := range []struct {
		name  string
		v     string
		flags uint32
		want  string
		doubt bool
	}{
		{"pickle", "\x80\x04}\x94.", 1, "\x80\x04}\x94.", false},
		{"int", "42", 2, "42", false},
		{"long", "-42", 4, "-42", false},
		{"bytes", "abc", 0, "", true},
		{"text", "abc", 16, "", true},
		{"int flag on text", "4x", 2, "", true},
		{"zlib", "x\x9ck`\xa9\x9d\xa2\x07\x00\x05b\x01\xc4", 9, "\x80\x04}\x94.", false},
		{"bad zlib", "xx", 9, "", true},
		{"too long", strings.Repeat("a", 65), 1, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := memcacheValue([]byte(c.v), c.flags, 64)
			if c.doubt {
				if !errors.Is(err, ErrUndecodable) {
					t.Fatalf("got %q, %v; want ErrUndecodable", got, err)
				}
				return
			}
			if err != nil || string(got) != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
