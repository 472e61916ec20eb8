package pagecache

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
)

// Cache finds and stores pages over a Store so that no purge is lost.
// Cache is safe for concurrent use. One request follows this protocol:
//
//  1. Lookup reads, in one round trip, the page under the base key and the
//     current namespace, the counters of its URL and the purge sequence,
//     and, speculatively, the counters of the tags the page carried when
//     last seen (the tag hint). A page whose tags are not the hint's costs
//     one more round trip. The page is PageFresh, PageStale (past its
//     freshness, or soft-purged, within grace), PageExpired (past grace,
//     kept to revalidate or to serve when the backend fails),
//     PageUncacheable (a marker: forward, do not fill), PageVariants (a
//     marker naming the request headers the page varies on: see step 1b)
//     or PageMissing. A counter that is missing counts as purged. When an
//     operation fails, the Ticket says so (StoreDown) and the request
//     asks the store nothing more: one timeout at most.
//     1b. LookupVariant, after PageVariants, reads the variant the
//     request's values of those headers select (one more round trip, only
//     for URLs that vary). A variant is a page under a key of its own but
//     with its URL's counter: a purge by URL, key or all reaches every
//     variant. AdmitVariant bounds the variants of a URL
//     (CacheOptions.MaxVariants) before one more is filled.
//  2. Fence, before the fill request is sent, makes sure the Ticket holds
//     the purge sequence and the URL counter (the lookup's values, or
//     read now). They are the fence: the page records that URL
//     generation, so a purge by URL after it makes the page invalid.
//  3. Put, after the answer came, records the counters of the page's
//     tags. When the lookup read them all with the page (its tags as last
//     seen, a known URL's), they were read before the fill's request and
//     fence it as the URL counter does: a purge by key since makes the
//     page stale or invalid, and Put writes it in one round trip.
//     Otherwise, on an AddGetSetter (memcached), the page records for
//     each tag the counter a read of this Cache found before the fence
//     (generations.seenBefore), or a new value, and is written in the
//     round trip that reads those counters, creating the missing ones
//     with the new values (see settleSet): a counter holding what the
//     page records was not purged since the fence. When one does not,
//     the page written is never valid, and Put goes on as on other
//     stores: it reads the counters now, together with the purge
//     sequence; if the sequence moved, a purge by key may have
//     overtaken the fill and nothing is stored. The page is written for
//     its freshness plus grace. A URL counter the fence left to be
//     created is created, on an AddGetSetter, in the round trip that
//     writes the page, with the fence's value, and read back: when a
//     purge or another instance created it first, the page written
//     records a generation the counter never holds, so it is never
//     served, and Put reports ReasonPurged.
//     An answer that varies (Decision.Vary) is stored under Variant's
//     ticket, for the values its request carried, after PutVariants wrote
//     the marker (when the lookup found none, or another).
//  4. MarkUncacheable, when the answer may not be stored, writes a marker
//     under the page key so the next visitors go straight to the backend
//     for a while; a purge of the URL clears it like a page.
//  5. PurgeURL bumps the URL's counter, PurgeKey the purge sequence and
//     then a tag's counter (in that order, so a Put between the two sees
//     the sequence moved), PurgeAll the namespace every page key
//     includes. A soft purge changes a counter's low half: pages become
//     stale. A hard purge changes the high half: pages become unusable.
//
// In format raw (CacheOptions.Raw) values are page bodies alone, as
// another program writes them: there is no namespace, no tags and no
// marker. A raw fill is fenced by the URL counter only: Put writes the
// body, then reads the counter again and deletes the body if it moved;
// PurgeURL bumps the counter, then deletes the body. Whichever order the
// two run in, the purged page is gone once both are done.
type Cache struct {
	store  Store
	keys   *KeyTemplate
	gens   *generations
	format format
	ns     atomic.Uint64 // the namespace last seen; 0 before the first
	hints  *otter.Cache[string, tagHint]
	l1     *l1 // nil when off; the front of an in-process store when front is set
	// front is the in-process store whose pages l1 keeps decoded (see
	// CacheOptions.Front); nil otherwise.
	front *Memory
	// outage keeps the pages fills made while the store failed (see
	// Remember): the L1 when there is one, else a tier of its own
	// (CacheOptions.OutageL1Size); nil when off.
	outage *l1
	// purges counts purges made through this Cache, so that a lookup
	// that raced one does not put back in a tier what it dropped.
	purges atomic.Uint64
	// tagTTL > 0: counters are kept in process, hints are not needed.
	tagTTL       time.Duration
	onStoreError func(error)
	onDamaged    func()
	// variants counts, per marker, the variants filled here (see
	// AdmitVariant); maxVariants bounds them.
	variants    *otter.Cache[string, *variantSet]
	maxVariants int
	inProcess   bool // CacheOptions.InProcess
}

