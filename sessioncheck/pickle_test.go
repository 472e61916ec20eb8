package sessioncheck

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// Pickles written by CPython 3.11's pickle.dumps (protocols 2 to 5), as
// django-redis, PyMemcacheCache and PyLibMCCache call it on a session dict.
var pickleCases = []struct {
	name  string
	hex   string
	auth  bool
	doubt bool
}{
	// {'_auth_user_id': '1', '_auth_user_backend': '...ModelBackend', '_auth_user_hash': 'ab'*32}
	{"login p2", "80027d710028580d0000005f617574685f757365725f69647101580100000031710258120000005f617574685f757365725f6261636b656e6471035829000000646a616e676f2e636f6e747269622e617574682e6261636b656e64732e4d6f64656c4261636b656e647104580f0000005f617574685f757365725f6861736871055840000000616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261627106752e", true, false},
	{"login p3", "80037d710028580d0000005f617574685f757365725f69647101580100000031710258120000005f617574685f757365725f6261636b656e6471035829000000646a616e676f2e636f6e747269622e617574682e6261636b656e64732e4d6f64656c4261636b656e647104580f0000005f617574685f757365725f6861736871055840000000616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261627106752e", true, false},
	{"login p4", "800495af000000000000007d94288c0d5f617574685f757365725f6964948c0131948c125f617574685f757365725f6261636b656e64948c29646a616e676f2e636f6e747269622e617574682e6261636b656e64732e4d6f64656c4261636b656e64948c0f5f617574685f757365725f68617368948c406162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616294752e", true, false},
	{"login p5", "800595af000000000000007d94288c0d5f617574685f757365725f6964948c0131948c125f617574685f757365725f6261636b656e64948c29646a616e676f2e636f6e747269622e617574682e6261636b656e64732e4d6f64656c4261636b656e64948c0f5f617574685f757365725f68617368948c406162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616294752e", true, false},
	// {'django_language': 'fr', 'cart': [1, 2, 3], 'n': 2**40, 'neg': -5, 'f': 1.5, 't': True, 'no': None, 'tup': (1, 'a'), 'nested': {'a': {'b': []}}}
	{"anonymous p2", "80027d710028580f000000646a616e676f5f6c616e6775616765710158020000006672710258040000006361727471035d7104284b014b024b036558010000006e71058a0600000000000158030000006e656771064afbffffff5801000000667107473ff800000000000058010000007471088858020000006e6f71094e5803000000747570710a4b01580100000061710b86710c58060000006e6573746564710d7d710e680b7d710f58010000006271105d71117373752e", false, false},
	{"anonymous p3", "80037d710028580f000000646a616e676f5f6c616e6775616765710158020000006672710258040000006361727471035d7104284b014b024b036558010000006e71058a0600000000000158030000006e656771064afbffffff5801000000667107473ff800000000000058010000007471088858020000006e6f71094e5803000000747570710a4b01580100000061710b86710c58060000006e6573746564710d7d710e680b7d710f58010000006271105d71117373752e", false, false},
	{"anonymous p4", "80049581000000000000007d94288c0f646a616e676f5f6c616e6775616765948c026672948c0463617274945d94284b014b024b03658c016e948a060000000000018c036e6567944afbffffff8c016694473ff80000000000008c017494888c026e6f944e8c03747570944b018c01619486948c066e6573746564947d94680b7d948c0162945d947373752e", false, false},
	{"anonymous p5", "80059581000000000000007d94288c0f646a616e676f5f6c616e6775616765948c026672948c0463617274945d94284b014b024b03658c016e948a060000000000018c036e6567944afbffffff8c016694473ff80000000000008c017494888c026e6f944e8c03747570944b018c01619486948c066e6573746564947d94680b7d948c0162945d947373752e", false, false},
	{"empty p2", "80027d71002e", false, false},
	{"empty p5", "80057d942e", false, false},
	// {'a': l, 'b': l, 'c': s} with l = [s, s], s = 'x'*300: BINUNICODE, memo gets.
	{"shared references", "8004954d010000000000007d94288c0161945d9428582c010000" + strings.Repeat("78", 300) + "946803658c01629468028c0163946803752e", false, false},
	// {'_auth_user_id': '1', 'when': datetime(2020, 1, 1)}: a class (STACK_GLOBAL, REDUCE).
	{"datetime", "80049549000000000000007d94288c0d5f617574685f757365725f6964948c0131948c047768656e948c086461746574696d65948c086461746574696d65949394430a07e401010000000000009485945294752e", false, true},
	{"bytes", "8004950d000000000000007d948c0162944302787894732e", false, true},
	{"set", "8004950e000000000000007d948c0173948f94284b0190732e", false, true},
	{"protocol 0", "286470300a56610a70310a49310a732e", false, true},
	{"a list", "80049506000000000000005d944b01612e", false, true},
	{"django-redis int", hex.EncodeToString([]byte("12345")), false, true},
	{"empty", "", false, true},
	{"no stop", "80047d94", false, true},
	{"bytes after stop", "80057d942e00", false, true},
	{"list as key", "80047d945d944e732e", false, true},
	{"tuple of list as key", "80047d945d948594" + "4e732e", false, true},
	{"setitem without dict", "80045d944e4e732e", false, true},
	{"memo get unknown", "80047d68052e", false, true},
	{"memo put out of order", "80047d7105" + "2e", false, true},
	{"stop with a mark open", "8004287d2e", false, true},
	{"tuple3 over a mark", "80044e284e4e872e", false, true},
	{"string past the end", "80047d8c0561732e", false, true},
	{"protocol 6", "80067d2e", false, true},
	{"proto twice", "80047d80042e", false, true},
	{"global", "8004635f5f6275696c74696e5f5f0a6576616c0a2e", false, true},
}

func TestParsePickledSession(t *testing.T) {
	for _, c := range pickleCases {
		t.Run(c.name, func(t *testing.T) {
			data, err := hex.DecodeString(c.hex)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParsePickledSession(data)
			if c.doubt {
				if !errors.Is(err, ErrUndecodable) {
					t.Fatalf("got %v, %v; want ErrUndecodable", got, err)
				}
				return
			}
			if err != nil || got != c.auth {
				t.Fatalf("got %v, %v; want %v", got, err, c.auth)
			}
		})
	}
}

func TestPickleDeepNesting(t *testing.T) {
	// [[[[...]]]] built with EMPTY_LIST and APPEND: no marks, a deep stack.
	deep := "8004" + strings.Repeat("5d", maxPickleStack+1) + strings.Repeat("61", maxPickleStack) + "2e"
	data, _ := hex.DecodeString(deep)
	if _, err := ParsePickledSession(data); !errors.Is(err, ErrUndecodable) {
		t.Errorf("got %v; want ErrUndecodable past the stack limit", err)
	}
	marks := "80047d" + strings.Repeat("28", maxPickleMarks+1)
	data, _ = hex.DecodeString(marks)
	if _, err := ParsePickledSession(data); !errors.Is(err, ErrUndecodable) {
		t.Errorf("got %v; want ErrUndecodable past the mark limit", err)
	}
}

func FuzzParsePickledSession(f *testing.F) {
	for _, c := range pickleCases {
		data, _ := hex.DecodeString(c.hex)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ok, err := ParsePickledSession(data)
		if err != nil && (ok || !errors.Is(err, ErrUndecodable)) {
			t.Fatalf("got %v, %v: an error must be ErrUndecodable and say no", ok, err)
		}
	})
}

func BenchmarkParsePickledSession(b *testing.B) {
	data, _ := hex.DecodeString(pickleCases[3].hex)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if ok, err := ParsePickledSession(data); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
