package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestTokens: with -tokens, each connection sends one token of the file in
// -token-header, every token is used, and nothing else is sent.
func TestTokens(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Authorization")]++
		mu.Unlock()
	}))
	t.Cleanup(s.Close)
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens.txt")
	if err := os.WriteFile(file, []byte("# two boxes\nalice:0123456789abcdef\nbob:fedcba9876543210\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runBench(t, "-url", s.URL, "-requests", "100", "-c", "4", "-warmup", "0",
		"-tokens", file, "-token-header", "Authorization: ApiKey {token}")
	if code != 0 {
		t.Fatalf("exit status %d; want 0\n%s", code, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	for v, n := range seen {
		switch v {
		case "ApiKey alice:0123456789abcdef", "ApiKey bob:fedcba9876543210":
		case "":
			if n != 1 {
				t.Errorf("%d requests without a token; want 1 (the reachability check)", n)
			}
		default:
			t.Errorf("server saw Authorization %q", v)
		}
	}
	if seen["ApiKey alice:0123456789abcdef"] == 0 || seen["ApiKey bob:fedcba9876543210"] == 0 {
		t.Errorf("not every token was sent: %v", seen)
	}

	for _, tc := range []struct{ name, header, content, want string }{
		{"no placeholder", "Authorization: Token", "a\n", "one {token}"},
		{"no colon", "Authorization Token {token}", "a\n", "'Name: value'"},
		{"token with a space", "Authorization: Token {token}", "a b\n", "holds a space"},
	} {
		f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		os.WriteFile(f, []byte(tc.content), 0o600)
		if code, _, errOut := runBench(t, "-url", s.URL, "-tokens", f, "-token-header", tc.header); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit status %d, %q; want 2 and %q", tc.name, code, errOut, tc.want)
		}
	}
}