// DefaultPrefix starts the generation counters' keys when
// CacheOptions.Prefix is empty.
const DefaultPrefix = "ur:"

// CacheOptions configures a Cache. Store and Keys are required.
type CacheOptions struct {
	Store Store
	// InProcess says that Store keeps its values in this process (the
	// Memory store: what Get returns is what Set was given, never through
	// a network or another program): a page found there is not checksummed
	// again on each hit, whose cost then does not grow with the page, and
	// what Put stores is a copy of Fill.Body (format raw). A Store with
	// an InProcess method that reports true is taken as one.
	InProcess bool
	// Keys is the template base keys are built with: Cache fits page keys
	// to it and builds the keys of URLs to purge.
	Keys *KeyTemplate
	// Prefix starts the generation counters' keys. Default "ur:".
	Prefix string
	// TagCacheTTL, when above 0, keeps generation counters in process
	// that long: hits skip reading them, and a purge may take that long to
	// reach every instance.
	TagCacheTTL time.Duration
	// Raw selects format raw: values are page bodies alone.
	Raw bool
	// RawGzipFlag, in format raw, is the flag bit marking a gzipped value
	// (as nginx's memcached_gzip_flag); 0 stores only unencoded bodies.
	RawGzipFlag uint32
	// OnStoreError, when set, is told of each store failure the caller
	// cannot see in a result (it is served from the backend instead).
	OnStoreError func(error)
	// OnDamaged, when set, is told of each stored value that cannot be
	// read: damaged, of another version, a pickle.
	OnDamaged func()
	// L1Size, when above 0, keeps that many bytes of fresh pages in
	// process in front of the store (envelope format only); L1TTL bounds
	// how long a copy is served after the store last showed it valid: a
	// purge through another instance reaches this one within L1TTL.
	// Default L1TTL DefaultL1TTL.
	L1Size int64
	L1TTL  time.Duration
	// OutageL1Size, when above 0 and L1Size is 0, is the size of an
	// in-process tier that only outages use: a fill made while the store
	// fails keeps its page there (Remember) for L1TTL at most, never past
	// its freshness, and a lookup that finds the store failing is served
	// from it. With an L1, the L1 itself plays that part. Envelope format
	// only. The daemon's default is DefaultOutageL1Size.
	OutageL1Size int64
	// Front, the Memory store that Store is or wraps, keeps decoded
	// copies of its fresh pages in process without an L1 (L1Size 0):
	// a hit then costs one lookup in the copies, none of the store's
	// counters and no decode. The copies are exact, not bounded by a
	// TTL: Front tells the Cache of every value it replaces, deletes,
	// evicts or expires, and every purge goes through this process. They
	// alias the store's values and hold at most FrontSize(the store's
	// MaxBytes) bytes of their own. Envelope format only.
	Front *Memory
	// MaxVariants bounds the variants of one URL this process fills while
	// its variants marker lasts (see AdmitVariant). Default
	// DefaultMaxVariants.
	MaxVariants int
}

// DefaultL1TTL is what a zero CacheOptions.L1TTL means.
const DefaultL1TTL = time.Second

// FrontSize is what the copies of a memory store of maxBytes (0: the
// default size) may hold besides its values: a sixteenth of it, between
// 1 and 64 MiB (see CacheOptions.Front).
func FrontSize(maxBytes int64) int64 {
	return min(max(cmp.Or(maxBytes, DefaultMemorySize)/16, 1<<20), 64<<20)
}

// DefaultOutageL1Size is the daemon's cache.outage_l1_size: room for a
// few hundred pages of the usual size while the store is down.
const DefaultOutageL1Size = 16 << 20

// State is what Lookup found.
type State uint8

