package pagecache

import (
	"errors"
	"slices"
	"strconv"
	"time"
)

// envelopeFormat keeps pages as envelopes under namespaced keys, valid
// while the generations they record are unchanged.
type envelopeFormat struct{ c *Cache }

func (f *envelopeFormat) keepsTags() bool { return true }

// lookup reads the page at base with the namespace, URL (urlBase's) and
// sequence counters (one round trip), then its tags' counters if the hint
// did not bring them (one more), and decodes it into e. urlBase is the
// base key of the page's URL, for its counter: base itself, or what a
// purge by URL can know of it (see LookupURL and LookupPrivate). now is in
// Unix milliseconds.
func (f *envelopeFormat) lookup(base, urlBase []byte, sc *Scratch, e *Entry, now int64) (State, Ticket) {
	c := f.c
	g := c.gens
	lent := sc.lent // lent to this lookup only
	sc.lent = nil
	sc.url = g.AppendURLKey(sc.url[:0], urlBase)
	urlKey := view(sc.url)
	ns := c.ns.Load()
	pageKey := c.pageKey(sc, base, ns)

	sc.keys = append(sc.keys[:0], pageKey)
	// Counters known in process (tag_cache_ttl) are not read; those read
	// from the store are remembered, and only those: remembering a value
	// known in process would extend its life at every hit, and another
	// instance's purge would never show.
	nsCur, nsLocal := g.cached(g.NSKey())
	nsKnown := nsLocal
	if !nsKnown {
		sc.keys = append(sc.keys, g.NSKey())
	}
	urlCur, urlLocal := g.cached(urlKey)
	urlKnown := urlLocal
	if !urlKnown {
		sc.keys = append(sc.keys, urlKey)
	}
	// The purge sequence is only needed on a miss, as the fill's fence;
	// one more key in this round trip saves the fill one.
	seqCur, seqLocal := g.cached(g.SeqKey())
	seqKnown := seqLocal
	if !seqKnown {
		sc.keys = append(sc.keys, g.SeqKey())
	}
	// The page's tags, as last seen: their counters come in the same round
	// trip, speculatively.
	tagsAt := len(sc.keys)
	hint, hinted := c.hints.GetIfPresent(view(base))
	if hinted {
		sc.keys = append(sc.keys, hint.keys...)
	}
	down := Ticket{page: pageKey, url: urlKey, down: true}
	var it Item
	var found bool
	if len(sc.keys) == 1 {
		var err error
		it, err = c.store.Get(pageKey)
		if found = err == nil; err != nil && !errors.Is(err, ErrMiss) {
			c.onStoreError(err)
			return PageMissing, down
		}
	} else {
		sc.items = slices.Grow(sc.items[:0], len(sc.keys))[:len(sc.keys)]
		items := sc.items
		var err error
		if bg, ok := c.store.(BufferedGetter); ok && lent != nil {
			err = bg.GetMultiBuf(sc.keys, items, lent)
			sc.lentUsed = true // values may alias it
		} else {
			err = c.store.GetMulti(sc.keys, items)
		}
		if err != nil {
			// The store failed (down, or slower than its timeout): this
			// request asks it nothing more, so it costs one timeout at
			// most, and no counter is created or trusted.
			c.onStoreError(err)
			clear(sc.items)
			return PageMissing, down
		}
		it, found = items[0], items[0].Found()
		i := 1
		if !nsKnown {
			if v, ok := parseCounter(items[i]); ok {
				nsCur, nsKnown = v, true
			}
			i++
		}
		if !urlKnown {
			urlCur, urlKnown = parseCounter(items[i])
			i++
		}
		if !seqKnown {
			seqCur, seqKnown = parseCounter(items[i])
		}
	}
	if urlKnown && !urlLocal {
		g.remember(urlKey, urlCur)
	}
	if seqKnown && !seqLocal {
		g.remember(g.SeqKey(), seqCur)
	}
	defer clear(sc.items) // do not keep values alive in the pool
	if !nsKnown {
		// No namespace yet (a new or flushed store): start one.
		v, err := g.create(g.NSKey())
		if err != nil {
			c.onStoreError(err)
			return PageMissing, down
		}
		nsCur = v
	}
	if !nsLocal {
		g.remember(g.NSKey(), nsCur)
	}
	if nsCur != ns {
		// Everything was purged (or this is the first request): the page
		// lives under the new namespace.
		c.ns.Store(nsCur)
		pageKey = c.pageKey(sc, base, nsCur)
		down.page = pageKey
		var err error
		it, err = c.store.Get(pageKey)
		if found = err == nil; err != nil && !errors.Is(err, ErrMiss) {
			c.onStoreError(err)
			return PageMissing, down
		}
	}
	t := Ticket{page: pageKey, url: urlKey, base: view(base), ns: nsCur,
		seq: seqCur, seqKnown: seqKnown, urlGen: urlCur, urlKnown: urlKnown, urlMissing: !urlKnown}
	var tagItems []Item
	if hinted {
		tagItems = sc.items[tagsAt:len(sc.keys)]
	}
	st, t := c.judge(t, it, found, base, hint, hinted, tagItems, e, now)
	if hinted && (st == PageMissing || st == PageStale || st == PageExpired) {
		t.tagNames, t.tagGens = hint.fence(tagItems)
		for i, v := range t.tagGens {
			g.see(hint.keys[i], v) // for the fills of other pages with the tag
		}
	}
	if st == PageVariants {
		// The marker's names outlive e, which the variant's lookup reuses.
		sc.vary = append(sc.vary[:0], t.vary...)
		t.vary = view(sc.vary)
	}
	return st, t
}

