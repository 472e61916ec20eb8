//go:build !race

package sessioncheck

import (
	"context"
	"strings"
	"testing"
)

// TestCheckCachedAllocs guards the hot path: a visitor with no cookie, or
// with a session whose verdict is cached, costs no allocation.
func TestCheckCachedAllocs(t *testing.T) {
	kf, s := cachedSessions(t)
	ctx := context.Background()
	for _, h := range benchHeaders {
		header := []byte(h.header)
		allocs := testing.AllocsPerRun(1000, func() {
			if key, res := kf.Find(header); res == KeyFound {
				s.Check(ctx, key)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per request; want 0", h.name, allocs)
		}
	}
}

// TestKeyFinderAllocs guards Find: no allocation for any ordinary header,
// nor for the odd ones that need no unquoting.
func TestKeyFinderAllocs(t *testing.T) {
	f := newDefaultFinder(t)
	headers := []string{
		"sessionid=" + djangoKey + "\x00",
		"\xc2\xa0sessionid=" + djangoKey,
		"sessionid=" + strings.Repeat("a", 10000),
		`sessionid="` + djangoKey + `  "`,
	}
	for _, h := range benchHeaders {
		headers = append(headers, h.header)
	}
	for _, h := range headers {
		header := []byte(h)
		if allocs := testing.AllocsPerRun(1000, func() { f.Find(header) }); allocs != 0 {
			t.Errorf("%.40q: %v allocations; want 0", h, allocs)
		}
	}
}

// TestSignedCookieCachedAllocs guards the signed_cookies hot path: a
// cookie whose verdict is cached costs no allocation, found and checked.
func TestSignedCookieCachedAllocs(t *testing.T) {
	fx := signedCookieFile(t)
	c, err := NewSignedCookies(SignedCookieOptions{Secrets: []string{fx.SecretKey}})
	if err != nil {
		t.Fatal(err)
	}
	kf, err := NewKeyFinder("sessionid", SignedCookiePattern)
	if err != nil {
		t.Fatal(err)
	}
	kf = kf.WithMaxLength(16 << 10)
	ctx := context.Background()
	for _, r := range fx.Rows[:6] {
		header := []byte("csrftoken=abc; sessionid=" + r.Cookie + "; theme=dark")
		key, _ := kf.Find(header)
		c.Check(ctx, key) // fills the cache
		allocs := testing.AllocsPerRun(1000, func() {
			if key, res := kf.Find(header); res == KeyFound {
				c.Check(ctx, key)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per request; want 0", r.Name, allocs)
		}
	}
}