const (
	PageMissing     State = iota // nothing usable: fill
	PageFresh                    // serve
	PageStale                    // serve, and refresh in the background
	PageUncacheable              // a marker: forward without filling
	// PageExpired: past freshness and grace, kept to be revalidated with a
	// conditional fill (the Entry has its validators) and, until its
	// ErrorUntil, to be served when the backend fails (stale-if-error).
	PageExpired
	// PageVariants: a marker naming the request headers the page varies
	// on (Ticket.Vary); LookupVariant finds the variant the request selects.
	PageVariants
)

// A Ticket names a page in the store (its key, namespace included, and
// its URL counter's) and carries the fence a fill stores under. A Ticket
// from Lookup aliases the Scratch until cloned.
type Ticket struct {
	page, url string
	// base is the primary base key (the template's, for a variant too)
	// and ns the namespace the page key has.
	base string
	ns   uint64
	// A variant's ticket: primary is the page key of its URL's marker,
	// vary the marker's header names and markerAt its StoredAt. vary is
	// also set on the primary's ticket when the lookup found a marker.
	primary, vary string
	markerAt      int64
	// The purge sequence and URL counter as the lookup read them (or
	// Fence, later); known says which were read.
	seq, urlGen        uint64
	seqKnown, urlKnown bool
	// urlMissing: the lookup read the URL counter and found none.
	// urlNew: so the fence left it to the first write under the ticket,
	// which creates it with urlGen (see settle).
	urlMissing, urlNew bool
	// down: an operation of the lookup failed; the request asks the store
	// nothing more.
	down bool
	// l1: the page came from the in-process tier, not the store;
	// outage: from the outage tier, after the store failed.
	l1, outage bool
	// epoch is Cache.purges when the lookup began: a fill stored after a
	// purge through this Cache since then is not copied to the L1.
	epoch uint64
	// at is when the lookup read the counters (Unix milliseconds): the
	// L1's copy of a fill lasts L1TTL from then, the last time the store
	// showed them, not from the answer.
	at int64
	// private: a private copy (LookupPrivate), never copied to the L1.
	private bool
	// mark is the counters' mark (generations.mark) Fence took: counter
	// values seen before it were read before the fill's request.
	mark uint64
	// tagNames are the surrogate keys the page had when the lookup read
	// their counters with it (its hint's), and tagGens those counters:
	// read before the fill's request, they fence a fill that names the
	// same keys as the URL counter does (see put). Set only when the
	// lookup found no fresh page and read every counter.
	tagNames []string
	tagGens  []uint64
}

// FromL1 reports whether Lookup found the page in the in-process tier
// (CacheOptions.L1Size) without asking the store.
func (t *Ticket) FromL1() bool { return t.l1 }

// FromOutage reports whether Lookup found the store failing and served
// the page from the copy a fill made during the outage (see Remember).
func (t *Ticket) FromOutage() bool { return t.outage }

// Key is the page's key in the store. Until the Ticket is cloned it
// aliases the lookup's Scratch, which the next lookup rewrites: copy it
// (strings.Clone) to keep it, as a map key above all.
func (t *Ticket) Key() string { return t.page }

// StoreDown reports whether an operation of the lookup failed: the
// request should be forwarded without a fill, asking the store nothing
// more, so it costs one store timeout at most.
func (t *Ticket) StoreDown() bool { return t.down }

// Vary is what the marker the lookup found lists: the request headers
// the page varies on, lower case, sorted, joined by commas; "" when the
// URL has no marker.
func (t *Ticket) Vary() string { return t.vary }

// Clone copies the ticket out of the Scratch it aliases.
func (t Ticket) Clone() Ticket {
	t.page, t.url, t.base = strings.Clone(t.page), strings.Clone(t.url), strings.Clone(t.base)
	t.primary, t.vary = strings.Clone(t.primary), strings.Clone(t.vary)
	return t
}

// Scratch is working memory for Lookup, reused by the caller across
// requests (pool it). The zero value is ready to use.
type Scratch struct {
	page []byte // the page key: base key and namespace
	// private is a private copy's base key (LookupPrivate).
	private []byte
	url     []byte // the URL counter's key
	keys    []string
	items   []Item
	// A variant's base and page keys (LookupVariant), the primary's
	// staying, and the header names of the marker Lookup found.
	vbase, vpage, vary []byte
	// lent is memory lent for the next lookup's values (LendValues);
	// lentUsed: values found may alias it.
	lent     []byte
	lentUsed bool
}

