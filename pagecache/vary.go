package pagecache

import (
	"bytes"
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Variants (RFC 9111 section 4.1). A response whose Vary names request
// headers the key does not include is stored as a variant: a page under a
// key built from the URL's base key and the request's normalised values
// of those headers (see AppendVaryValue), found through a marker under the
// URL's own page key that lists them (KindVariants). Accept-Encoding,
// Cookie, Authorization and the key's {header:Name} headers never select a
// variant: the key or the router already accounts for them.
const (
	// MaxVaryHeaders is how many headers a marker lists at most; a Vary
	// naming more is ReasonVary.
	MaxVaryHeaders = 4
	// maxVaryName bounds a Vary'd header's name.
	maxVaryName = 64
	// MaxVaryValue bounds a normalised value that keys a variant; a
	// request with a longer one is not cached (ReasonVary).
	MaxVaryValue = 128
	// DefaultMaxVariants is what a zero CacheOptions.MaxVariants means.
	DefaultMaxVariants = 16
)

// unvaried are request headers no variant can be selected by: a fill sets
// them itself, from what it trusts (Host, the forwarding headers), or
// never carries the visitor's (hop-by-hop, credentials to a proxy,
// conditionals and ranges). A Vary naming one is ReasonVary, as before
// variants.
var unvaried = map[string]bool{
	"host": true, "x-forwarded-for": true, "x-forwarded-proto": true, "x-forwarded-host": true,
	"x-real-ip": true, "forwarded": true, "via": true,
	"connection": true, "keep-alive": true, "proxy-connection": true, "te": true, "trailer": true,
	"transfer-encoding": true, "upgrade": true, "content-length": true, "proxy-authorization": true,
	"range": true, "if-range": true, "if-match": true, "if-none-match": true,
	"if-modified-since": true, "if-unmodified-since": true,
}

// varyOf reads a response's Vary: the headers that select a variant,
// lower case, sorted, unique, joined by commas ("" when none does); ok is
// false for "*", a header no variant can be selected by (unvaried), more
// than MaxVaryHeaders of them, or a name that is not a short token.
func (p *Policy) varyOf(vary []byte) (names string, ok bool) {
	var list [MaxVaryHeaders]string
	n := 0
	for tok := range bytes.SplitSeq(vary, []byte{','}) {
		tok = bytes.TrimSpace(tok)
		if len(tok) == 0 {
			continue
		}
		if len(tok) > maxVaryName || !isToken(tok) {
			return "", false
		}
		name := strings.ToLower(string(tok))
		switch {
		case name == "*" || unvaried[name]:
			return "", false
		case p.vary[name] || slices.Contains(list[:n], name):
			continue
		case n == MaxVaryHeaders:
			return "", false
		}
		list[n] = name
		n++
	}
	if n == 0 {
		return "", true
	}
	slices.Sort(list[:n])
	return strings.Join(list[:n], ","), true
}

// validVaryList reports whether b is what varyOf makes of a Vary that
// selects variants: 1 to MaxVaryHeaders lower-case token names, sorted
// and unique, none that may never select one. Decode holds a marker to it,
// so that one from a tampered store cannot make a fill carry a Cookie.
func validVaryList(b []byte) bool {
	n := 0
	var prev []byte
	for name := range bytes.SplitSeq(b, []byte{','}) {
		n++
		if n > MaxVaryHeaders || len(name) == 0 || len(name) > maxVaryName || !isToken(name) ||
			bytes.ContainsFunc(name, func(r rune) bool { return 'A' <= r && r <= 'Z' }) ||
			(prev != nil && bytes.Compare(prev, name) >= 0) {
			return false
		}
		switch string(name) {
		case "*", "cookie", "authorization", "accept-encoding":
			return false
		}
		if unvaried[string(name)] {
			return false
		}
		prev = name
	}
	return true
}

// isToken reports whether b is an HTTP token (RFC 9110 section 5.6.2).
func isToken(b []byte) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return len(b) > 0
}