// judge decodes the value found (or not) under t's page key into e and
// says what it is at now (Unix milliseconds) against the URL counter the
// ticket holds and its tags' counters: those the hint brought (tagItems,
// in hint order), else read now. base is the page's own base key, which
// the hint is kept under.
func (c *Cache) judge(t Ticket, it Item, found bool, base []byte, hint tagHint, hinted bool, tagItems []Item, e *Entry, now int64) (State, Ticket) {
	if !found || !t.urlKnown {
		return PageMissing, t // a missing URL counter counts as purged
	}
	if err := decode(it.Value, e, !c.inProcess); err != nil {
		c.onDamaged()
		return PageMissing, t
	}
	verdict := compareGen(e.URLGen, t.urlGen)
	if verdict != invalid && e.NumTags() > 0 {
		v, ok := invalid, false
		if hinted {
			v, ok = hint.check(e, tagItems)
		}
		if !ok { // no hint, or the page's tags changed: one more round trip
			var err error
			if v, err = c.checkTags(e); err != nil {
				// As for any failed operation of the lookup: no fill, no
				// second timeout.
				t.down = true
				return PageMissing, t
			}
			c.rememberTags(base, e)
		}
		verdict = max(verdict, v)
	}
	switch {
	case verdict == invalid:
		return PageMissing, t
	case e.Kind == KindUncacheable:
		if verdict == valid && now < e.FreshUntil {
			return PageUncacheable, t
		}
		return PageMissing, t
	case e.Kind == KindVariants:
		// Usable, soft-purged too, while it lasts: its variants say
		// themselves whether they are fresh. Never under a variant's key.
		if t.primary == "" && now < e.KeepUntil {
			t.vary, t.markerAt = view(e.Body), e.StoredAt
			return PageVariants, t
		}
		return PageMissing, t
	case e.Kind != KindPage:
		return PageMissing, t
	case verdict == valid && now < e.FreshUntil:
		return PageFresh, t
	case now < e.StaleUntil:
		return PageStale, t // past its freshness, or soft-purged
	case now < e.KeepUntil:
		return PageExpired, t // to revalidate, or to serve if the backend fails
	}
	return PageMissing, t
}

// pageKey builds in sc.page the page key: the base key and the namespace.
func (c *Cache) pageKey(sc *Scratch, base []byte, ns uint64) string {
	sc.page = append(append(sc.page[:0], base...), "|n"...)
	sc.page = strconv.AppendUint(sc.page, ns, 10)
	sc.page = c.keys.Fit(sc.page, 0)
	return view(sc.page)
}