// LendValues lends b (from its length up to its capacity) to the next
// Lookup, LookupURL or LookupPrivate through sc, once: on a store that is
// a BufferedGetter (memcached) the values it reads are put there rather
// than in new allocations. Then the Entry, and a ticket's key, may alias
// b: when LentUsed reports true, do not
// reuse b before the response made from the entry is written. What a
// Cache keeps beyond the lookup (the L1's copy) is copied out of b. A
// lookup that does not use b forgets it all the same.
func (sc *Scratch) LendValues(b []byte) { sc.lent, sc.lentUsed = b, false }

// LentUsed reports whether the last lookup put values in memory lent with
// LendValues.
func (sc *Scratch) LentUsed() bool { return sc.lentUsed }

// A Fill is an answer to store.
type Fill struct {
	Status int
	// Headers are the response headers to keep; more than 64 is
	// ReasonHeaders.
	Headers []Header
	// Body is not kept once Put returns (the caller may reuse it): what
	// the store keeps is a copy.
	Body []byte
	// ContentEncoding is the answer's; format raw stores gzip (with
	// RawGzipFlag) and unencoded bodies only.
	ContentEncoding []byte
	// Tags are the answer's surrogate keys.
	Tags       []string
	StoredAt   time.Time
	TTL, Grace time.Duration
	// Age is how old the answer already was when it came
	// (Decision.Age): its freshness is TTL - Age from StoredAt.
	Age time.Duration
	// ErrorGrace and Keep are Decision's: how long past freshness it may
	// be served when the backend fails, and how long it is kept.
	ErrorGrace, Keep time.Duration
}

// ErrUnkeyable: the URL to purge has no key (too many query parameters),
// so it is never cached.
var ErrUnkeyable = errors.New("pagecache: the URL has more than 64 query parameters: it is never cached")

// ErrURLOnly: format raw keeps no tags or namespace to purge.
var ErrURLOnly = errors.New("pagecache: format raw keeps no tags or namespace: only URLs can be purged")

// A format is how pages are kept: envelopes, or raw bodies.
type format interface {
	lookup(base, urlBase []byte, sc *Scratch, e *Entry, now int64) (State, Ticket)
	put(t *Ticket, f *Fill) (Reason, []byte)
	markUncacheable(t *Ticket, now time.Time, ttl time.Duration)
	purgeURL(base []byte, urlKey string, soft bool) error
	keepsTags() bool
}

