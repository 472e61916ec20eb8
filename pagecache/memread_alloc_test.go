//go:build !race

package pagecache

import (
	"testing"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// TestGetMultiAllocs: a hit's read of a page and its counters allocates
// once, for the values the caller keeps.
func TestGetMultiAllocs(t *testing.T) {
	m, err := NewMemcache(MemcacheOptions{Servers: []string{pagecachetest.Memcached(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	keys := hitKeys(t, m)
	items := make([]Item, len(keys))
	n := testing.AllocsPerRun(200, func() {
		if err := m.GetMulti(keys, items); err != nil || !items[3].Found() {
			t.Fatal(err)
		}
	})
	if n > 1 {
		t.Errorf("%v allocations per read of a page and 3 counters; want 1", n)
	}
}