// checkTags reads the counters of a page's surrogate keys and returns the
// worst of their verdicts; a counter missing or unreadable is invalid,
// and a store that failed is an error too.
func (c *Cache) checkTags(e *Entry) (validity, error) {
	g := c.gens
	worst := valid
	var keys []string
	var recorded []uint64
	e.Tags(func(tag []byte, gen uint64) bool {
		k := g.TagKey(string(tag))
		if cur, ok := g.cached(k); ok {
			worst = max(worst, compareGen(gen, cur))
		} else {
			keys = append(keys, k)
			recorded = append(recorded, gen)
		}
		return true
	})
	if len(keys) == 0 || worst == invalid {
		return worst, nil
	}
	items := make([]Item, len(keys))
	if err := c.store.GetMulti(keys, items); err != nil {
		c.onStoreError(err)
		return invalid, err
	}
	for i, k := range keys {
		cur, ok := parseCounter(items[i])
		if !ok {
			return invalid, nil
		}
		g.found(k, cur)
		worst = max(worst, compareGen(recorded[i], cur))
	}
	return worst, nil
}

// A tagHint is what the last decode of a page showed of its tags: their
// names and their counters' keys, in the entry's order.
type tagHint struct {
	names []string
	keys  []string
}

// fence returns the hint's tag names and the counters read with the
// page (items, in hint order) when every one was found, for a fill's
// put to record (see Ticket.fencedTags); nil when one was missing, which
// the put creates.
func (h tagHint) fence(items []Item) ([]string, []uint64) {
	if len(items) < len(h.names) {
		return nil, nil
	}
	gens := make([]uint64, len(h.names))
	for i := range h.names {
		v, ok := parseCounter(items[i])
		if !ok {
			return nil, nil
		}
		gens[i] = v
	}
	return h.names, gens
}

// fencedTags returns a fill's tags (names) with the counters the lookup
// read before its request, when it read them all; false otherwise.
func (t *Ticket) fencedTags(names []string) ([]Tag, bool) {
	if len(t.tagNames) == 0 {
		return nil, false
	}
	tags := make([]Tag, 0, len(names))
	for _, n := range names {
		i := slices.Index(t.tagNames, n)
		if i < 0 {
			return nil, false
		}
		tags = append(tags, Tag{Name: n, Gen: t.tagGens[i]})
	}
	return tags, true
}

// maxHints bounds the memory the tag hints hold: 4 MiB, about 13,000
// pages of three tags. A page whose hint was dropped costs one more
// round trip on its next lookup, which brings the hint back.
const maxHints = 4 << 20

// hintCost is what a hint costs in memory under base: its strings, their
// headers and its slices (each 16 and 24 bytes on 64-bit), and 128 bytes
// for otter's node and its share of the tables.
func hintCost(base string, h tagHint) uint32 {
	n := len(base) + 16 + 2*24 + 128
	for i := range h.names {
		n += len(h.names[i]) + len(h.keys[i]) + 2*16
	}
	return uint32(min(n, 1<<31))
}

// check applies the counters fetched with the page (items, in hint order)
// to e's tags; ok is false when e's tags are not the hint's.
func (h tagHint) check(e *Entry, items []Item) (v validity, ok bool) {
	if e.NumTags() != len(h.names) || len(items) < len(h.names) {
		return invalid, false
	}
	i := 0
	ok = true
	e.Tags(func(tag []byte, gen uint64) bool {
		if string(tag) != h.names[i] {
			ok = false
			return false
		}
		cur, found := parseCounter(items[i])
		if !found {
			v = invalid // a missing counter counts as purged
		} else {
			v = max(v, compareGen(gen, cur))
		}
		i++
		return true
	})
	return v, ok
}

