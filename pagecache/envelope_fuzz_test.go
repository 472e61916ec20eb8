package pagecache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// within reports whether s lies inside b.
func within(s, b []byte) bool {
	if len(s) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(b))
}

// checkDecoded fails unless every slice of e lies in the payload of the
// envelope b (before its checksum).
func checkDecoded(t *testing.T, e *Entry, b []byte) {
	t.Helper()
	payload := b[:len(b)-4]
	if !within(e.Body, payload) {
		t.Fatalf("body of %d bytes outside the %d-byte input", len(e.Body), len(b))
	}
	for i, h := range e.Headers {
		if !within(h.Name, payload) || !within(h.Value, payload) {
			t.Fatalf("header %d outside the input", i)
		}
	}
	n := 0
	e.Tags(func(tag []byte, _ uint64) bool {
		if !within(tag, payload) {
			t.Fatalf("tag %d outside the input", n)
		}
		n++
		return true
	})
	if n != e.NumTags() {
		t.Fatalf("Tags gave %d tags; NumTags %d", n, e.NumTags())
	}
}

// pageOf is the Page an Entry holds, for encoding it again.
func pageOf(e *Entry) *Page {
	p := &Page{Kind: e.Kind, Status: e.Status, StoredAt: e.StoredAt, FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil, ErrorUntil: e.ErrorUntil, KeepUntil: e.KeepUntil, URLGen: e.URLGen, Headers: e.Headers, Body: e.Body}
	e.Tags(func(tag []byte, gen uint64) bool { p.Tags = append(p.Tags, Tag{string(tag), gen}); return true })
	return p
}

// withCRC returns b with the version of this build and a correct
// checksum, so that Decode reads past its first checks.
func withCRC(b []byte) []byte {
	b = bytes.Clone(b)
	copy(b, []byte{'U', 'R', envelopeVersion})
	if n := len(b) - 4; n >= 0 {
		binary.BigEndian.PutUint32(b[n:], crc32.Checksum(b[:n], crcTable))
	}
	return b
}

// encodable is Encode's contract: nil, or why p cannot be stored.
func encodable(p *Page) error {
	switch {
	case len(p.Headers) > maxHeaders:
		return errors.New("too many headers")
	case len(p.Tags) > maxTags:
		return errors.New("too many tags")
	case p.Status < 100 || p.Status > 999:
		return errors.New("status")
	}
	for _, h := range p.Headers {
		if len(h.Name) == 0 || len(h.Name) > 255 || len(h.Value) > 65535 {
			return fmt.Errorf("header %q", h.Name)
		}
	}
	for _, t := range p.Tags {
		if len(t.Name) == 0 || len(t.Name) > maxTagLength {
			return errors.New("tag")
		}
	}
	return nil
}

func TestDecodeRejectsWhatEncodeRefuses(t *testing.T) {
	good, _ := Encode(nil, samplePage())
	var e Entry
	if err := Decode(withCRC(good), &e); err != nil {
		t.Fatalf("withCRC of a good envelope: %v", err)
	}
	for _, tc := range []struct {
		name  string
		patch func(b []byte) []byte
	}{
		{"status 0", func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:], 0); return b }},
		{"status 99", func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:], 99); return b }},
		{"status 1000", func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:], 1000); return b }},
		{"empty header name", func([]byte) []byte {
			b, _ := Encode(nil, &Page{Status: 200, Headers: []Header{{Name: []byte("X"), Value: []byte("v")}}})
			// name length 0, value "v", no tags, no body, room for the CRC
			return append(b[:envelopeFixed], 0, 0, 1, 'v', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
		}},
		{"more tags than Encode stores", func([]byte) []byte {
			tags := make([]Tag, maxTags)
			for i := range tags {
				tags[i] = Tag{"t", uint64(i)}
			}
			b, _ := Encode(nil, &Page{Status: 200, Tags: tags})
			i := envelopeFixed
			binary.BigEndian.PutUint16(b[i:], maxTags+1)
			rec := []byte{0, 1, 't', 0, 0, 0, 0, 0, 0, 0, 0}
			return slices.Insert(b, i+2+maxTags*len(rec), rec...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := withCRC(tc.patch(bytes.Clone(good)))
			if err := Decode(b, &e); !errors.Is(err, ErrDamaged) {
				t.Errorf("got %v; want ErrDamaged", err)
			}
		})
	}
}

