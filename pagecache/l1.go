package pagecache

import (
	"time"

	"github.com/maypok86/otter/v2"
)

// l1 is an in-process copy of fresh pages in front of the store
// (CacheOptions.L1Size), by page key (namespace included, so a purge of
// everything seen leaves old copies unreachable): a hit found there costs
// no round trip. Each copy
// is kept until its freshness ends or TTL after the store last showed it
// valid, whichever comes first: a purge made through this Cache drops
// copies at once (a URL its page, a key or everything the whole tier),
// and one made through another instance reaches this one within TTL.
type l1 struct {
	pages *otter.Cache[string, l1Page]
	ttl   time.Duration
}

// l1Page is a decoded page and how long the copy may be served: its
// slices alias a stored value nobody changes.
type l1Page struct {
	entry *Entry
	until int64 // Unix milliseconds
}

// l1Overhead is what a copy costs besides its value and key: the Entry
// (with room for 64 headers) and otter's node.
const l1Overhead = 4 << 10

func newL1(size int64, ttl time.Duration) (*l1, error) {
	c, err := otter.New(&otter.Options[string, l1Page]{
		MaximumWeight: uint64(size),
		Weigher: func(k string, p l1Page) uint32 {
			return uint32(min(len(k)+len(p.entry.value)+l1Overhead, 1<<31))
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, l1Page]) time.Duration {
			return time.Until(time.UnixMilli(e.Value.until))
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
	p, ok := l.pages.GetIfPresent(page)
	if !ok || now >= p.until {
		return false
	}
	e.aliasOf(p.entry)
	return true
}

// remember keeps a copy of a fresh page the store showed valid at now
// under its page key; value is the stored value, which nobody changes.
func (l *l1) remember(page string, value []byte, now int64) {
	e := new(Entry)
	if Decode(value, e) != nil || e.Kind != KindPage {
		return
	}
	until := min(now+l.ttl.Milliseconds(), e.FreshUntil)
	if until <= now {
		return
	}
	l.pages.Set(page, l1Page{entry: e, until: until})
}

// forget drops the copy of a page, if any.
func (l *l1) forget(page string) { l.pages.Invalidate(page) }

// clear drops every copy: a purge by key or of everything, whose pages
// this tier cannot list.
func (l *l1) clear() { l.pages.InvalidateAll() }

// aliasOf makes e show src's page, aliasing src's headers rather than
// copying them into e's own array.
func (e *Entry) aliasOf(src *Entry) {
	e.Kind, e.Status, e.StoredAt, e.FreshUntil, e.StaleUntil = src.Kind, src.Status, src.StoredAt, src.FreshUntil, src.StaleUntil
	e.ErrorUntil, e.KeepUntil, e.URLGen = src.ErrorUntil, src.KeepUntil, src.URLGen
	e.Headers, e.Body, e.Flags = src.Headers, src.Body, src.Flags
	e.value, e.tags, e.nTags = src.value, src.tags, src.nTags
}
