package pagecache

import (
	"bytes"
	"errors"
	"slices"
	"time"
)

// pickleFlag is the memcached flag bit Python clients (pymemcache, pylibmc,
// python-memcached) set on pickled values: never a page body.
const pickleFlag = 1

// rawFormat keeps pages as bodies alone under their base keys, as another
// program writes them: no namespace, no generations recorded, no tags.
type rawFormat struct {
	c        *Cache
	gzipFlag uint32
}

func (f *rawFormat) keepsTags() bool { return false }

// lookup reads the body at base into e: a 200 with no headers, its store
// flags in e.Flags. A pickle is damaged, never a page.
func (f *rawFormat) lookup(base, _ []byte, sc *Scratch, e *Entry, _ int64) (State, Ticket) {
	c := f.c
	key := view(base)
	it, err := c.store.Get(key)
	switch {
	case err == nil && it.Flags&pickleFlag == 0:
		e.Kind, e.Status, e.StoredAt, e.Headers, e.Body, e.Flags, e.value = KindPage, 200, 0, nil, it.Value, it.Flags, nil
		e.nTags = 0
		return PageFresh, Ticket{page: key}
	case err == nil:
		c.onDamaged()
	case !errors.Is(err, ErrMiss):
		c.onStoreError(err)
		return PageMissing, Ticket{page: key, down: true}
	}
	// The URL counter fences raw fills against purges (see put); the
	// purge sequence guards tags, which raw pages have none of, so the
	// ticket counts it known and Fence does not read it.
	sc.url = c.gens.AppendURLKey(sc.url[:0], base)
	return PageMissing, Ticket{page: key, url: view(sc.url), seqKnown: true}
}

// put writes a raw body, fenced against purges by the URL counter: a raw
// value cannot record the generation it was fetched under, so the counter
// is read again after the value is written, and a purge that came in since
// the fence (purgeURL bumps the counter, then deletes) has the value
// deleted again.
func (f *rawFormat) put(t *Ticket, fl *Fill) (Reason, []byte) {
	c := f.c
	if len(fl.Tags) > 0 {
		return ReasonTags, nil // nowhere to keep them
	}
	flags := uint32(0)
	if f.gzipFlag != 0 && bytes.EqualFold(fl.ContentEncoding, []byte("gzip")) {
		flags = f.gzipFlag
	} else if len(fl.ContentEncoding) > 0 {
		return ReasonEncoding, nil
	}
	if r := c.settle(t); r != Storable {
		return r, nil
	}
	body := fl.Body
	if c.inProcess {
		// The store keeps what it is given; Fill.Body is the caller's.
		body = append(slices.Grow([]byte(nil), len(body)), body...)
	}
	if err := c.store.Set(t.page, Item{Value: body, Flags: flags}, fl.TTL-fl.Age); err != nil {
		return storeReason(err), nil
	}
	it, err := c.store.Get(t.url)
	if cur, ok := parseCounter(it); err == nil && ok && cur == t.urlGen {
		return Storable, nil
	}
	if err := c.store.Delete(t.page); err != nil && !errors.Is(err, ErrMiss) {
		c.onStoreError(err)
	}
	return ReasonPurged, nil
}

func (f *rawFormat) markUncacheable(*Ticket, time.Time, time.Duration) {}

// purgeURL bumps the URL counter first, then deletes: a raw fill in flight
// reads the counter again after it writes, and deletes what it wrote.
func (f *rawFormat) purgeURL(base []byte, urlKey string, _ bool) error {
	if err := f.c.gens.Bump(urlKey, false); err != nil {
		return err
	}
	if err := f.c.store.Delete(string(base)); err != nil && !errors.Is(err, ErrMiss) {
		return err
	}
	return nil
}
