//go:build !race

package pagecache

import "testing"

// TestVariantHitAllocs: the two lookups of a variant's hit allocate
// nothing.
func TestVariantHitAllocs(t *testing.T) {
	m, _ := NewMemory(MemoryOptions{})
	v := newEnv(t, func(*testing.T) Store { return m }, CacheOptions{}, "")
	_, tk := v.lookup(url1, t0)
	v.c.Fence(&tk)
	f := page("english")
	v.c.PutVariants(&tk, "accept-language", &f)
	en, _ := v.c.Variant(&tk, "accept-language", lang("en"))
	v.c.Put(&en, &f)
	base, h := v.base(url1), lang("en")
	n := testing.AllocsPerRun(200, func() {
		_, tk := v.c.Lookup(base, &v.sc, &v.e, t0)
		if st, _, _ := v.c.LookupVariant(&tk, h, &v.sc, &v.e, t0); st != PageFresh {
			t.Fatalf("got %s", stateName(st))
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per variant hit; want 0", n)
	}
}