// AppendVaryValue appends to dst a request header's value normalised as
// it keys a variant and as the fill that renders the variant sends it:
// ASCII lower-cased, control bytes dropped, whitespace trimmed, removed
// next to ',', ';' and '=', and each other run of it made one space
// ("en-US, en;q=0.9" is "en-us,en;q=0.9"). Normalising twice changes
// nothing, so what is stored under a variant's key was rendered from that
// key's value itself. ok is false when the result is longer than
// MaxVaryValue; dst is then returned as it was.
func AppendVaryValue(dst, v []byte) ([]byte, bool) {
	start := len(dst)
	space := false // whitespace since the last byte kept
	for _, c := range v {
		switch {
		case c == ' ' || c == '\t':
			space = true
			continue
		case c < ' ' || c == 0x7f:
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if space && len(dst) > start && !varySeparator(dst[len(dst)-1]) && !varySeparator(c) {
			dst = append(dst, ' ')
		}
		space = false
		dst = append(dst, c)
		if len(dst)-start > MaxVaryValue {
			return dst[:start], false
		}
	}
	return dst, true
}

func varySeparator(c byte) bool { return c == ',' || c == ';' || c == '=' }

// appendVariantBase appends the base key of a variant: the primary base,
// then, for each header names lists, a line with its name and h's
// normalised value. A line feed is in no base key (no path, host or
// header value holds one), so no URL's key is a variant's; and the key,
// not legal in memcached, is always hashed (KeyTemplate.Fit). ok is false
// when a value is longer than MaxVaryValue.
func appendVariantBase(dst []byte, base, names string, h HeaderPeeker) ([]byte, bool) {
	dst = append(dst, base...)
	dst = append(dst, "\nvary"...)
	for names != "" {
		var name string
		name, names, _ = strings.Cut(names, ",")
		dst = append(append(append(dst, '\n'), name...), '=')
		var ok bool
		if h != nil {
			if dst, ok = AppendVaryValue(dst, h.Peek(name)); !ok {
				return dst, false
			}
		}
	}
	return dst, true
}

// appendPageKey appends the page key of base in namespace ns, fitted.
func (c *Cache) appendPageKey(dst, base []byte, ns uint64) []byte {
	start := len(dst)
	dst = append(append(dst, base...), "|n"...)
	dst = strconv.AppendUint(dst, ns, 10)
	return c.keys.Fit(dst, start)
}

// LookupVariant finds, after Lookup found a marker (PageVariants, t its
// ticket), the variant that h's values of the marker's headers select,
// and decodes it into e. The variant's ticket holds t's fence: its page
// records the URL's generation, so a purge by URL removes every variant.
// It does not allocate for an ordinary hit. ok is false when a value is
// too long to key a variant (MaxVaryValue): do not cache the request.
func (c *Cache) LookupVariant(t *Ticket, h HeaderPeeker, sc *Scratch, e *Entry, now time.Time) (State, Ticket, bool) {
	if t.vary == "" || t.primary != "" || t.down {
		return PageMissing, *t, true
	}
	var ok bool
	if sc.vbase, ok = appendVariantBase(sc.vbase[:0], t.base, t.vary, h); !ok {
		return PageMissing, Ticket{}, false
	}
	sc.vpage = c.appendPageKey(sc.vpage[:0], sc.vbase, t.ns)
	vt := *t
	vt.primary, vt.page = t.page, view(sc.vpage)
	sc.keys = append(sc.keys[:0], vt.page)
	hint, hinted := c.hints.GetIfPresent(view(sc.vbase))
	if hinted {
		sc.keys = append(sc.keys, hint.keys...)
	}
	var it Item
	found := false
	if len(sc.keys) == 1 {
		var err error
		it, err = c.store.Get(vt.page)
		if found = err == nil; err != nil && !errors.Is(err, ErrMiss) {
			c.onStoreError(err)
			vt.down = true
			return PageMissing, vt, true
		}
	} else {
		sc.items = slices.Grow(sc.items[:0], len(sc.keys))[:len(sc.keys)]
		if err := c.store.GetMulti(sc.keys, sc.items); err != nil {
			c.onStoreError(err)
			clear(sc.items)
			vt.down = true
			return PageMissing, vt, true
		}
		it, found = sc.items[0], sc.items[0].Found()
	}
	defer clear(sc.items)
	var tagItems []Item
	if hinted {
		tagItems = sc.items[1:len(sc.keys)]
	}
	st, vt := c.judge(vt, it, found, sc.vbase, hint, hinted, tagItems, e, now.UnixMilli())
	return st, vt, true
}

// Variant returns the ticket of the variant of t's URL that h's values
// of the headers names lists select (as Decision.Vary has them), fenced
// as t is: what a fill whose answer varies stores under, h being the fill
// request's headers. names "" is the URL's own page. ok is false when a
// value is too long to key a variant, or in format raw.
func (c *Cache) Variant(t *Ticket, names string, h HeaderPeeker) (Ticket, bool) {
	vt := *t
	primary := cmp.Or(t.primary, t.page)
	if names == "" {
		vt.page, vt.primary, vt.vary, vt.markerAt = primary, "", "", 0
		return vt, true
	}
	if !c.format.keepsTags() {
		return vt, false
	}
	vbase, ok := appendVariantBase(nil, t.base, names, h)
	if !ok {
		return vt, false
	}
	vt.page, vt.primary, vt.vary = string(c.appendPageKey(nil, vbase, t.ns)), primary, names
	if names != t.vary {
		vt.markerAt = 0
	}
	return vt, true
}

// PutVariants writes, under the page key of t's URL, a marker listing the
// headers names (Decision.Vary) its page varies on, for f's lifetime and
// recording the fence's URL generation: a purge of the URL removes it as
// it does a page. t must be fenced; once the marker is stored, t is its
// ticket (that of the URL's page, Vary the names), for Variant and
// LookupVariant. It returns Storable or why it stored nothing.
func (c *Cache) PutVariants(t *Ticket, names string, f *Fill) Reason {
	if !t.urlKnown {
		return ReasonStoreError // not fenced
	}
	if !c.format.keepsTags() || !validVaryList([]byte(names)) {
		return ReasonVary
	}
	life := f.TTL - f.Age + max(f.Keep, f.Grace, f.ErrorGrace)
	if life <= 0 {
		return ReasonTTL
	}
	if r := c.settle(t); r != Storable {
		return r
	}
	until := f.StoredAt.Add(life).UnixMilli()
	page := Page{Kind: KindVariants, Status: 200, StoredAt: f.StoredAt.UnixMilli(), URLGen: t.urlGen,
		FreshUntil: until, StaleUntil: until, ErrorUntil: until, KeepUntil: until, Body: []byte(names)}
	env, err := Encode(nil, &page)
	if err != nil {
		return ReasonVary
	}
	key := cmp.Or(t.primary, t.page)
	if err := c.store.Set(key, Item{Value: env}, life); err != nil {
		c.onStoreError(err)
		return storeReason(err)
	}
	t.page, t.primary, t.vary, t.markerAt = key, "", names, page.StoredAt
	return Storable
}

// A variantSet is what AdmitVariant counted of one URL: the variants
// filled here since its marker was written (markerAt).
type variantSet struct {
	mu       sync.Mutex
	markerAt int64
	keys     []string
}

// AdmitVariant reports whether the variant t names may be filled: it is
// one of those already counted for its URL's marker, or there is room for
// one more (CacheOptions.MaxVariants), which it counts. Each process
// counts its own fills, in a bounded table; a new marker (the URL purged,
// or its marker expired) starts the count again. True for a URL's own
// page.
func (c *Cache) AdmitVariant(t *Ticket) bool {
	if t.primary == "" || c.variants == nil {
		return true
	}
	s, _ := c.variants.SetIfAbsent(t.primary, &variantSet{markerAt: t.markerAt})
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.markerAt > s.markerAt {
		// A newer marker: its variants are counted anew. A ticket of an
		// older one (another instance's, or a lookup from before) counts
		// against the newer.
		s.markerAt, s.keys = t.markerAt, s.keys[:0]
	}
	switch {
	case slices.Contains(s.keys, t.page):
		return true
	case len(s.keys) >= c.maxVariants:
		return false
	}
	s.keys = append(s.keys, strings.Clone(t.page))
	return true
}
