package pagecache

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// generations are the counters that make every purge one O(1) operation,
// kept in the shared store so every userrouter instance sees them at once:
//
//   - {prefix}ns, the namespace: it is part of every page key, so
//     changing it makes every page unreachable at once (purge all), without
//     flush_all on a memcached other programs may share;
//   - {prefix}u:<hash of the page key>, one per URL: purge by URL;
//   - {prefix}t:<tag>, one per surrogate key: purge by key;
//   - {prefix}seq, the purge sequence, bumped by every purge by key: a
//     fill whose tags' counters were not read before its request compares
//     it before and after, and does not store an answer a purge may have
//     overtaken.
//
// A page records the URL and tag generations it was fetched under and is
// valid only while they are unchanged. A counter holds a hard part (high
// 32 bits) and a soft part (low 32): a hard purge changes the first and
// makes pages unusable, a soft purge changes the second and makes them
// stale (served while one request refreshes them). A counter that is
// missing — evicted, or never set — counts as changed; one created anew
// starts at a random hard part, so it never matches what pages recorded
// from an earlier counter. It is safe for concurrent use.
type generations struct {
	store  Store
	prefix string
	nsKey  string
	seqKey string
	local  *otter.Cache[string, uint64]
	// present holds the counters found in the store lately (see Read),
	// each with the value found and when it was first found so (see
	// seenBefore).
	present *otter.Cache[string, seenCounter]
	// marks orders the reads of counters and the fences of fills: it
	// only grows.
	marks atomic.Uint64
}

// A seenCounter is a counter's value as a read found it, and the mark
// (generations.marks) taken after the first read that found that value.
type seenCounter struct {
	v, mark uint64
}

// validity is what a page's recorded generation says against the current.
type validity uint8

const (
	valid   validity = iota // unchanged
	stale                   // soft-purged: serve stale and refresh
	invalid                 // hard-purged, or the counter is missing
)

// Purge steps: a soft purge adds 1, a hard purge 1<<32.
const (
	softStep = 1
	hardStep = 1 << 32
)

// newGenerations keeps counters in store under prefix. With localTTL > 0
// counter values are also kept in process that long: hits skip reading
// them, and a purge may then take up to localTTL to reach every instance.
func newGenerations(store Store, prefix string, localTTL time.Duration) (*generations, error) {
	g := &generations{store: store, prefix: prefix, nsKey: prefix + "ns", seqKey: prefix + "seq"}
	present, err := otter.New(&otter.Options[string, seenCounter]{
		// The counters many pages share (sections, the sequence) are
		// what it is for: Read sends no add for them, and a new URL's
		// fill records their values (seenBefore); a page's own tag is
		// read again at its next fill only. Small, so that garbage
		// collection of a busy heap (a hit allocates its page) has
		// little to mark.
		MaximumSize:      presentSize,
		ExpiryCalculator: otter.ExpiryWriting[string, seenCounter](presentTTL),
	})
	if err != nil {
		return nil, fmt.Errorf("pagecache: counter presence cache: %w", err)
	}
	g.present = present
	if localTTL > 0 {
		c, err := otter.New(&otter.Options[string, uint64]{
			MaximumSize:      100_000,
			ExpiryCalculator: otter.ExpiryWriting[string, uint64](localTTL),
		})
		if err != nil {
			return nil, fmt.Errorf("pagecache: local generation cache: %w", err)
		}
		g.local = c
	}
	return g, nil
}

// isCounter reports whether key is one of the counters' keys.
func (g *generations) isCounter(key string) bool {
	rest, ok := strings.CutPrefix(key, g.prefix)
	return ok && (rest == "ns" || rest == "seq" || strings.HasPrefix(rest, "u:") || strings.HasPrefix(rest, "t:") || strings.HasPrefix(rest, "t#"))
}

// NSKey is the namespace counter's key.
func (g *generations) NSKey() string { return g.nsKey }

// SeqKey is the purge sequence's key.
func (g *generations) SeqKey() string { return g.seqKey }

