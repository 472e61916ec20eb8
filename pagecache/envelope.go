package pagecache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The envelope is how userrouter stores a page in memcached (format
// "envelope"): a small versioned binary record with a checksum.
//
//	offset  size  field
//	0       2     magic "UR"
//	2       1     version (2)
//	3       1     kind (0 page, 1 uncacheable marker, 2 variants marker)
//	4       2     status
//	6       8     stored at, Unix milliseconds
//	14      8     fresh until, Unix milliseconds
//	22      8     stale until, Unix milliseconds (serve-stale limit)
//	30      8     error until, Unix milliseconds (stale-if-error limit)
//	38      8     keep until, Unix milliseconds (kept to revalidate)
//	46      8     URL generation (the page's own purge counter)
//	54      1     header count, then per header:
//	                1 name length, name, 2 value length, value
//	        2     tag count, then per tag:
//	                2 tag length, tag, 8 tag generation
//	        4     body length, body
//	        4     CRC-32C of everything before
//
// A variants marker (KindVariants) keeps in its body the request headers
// its URL's page varies on: lower-case names, sorted, joined by commas
// ("accept-language,user-agent"); see Cache.LookupVariant.
//
// Integers are big-endian. Version 1, which a build before stale-if-error
// wrote, lacks the error and keep times (they read as the stale limit). An
// unknown version or any inconsistency is a miss: damaged data is never
// served.
const (
	envelopeVersion = 2
	envelopeFixed   = 55 // through the header count
	envelopeFixedV1 = 39
	maxHeaders      = 64
	maxTagLength    = 1024
	maxTags         = 1024
)

// Kind says what an entry is.
type Kind uint8

const (
	KindPage        Kind = iota // a page to serve
	KindUncacheable             // a marker: this URL's response could not be stored
	// KindVariants: a marker whose body names the request headers the
	// URL's page varies on; each variant is a page of its own key.
	KindVariants
)

var (
	// ErrDamaged: the value is not an envelope, or it is cut or corrupt.
	ErrDamaged = errors.New("pagecache: damaged entry")
	// ErrVersion: an envelope of a version this build does not read.
	ErrVersion = errors.New("pagecache: unknown entry version")
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// A Header is a stored response header.
type Header struct{ Name, Value []byte }

// An Entry is a decoded envelope. Decode fills it without allocating: its
// slices alias the encoded value, which must not change while it is used.
type Entry struct {
	entryView
	headers [maxHeaders]Header
}

// entryView is an Entry without the array its headers are decoded into:
// what the in-process tiers keep of a page (see l1), its Headers in a
// slice of their own length.
type entryView struct {
	Kind       Kind
	Status     int
	StoredAt   int64 // Unix milliseconds
	FreshUntil int64 // Unix milliseconds
	StaleUntil int64 // Unix milliseconds: served stale while refreshed until then
	// ErrorUntil (Unix milliseconds) is how long it may be served stale
	// when the backend fails (stale-if-error).
	ErrorUntil int64
	// KeepUntil (Unix milliseconds) is how long it is kept past those, to
	// be revalidated with a conditional request.
	KeepUntil int64
	// URLGen is the generation the page's URL counter had before it was
	// fetched: purging the URL changes the counter.
	URLGen  uint64
	Headers []Header
	Body    []byte
	// Flags are the store flags of a raw value (format raw); 0 for an
	// envelope.
	Flags uint32

	value []byte // the whole encoded value
	tags  []byte // encoded tag records
	nTags int
}

// Clone returns a copy of e that aliases nothing of its stored value,
// for work that outlives the request (a background revalidation).
func (e *Entry) Clone() *Entry {
	c := new(Entry)
	if e.value == nil || Decode(bytes.Clone(e.value), c) != nil {
		*c = Entry{entryView: entryView{Kind: e.Kind, Status: e.Status, Flags: e.Flags, Body: bytes.Clone(e.Body)}} // a raw value
	}
	return c
}

// Tags calls f with each stored surrogate key and the generation its tag
// counter had when the page was fetched; f returns false to stop.
func (e *Entry) Tags(f func(tag []byte, gen uint64) bool) {
	b := e.tags
	for range e.nTags {
		n := int(binary.BigEndian.Uint16(b))
		if !f(b[2:2+n], binary.BigEndian.Uint64(b[2+n:])) {
			return
		}
		b = b[2+n+8:]
	}
}

// NumTags is the number of stored surrogate keys.
func (e *Entry) NumTags() int { return e.nTags }

// A Tag is a surrogate key and its generation, for Encode.
type Tag struct {
	Name string
	Gen  uint64
}

// Page is what Encode stores.
type Page struct {
	Kind       Kind
	Status     int
	StoredAt   int64
	FreshUntil int64
	StaleUntil int64
	ErrorUntil int64
	KeepUntil  int64
	URLGen     uint64
	Headers    []Header
	Tags       []Tag
	Body       []byte
}

// EncodedLen is the length of p's envelope (when Encode accepts p): a
// caller sizes the buffer it encodes into with it, so that storing a page
// costs one allocation of the right size.
func EncodedLen(p *Page) int {
	n := envelopeFixed + 2 + 4 + len(p.Body) + 4
	for _, h := range p.Headers {
		n += 1 + len(h.Name) + 2 + len(h.Value)
	}
	for _, t := range p.Tags {
		n += 2 + len(t.Name) + 8
	}
	return n
}

// Encode appends the envelope of p to dst.
func Encode(dst []byte, p *Page) ([]byte, error) {
	if len(p.Headers) > maxHeaders {
		return dst, fmt.Errorf("pagecache: %d headers to store; at most %d", len(p.Headers), maxHeaders)
	}
	if len(p.Tags) > maxTags {
		return dst, fmt.Errorf("pagecache: %d tags to store; at most %d", len(p.Tags), maxTags)
	}
	if p.Status < 100 || p.Status > 999 || len(p.Body) > 1<<31 {
		return dst, fmt.Errorf("pagecache: status %d or body of %d bytes cannot be stored", p.Status, len(p.Body))
	}
	start := len(dst)
	dst = append(dst, 'U', 'R', envelopeVersion, byte(p.Kind))
	dst = binary.BigEndian.AppendUint16(dst, uint16(p.Status))
	dst = binary.BigEndian.AppendUint64(dst, uint64(p.StoredAt))
	dst = binary.BigEndian.AppendUint64(dst, uint64(p.FreshUntil))
	dst = binary.BigEndian.AppendUint64(dst, uint64(p.StaleUntil))
	dst = binary.BigEndian.AppendUint64(dst, uint64(max(p.ErrorUntil, p.StaleUntil)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(max(p.KeepUntil, p.ErrorUntil, p.StaleUntil)))
	dst = binary.BigEndian.AppendUint64(dst, p.URLGen)
	dst = append(dst, byte(len(p.Headers)))
	for _, h := range p.Headers {
		if len(h.Name) == 0 || len(h.Name) > 255 || len(h.Value) > 65535 {
			return dst[:start], fmt.Errorf("pagecache: header %.40q is too long to store", h.Name)
		}
		dst = append(dst, byte(len(h.Name)))
		dst = append(dst, h.Name...)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(h.Value)))
		dst = append(dst, h.Value...)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(p.Tags)))
	for _, t := range p.Tags {
		if len(t.Name) == 0 || len(t.Name) > maxTagLength {
			return dst[:start], fmt.Errorf("pagecache: tag of %d bytes cannot be stored", len(t.Name))
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(t.Name)))
		dst = append(dst, t.Name...)
		dst = binary.BigEndian.AppendUint64(dst, t.Gen)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p.Body)))
	dst = append(dst, p.Body...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], crcTable)), nil
}

