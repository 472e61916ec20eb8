package conf

import (
	"strings"
	"testing"

	"github.com/userrouter/userrouter/pagecache"
)

// TestMaxVariants: cache.max_variants defaults to 16 and must be at least 1.
func TestMaxVariants(t *testing.T) {
	c, err := Parse("t.toml", []byte("[backend]\naddrs = [\"127.0.0.1:8000\"]\n"))
	if err != nil || c.Cache.MaxVariants != pagecache.DefaultMaxVariants {
		t.Fatalf("default: %v, max_variants %d; want %d", err, c.Cache.MaxVariants, pagecache.DefaultMaxVariants)
	}
	_, err = Parse("t.toml", []byte("[backend]\naddrs = [\"127.0.0.1:8000\"]\n[cache]\nmax_variants = 0\n"))
	if want := "t.toml:4: cache.max_variants: must be at least 1, not 0"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("max_variants = 0: got %v; want %q", err, want)
	}
}
