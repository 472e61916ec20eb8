package conf

import (
	"strings"
	"testing"
)

// TestUnsafeInvalidation: cache.unsafe_invalidation takes "hard" (the
// default), "soft" and "off"; anything else, or a misspelt key, is a
// problem at its line.
func TestUnsafeInvalidation(t *testing.T) {
	const head = "[backend]\naddrs = [\"127.0.0.1:8000\"]\n[cache]\n"
	cfg, err := Parse("t.toml", []byte(head))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Cache.UnsafeInvalidation; got != "hard" {
		t.Errorf("default: got %q; want \"hard\"", got)
	}
	for _, v := range []string{"hard", "soft", "off"} {
		cfg, err := Parse("t.toml", []byte(head+"unsafe_invalidation = \""+v+"\"\n"))
		if err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		if got := cfg.Cache.UnsafeInvalidation; got != v {
			t.Errorf("got %q; want %q", got, v)
		}
	}
	for _, tc := range []struct{ name, line, want string }{
		{"bad value", `unsafe_invalidation = "purge"`, `t.toml:4: cache.unsafe_invalidation: "purge" is not one of "hard", "soft", "off"`},
		{"upper case", `unsafe_invalidation = "Hard"`, `t.toml:4: cache.unsafe_invalidation: "Hard" is not one of "hard", "soft", "off"`},
		{"empty", `unsafe_invalidation = ""`, `t.toml:4: cache.unsafe_invalidation: "" is not one of`},
		{"not a string", `unsafe_invalidation = true`, `t.toml:4: cache.unsafe_invalidation: must be a string`},
		{"misspelt", `unsafe_invalidations = "off"`, `t.toml:4: cache.unsafe_invalidations: unknown key (did you mean "unsafe_invalidation"?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(head+tc.line+"\n"))
			ps, ok := err.(Problems)
			if !ok || len(ps) != 1 || !strings.Contains(ps[0].String(), tc.want) {
				t.Errorf("got %v; want one problem containing %q", err, tc.want)
			}
		})
	}
}