// revalidate serves, from the L1, the copy v of the page at base (under
// page, namespace ns) whose bound has passed while the page is still fresh,
// when the counters it recorded are unchanged: the namespace, its URL's
// and its tags' (their keys from the hint), read in one round trip
// without the page, whose value may be large. The copy is then kept for
// another L1TTL. done is false when the copy cannot be checked so (tags
// without a hint, counters kept in process) or a counter moved:
// the caller looks the page up in the store. A store that fails ends the
// request's lookups (StoreDown): one timeout at most.
func (c *Cache) revalidate(page string, v *entryView, ns uint64, base, urlBase []byte, sc *Scratch, e *Entry, now int64) (st State, t Ticket, done bool) {
	// A copy made during an outage (Remember) records no generations: it
	// is never revalidated.
	if c.tagTTL > 0 || v.URLGen == 0 {
		return PageMissing, Ticket{}, false
	}
	var hint tagHint
	if v.nTags > 0 {
		var ok bool
		if hint, ok = c.hints.GetIfPresent(view(base)); !ok || len(hint.names) != v.nTags {
			return PageMissing, Ticket{}, false
		}
	}
	epoch := c.purges.Load()
	g := c.gens
	sc.url = g.AppendURLKey(sc.url[:0], urlBase)
	sc.keys = append(append(sc.keys[:0], g.NSKey(), view(sc.url)), hint.keys...)
	sc.items = slices.Grow(sc.items[:0], len(sc.keys))[:len(sc.keys)]
	defer clear(sc.items) // do not keep values alive in the pool
	if err := c.store.GetMulti(sc.keys, sc.items); err != nil {
		c.onStoreError(err)
		return PageMissing, Ticket{page: page, url: view(sc.url), down: true, epoch: epoch}, true
	}
	e.aliasOf(v)
	nsCur, nsOK := parseCounter(sc.items[0])
	urlCur, urlOK := parseCounter(sc.items[1])
	if !nsOK || nsCur != ns || !urlOK || compareGen(e.URLGen, urlCur) != valid {
		c.l1.forget(page) // purged: the store's lookup says what is there
		return PageMissing, Ticket{}, false
	}
	if v.nTags > 0 {
		if verdict, ok := hint.check(e, sc.items[2:]); !ok || verdict != valid {
			c.l1.forget(page)
			return PageMissing, Ticket{}, false
		}
	}
	c.l1.extend(page, v, now)
	if c.purges.Load() != epoch {
		c.l1.forget(page) // a purge through this Cache came meanwhile
		return PageMissing, Ticket{}, false
	}
	return PageFresh, Ticket{page: page, l1: true}, true
}

// rememberTags keeps a page's tags as a hint for its next lookups. Not
// used with TagCacheTTL, where counters are read locally anyway.
func (c *Cache) rememberTags(base []byte, e *Entry) {
	names := make([]string, 0, e.NumTags())
	e.Tags(func(tag []byte, _ uint64) bool {
		names = append(names, string(tag))
		return true
	})
	c.keepHint(string(base), names)
}

// keepHint keeps, under base (a string of its own), the hint of a page
// whose tags are names (strings of their own), in the order it stores
// them. Not with TagCacheTTL, where counters are read locally anyway.
func (c *Cache) keepHint(base string, names []string) {
	if c.tagTTL > 0 || c.hints == nil {
		return
	}
	h := tagHint{names: names, keys: make([]string, len(names))}
	for i, n := range names {
		h.keys[i] = c.gens.TagKey(n)
	}
	c.hints.Set(base, h)
}

// put stores the page under the ticket's key for its freshness and grace,
// recording the fence's URL generation and its tags' counters: those the
// lookup read, which fence the fill as the URL's does (a purge by key
// since makes the page stale or invalid). Otherwise, on an AddGetSetter
// (memcached), the values reads found before the fence (seenBefore), or
// new values for counters not seen, which the write's round trip creates
// where missing and checks (see tagChecks); else, or when a check fails,
// their current values, read with the purge sequence, which must not
// have moved since the fence.
func (f *envelopeFormat) put(t *Ticket, fl *Fill) (Reason, []byte) {
	c := f.c
	if len(fl.Headers) > maxHeaders {
		return ReasonHeaders, nil
	}
	page := fillPage(fl, t.urlGen)
	ags, _ := c.store.(AddGetSetter)
	var checks []counterCheck
	if tags, ok := t.fencedTags(fl.Tags); ok {
		page.Tags = tags
	} else if len(fl.Tags) > 0 && ags != nil {
		page.Tags, checks = f.tagChecks(t, fl.Tags)
	} else if len(fl.Tags) > 0 {
		var r Reason
		if page.Tags, r = f.readTags(t, fl.Tags); r != Storable {
			return r, nil
		}
	}
	// A URL counter the fence left to be created: with an AddGetSetter
	// the page is written in the same round trip (see settleSet), else
	// once the counter is settled.
	if t.urlNew && ags == nil {
		if r := c.settle(t); r != Storable {
			return r, nil
		}
	}
	// One allocation, of the envelope's size rounded up to its size
	// class (slices.Grow's capacity): the memory store charges it whole.
	env, err := Encode(slices.Grow([]byte(nil), EncodedLen(&page)), &page)
	if err != nil {
		return ReasonHeaders, nil
	}
	ttl := fl.TTL - fl.Age + max(fl.Keep, fl.Grace, fl.ErrorGrace)
	if t.urlNew || len(checks) > 0 {
		r, moved := c.settleSet(ags, t, checks, env, ttl)
		switch {
		case r != Storable:
			return r, nil
		case !moved:
			return Storable, env
		}
		// A counter moved since it was seen, or another fill created it
		// first: what was written is never served. Read the tags as the
		// fill would without seen values, and write the page again.
		if page.Tags, r = f.readTags(t, fl.Tags); r != Storable {
			return r, nil
		}
		if env, err = Encode(slices.Grow([]byte(nil), EncodedLen(&page)), &page); err != nil {
			return ReasonHeaders, nil
		}
	}
	if err := c.store.Set(t.page, Item{Value: env}, ttl); err != nil {
		return storeReason(err), nil
	}
	return Storable, env
}

