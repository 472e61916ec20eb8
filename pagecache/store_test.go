package pagecache_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// testStore checks the Store contract; every store passes it.
func testStore(t *testing.T, s pagecache.Store) {
	p := pagecachetest.Prefix()
	if _, err := s.Get(p + "absent"); !errors.Is(err, pagecache.ErrMiss) {
		t.Errorf("Get of an absent key: %v; want ErrMiss", err)
	}
	value := bytes.Repeat([]byte("v"), 100<<10)
	if err := s.Set(p+"a", pagecache.Item{Value: value, Flags: 4}, time.Minute); err != nil {
		t.Fatal(err)
	}
	it, err := s.Get(p + "a")
	if err != nil || !bytes.Equal(it.Value, value) || it.Flags != 4 {
		t.Errorf("Get after Set: %d bytes, flags %d, %v", len(it.Value), it.Flags, err)
	}
	s.Set(p+"b", pagecache.Item{Value: []byte("b")}, time.Minute)
	items := make([]pagecache.Item, 3)
	err = s.GetMulti([]string{p + "a", p + "b", p + "absent"}, items)
	if err != nil || !bytes.Equal(items[0].Value, value) || string(items[1].Value) != "b" || items[2].Found() {
		t.Errorf("GetMulti: %v, %v", items[1:], err)
	}
	if err := s.Delete(p + "a"); err != nil {
		t.Error(err)
	}
	if err := s.Delete(p + "a"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
	if _, err := s.Get(p + "a"); !errors.Is(err, pagecache.ErrMiss) {
		t.Errorf("Get after Delete: %v", err)
	}
	if err := s.Set(p+"big", pagecache.Item{Value: make([]byte, 1<<20)}, time.Minute); !errors.Is(err, pagecache.ErrTooLarge) {
		t.Errorf("Set over the item size: %v; want ErrTooLarge", err)
	}
	s.Set(p+"short", pagecache.Item{Value: []byte("x")}, time.Second)
	time.Sleep(2100 * time.Millisecond)
	if _, err := s.Get(p + "short"); !errors.Is(err, pagecache.ErrMiss) {
		t.Errorf("Get past the TTL: %v; want ErrMiss", err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				k := fmt.Sprintf("%sc%d-%d", p, g, i)
				s.Set(k, pagecache.Item{Value: []byte(k)}, time.Minute)
				if it, err := s.Get(k); err != nil || string(it.Value) != k {
					t.Errorf("concurrent %s: %q %v", k, it.Value, err)
				}
			}
		})
	}
	wg.Wait()
}

func TestMemcacheStore(t *testing.T) {
	m, err := pagecache.NewMemcache(pagecache.MemcacheOptions{Servers: []string{pagecachetest.Memcached(t)}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	testStore(t, m)
	if m.Stats.Ops.Load() == 0 || m.Stats.Misses.Load() == 0 || m.Stats.TooLarge.Load() != 1 || m.Stats.Errors.Load() != 0 {
		t.Errorf("stats: ops %d misses %d too large %d errors %d", m.Stats.Ops.Load(), m.Stats.Misses.Load(), m.Stats.TooLarge.Load(), m.Stats.Errors.Load())
	}
}

func TestMemoryStore(t *testing.T) {
	m, err := pagecache.NewMemory(pagecache.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testStore(t, m)
}

// TestMemoryStoreBound fills a small memory store far past its size: it
// stays within its bound and keeps serving what it holds.
func TestMemoryStoreBound(t *testing.T) {
	const limit = 4 << 20
	m, _ := pagecache.NewMemory(pagecache.MemoryOptions{MaxBytes: limit})
	value := make([]byte, 20<<10)
	for i := range 1000 { // 20 MB in
		m.Set(fmt.Sprintf("k%d", i), pagecache.Item{Value: value}, time.Minute)
	}
	time.Sleep(100 * time.Millisecond) // eviction is asynchronous
	if size := m.Size(); size > limit {
		t.Errorf("holds %d bytes; want at most %d", size, limit)
	}
	held := 0
	for i := range 1000 {
		if _, err := m.Get(fmt.Sprintf("k%d", i)); err == nil {
			held++
		}
	}
	if held == 0 || held*(20<<10) > limit {
		t.Errorf("holds %d of 1000 entries of 20 KiB in a %d-byte store", held, limit)
	}
}

func TestMemcacheDown(t *testing.T) {
	pagecachetest.Memcached(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	m, _ := pagecache.NewMemcache(pagecache.MemcacheOptions{Servers: []string{addr}, Timeout: 100 * time.Millisecond})
	start := time.Now()
	if _, err := m.Get("k"); err == nil || errors.Is(err, pagecache.ErrMiss) {
		t.Errorf("Get on a closed port: %v; want an error that is not a miss", err)
	}
	if time.Since(start) > 150*time.Millisecond || m.Stats.Errors.Load() != 1 {
		t.Errorf("took %v, %d errors", time.Since(start), m.Stats.Errors.Load())
	}

	// A server that accepts and never answers: the timeout holds.
	hang, _ := net.Listen("tcp", "127.0.0.1:0")
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	m2, _ := pagecache.NewMemcache(pagecache.MemcacheOptions{Servers: []string{hang.Addr().String()}, Timeout: 100 * time.Millisecond})
	start = time.Now()
	if _, err := m2.Get("k"); err == nil || time.Since(start) > 300*time.Millisecond || m2.Stats.Timeouts.Load() != 1 {
		t.Errorf("hanging server: %v after %v, %d timeouts", err, time.Since(start), m2.Stats.Timeouts.Load())
	}
}
