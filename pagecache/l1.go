package pagecache

import (
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
)

// l1 is an in-process copy of fresh pages in front of the store
// (CacheOptions.L1Size), by page key (namespace included, so a purge of
// everything seen leaves old copies unreachable): a hit found there costs
// no round trip. Each copy is served until its freshness ends or TTL
// after the store last showed it valid, whichever comes first; past TTL,
// a copy still fresh is kept while its counters, read again without the
// page (Cache.revalidate), are unchanged. A purge made through this Cache
// drops copies at once (a URL its page, a key or everything the whole
// tier), and one made through another instance reaches this one within
// TTL.
type l1 struct {
	pages *otter.Cache[string, l1Page]
	ttl   time.Duration
}

// l1Page is a decoded page and how long the copy may be served: its
// slices alias a stored value nobody changes.
type l1Page struct {
	view  *entryView
	until int64 // Unix milliseconds
}

// copyCost is what a copy costs besides the value it aliases: the key,
// the entryView, its headers' slice and otter's node (256 bytes is more
// than the node and its share of the tables take).
func copyCost(k string, v *entryView) int {
	return len(k) + int(unsafe.Sizeof(entryView{})) + len(v.Headers)*int(unsafe.Sizeof(Header{})) + 256
}

// newL1 returns the L1 tier: size bounds the copies and the values they
// hold (which the store's later reads do not share), ttl how long a copy
// outlives the store's last word on it.
func newL1(size int64, ttl time.Duration) (*l1, error) {
	// The value's capacity: what its allocation holds, up to an eighth
	// more than its length (Go's size classes).
	return newTier(size, ttl, func(k string, p l1Page) int { return copyCost(k, p.view) + cap(p.view.value) })
}

// newFront returns the front of an in-process store (see
// CacheOptions.Front): size bounds the copies alone, whose values are
// the store's own, and a copy lasts as long as its page is fresh.
func newFront(size int64) (*l1, error) {
	return newTier(size, time.Duration(math.MaxInt64), func(k string, p l1Page) int { return copyCost(k, p.view) })
}

func newTier(size int64, ttl time.Duration, cost func(string, l1Page) int) (*l1, error) {
	c, err := otter.New(&otter.Options[string, l1Page]{
		MaximumWeight: uint64(size),
		Weigher: func(k string, p l1Page) uint32 {
			return uint32(min(cost(k, p), 1<<31))
		},
		// A copy is served until its bound (until), and kept until its
		// freshness ends: past its bound, revalidate may keep it serving.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, l1Page]) time.Duration {
			return time.Until(time.UnixMilli(e.Value.view.FreshUntil))
		}),
	})
	if err != nil {
		return nil, err
	}
	return &l1{pages: c, ttl: ttl}, nil
}

// lookup serves base from the tier into e when a copy is there and may
// still be served at now (Unix milliseconds).
func (l *l1) lookup(page string, e *Entry, now int64) bool {
	ok, _ := l.find(page, e, now)
	return ok
}

// find is lookup that also returns, when the copy's bound (TTL after the
// store last showed it valid) has passed while the page is still fresh,
// that copy: its counters, read again, may keep it (see
// Cache.revalidate). One map read either way.
func (l *l1) find(page string, e *Entry, now int64) (served bool, due *entryView) {
	p, ok := l.pages.GetIfPresent(page)
	switch {
	case !ok || now >= p.view.FreshUntil:
		return false, nil
	case now >= p.until:
		return false, p.view
	}
	e.aliasOf(p.view)
	return true, nil
}

// bound is how long a copy of a page fresh until freshUntil may be
// served when the store showed it valid at now.
func (l *l1) bound(now, freshUntil int64) int64 {
	return min(now+min(l.ttl.Milliseconds(), math.MaxInt64/2), freshUntil)
}

// extend keeps the copy v of page for another TTL from now, the store
// having shown it valid then, and never past its freshness.
func (l *l1) extend(page string, v *entryView, now int64) {
	if until := l.bound(now, v.FreshUntil); until > now {
		l.pages.Set(strings.Clone(page), l1Page{view: v, until: until})
	}
}

// remember keeps a copy of a fresh page the store showed valid at now
// under its page key; value is the stored value, which nobody changes.
func (l *l1) remember(page string, value []byte, now int64) {
	e := decodeEntries.Get().(*Entry)
	defer func() {
		*e = Entry{} // keep no value alive in the pool
		decodeEntries.Put(e)
	}()
	if Decode(value, e) != nil || e.Kind != KindPage {
		return
	}
	until := l.bound(now, e.FreshUntil)
	if until <= now {
		return
	}
	v := new(entryView)
	*v = e.entryView
	v.Headers = slices.Clone(e.Headers) // out of e's array
	l.pages.Set(page, l1Page{view: v, until: until})
}

// decodeEntries are the Entries remember decodes into: 3.3 KB each, with
// their array of headers, of which a copy keeps only what it uses.
var decodeEntries = sync.Pool{New: func() any { return new(Entry) }}

// forget drops the copy of a page, if any.
func (l *l1) forget(page string) { l.pages.Invalidate(page) }

// clear drops every copy: a purge by key or of everything, whose pages
// this tier cannot list.
func (l *l1) clear() { l.pages.InvalidateAll() }

// aliasOf makes e show src's page, aliasing src's headers rather than
// copying them into e's own array.
func (e *Entry) aliasOf(src *entryView) { e.entryView = *src }
