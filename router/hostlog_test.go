package router

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/userrouter/userrouter/pagecache"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRefusedHostLogged: a Host outside cache.hosts is forwarded (detail=host),
// counted, and logged once per host with a hint when cache.hosts lists it
// with another port; a listed host is cached.
func TestRefusedHostLogged(t *testing.T) {
	s := newSite(t)
	logs := new(lockedBuffer)
	store, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	stats := new(Stats)
	base := cacheRouter(t, s, store, Options{Stats: stats, Logger: slog.New(slog.NewTextHandler(logs, nil))},
		func(co *CacheOptions) { co.Hosts = []string{"example.com", "other.example:8080"} })

	fetch(t, "GET", base+"/a", "Host", "example.com")
	if a := fetch(t, "GET", base+"/a", "Host", "example.com"); a.cacheStatus != "userrouter; hit" {
		t.Errorf("listed host: %q; want a hit", a.cacheStatus)
	}
	for range 3 {
		for _, h := range []string{"example.com:8080", "other.example", "unknown.example"} {
			if a := fetch(t, "GET", base+"/a", "Host", h); a.cacheStatus != "userrouter; fwd=bypass; detail=host" {
				t.Errorf("%s: %q; want detail=host", h, a.cacheStatus)
			}
		}
	}
	out := logs.String()
	for _, want := range []string{
		`host=example.com:8080 hint="cache.hosts lists example.com without the port`,
		`host=other.example hint="cache.hosts lists other.example:8080 with a port`,
		`host=unknown.example cache.hosts=example.com,other.example:8080`,
	} {
		if strings.Count(out, want) != 1 {
			t.Errorf("log has %d lines with %q; want 1:\n%s", strings.Count(out, want), want, out)
		}
	}
	if n := strings.Count(out, "Host not in cache.hosts"); n != 3 {
		t.Errorf("%d lines; want one per host, 3", n)
	}
	if n := stats.Bypass[bypassHost].Load(); n != 9 {
		t.Errorf("bypass host counter %d; want 9", n)
	}
}

// TestRefusedHostsBounded: a client inventing hosts writes at most
// maxRefusedHosts lines, then rate-limited ones.
func TestRefusedHostsBounded(t *testing.T) {
	s := newSite(t)
	logs := new(lockedBuffer)
	store, _ := pagecache.NewMemory(pagecache.MemoryOptions{})
	base := cacheRouter(t, s, store, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))},
		func(co *CacheOptions) { co.Hosts = []string{"example.com"} })
	for i := range maxRefusedHosts + 50 {
		fetch(t, "GET", base+"/a", "Host", fmt.Sprintf("h%d.example", i))
	}
	if n := strings.Count(logs.String(), "Host not in cache.hosts"); n > maxRefusedHosts+2 {
		t.Errorf("%d lines for %d hosts; want at most %d", n, maxRefusedHosts+50, maxRefusedHosts+2)
	}
}
