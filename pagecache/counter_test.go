package pagecache

import (
	"strconv"
	"testing"
)

// parseCounter takes exactly what strconv.ParseUint(v, 10, 64) takes.
func checkParseCounter(t *testing.T, v string) {
	t.Helper()
	got, ok := parseCounter(Item{Value: []byte(v)})
	want, err := strconv.ParseUint(v, 10, 64)
	if ok != (err == nil) || ok && got != want {
		t.Errorf("parseCounter(%q) = %d, %v; strconv.ParseUint: %d, %v", v, got, ok, want, err)
	}
}

var counterValues = []string{
	"", "0", "7", "00042", "4294967296", "18446744073709551615", "18446744073709551616",
	"99999999999999999999", "000000000000000000001", "-1", "+1", "1_000", "0x10", " 1", "1 ", "1\r\n", "12a",
}

func TestParseCounter(t *testing.T) {
	for _, v := range counterValues {
		checkParseCounter(t, v)
	}
	if n := testing.AllocsPerRun(100, func() { parseCounter(Item{}) }); n != 0 {
		t.Errorf("parseCounter of a missing counter allocates %.0f times; want 0", n)
	}
}

func FuzzParseCounter(f *testing.F) {
	for _, v := range counterValues {
		f.Add(v)
	}
	f.Fuzz(checkParseCounter)
}
