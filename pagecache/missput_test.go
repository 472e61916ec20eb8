package pagecache

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// benchEnv is a Cache over the test memcached for a benchmark (skipped
// without it). newEnv's helpers take a *testing.T: a zero one (whose
// cleanups never run) would leave the store's connections open; the
// store is closed by b's cleanup instead.
func benchEnv(b *testing.B) *cacheEnv {
	addr := pagecachetest.Memcached(b)
	// A failure through the zero T ends the benchmark's goroutine
	// silently (0 iterations, PASS): a memcached that is not there is
	// said so first.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
		b.Fatalf("the test memcached (USERROUTER_TEST_MEMCACHED): %v", err)
	} else {
		c.Close()
	}
	var store Store
	v := newEnv(&testing.T{}, func(*testing.T) Store {
		m, err := NewMemcache(MemcacheOptions{Servers: []string{addr}, Timeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		store = m
		return m
	}, CacheOptions{}, "")
	b.Cleanup(func() { store.Close() })
	return v
}

// BenchmarkMissNewURL is the store's side of a miss of a URL never
// filled, a page without tags, against the test memcached: the lookup,
// the fence and the put (two round trips with an AddGetSetter, three
// without).
func BenchmarkMissNewURL(b *testing.B) {
	v := benchEnv(b)
	f := page(string(make([]byte, 20<<10)))
	v.mustFill("http://example.com/warm", f) // the namespace and sequence exist
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_, tk := v.c.Lookup(v.base("http://example.com/p/"+strconv.Itoa(i)), &v.sc, &v.e, t0)
		if err := v.c.Fence(&tk); err != nil {
			b.Fatal(err)
		}
		if r, _ := v.c.Put(&tk, &f); r != Storable {
			b.Fatalf("put: %s", r)
		}
	}
}

// BenchmarkMissNewURLTagged is BenchmarkMissNewURL for pages with
// three surrogate keys, as bench's origin sends: two shared by every
// page, which an earlier fill read, and the page's own, which the put
// creates. Two round trips with an AddGetSetter: the lookup, and the
// write that reads and creates the counters.
func BenchmarkMissNewURLTagged(b *testing.B) {
	v := benchEnv(b)
	v.mustFill("http://example.com/warm", page("warm", "all", "section-p"))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f := page(string(make([]byte, 20<<10)), "all", "section-p", "page-"+strconv.Itoa(i))
		_, tk := v.c.Lookup(v.base("http://example.com/p/"+strconv.Itoa(i)), &v.sc, &v.e, t0)
		if err := v.c.Fence(&tk); err != nil {
			b.Fatal(err)
		}
		if r, _ := v.c.Put(&tk, &f); r != Storable {
			b.Fatalf("put: %s", r)
		}
	}
}

// BenchmarkRefillTagged is the store's side of a known URL's refill, a
// page with three surrogate keys whose freshness ended, against the test
// memcached: the lookup (the page with its tags' counters) and the put
// (one write when the lookup's counters fence it).
func BenchmarkRefillTagged(b *testing.B) {
	v := benchEnv(b)
	const url = "http://example.com/refilled"
	f := page(string(make([]byte, 20<<10)), "all", "section-news", "page-refilled")
	v.mustFill(url, f)
	v.wantPage("the hit that makes the hint", url, t0, PageFresh, string(f.Body))
	later := at(3 * time.Minute) // past the page's freshness and grace
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		st, tk := v.c.Lookup(v.base(url), &v.sc, &v.e, later)
		if st != PageMissing {
			b.Fatalf("lookup: %s", stateName(st))
		}
		if err := v.c.Fence(&tk); err != nil {
			b.Fatal(err)
		}
		if r, _ := v.c.Put(&tk, &f); r != Storable {
			b.Fatalf("put: %s", r)
		}
	}
}