// FuzzEnvelopeRoundTrip builds a Page from fuzzed fields: Encode refuses
// exactly what breaks its limits, and leaves dst as it was; what it
// encodes decodes to equal fields, slices inside the encoding, into a
// fresh Entry or a reused one; any single changed byte is an error (the
// CRC-32C catches every burst of up to 32 bits). Arbitrary input, and
// arbitrary input given a correct checksum, decodes without panic, to
// slices inside it, and only when it encodes back to the same bytes.
func FuzzEnvelopeRoundTrip(f *testing.F) {
	s := samplePage()
	s.Body = s.Body[:1200] // small inputs keep minimizing fast
	var hdrs bytes.Buffer
	for _, h := range s.Headers {
		fmt.Fprintf(&hdrs, "%s:%s\n", h.Name, h.Value)
	}
	sample, _ := Encode(nil, s)
	f.Add(uint8(KindPage), uint16(200), s.StoredAt, s.FreshUntil, s.StaleUntil, s.URLGen, hdrs.Bytes(), "blog.post:7 blog.post", uint16(0), uint16(0), s.Body, uint32(0), uint8(1), sample)
	f.Add(uint8(KindUncacheable), uint16(200), int64(0), int64(5), int64(5), uint64(0), []byte(nil), "", uint16(0), uint16(0), []byte(nil), uint32(3), uint8(0x80), []byte("UR\x01"))
	f.Add(uint8(KindPage), uint16(301), int64(-1), int64(1<<62), int64(-1<<63), uint64(1<<64-1), []byte("Location:/new\n:empty name\n"), "", uint16(0), uint16(0), []byte{}, uint32(1<<31), uint8(0xff), []byte("<html>a raw page</html>"))
	f.Add(uint8(KindPage), uint16(99), int64(0), int64(0), int64(0), uint64(0), []byte(strings.Repeat("X:y\n", maxHeaders+1)), "a", uint16(maxTags), uint16(65535), []byte("b"), uint32(7), uint8(2), sample[:len(sample)/2])
	f.Add(uint8(KindPage), uint16(1000), int64(0), int64(0), int64(0), uint64(0), []byte(strings.Repeat("n", 256)+":v"), strings.Repeat("t", maxTagLength+1), uint16(0), uint16(0), []byte("b"), uint32(0), uint8(0), withCRC(make([]byte, envelopeFixed+10)))

	f.Fuzz(func(t *testing.T, kind uint8, status uint16, storedAt, freshUntil, staleUntil int64, urlGen uint64,
		hdrBlob []byte, tagList string, moreTags, grow uint16, body []byte, flipAt uint32, flip uint8, raw []byte) {
		p := &Page{Kind: Kind(kind % 2), Status: int(status), StoredAt: storedAt, FreshUntil: freshUntil, StaleUntil: staleUntil, URLGen: urlGen, Body: body}
		if len(hdrBlob) > 0 {
			for line := range bytes.SplitSeq(hdrBlob, []byte{'\n'}) {
				name, value, _ := bytes.Cut(line, []byte{':'})
				p.Headers = append(p.Headers, Header{Name: name, Value: value})
			}
			last := &p.Headers[len(p.Headers)-1]
			last.Value = append(bytes.Clone(last.Value), bytes.Repeat([]byte{'v'}, int(grow))...)
		}
		if tagList != "" {
			for i, name := range strings.Split(tagList, " ") {
				p.Tags = append(p.Tags, Tag{name, urlGen + uint64(i)})
			}
		}
		for i := range int(moreTags % (maxTags + 2)) {
			p.Tags = append(p.Tags, Tag{fmt.Sprintf("t%d", i), uint64(i)})
		}

		prefix := []byte("kept:")
		enc, err := Encode(bytes.Clone(prefix), p)
		if want := encodable(p); (err == nil) != (want == nil) {
			t.Fatalf("Encode: error %v; its limits say %v", err, want)
		}
		if !bytes.HasPrefix(enc, prefix) {
			t.Fatalf("Encode lost dst: got %q", enc[:min(len(enc), len(prefix))])
		}
		if err != nil {
			if len(enc) != len(prefix) {
				t.Fatalf("Encode failed (%v) but left %d bytes after dst", err, len(enc)-len(prefix))
			}
		} else {
			enc = enc[len(prefix):]
			if n := EncodedLen(p); n != len(enc) {
				t.Fatalf("EncodedLen %d; Encode wrote %d bytes", n, len(enc))
			}
			var fresh, reused Entry
			if err := Decode(sample, &reused); err != nil {
				t.Fatal(err)
			}
			for _, e := range []*Entry{&fresh, &reused} {
				if err := Decode(enc, e); err != nil {
					t.Fatalf("Decode of what Encode made: %v", err)
				}
				checkDecoded(t, e, enc)
				if e.Kind != p.Kind || e.Status != p.Status || e.StoredAt != p.StoredAt || e.FreshUntil != p.FreshUntil || e.StaleUntil != p.StaleUntil || e.URLGen != p.URLGen || !bytes.Equal(e.Body, p.Body) {
					t.Fatalf("fields differ: got %+v", e)
				}
				if len(e.Headers) != len(p.Headers) {
					t.Fatalf("got %d headers; want %d", len(e.Headers), len(p.Headers))
				}
				for i, h := range e.Headers {
					if !bytes.Equal(h.Name, p.Headers[i].Name) || !bytes.Equal(h.Value, p.Headers[i].Value) {
						t.Fatalf("header %d: got %q: %q; want %q: %q", i, h.Name, h.Value, p.Headers[i].Name, p.Headers[i].Value)
					}
				}
				got := pageOf(e).Tags
				if len(got) != len(p.Tags) {
					t.Fatalf("got %d tags; want %d", len(got), len(p.Tags))
				}
				for i := range got {
					if got[i] != p.Tags[i] {
						t.Fatalf("tag %d: got %v; want %v", i, got[i], p.Tags[i])
					}
				}
			}

			// Any one changed byte is an error: the one fuzzed, and every
			// one of a small encoding.
			mask := max(flip, 1)
			positions := []int{int(flipAt % uint32(len(enc)))}
			if len(enc) <= 512 {
				positions = positions[:0]
				for i := range enc {
					positions = append(positions, i)
				}
			}
			damaged := bytes.Clone(enc)
			var e Entry
			for _, i := range positions {
				damaged[i] ^= mask
				if err := Decode(damaged, &e); err == nil {
					t.Fatalf("byte %d of %d changed by %#x: decoded", i, len(enc), mask)
				} else if !errors.Is(err, ErrDamaged) && !(i == 2 && errors.Is(err, ErrVersion)) {
					t.Fatalf("byte %d changed: got %v; want ErrDamaged", i, err)
				}
				damaged[i] ^= mask
			}
		}

		for _, in := range [][]byte{raw, withCRC(raw)} {
			var e Entry
			if err := Decode(in, &e); err != nil {
				if !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrVersion) {
					t.Fatalf("Decode: got %v; want ErrDamaged or ErrVersion", err)
				}
				continue
			}
			checkDecoded(t, &e, in)
			if in[2] != envelopeVersion {
				continue // an older version reads into today's entry; Encode writes today's
			}
			again, err := Encode(nil, pageOf(&e))
			if err != nil || !bytes.Equal(again, in) {
				p := pageOf(&e)
				t.Fatalf("Decode accepted an entry Encode does not make (%v): status %d, %d headers, %d tags, %d body bytes", err, p.Status, len(p.Headers), len(p.Tags), len(p.Body))
			}
		}
	})
}
