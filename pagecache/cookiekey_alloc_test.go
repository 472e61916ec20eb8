//go:build !race

package pagecache

import "testing"

// TestCookieKeyAllocs: a key with a {cookie:Name} part is built without
// allocating.
func TestCookieKeyAllocs(t *testing.T) {
	k, err := NewKeyTemplate(KeyOptions{Template: "page:{host}{uri}|{cookie:django_language}"})
	if err != nil {
		t.Fatal(err)
	}
	in := &KeyInput{Host: []byte("example.com"), Path: []byte("/a"), Cookies: [][]byte{[]byte("sessionid=x; django_language=fr")}}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := k.Append(buf[:0], in, nil); !ok {
			t.Fatal("refused")
		}
	}); n != 0 {
		t.Errorf("%v allocations; want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := k.AppendURLBase(buf[:0], in); !ok {
			t.Fatal("refused")
		}
	}); n != 0 {
		t.Errorf("AppendURLBase: %v allocations; want 0", n)
	}
}
