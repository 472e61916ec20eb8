package pagecache

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"
)

// An op names a Store operation.
type op string

const (
	opGet      op = "Get"
	opGetMulti op = "GetMulti"
	opSet      op = "Set"
	opAdd      op = "Add"
	opIncr     op = "Incr"
	opDelete   op = "Delete"
	// opAddGetSet is an AddGetSetter's AddGetSet (see faultAddGetSetter).
	opAddGetSet op = "AddGetSet"
)

// errInjected is the error a fault fails a call with unless it names another.
var errInjected = errors.New("faultstore: injected failure")

// A fault acts on the calls of op it matches: it waits delay, runs do
// (outside the store's lock, so do may use the store), then fails the
// call with err, or lets it through when err is nil.
type fault struct {
	op op
	// key, when set, restricts the fault to calls on keys it accepts; a
	// GetMulti matches when one of its keys does.
	key func(key string) bool
	// nth, when above 0, acts only on the nth matching call (from 1) since
	// the fault was injected.
	nth   int
	delay time.Duration
	do    func()
	err   error

	seen int // matching calls so far
}

// faultStore wraps a Store for tests: it counts the calls of each
// operation and lets a test make chosen calls wait, run code, or fail.
// It is safe for concurrent use.
type faultStore struct {
	Store
	mu     sync.Mutex
	calls  map[op]int // since the last reset
	faults []*fault
}

var _ Store = (*faultStore)(nil)

func newFaultStore(s Store) *faultStore {
	return &faultStore{Store: s, calls: map[op]int{}}
}

// inject adds a fault; the first fault that acts on a call decides it.
func (s *faultStore) inject(f fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// heal removes every fault.
func (s *faultStore) heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// reset forgets the calls counted so far.
func (s *faultStore) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
}

// wantCalls checks that the calls since the last reset are exactly want
// (operations it leaves out: none), then resets.
func (s *faultStore) wantCalls(t *testing.T, what string, want map[op]int) {
	t.Helper()
	s.mu.Lock()
	got := maps.Clone(s.calls)
	clear(s.calls)
	s.mu.Unlock()
	if !maps.Equal(got, want) {
		t.Errorf("%s: store calls %s; want %s", what, callList(got), callList(want))
	}
}

// callList prints calls in a stable order.
func callList(calls map[op]int) string {
	if len(calls) == 0 {
		return "none"
	}
	s := ""
	for _, o := range slices.Sorted(maps.Keys(calls)) {
		s += fmt.Sprintf(" %s=%d", o, calls[o])
	}
	return s[1:]
}

// enter counts a call and applies the fault that acts on it, if any.
func (s *faultStore) enter(o op, keys ...string) error {
	s.mu.Lock()
	s.calls[o]++
	var act *fault
	for _, f := range s.faults {
		if f.op != o || f.key != nil && !slices.ContainsFunc(keys, f.key) {
			continue
		}
		f.seen++
		if act == nil && (f.nth == 0 || f.seen == f.nth) {
			act = f
		}
	}
	s.mu.Unlock()
	if act == nil {
		return nil
	}
	time.Sleep(act.delay)
	if act.do != nil {
		act.do()
	}
	return act.err
}

func (s *faultStore) Get(key string) (Item, error) {
	if err := s.enter(opGet, key); err != nil {
		return Item{}, err
	}
	return s.Store.Get(key)
}

func (s *faultStore) GetMulti(keys []string, items []Item) error {
	if err := s.enter(opGetMulti, keys...); err != nil {
		clear(items)
		return err
	}
	return s.Store.GetMulti(keys, items)
}

func (s *faultStore) Set(key string, it Item, ttl time.Duration) error {
	if err := s.enter(opSet, key); err != nil {
		return err
	}
	return s.Store.Set(key, it, ttl)
}

func (s *faultStore) Add(key string, it Item, ttl time.Duration) error {
	if err := s.enter(opAdd, key); err != nil {
		return err
	}
	return s.Store.Add(key, it, ttl)
}

func (s *faultStore) Incr(key string, delta uint64) (uint64, error) {
	if err := s.enter(opIncr, key); err != nil {
		return 0, err
	}
	return s.Store.Incr(key, delta)
}

func (s *faultStore) Delete(key string) error {
	if err := s.enter(opDelete, key); err != nil {
		return err
	}
	return s.Store.Delete(key)
}

// faultAddGetSetter is a faultStore over an AddGetSetter, which it is
// too: a Cache over it takes the AddGetSet path, whose calls it counts
// and may fail like the others (keys: the counter, then the key set).
type faultAddGetSetter struct{ *faultStore }

var _ AddGetSetter = faultAddGetSetter{}

// withAddGetSet returns s as a faultAddGetSetter when the store it wraps
// is an AddGetSetter, else s.
func withAddGetSet(s *faultStore) Store {
	if _, ok := s.Store.(AddGetSetter); ok {
		return faultAddGetSetter{s}
	}
	return s
}

func (s faultAddGetSetter) AddGetSet(keys []string, adds, items []Item, key string, it Item, ttl time.Duration) error {
	if err := s.enter(opAddGetSet, append(slices.Clip(keys), key)...); err != nil {
		return err
	}
	return s.Store.(AddGetSetter).AddGetSet(keys, adds, items, key, it, ttl)
}

func (s faultAddGetSetter) AddGetMulti(keys []string, adds, items []Item) error {
	return AddGetMulti(s.faultStore, keys, adds, items)
}

// TestFaultStore checks the wrapper itself: a fault acts only on its
// operation, on the keys it accepts, and on its nth call when given one.
func TestFaultStore(t *testing.T) {
	m, err := NewMemory(MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := newFaultStore(m)
	ran := 0
	s.inject(fault{op: opGet, key: func(k string) bool { return k == "b" }, nth: 2, do: func() { ran++ }, err: errInjected})
	for i, tc := range []struct {
		key  string
		want error
	}{
		{"a", ErrMiss},     // a key the fault does not accept
		{"b", ErrMiss},     // the first call it accepts
		{"a", ErrMiss},     // not counted towards nth
		{"b", errInjected}, // the second
		{"b", ErrMiss},     // the third
	} {
		if _, err := s.Get(tc.key); !errors.Is(err, tc.want) {
			t.Errorf("call %d, Get(%q): got %v; want %v", i+1, tc.key, err, tc.want)
		}
	}
	if ran != 1 {
		t.Errorf("the fault's function ran %d times; want 1", ran)
	}
	s.heal()
	s.inject(fault{op: opGetMulti, key: func(k string) bool { return k == "b" }, err: errInjected})
	if err := s.GetMulti([]string{"a", "b"}, make([]Item, 2)); !errors.Is(err, errInjected) {
		t.Errorf("GetMulti with one key the fault accepts: got %v; want the injected error", err)
	}
	if err := s.Set("a", Item{Value: []byte("v")}, time.Minute); err != nil {
		t.Errorf("Set with a fault on GetMulti only: got %v; want nil", err)
	}
	s.wantCalls(t, "those calls", map[op]int{opGet: 5, opGetMulti: 1, opSet: 1})
	s.wantCalls(t, "after a check", nil)
}
