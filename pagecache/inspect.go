package pagecache

import (
	"errors"
	"time"
)

// ErrStoreFailed: the store did not answer an operator's question.
var ErrStoreFailed = errors.New("pagecache: the store failed")

// An Inspection is what the store holds for a request's key, for an
// operator (Cache.Inspect); nothing serves from it.
type Inspection struct {
	// Base is the key the template built; Key the page's key in the
	// store (Base with the namespace generation, or hashed).
	Base, Key string
	State     State
	// Entry is the decoded page (a copy), nil when State is PageMissing.
	Entry *Entry
	// Size is the stored value's length in bytes.
	Size int
	// Vary lists the headers a PageVariants marker names.
	Vary string
	// Namespace is the namespace generation (purge all) in the key;
	// URLCounter the key of the URL's counter and URLGen its value now
	// (URLKnown false when it is missing: a page recorded under it then
	// counts as purged).
	Namespace  uint64
	URLCounter string
	URLGen     uint64
	URLKnown   bool
	// Tags are the page's surrogate keys with the generation recorded in
	// the page and the counter's value now.
	Tags []InspectedTag
}

// An InspectedTag is a page's surrogate key, with the generation the page
// recorded and the counter's value now (Known false when it is missing).
type InspectedTag struct {
	Name          string
	Recorded, Now uint64
	Known         bool
}

// Inspect reads what the store holds for in, as a visitor's lookup would
// find it (generations checked; the in-process tier is not consulted): the
// page, its state, and the counters it depends on. in.Scheme should be
// set when the key has {scheme}. ErrUnkeyable when the request is never
// cached, ErrStoreFailed when the store did not answer.
func (c *Cache) Inspect(in *KeyInput, now time.Time) (Inspection, error) {
	var ins Inspection
	base, ok := c.keys.Append(nil, in, nil)
	if !ok {
		return ins, ErrUnkeyable
	}
	var sc Scratch
	var e Entry
	urlBase := base
	if len(c.keys.Cookies()) > 0 {
		if urlBase, ok = c.keys.AppendURLBase(nil, in); !ok {
			return ins, ErrUnkeyable
		}
	}
	state, t := c.format.lookup(base, urlBase, &sc, &e, now.UnixMilli())
	if t.down {
		return ins, ErrStoreFailed
	}
	ins.Base, ins.Key, ins.State, ins.Vary = string(base), t.page, state, t.vary
	if !c.format.keepsTags() {
		if state != PageMissing {
			ins.Entry, ins.Size = &Entry{entryView: entryView{Kind: e.Kind, Status: e.Status, Flags: e.Flags, Body: append([]byte(nil), e.Body...)}}, len(e.Body)
		}
		return ins, nil
	}
	ins.Namespace = c.ns.Load()
	ins.URLCounter = string(c.gens.AppendURLKey(nil, urlBase))
	keys := []string{ins.URLCounter}
	if state != PageMissing {
		ins.Entry, ins.Size = e.Clone(), len(e.value)
		ins.Entry.Tags(func(tag []byte, gen uint64) bool {
			ins.Tags = append(ins.Tags, InspectedTag{Name: string(tag), Recorded: gen})
			keys = append(keys, c.gens.TagKey(string(tag)))
			return true
		})
	}
	items := make([]Item, len(keys))
	if err := c.store.GetMulti(keys, items); err != nil {
		return ins, ErrStoreFailed
	}
	ins.URLGen, ins.URLKnown = parseCounter(items[0])
	for i := range ins.Tags {
		ins.Tags[i].Now, ins.Tags[i].Known = parseCounter(items[i+1])
	}
	return ins, nil
}

// String names a State as operators read it: "absent", "fresh", "stale",
// "uncacheable", "expired" or "variants".
func (s State) String() string {
	switch s {
	case PageFresh:
		return "fresh"
	case PageStale:
		return "stale"
	case PageUncacheable:
		return "uncacheable"
	case PageExpired:
		return "expired"
	case PageVariants:
		return "variants"
	}
	return "absent"
}
