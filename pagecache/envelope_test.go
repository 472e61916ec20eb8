package pagecache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"strings"
	"testing"
)

func samplePage() *Page {
	return &Page{
		Kind: KindPage, Status: 200, StoredAt: 1_800_000_000, FreshUntil: 1_800_000_060, StaleUntil: 1_800_000_070, URLGen: 7 << 32,
		Headers: []Header{
			{Name: []byte("Content-Type"), Value: []byte("text/html; charset=utf-8")},
			{Name: []byte("ETag"), Value: []byte(`"abc"`)},
			{Name: []byte("Link"), Value: []byte("</a.css>; rel=preload")},
			{Name: []byte("Link"), Value: []byte("</b.js>; rel=preload")},
		},
		Tags: []Tag{{"blog.post:7", 3}, {"blog.post", 12}},
		Body: []byte(strings.Repeat("<p>hello</p>", 1700)),
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	p := samplePage()
	b, err := Encode(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	var e Entry
	if err := Decode(b, &e); err != nil {
		t.Fatal(err)
	}
	if e.Kind != p.Kind || e.Status != p.Status || e.StoredAt != p.StoredAt || e.FreshUntil != p.FreshUntil || e.StaleUntil != p.StaleUntil || e.URLGen != p.URLGen || !bytes.Equal(e.Body, p.Body) {
		t.Errorf("got %+v", e)
	}
	if len(e.Headers) != len(p.Headers) {
		t.Fatalf("got %d headers; want %d", len(e.Headers), len(p.Headers))
	}
	for i, h := range e.Headers {
		if !bytes.Equal(h.Name, p.Headers[i].Name) || !bytes.Equal(h.Value, p.Headers[i].Value) {
			t.Errorf("header %d: got %s: %s", i, h.Name, h.Value)
		}
	}
	var tags []Tag
	e.Tags(func(tag []byte, gen uint64) bool { tags = append(tags, Tag{string(tag), gen}); return true })
	if len(tags) != 2 || tags[0] != p.Tags[0] || tags[1] != p.Tags[1] || e.NumTags() != 2 {
		t.Errorf("got tags %v", tags)
	}

	marker, _ := Encode(nil, &Page{Kind: KindUncacheable, Status: 200, FreshUntil: 5})
	if err := Decode(marker, &e); err != nil || e.Kind != KindUncacheable || len(e.Body) != 0 || len(e.Headers) != 0 {
		t.Errorf("marker: %v %+v", err, e)
	}
}

func TestEnvelopeRejectsDamage(t *testing.T) {
	b, _ := Encode(nil, samplePage())
	var e Entry
	for i := range b {
		if i%97 != 0 && i > 64 && i < len(b)-8 {
			continue // sample the body; every header byte
		}
		flipped := bytes.Clone(b)
		flipped[i] ^= 0x40
		if err := Decode(flipped, &e); err == nil {
			t.Fatalf("a flipped byte at %d decoded", i)
		}
	}
	for _, n := range []int{0, 1, 10, envelopeFixed, len(b) / 2, len(b) - 1} {
		if err := Decode(b[:n], &e); err == nil {
			t.Errorf("truncated to %d bytes: decoded", n)
		}
	}
	if err := Decode(append(bytes.Clone(b), 0), &e); err == nil {
		t.Error("a trailing byte decoded")
	}
	v3 := bytes.Clone(b)
	v3[2] = envelopeVersion + 1
	if err := Decode(v3, &e); !errors.Is(err, ErrVersion) {
		t.Errorf("version 3: got %v; want ErrVersion", err)
	}
	if err := Decode([]byte("<html>a raw page</html>"), &e); !errors.Is(err, ErrDamaged) {
		t.Errorf("a raw body: got %v; want ErrDamaged", err)
	}
}

func TestEncodeLimits(t *testing.T) {
	many := make([]Header, maxHeaders+1)
	for i := range many {
		many[i] = Header{Name: []byte("X"), Value: []byte("v")}
	}
	for name, p := range map[string]*Page{
		"too many headers": {Status: 200, Headers: many},
		"long header name": {Status: 200, Headers: []Header{{Name: bytes.Repeat([]byte("n"), 256)}}},
		"long tag":         {Status: 200, Tags: []Tag{{strings.Repeat("t", maxTagLength+1), 1}}},
		"bad status":       {Status: 1000},
	} {
		if _, err := Encode(nil, p); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

// FuzzDecode: any bytes decode without panic, and what decodes is
// consistent: it encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	b, _ := Encode(nil, samplePage())
	f.Add(b)
	m, _ := Encode(nil, &Page{Kind: KindUncacheable, Status: 200})
	f.Add(m)
	f.Add([]byte("UR\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Entry
		if Decode(data, &e) != nil {
			return
		}
		p := &Page{Kind: e.Kind, Status: e.Status, StoredAt: e.StoredAt, FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil, URLGen: e.URLGen, Headers: e.Headers, Body: e.Body}
		e.Tags(func(tag []byte, gen uint64) bool { p.Tags = append(p.Tags, Tag{string(tag), gen}); return true })
		again, err := Encode(nil, p)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("decoded data does not encode back: %v", err)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	data, _ := Encode(nil, samplePage())
	var e Entry
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	p := samplePage()
	buf := make([]byte, 0, 32<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = Encode(buf[:0], p)
	}
}

// TestEnvelopeReadsVersion1: a page a build before stale-if-error wrote
// (no error and keep times) is still served during a rolling upgrade; its
// error and keep limits are its stale limit.
func TestEnvelopeReadsVersion1(t *testing.T) {
	p := samplePage()
	p.ErrorUntil, p.KeepUntil = p.StaleUntil+1000, p.StaleUntil+2000
	v2, err := Encode(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	v1 := slices.Concat(v2[:30], v2[46:len(v2)-4])
	v1[2] = 1
	v1 = binary.BigEndian.AppendUint32(v1, crc32.Checksum(v1, crcTable))
	var e Entry
	if err := Decode(v1, &e); err != nil {
		t.Fatalf("version 1: %v", err)
	}
	if e.ErrorUntil != p.StaleUntil || e.KeepUntil != p.StaleUntil || e.URLGen != p.URLGen || string(e.Body) != string(p.Body) || len(e.Headers) != len(p.Headers) {
		t.Errorf("version 1 decoded as %+v", e)
	}
	if err := Decode(v2, &e); err != nil || e.ErrorUntil != p.ErrorUntil || e.KeepUntil != p.KeepUntil {
		t.Errorf("version 2: %v, error until %d keep until %d", err, e.ErrorUntil, e.KeepUntil)
	}
}