// tagChecks returns the tags a fill records without reading their
// counters first, and the checks its write makes (see settleSet): for
// each tag, the value a read found before t's fence, which the counter
// must hold still, else a new counter value, which the write's round
// trip creates the counter with and which it must then hold (whoever
// created it first decides).
func (f *envelopeFormat) tagChecks(t *Ticket, names []string) ([]Tag, []counterCheck) {
	g := f.c.gens
	tags := make([]Tag, len(names))
	checks := make([]counterCheck, len(names))
	for i, n := range names {
		k := g.TagKey(n)
		v, ok := g.seenBefore(k, t.mark)
		if !ok {
			v = newCounter()
		}
		tags[i] = Tag{Name: n, Gen: v}
		checks[i] = counterCheck{key: k, want: v, add: !ok}
	}
	return tags, checks
}

// readTags returns a fill's tags with their counters' current values,
// read with the purge sequence, and the URL counter when the fence left
// it to be created (see settle), in one round trip: ReasonPurged when the
// sequence (or the URL counter) moved since the fence, as a purge by key
// may have overtaken the fill.
func (f *envelopeFormat) readTags(t *Ticket, names []string) ([]Tag, Reason) {
	c := f.c
	g := c.gens
	n := 1 + len(names)
	urlAt := -1
	if t.urlNew {
		urlAt, n = n, n+1
	}
	keys := make([]string, n)
	fence := make([]uint64, n)
	after := make([]uint64, n)
	keys[0] = g.SeqKey()
	for i, tag := range names {
		keys[i+1] = g.TagKey(tag)
	}
	if urlAt >= 0 {
		keys[urlAt], fence[urlAt] = t.url, t.urlGen
	}
	if err := g.Read(keys, fence, after); err != nil {
		c.onStoreError(err)
		return nil, ReasonStoreError
	}
	if after[0] != t.seq || urlAt >= 0 && after[urlAt] != t.urlGen {
		return nil, ReasonPurged
	}
	t.urlNew = false
	tags := make([]Tag, 0, len(names))
	for i, tag := range names {
		tags = append(tags, Tag{Name: tag, Gen: after[i+1]})
	}
	return tags, Storable
}

func (f *envelopeFormat) markUncacheable(t *Ticket, now time.Time, ttl time.Duration) {
	if f.c.settle(t) != Storable {
		return
	}
	until := now.Add(ttl).UnixMilli()
	page := Page{Kind: KindUncacheable, Status: 200, StoredAt: now.UnixMilli(), URLGen: t.urlGen,
		FreshUntil: until, StaleUntil: until}
	env, _ := Encode(nil, &page)
	if err := f.c.store.Set(t.page, Item{Value: env}, ttl); err != nil {
		f.c.onStoreError(err)
	}
}

func (f *envelopeFormat) purgeURL(_ []byte, urlKey string, soft bool) error {
	return f.c.gens.Bump(urlKey, soft)
}
