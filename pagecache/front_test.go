package pagecache

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// frontEnv is a Cache over a memory store with its front (CacheOptions.Front).
func frontEnv(t *testing.T, o MemoryOptions) (*cacheEnv, *Memory) {
	t.Helper()
	m, err := NewMemory(o)
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, func(*testing.T) Store { return m }, CacheOptions{Front: m}, ""), m
}

// TestFront checks the memory store's front: a fresh page is served from
// its decoded copy without a store call and without the L1's mark; the
// copy goes at once when its page is purged by any means, replaced,
// deleted or evicted, and when a purge goes through another Cache on the
// same store (the one a reload replaces); and it never outlives the
// page's freshness.
func TestFront(t *testing.T) {
	t.Run("hits without the store", func(t *testing.T) {
		v, _ := frontEnv(t, MemoryOptions{})
		v.mustFill(url1, page("one"))
		v.store.reset()
		for i := range 3 {
			st, tk := v.lookup(url1, at(time.Duration(i)*time.Second))
			if st != PageFresh || tk.FromL1() || string(v.e.Body) != "one" || tk.Key() == "" {
				t.Fatalf("lookup %d: %s, from L1 %v, body %q; want a fresh page, not marked L1", i, stateName(st), tk.FromL1(), v.e.Body)
			}
		}
		v.store.wantCalls(t, "three hits from the front", map[op]int{})
	})
	for _, tc := range purgeKinds {
		t.Run(tc.name+": at once", func(t *testing.T) {
			v, _ := frontEnv(t, MemoryOptions{})
			v.mustFill(url1, page("one", tc.tags...))
			v.wantState("before the purge", url1, at(0), PageFresh)
			tc.purge(v)
			if st, _ := v.lookup(url1, at(time.Millisecond)); st == PageFresh {
				t.Errorf("after the purge: %s; want the store's verdict", stateName(st))
			}
		})
		t.Run(tc.name+" through the Cache a reload replaced: at once", func(t *testing.T) {
			old, m := frontEnv(t, MemoryOptions{})
			cur := old.another(CacheOptions{Front: m})
			cur.mustFill(url1, page("one", tc.tags...))
			cur.store.reset()
			cur.wantState("before the purge", url1, at(0), PageFresh)
			cur.store.wantCalls(t, "a hit from the front", map[op]int{})
			tc.purge(old)
			if st, _ := cur.lookup(url1, at(time.Millisecond)); st == PageFresh {
				t.Errorf("after the purge: %s; want the store's verdict", stateName(st))
			}
		})
	}
	t.Run("the page deleted or replaced in the store", func(t *testing.T) {
		v, m := frontEnv(t, MemoryOptions{})
		v.mustFill(url1, page("one"))
		_, tk := v.lookup(url1, at(0))
		if err := m.Delete(tk.Key()); err != nil {
			t.Fatal(err)
		}
		v.wantState("after a delete", url1, at(time.Millisecond), PageMissing)

		v.mustFill(url1, page("one"))
		v.wantPage("refilled", url1, at(0), PageFresh, "one")
		// Another fill's value under the same key (markUncacheable and
		// variants markers write there too).
		p := fillPage(&Fill{Status: 200, StoredAt: t0, TTL: time.Minute, Body: []byte("two")}, v.e.URLGen)
		env, err := Encode(nil, &p)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Set(tk.Key(), Item{Value: env}, time.Hour); err != nil {
			t.Fatal(err)
		}
		v.wantPage("after a set", url1, at(time.Millisecond), PageFresh, "two")
	})
	t.Run("a copy made after its value went is dropped", func(t *testing.T) {
		v, m := frontEnv(t, MemoryOptions{})
		v.mustFill(url1, page("one"))
		_, tk := v.lookup(url1, at(0))
		old, _ := m.Get(tk.Key())
		v.c.forgetLocal("")
		if err := m.Delete(tk.Key()); err != nil {
			t.Fatal(err)
		}
		// What a lookup that read the old value before the delete does
		// after it.
		v.c.l1.remember(tk.Key(), old.Value, t0.UnixMilli())
		if !v.c.frontHolds(tk.Key(), old.Value) {
			v.c.l1.forget(tk.Key())
		}
		v.wantState("after the delete", url1, at(time.Millisecond), PageMissing)
	})
	t.Run("the store tells of what it evicts", func(t *testing.T) {
		m, err := NewMemory(MemoryOptions{MaxBytes: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		told := map[string]bool{}
		m.watch(func(k string) { mu.Lock(); told[k] = true; mu.Unlock() })
		for i := range 200 {
			if err := m.Set(fmt.Sprint("k", i), Item{Value: make([]byte, 4<<10)}, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
			untold := 0
			mu.Lock()
			for i := range 200 {
				if _, err := m.Get(fmt.Sprint("k", i)); err != nil && !told[fmt.Sprint("k", i)] {
					untold++
				}
			}
			n := len(told)
			mu.Unlock()
			if untold == 0 && n >= 150 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d keys evicted without a word; %d told", untold, n)
			}
		}
	})
	t.Run("never past freshness", func(t *testing.T) {
		v, _ := frontEnv(t, MemoryOptions{})
		f := page("one")
		f.TTL = 500 * time.Millisecond
		v.mustFill(url1, f)
		v.store.reset()
		v.wantState("fresh", url1, at(400*time.Millisecond), PageFresh)
		v.store.wantCalls(t, "a fresh hit", map[op]int{})
		v.wantState("past freshness", url1, at(600*time.Millisecond), PageStale)
	})
}
