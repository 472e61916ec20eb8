package pagecache

import (
	"testing"
	"time"
)

func TestPrivateMemory(t *testing.T)   { testPrivate(t, memoryStore) }
func TestPrivateMemcache(t *testing.T) { testPrivate(t, memcacheStore) }

// testPrivate checks LookupPrivate's copies: each private part its own
// page beside the URL's, every one gone with a purge of the URL, those
// tagged with a purge by key, none kept in the L1.
func testPrivate(t *testing.T, newStore storeMaker) {
	v := newEnv(t, newStore, CacheOptions{L1Size: 1 << 20, L1TTL: time.Hour}, "")
	const url = "http://example.com/api/mine/"
	private := func(part string, now time.Time) (State, Ticket) {
		t.Helper()
		base := v.base(url)
		s, tk := v.c.LookupPrivate(base, base, []byte(part), &v.sc, &v.e, now)
		return s, tk.Clone()
	}
	fill := func(part string, f Fill) {
		t.Helper()
		_, tk := private(part, f.StoredAt)
		if err := v.c.Fence(&tk); err != nil {
			t.Fatal(err)
		}
		if r, _ := v.c.Put(&tk, &f); r != Storable {
			t.Fatalf("fill of %s: %s", part, r)
		}
	}
	want := func(what, part string, now time.Time, state State, body string) {
		t.Helper()
		s, tk := private(part, now)
		if s != state || (state == PageFresh && string(v.e.Body) != body) {
			t.Errorf("%s: %s: got %s %q; want %s %q", what, part, stateName(s), v.e.Body, stateName(state), body)
		}
		if tk.FromL1() {
			t.Errorf("%s: %s came from the L1", what, part)
		}
	}
	v.mustFill(url, page("shared", "channels"))
	fill("|c:A", page("A's", "user-a", "channels"))
	fill("|c:B", page("B's", "user-b", "channels"))
	want("filled", "|c:A", at(time.Second), PageFresh, "A's")
	want("filled", "|c:B", at(time.Second), PageFresh, "B's")
	v.wantPage("filled", url, at(time.Second), PageFresh, "shared")

	v.purgeKey("user-a", false)
	want("user-a purged", "|c:A", at(2*time.Second), PageMissing, "")
	want("user-a purged", "|c:B", at(2*time.Second), PageFresh, "B's")
	v.wantPage("user-a purged", url, at(2*time.Second), PageFresh, "shared")

	fill("|c:A", page("A's again", "user-a"))
	v.purgeURL(url, false)
	for _, part := range []string{"|c:A", "|c:B"} {
		want("URL purged", part, at(3*time.Second), PageMissing, "")
	}
	v.wantState("URL purged", url, at(3*time.Second), PageMissing)
}