// Decode reads an envelope into e. It returns ErrVersion for an envelope
// of another version and ErrDamaged for anything inconsistent.
func Decode(b []byte, e *Entry) error { return decode(b, e, true) }

// decode is Decode; without checksum it skips the CRC-32C over the whole
// value (every other check stays), for values this process encoded and
// kept in its own memory (CacheOptions.InProcess).
func decode(b []byte, e *Entry, checksum bool) error {
	if len(b) < envelopeFixedV1+2+4+4 || b[0] != 'U' || b[1] != 'R' {
		return ErrDamaged
	}
	fixed := envelopeFixed
	switch b[2] {
	case envelopeVersion:
	case 1:
		fixed = envelopeFixedV1
	default:
		return ErrVersion
	}
	if len(b) < fixed+2+4+4 {
		return ErrDamaged
	}
	n := len(b) - 4
	if checksum && crc32.Checksum(b[:n], crcTable) != binary.BigEndian.Uint32(b[n:]) {
		return ErrDamaged
	}
	e.value = b
	b = b[:n]
	e.Kind = Kind(b[3])
	e.Flags = 0
	if e.Kind > KindVariants {
		return ErrDamaged
	}
	e.Status = int(binary.BigEndian.Uint16(b[4:]))
	if e.Status < 100 || e.Status > 999 {
		return ErrDamaged
	}
	e.StoredAt = int64(binary.BigEndian.Uint64(b[6:]))
	e.FreshUntil = int64(binary.BigEndian.Uint64(b[14:]))
	e.StaleUntil = int64(binary.BigEndian.Uint64(b[22:]))
	e.ErrorUntil, e.KeepUntil = e.StaleUntil, e.StaleUntil
	at := 30
	if fixed == envelopeFixed {
		e.ErrorUntil = int64(binary.BigEndian.Uint64(b[30:]))
		e.KeepUntil = int64(binary.BigEndian.Uint64(b[38:]))
		at = 46
		if e.ErrorUntil < e.StaleUntil || e.KeepUntil < e.ErrorUntil {
			return ErrDamaged // Encode keeps stale <= error <= keep
		}
	}
	e.URLGen = binary.BigEndian.Uint64(b[at:])
	nh := int(b[at+8])
	if nh > maxHeaders {
		return ErrDamaged
	}
	r := b[fixed:]
	for i := range nh {
		if len(r) < 1 {
			return ErrDamaged
		}
		ln := int(r[0])
		if ln == 0 || len(r) < 1+ln+2 {
			return ErrDamaged
		}
		name := r[1 : 1+ln]
		lv := int(binary.BigEndian.Uint16(r[1+ln:]))
		r = r[1+ln+2:]
		if len(r) < lv {
			return ErrDamaged
		}
		e.headers[i] = Header{Name: name, Value: r[:lv]}
		r = r[lv:]
	}
	e.Headers = e.headers[:nh]
	if len(r) < 2 {
		return ErrDamaged
	}
	e.nTags = int(binary.BigEndian.Uint16(r))
	if e.nTags > maxTags {
		return ErrDamaged
	}
	r = r[2:]
	tags := r
	for range e.nTags {
		if len(r) < 2 {
			return ErrDamaged
		}
		lt := int(binary.BigEndian.Uint16(r))
		if lt == 0 || lt > maxTagLength || len(r) < 2+lt+8 {
			return ErrDamaged
		}
		r = r[2+lt+8:]
	}
	e.tags = tags[:len(tags)-len(r)]
	if len(r) < 4 {
		return ErrDamaged
	}
	lb := int(binary.BigEndian.Uint32(r))
	r = r[4:]
	if len(r) != lb {
		return ErrDamaged
	}
	e.Body = r
	if e.Kind == KindVariants && (nh > 0 || e.nTags > 0 || !validVaryList(r)) {
		return ErrDamaged // a marker names headers a variant may be selected by, and nothing else
	}
	return nil
}