// NewCache returns a Cache for o.
func NewCache(o CacheOptions) (*Cache, error) {
	if o.Store == nil || o.Keys == nil {
		return nil, errors.New("pagecache: a cache needs a store and a key template")
	}
	prefix := cmp.Or(o.Prefix, DefaultPrefix)
	gens, err := newGenerations(o.Store, prefix, o.TagCacheTTL)
	if err != nil {
		return nil, err
	}
	ip, _ := o.Store.(interface{ InProcess() bool })
	c := &Cache{store: o.Store, inProcess: o.InProcess || ip != nil && ip.InProcess(), keys: o.Keys, gens: gens, tagTTL: o.TagCacheTTL,
		onStoreError: o.OnStoreError, onDamaged: o.OnDamaged}
	if c.onStoreError == nil {
		c.onStoreError = func(error) {}
	}
	if c.onDamaged == nil {
		c.onDamaged = func() {}
	}
	if o.Raw {
		c.format = &rawFormat{c: c, gzipFlag: o.RawGzipFlag}
	} else {
		c.format = &envelopeFormat{c: c}
		if c.hints, err = otter.New(&otter.Options[string, tagHint]{MaximumWeight: maxHints, Weigher: hintCost}); err != nil {
			return nil, err
		}
		ttl := cmp.Or(o.L1TTL, DefaultL1TTL)
		if o.L1Size > 0 {
			if c.l1, err = newL1(o.L1Size, ttl); err != nil {
				return nil, err
			}
			c.outage = c.l1
		} else {
			if o.OutageL1Size > 0 {
				if c.outage, err = newL1(o.OutageL1Size, ttl); err != nil {
					return nil, err
				}
			}
			if o.Front != nil {
				if c.l1, err = newFront(FrontSize(o.Front.opts.MaxBytes)); err != nil {
					return nil, err
				}
				c.front = o.Front
				o.Front.watch(c.storeChanged)
			}
		}
		c.maxVariants = cmp.Or(o.MaxVariants, DefaultMaxVariants)
		if c.variants, err = otter.New(&otter.Options[string, *variantSet]{MaximumSize: 100_000}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Lookup finds the page under base, the key the template built for the
// request, and decodes it into e (whose slices then alias the stored
// value). sc is the request's working memory: the Ticket aliases it until
// cloned. It does not allocate for an ordinary hit.
func (c *Cache) Lookup(base []byte, sc *Scratch, e *Entry, now time.Time) (State, Ticket) {
	return c.LookupURL(base, base, sc, e, now)
}

// LookupURL is Lookup for a key whose URL counter, the one a purge by URL
// changes, is that of urlBase, the key of the page's URL without the
// parts a purge cannot know: KeyTemplate.AppendURLBase, when the template
// has {cookie:Name} parts, so that purging the URL reaches the page of
// every cookie value.
func (c *Cache) LookupURL(base, urlBase []byte, sc *Scratch, e *Entry, now time.Time) (State, Ticket) {
	ms := now.UnixMilli()
	if c.l1 != nil {
		if ns := c.ns.Load(); ns != 0 {
			page := c.pageKey(sc, base, ns)
			served, due := c.l1.find(page, e, ms)
			if served {
				sc.lent = nil // lent to this lookup only (see LendValues)
				return PageFresh, Ticket{page: page, l1: c.front == nil}
			}
			if due != nil && c.front == nil {
				if st, t, done := c.revalidate(page, due, ns, base, urlBase, sc, e, ms); done {
					sc.lent = nil
					return st, t
				}
			}
		}
	}
	epoch := c.purges.Load()
	state, t := c.format.lookup(base, urlBase, sc, e, ms)
	t.epoch, t.at = epoch, ms
	if t.down && c.outage != nil && c.outage.lookup(t.page, e, ms) {
		// The store failed: a page a fill made during the outage.
		return PageFresh, Ticket{page: t.page, l1: true, outage: true, down: true, epoch: epoch}
	}
	if state == PageFresh && c.l1 != nil && c.purges.Load() == epoch {
		page := strings.Clone(t.page)
		v := e.value
		if sc.lentUsed {
			v = bytes.Clone(v) // the caller reuses lent memory
		}
		c.l1.remember(page, v, ms)
		if c.purges.Load() != epoch || !c.frontHolds(page, v) {
			c.l1.forget(page) // a purge or a new value came between the check and the copy
		}
	}
	return state, t
}

// LookupPrivate is Lookup for a private copy of the page under base: the
// one kept for a single holder of a credential, under base followed by
// private (a keyed hash of the credential, never the credential itself).
// The copy records the generation of the URL counter of urlBase (base
// itself, or what LookupURL takes for it), so a purge of the URL removes
// every private copy of it, and its own surrogate keys, so a purge
// by key removes those tagged. Private copies are never kept in the L1
// tier (a purge of the URL could not find them there), and do not vary:
// the caller stores no answer that does. Format raw has no generations to
// record: the caller keeps no private copies there. It does not allocate
// for an ordinary hit.
func (c *Cache) LookupPrivate(base, urlBase, private []byte, sc *Scratch, e *Entry, now time.Time) (State, Ticket) {
	sc.private = append(append(sc.private[:0], base...), private...)
	epoch := c.purges.Load()
	state, t := c.format.lookup(sc.private, urlBase, sc, e, now.UnixMilli())
	t.epoch, t.private = epoch, true
	return state, t
}

// Fence makes t hold the purge sequence and the URL counter the fill
// stores its page under; call it before sending the fill request. The
// lookup's values are kept when it read them (older is safe: a purge since
// then only keeps the page from being stored); a missing purge sequence is
// created now. A URL counter the lookup found missing (a URL never filled,
// or its counter lost) costs no operation here: the fence is a new counter value, which
// the first write under the ticket creates the counter with, in the round
// trip it makes anyway (see settle). A purge by URL in between creates
// the counter with another value, and nothing is stored.
func (c *Cache) Fence(t *Ticket) error {
	g := c.gens
	t.mark = g.mark()
	if !t.seqKnown {
		v, err := g.create(g.SeqKey())
		if err != nil {
			return err
		}
		g.remember(g.SeqKey(), v)
		t.seq, t.seqKnown = v, true
	}
	switch {
	case !t.urlKnown && t.urlMissing:
		t.urlGen, t.urlKnown, t.urlNew = newCounter(), true, true
	case !t.urlKnown:
		// Not read by the lookup (format raw): read it, creating it.
		v, err := g.create(t.url)
		if err != nil {
			return err
		}
		g.remember(t.url, v)
		t.urlGen, t.urlKnown = v, true
	}
	return nil
}

// settle creates the URL counter a fence left to the first write (see
// Fence) with the fence's value, and reports whether the counter holds
// that value: ReasonPurged when a purge (or another instance's fill)
// created it first, ReasonStoreError when the store failed.
func (c *Cache) settle(t *Ticket) Reason {
	if !t.urlNew {
		return Storable
	}
	keys := [1]string{t.url}
	fence := [1]uint64{t.urlGen}
	var got [1]uint64
	if err := c.gens.Read(keys[:], fence[:], got[:]); err != nil {
		c.onStoreError(err)
		return ReasonStoreError
	}
	if got[0] != t.urlGen {
		return ReasonPurged
	}
	t.urlNew = false
	return Storable
}

// A counterCheck is a counter a page is written with, in the round trip
// that reads it (settleSet): the page records want; add says the counter
// is to be created with want when missing.
type counterCheck struct {
	key  string
	want uint64
	add  bool
}

// settleBufs are a settleSet's keys, adds and items for up to eight
// counters, pooled: a store's method would make arrays on the stack
// escape.
type settleBufs struct {
	keys        [8]string
	adds, items [8]Item
}

var settleBufsPool = sync.Pool{New: func() any { return new(settleBufs) }}

// release clears b, which must not keep values alive, and pools it.
func (b *settleBufs) release() {
	*b = settleBufs{}
	settleBufsPool.Put(b)
}

// settleSet is settle and the write of value under t's page key in one
// round trip of s, which also reads the counters in checks (creating
// those marked add). value must record the fence as its URL generation,
// and each check's want: when a purge (or another instance's fill)
// created the URL counter first, with another value, what was written is
// invalid to every lookup (compareGen) and never served, and settleSet
// reports ReasonPurged as settle would. When a check's counter does not
// hold its want, the value written is as good as purged too (no lookup
// finds it valid), and moved is true: the caller may read the tags again
// and write the page once more. The value is not deleted then: the
// counters never come back to what it records (they only move by purges'
// steps from a random start), so the next lookup of the URL misses and
// its fill overwrites it; a delete would cost the request one more
// operation, and could remove the page the winner of the add stored in
// between.
func (c *Cache) settleSet(s AddGetSetter, t *Ticket, checks []counterCheck, value []byte, ttl time.Duration) (r Reason, moved bool) {
	n := len(checks)
	if t.urlNew {
		n++
	}
	b := settleBufsPool.Get().(*settleBufs)
	defer b.release()
	keys, adds, items := b.keys[:0], b.adds[:0], b.items[:0]
	if n > len(b.keys) {
		keys, adds, items = make([]string, 0, n), make([]Item, 0, n), make([]Item, 0, n)
	}
	keys, adds, items = keys[:n], adds[:n], items[:n]
	for i, ch := range checks {
		keys[i] = ch.key
		if ch.add {
			adds[i].Value = strconv.AppendUint(nil, ch.want, 10)
		}
	}
	if t.urlNew {
		keys[n-1], adds[n-1].Value = t.url, strconv.AppendUint(nil, t.urlGen, 10)
	}
	err := s.AddGetSet(keys, adds, items, t.page, Item{Value: value}, ttl)
	for i, ch := range checks {
		v, ok := parseCounter(items[i])
		if ok {
			c.gens.found(ch.key, v)
		}
		moved = moved || !ok || v != ch.want
	}
	if t.urlNew {
		// Gone at once after its add, it reads as created and lost, as
		// in Read: the page just written is never served while it is.
		// Of an exchange that failed, only what it read is known.
		added := t.urlGen
		if err != nil {
			added = 0
		}
		v, ok, held := readAfterAdd(items[n-1], added)
		if held {
			c.gens.found(t.url, v)
		}
		switch {
		case ok && v != t.urlGen:
			return ReasonPurged, false
		case !ok && err == nil:
			c.onStoreError(fmt.Errorf("pagecache: counter %q holds %q after its add, not a number", t.url, items[n-1].Value))
			return ReasonStoreError, false
		}
	}
	switch {
	case errors.Is(err, ErrTooLarge):
		return ReasonTooLarge, false
	case err != nil:
		c.onStoreError(err)
		return ReasonStoreError, false
	}
	t.urlNew = false
	return Storable, moved
}

// Put stores an answer under a fenced ticket; it returns Storable and the
// stored value (nil in format raw), or why it stored nothing.
func (c *Cache) Put(t *Ticket, f *Fill) (Reason, []byte) {
	if !t.seqKnown || !t.urlKnown {
		return ReasonStoreError, nil // not fenced
	}
	reason, env := c.format.put(t, f)
	if reason == Storable && len(f.Tags) > 0 && t.primary == "" && !slices.Equal(t.tagNames, f.Tags) {
		// The page's tags as stored, unless the lookup's hint had them
		// already: its next lookup reads their counters with it, and its
		// L1 copy can be revalidated without it.
		// The fill's strings may alias its answer's memory: copied.
		names := make([]string, len(f.Tags))
		for i, n := range f.Tags {
			names[i] = strings.Clone(n)
		}
		c.keepHint(strings.Clone(t.base), names)
	}
	// Variants are not copied: their lookup (LookupVariant) always asks
	// the store, through the URL's marker.
	if reason == Storable && c.l1 != nil && t.primary == "" && !t.private && c.purges.Load() == t.epoch {
		at := f.StoredAt.UnixMilli()
		if t.at != 0 {
			at = min(at, t.at)
		}
		c.l1.remember(strings.Clone(t.page), env, at)
		if c.purges.Load() != t.epoch || !c.frontHolds(t.page, env) {
			c.l1.forget(t.page)
		}
	}
	return reason, env
}

// Remember encodes an answer that could not be stored because the store
// failed (t.StoreDown) and returns the value, for the requests that waited
// for the fill to be served (decode it with Decode); the page is kept in
// the outage tier (CacheOptions.OutageL1Size, or the L1) for L1TTL at most
// and never past its freshness, where Lookup finds it while the store
// keeps failing. It returns nil when a purge through this Cache came after
// the lookup that found the store failing (the answer may predate it), or
// when the page cannot be encoded. Remember asks the store nothing: the
// value has no URL generation nor tags, and a purge through this Cache
// drops every copy.
func (c *Cache) Remember(t *Ticket, f *Fill) []byte {
	if c.purges.Load() != t.epoch {
		return nil
	}
	page := fillPage(f, 0)
	env, err := Encode(slices.Grow([]byte(nil), EncodedLen(&page)), &page)
	if err != nil {
		return nil
	}
	// A private copy (LookupPrivate) is never kept in process: a purge by
	// URL could not find it there, and its credential's bound would not
	// count it. Its waiters, who share its credential, still get env.
	if c.outage != nil && t.primary == "" && !t.private {
		c.outage.remember(strings.Clone(t.page), env, f.StoredAt.UnixMilli())
		if c.purges.Load() != t.epoch {
			c.outage.forget(t.page) // a purge came between the check and the copy
			return nil
		}
	}
	return env
}

// fillPage is the page a Fill stores: times count from the answer's birth
// (StoredAt less Age), so that a hit's Age is then now - StoredAt.
func fillPage(fl *Fill, urlGen uint64) Page {
	born := fl.StoredAt.Add(-fl.Age)
	return Page{
		Kind:       KindPage,
		Status:     fl.Status,
		StoredAt:   born.UnixMilli(),
		FreshUntil: born.Add(fl.TTL).UnixMilli(),
		StaleUntil: born.Add(fl.TTL + fl.Grace).UnixMilli(),
		ErrorUntil: born.Add(fl.TTL + fl.ErrorGrace).UnixMilli(),
		KeepUntil:  born.Add(fl.TTL + max(fl.Keep, fl.Grace, fl.ErrorGrace)).UnixMilli(),
		URLGen:     urlGen,
		Headers:    fl.Headers,
		Body:       fl.Body,
	}
}

// frontHolds reports whether the in-process store holds value itself
// under page, as the copy just made of it says, or there is no front.
// With the store's word that it replaced or dropped the value
// (storeChanged), it makes every copy exact whatever the order of the two:
// a copy made before the value went is dropped by storeChanged, one made
// after it fails this check.
func (c *Cache) frontHolds(page string, value []byte) bool {
	return c.front == nil || c.front.holds(page, value)
}

// storeChanged hears from the front's store that the value under key
// went (see Memory.watch): the page's copy goes, or every copy when key
// is a counter, which a purge through another Cache on the same store
// (the one a reload replaced) bumps.
func (c *Cache) storeChanged(key string) {
	if c.gens.isCounter(key) {
		c.forgetLocal("")
		return
	}
	c.l1.forget(key)
}

// forgetLocal counts a purge made through this Cache and drops the
// in-process copies it reaches: the URL's page (page not "") or all. It
// runs whether the store took the purge or not: a purge that failed in
// the store still reaches what this process serves.
func (c *Cache) forgetLocal(page string) {
	if c.l1 == nil && c.outage == nil {
		return
	}
	c.purges.Add(1) // before the copies go: see Lookup
	for _, tier := range []*l1{c.l1, c.outage} {
		switch {
		case tier == nil:
		case page == "":
			tier.clear()
		default:
			tier.forget(page)
		}
	}
}

// MarkUncacheable leaves a marker, for ttl, so the next visitors of the
// page go straight to the backend, like Varnish's hit-for-pass; t must be
// fenced. A no-op in format raw, where another program owns the keys.
func (c *Cache) MarkUncacheable(t *Ticket, now time.Time, ttl time.Duration) {
	if t.urlKnown {
		c.format.markUncacheable(t, now, ttl)
	}
}

// KeepsTags reports whether pages keep surrogate keys and the namespace,
// so that they can be purged by key and all; false in format raw, where
// an answer with tags is not stored (ReasonTags).
func (c *Cache) KeepsTags() bool { return c.format.keepsTags() }

// PurgeURL purges the page built from in, under both schemes when the
// key has {scheme}; in.Scheme is overwritten. It returns ErrUnkeyable for
// a URL that has no key.
func (c *Cache) PurgeURL(in *KeyInput, soft bool) error {
	for _, scheme := range [][]byte{[]byte("http"), []byte("https")} {
		in.Scheme = scheme
		base, ok := c.keys.Append(nil, in, nil)
		if !ok {
			return ErrUnkeyable
		}
		err := c.format.purgeURL(base, string(c.gens.AppendURLKey(nil, base)), soft)
		if c.l1 != nil || c.outage != nil {
			if len(c.keys.Cookies()) > 0 {
				c.forgetLocal("") // the URL's page for each cookie value
			} else {
				var sc Scratch
				c.forgetLocal(c.pageKey(&sc, base, c.ns.Load()))
			}
		}
		if err != nil {
			return err
		}
		if !c.keys.HasScheme() {
			return nil
		}
	}
	return nil
}

// PurgeKey advances the purge sequence, then purges the pages carrying a
// surrogate key, so that no fill in flight stores an answer fetched
// before the purge.
func (c *Cache) PurgeKey(tag string, soft bool) error {
	if !c.KeepsTags() {
		return ErrURLOnly
	}
	err := c.gens.PurgeTag(tag, soft)
	c.forgetLocal("")
	return err
}

// PurgeAll makes every page unreachable at once by changing the
// namespace; it is always hard.
func (c *Cache) PurgeAll() error {
	if !c.KeepsTags() {
		return ErrURLOnly
	}
	err := c.gens.Bump(c.gens.NSKey(), false)
	c.forgetLocal("")
	if err != nil {
		return err
	}
	c.ns.Store(0) // read it again at the next lookup
	return nil
}

// storeReason is the Reason for a failed write.
func storeReason(err error) Reason {
	if errors.Is(err, ErrTooLarge) {
		return ReasonTooLarge
	}
	return ReasonStoreError
}

// view is b as a string, without copying: valid while b is unchanged.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
