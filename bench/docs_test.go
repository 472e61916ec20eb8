package main

import (
	"os"
	"strings"
	"testing"
)

// TestDocsNameRealEndpoints: bench -h and docs/bench.md point at
// userrouter's default port (8090) and at the endpoints bin/origin
// serves (POST /login, POST /cart), not at 8080 or /bench/login/, which
// nothing serves.
func TestDocsNameRealEndpoints(t *testing.T) {
	doc, err := os.ReadFile("../docs/bench.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"bench -h": usageText, "docs/bench.md": string(doc)} {
		for _, bad := range []string{":8080/", "/bench/login/", "/bench/anon/"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s mentions %q", name, bad)
			}
		}
		for _, want := range []string{"http://127.0.0.1:8090/", "-login-url http://127.0.0.1:8000/login"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %q", name, want)
			}
		}
	}
}