// AppendURLKey appends the key of the URL counter for a page key (without
// its namespace) to dst: the prefix and a 64-bit FNV-1a hash. Two URLs
// sharing a hash would only share purges.
func (g *generations) AppendURLKey(dst, pageKey []byte) []byte {
	h := uint64(14695981039346656037)
	for _, c := range pageKey {
		h ^= uint64(c)
		h *= 1099511628211
	}
	dst = append(dst, g.prefix...)
	dst = append(dst, "u:"...)
	return strconv.AppendUint(dst, h, 36)
}

// TagKey is the key of a surrogate key's counter.
func (g *generations) TagKey(tag string) string {
	if k := g.prefix + "t:" + tag; len(k) <= MaxKeyLength {
		return k
	}
	sum := sha256.Sum256([]byte(tag))
	return g.prefix + "t#" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// cached returns a counter's value kept in process, if any.
func (g *generations) cached(key string) (uint64, bool) {
	if g.local == nil {
		return 0, false
	}
	return g.local.GetIfPresent(key)
}

// remember keeps a counter's value in process (no-op without localTTL)
// for localTTL from now. Pass only values just read from the store: a
// value cached returned, remembered again, would live on past its TTL,
// and purges from other instances would never show. The key is copied:
// callers may pass one that aliases a reused buffer.
func (g *generations) remember(key string, v uint64) {
	if g.local != nil {
		g.local.Set(strings.Clone(key), v)
	}
}

// compareGen compares a recorded generation with the current one.
func compareGen(recorded, current uint64) validity {
	switch {
	case recorded == current:
		return valid
	case recorded>>32 == current>>32:
		return stale
	}
	return invalid
}

// parseCounter reads a counter value as the store holds it: decimal
// digits that fit in 64 bits, as strconv.ParseUint(v, 10, 64) takes
// them, without the error it allocates for a counter that is missing (an
// empty value), which every new URL's lookup finds.
func parseCounter(it Item) (uint64, bool) {
	v := it.Value
	if len(v) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		d := uint64(c - '0')
		if d > 9 || n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// Read sets out[i] to the current value of the counter keys[i], creating
// the missing ones: with fence[i] when not 0, else a new counter value
// (newCounter). One round trip when the store is an AddGetter and no
// counter thought present (seen found within presentTTL) was lost: those
// are read without an add, which memcached would otherwise have to
// process (an item allocated, then not stored) for every fill; one found
// missing is created in a second round trip. A counter with a fence is
// always added, so that whether the fence's value is the counter's shows
// who created it.
func (g *generations) Read(keys []string, fence, out []uint64) error {
	n := len(keys)
	var itemsAt, addsAt [8]Item
	items, adds := itemsAt[:0], addsAt[:0]
	if n > len(itemsAt) {
		items, adds = make([]Item, 0, n), make([]Item, 0, n)
	}
	items, adds = items[:n], adds[:n]
	// added[i]: the value the last add of keys[i] sent, if any.
	var addedAt [8]uint64
	added := addedAt[:0]
	if n > len(addedAt) {
		added = make([]uint64, 0, n)
	}
	added = added[:n]
	missing := 0
	for i, k := range keys {
		switch {
		case fence[i] != 0:
			added[i] = fence[i]
		case !g.thoughtPresent(k):
			added[i] = newCounter()
		default:
			continue
		}
		adds[i].Value = strconv.AppendUint(nil, added[i], 10)
	}
	if err := AddGetMulti(g.store, keys, adds, items); err != nil {
		return err
	}
	for i := range keys {
		if !items[i].Found() && adds[i].Value == nil {
			added[i] = newCounter()
			adds[i].Value = strconv.AppendUint(nil, added[i], 10)
			missing++
		} else {
			adds[i].Value = nil
		}
	}
	if missing > 0 {
		// Counters thought present were lost (evicted): create them.
		again := make([]Item, n)
		if err := AddGetMulti(g.store, keys, adds, again); err != nil {
			return err
		}
		for i := range keys {
			if adds[i].Value != nil {
				items[i] = again[i]
			}
		}
	}
	for i, k := range keys {
		v, ok, held := readAfterAdd(items[i], added[i])
		if !ok {
			if !items[i].Found() {
				return fmt.Errorf("pagecache: counter %q: %w", k, ErrMiss)
			}
			return fmt.Errorf("pagecache: counter %q holds %q, not a number", k, items[i].Value)
		}
		out[i] = v
		if held {
			g.found(k, v)
		}
	}
	return nil
}

// readAfterAdd is the value of a counter that an add of added (0: none)
// and a get in the same exchange read as it; held says the store holds
// it. One added and gone before the get (a full memory store's admission
// policy turns some new entries away at once; memcached may evict one
// under pressure) reads as the value added and not held: a counter read
// and then lost, which a lookup counts as purged, so a page recording
// that value is never served, and nothing failed.
func readAfterAdd(it Item, added uint64) (v uint64, ok, held bool) {
	if !it.Found() && added != 0 {
		return added, true, false
	}
	v, ok = parseCounter(it)
	return v, ok, ok
}

// presentTTL is how long a counter found in the store is thought present
// there, so that Read sends no add for it, and how long the value found
// may fence a fill (seenBefore): an older one is read again.
const presentTTL = time.Minute

// presentSize bounds the counters thought present.
const presentSize = 4096

// thoughtPresent reports whether key was found in the store within
// presentTTL.
func (g *generations) thoughtPresent(key string) bool {
	_, ok := g.present.GetIfPresent(key)
	return ok
}

// see notes that a read just found v under the counter key: it is then
// thought present, and v known since the mark taken now, unless v was
// already known (a counter never comes back to a value it left). The key
// is copied.
func (g *generations) see(key string, v uint64) {
	if e, ok := g.present.GetIfPresent(key); ok && e.v == v {
		return
	}
	g.present.Set(strings.Clone(key), seenCounter{v: v, mark: g.marks.Add(1)})
}

// found notes a value a read just found under the counter key: kept in
// process (remember, with localTTL) and seen (see).
func (g *generations) found(key string, v uint64) {
	g.remember(key, v)
	g.see(key, v)
}

// mark returns a mark later than every read noted so far: a fill's fence
// takes one before its request is sent.
func (g *generations) mark() uint64 { return g.marks.Add(1) }

// seenBefore returns the value of the counter key as a read that ended
// before mark found it, if one did (within presentTTL). Recorded by a
// page fetched after mark, it fences the page as the URL counter does:
// if the counter holds it still, no purge through the counter came
// between that read and now.
func (g *generations) seenBefore(key string, mark uint64) (uint64, bool) {
	e, ok := g.present.GetIfPresent(key)
	return e.v, ok && e.mark < mark
}

// newCounter is the value of a new counter: a random hard part, so that
// it never matches what pages recorded from an earlier counter.
func newCounter() uint64 { return uint64(rand.Uint32()>>1) << 32 }

// create makes a missing counter with a random hard part and returns its
// value (or, when another instance created it first, theirs).
func (g *generations) create(key string) (uint64, error) {
	v := newCounter()
	err := g.store.Add(key, Item{Value: strconv.AppendUint(nil, v, 10)}, 0)
	if errors.Is(err, ErrNotStored) {
		it, err := g.store.Get(key)
		if err != nil {
			return 0, err
		}
		if v, ok := parseCounter(it); ok {
			return v, nil
		}
		return 0, fmt.Errorf("pagecache: counter %q holds %q, not a number", key, it.Value)
	}
	return v, err
}

// Bump purges through a counter: soft makes its pages stale, hard makes
// them unusable. A missing counter is created, which invalidates too.
func (g *generations) Bump(key string, soft bool) error {
	step := uint64(hardStep)
	if soft {
		step = softStep
	}
	_, err := g.store.Incr(key, step)
	if errors.Is(err, ErrMiss) {
		_, err = g.create(key)
	}
	if g.local != nil {
		g.local.Invalidate(key) // this instance sees its own purge at once
	}
	return err
}

// PurgeTag advances the purge sequence, then purges a surrogate key, so
// that no fill in flight stores an answer fetched before the purge. The
// order matters: a fill reads the sequence and its tags' counters
// together, and between the two bumps it must see the sequence moved, not
// the tag's new generation beside the old sequence (which it would record,
// keeping the old answer valid).
func (g *generations) PurgeTag(tag string, soft bool) error {
	if err := g.Bump(g.seqKey, true); err != nil {
		return err
	}
	return g.Bump(g.TagKey(tag), soft)
}
