package pagecache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// libmemcached runs testdata/libmemcached.py: req is its JSON request,
// resp receives its answer.
func libmemcached(t *testing.T, req, resp any) {
	t.Helper()
	py := pagecachetest.Pylibmc(t)
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "testdata/libmemcached.py")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testdata/libmemcached.py: %v: %s", err, stderr.String())
	}
	if err := json.Unmarshal(out, resp); err != nil {
		t.Fatalf("testdata/libmemcached.py answered %q: %v", out, err)
	}
}

// ketamaKeys are n keys shaped like page keys, a few with bytes of 0x80 and
// more (which libhashkit's one-at-a-time reads as negative chars).
func ketamaKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("page:example.com/articles/%d?page=%d", i*7919, i%13)
		if i%50 == 0 {
			keys[i] = fmt.Sprintf("page:example.com/café/%d/ünïcode", i)
		}
	}
	return keys
}

func TestKetamaRingNames(t *testing.T) {
	for _, tc := range []struct{ server, want string }{
		{"127.0.0.1:21970", "127.0.0.1:21970"},
		{"127.0.0.1:11211", "127.0.0.1"}, // libmemcached's quirk, which twemproxy keeps
		{"cache-1.internal:11211", "cache-1.internal"},
		{"cache-1.internal:11212", "cache-1.internal:11212"},
		{"[::1]:11211", "::1"},
		{"[::1]:11300", "::1:11300"},
		{"unix:/run/memcached/memcached.sock", "/run/memcached/memcached.sock:0"},
	} {
		t.Run(tc.server, func(t *testing.T) {
			got, err := ringName(tc.server)
			if err != nil || got != tc.want {
				t.Errorf("ringName(%q) = %q, %v; want %q", tc.server, got, err, tc.want)
			}
		})
	}
}

// TestKetamaWeightedPoints checks libmemcached's and twemproxy's float
// arithmetic: equal weights give 160 points a server, except for the pool
// sizes where 1/n*40*n rounds below 40 in float (25 servers get 156 each;
// TestKetamaContinuumAgreesWithLibmemcached checks that libmemcached
// does the same).
func TestKetamaWeightedPoints(t *testing.T) {
	short := []int{25, 47, 50, 55, 61}
	for n := 1; n <= 64; n++ {
		want := 160
		if slices.Contains(short, n) {
			want = 156
		}
		if got := weightedPoints(1, n, n); got != want {
			t.Errorf("%d servers of weight 1: %d points each; want %d", n, got, want)
		}
	}
	if got := weightedPoints(2, 3, 2); got != 212 {
		t.Errorf("weight 2 of 3 on 2 servers: %d points; want 212", got)
	}
}

// TestKetamaHashesAgreeWithLibhashkit compares the two hashes with the
// machine's libhashkit (libmemcached's), on point names and on keys.
func TestKetamaHashesAgreeWithLibhashkit(t *testing.T) {
	strs := append(ketamaKeys(200), "", "a", "127.0.0.1-0", "127.0.0.1:21970-39", "\u0080\u00ff\U0001F600")
	var got struct {
		OneAtATime []uint32 `json:"one_at_a_time"`
		MD5        []uint32 `json:"md5"`
	}
	libmemcached(t, map[string]any{"op": "hash", "strings": strs}, &got)
	if len(got.OneAtATime) != len(strs) || len(got.MD5) != len(strs) {
		t.Fatalf("libhashkit answered %d and %d hashes; want %d", len(got.OneAtATime), len(got.MD5), len(strs))
	}
	for i, s := range strs {
		if h := oneAtATime(s); h != got.OneAtATime[i] {
			t.Errorf("oneAtATime(%q) = %d; libhashkit says %d", s, h, got.OneAtATime[i])
		}
		if h := md5Hash(s); h != got.MD5[i] {
			t.Errorf("md5Hash(%q) = %d; libhashkit says %d", s, h, got.MD5[i])
		}
	}
}

// TestKetamaDeterministic: every instance with the same server list puts a
// key on the same server, whatever the order of the list (a point's value
// depends on its server's name only); and taking a server away moves its
// keys only.
func TestKetamaDeterministic(t *testing.T) {
	servers := []string{"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11212"}
	keys := ketamaKeys(5000)
	for _, d := range []Distribution{Ketama, KetamaWeighted} {
		t.Run(d.String(), func(t *testing.T) {
			place := func(servers []string, live ...bool) map[string]string {
				if live == nil {
					live = []bool{true, true, true}
				}
				pts := d.continuum(mustNames(t, servers), live)
				m := map[string]string{}
				for _, k := range keys {
					m[k] = servers[pick(pts, d.keyHash(k))]
				}
				return m
			}
			a, b := place(servers), place(servers)
			reversed := slices.Clone(servers)
			slices.Reverse(reversed)
			c := place(reversed)
			count := map[string]int{}
			for _, k := range keys {
				if a[k] != b[k] || a[k] != c[k] {
					t.Fatalf("%q: on %s, then %s, then (list reversed) %s", k, a[k], b[k], c[k])
				}
				count[a[k]]++
			}
			for _, s := range servers {
				if n := count[s]; n < len(keys)/6 {
					t.Errorf("%s holds %d of %d keys; want a fair share (%v)", s, n, len(keys), count)
				}
			}
			without := place(servers, true, false, true)
			for _, k := range keys {
				if a[k] != servers[1] && without[k] != a[k] {
					t.Fatalf("%q moved from %s to %s when %s left", k, a[k], without[k], servers[1])
				}
				if without[k] == servers[1] {
					t.Fatalf("%q is still on %s, which left", k, servers[1])
				}
			}
		})
	}
}

func mustNames(t *testing.T, servers []string) []string {
	names := make([]string, len(servers))
	for i, s := range servers {
		var err error
		if names[i], err = ringName(s); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// TestKetamaContinuumAgreesWithLibmemcached asks the machine's
// libmemcached (memcached_generate_hash, through ctypes, with the behavior
// pylibmc sets) which server each key goes to, for server lists no test
// could start: host names, port 11211, a unix socket, 25 servers.
func TestKetamaContinuumAgreesWithLibmemcached(t *testing.T) {
	many := func(n int, port string) []string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("10.1.%d.%d:%s", i/200, i%200+1, port))
		}
		return s
	}
	lists := []struct {
		name    string
		servers []string
	}{
		{"three on other ports", []string{"127.0.0.1:21970", "127.0.0.1:21971", "127.0.0.1:21972"}},
		{"host names on 11211", []string{"cache-a.internal:11211", "cache-b.internal:11211", "cache-c.internal:11211", "cache-d.internal:11211"}},
		{"mixed ports", []string{"10.0.0.1:11211", "10.0.0.2:11212", "10.0.0.3:11211"}},
		{"a unix socket", []string{"unix:/run/memcached/a.sock", "10.0.0.2:11211"}},
		{"one", []string{"10.0.0.1:11211"}},
		{"10 servers", many(10, "11211")},
		{"25 servers", many(25, "11211")},
		{"47 servers", many(47, "11300")},
	}
	keys := ketamaKeys(2000)
	for _, d := range []Distribution{Ketama, KetamaWeighted} {
		for _, l := range lists {
			t.Run(d.String()+"/"+l.name, func(t *testing.T) {
				var got struct{ Servers []int }
				libmemcached(t, map[string]any{"op": "place", "behavior": d.String(), "servers": l.servers, "keys": keys}, &got)
				if len(got.Servers) != len(keys) {
					t.Fatalf("libmemcached placed %d keys; want %d", len(got.Servers), len(keys))
				}
				pts := d.continuum(mustNames(t, l.servers), slices.Repeat([]bool{true}, len(l.servers)))
				wrong := 0
				for i, k := range keys {
					if s := pick(pts, d.keyHash(k)); s != got.Servers[i] {
						if wrong++; wrong <= 5 {
							t.Errorf("%q: on %s; libmemcached says %s", k, l.servers[s], l.servers[got.Servers[i]])
						}
					}
				}
				if wrong > 0 {
					t.Errorf("%d of %d keys disagree", wrong, len(keys))
				}
			})
		}
	}
}

func TestDistributionParse(t *testing.T) {
	for _, d := range []Distribution{Modula, Ketama, KetamaWeighted} {
		if got, err := ParseDistribution(d.String()); err != nil || got != d {
			t.Errorf("ParseDistribution(%q) = %v, %v; want %v", d.String(), got, err, d)
		}
	}
	if _, err := ParseDistribution("consistent"); err == nil {
		t.Error(`ParseDistribution("consistent"): no error`)
	}
}

// TestKetamaAgreesWithPylibmc writes keys through pylibmc on three real
// memcached servers, then reads every one through Memcache: each is found,
// with its own value, on the server PickServer names (asked directly).
// Modula, as a check that the test can fail, finds most of them missing.
func TestKetamaAgreesWithPylibmc(t *testing.T) {
	pagecachetest.Pylibmc(t)
	for _, tc := range []struct {
		name      string
		dist      Distribution
		behaviors map[string]any
		addrs     []string // "" for a free port on 127.0.0.1
	}{
		{"ketama", Ketama, map[string]any{"ketama": true}, []string{"", "", ""}},
		{"ketama with tcp_nodelay as Django's docs have it", Ketama, map[string]any{"tcp_nodelay": true, "ketama": true}, []string{"", "", ""}},
		{"ketama_weighted", KetamaWeighted, map[string]any{"ketama_weighted": true}, []string{"", "", ""}},
		// Port 11211 is left out of the points' names: a second loopback
		// address lets a test memcached have it.
		{"ketama on port 11211", Ketama, map[string]any{"ketama": true}, []string{"127.0.0.2:11211", "127.0.0.3:11211", ""}},
		{"ketama_weighted on port 11211", KetamaWeighted, map[string]any{"ketama_weighted": true}, []string{"127.0.0.2:11211", "127.0.0.3:11211", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var servers []*pagecachetest.Server
			var addrs []string
			for _, a := range tc.addrs {
				var s *pagecachetest.Server
				if a == "" {
					s = pagecachetest.Start(t)
				} else {
					s = pagecachetest.StartAt(t, a)
				}
				servers = append(servers, s)
				addrs = append(addrs, s.Addr)
			}
			keys := ketamaKeys(1000)
			var got struct{ Libmemcached string }
			libmemcached(t, map[string]any{"op": "set", "servers": addrs, "behaviors": tc.behaviors, "keys": keys}, &got)
			t.Logf("pylibmc on libmemcached %s", got.Libmemcached)

			holder := map[string]string{}
			for _, s := range servers {
				for _, k := range s.Keys() {
					holder[k] = s.Addr
				}
			}
			m, err := NewMemcache(MemcacheOptions{Servers: addrs, Distribution: tc.dist, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			wrong := 0
			for _, k := range keys {
				a, err := m.servers.PickServer(k)
				if err != nil {
					t.Fatal(err)
				}
				it, err := m.Get(k)
				if a.String() != holder[k] || err != nil || string(it.Value) != "value of "+k {
					if wrong++; wrong <= 5 {
						t.Errorf("%q: PickServer says %s, pylibmc put it on %q; Get = %q, %v", k, a, holder[k], it.Value, err)
					}
				}
			}
			if wrong > 0 {
				t.Fatalf("%d of %d keys disagree", wrong, len(keys))
			}

			mod, _ := NewMemcache(MemcacheOptions{Servers: addrs, Timeout: time.Second})
			defer mod.Close()
			found := 0
			for _, k := range keys {
				if _, err := mod.Get(k); err == nil {
					found++
				}
			}
			if found > len(keys)/2 {
				t.Errorf("modula found %d of %d keys pylibmc wrote with %v; want about a third", found, len(keys), tc.behaviors)
			}
		})
	}
}

// events records a store's ServerEvents.
type events struct {
	mu  sync.Mutex
	got []ServerEvent
}

func (e *events) add(ev ServerEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

func (e *events) list() []ServerEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

func (e *events) String() string {
	var b strings.Builder
	for _, ev := range e.list() {
		fmt.Fprintf(&b, "[%s ejected=%v err=%v] ", ev.Server, ev.Ejected, ev.Err)
	}
	return b.String()
}

// TestEjectAndReturn stops one of three servers: its first
// server_failure_limit operations fail, then it is off the ring (one
// event) and its keys are misses on the next server; a retry while it is
// still down ejects it again silently; once restarted and past the retry
// timeout it holds its keys again (one event).
func TestEjectAndReturn(t *testing.T) {
	for _, d := range []Distribution{Ketama, KetamaWeighted} {
		t.Run(d.String(), func(t *testing.T) {
			s := []*pagecachetest.Server{pagecachetest.Start(t), pagecachetest.Start(t), pagecachetest.Start(t)}
			addrs := []string{s[0].Addr, s[1].Addr, s[2].Addr}
			var ev events
			const retry = 300 * time.Millisecond
			m, err := NewMemcache(MemcacheOptions{Servers: addrs, Distribution: d, Timeout: time.Second,
				AutoEject: true, FailureLimit: 3, RetryTimeout: retry, OnServerEvent: ev.add})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			// A key on s[1], and the server holding it once s[1] is off.
			var key string
			for _, k := range ketamaKeys(100) {
				if a, _ := m.servers.PickServer(k); a.String() == s[1].Addr {
					key = k
					break
				}
			}
			if err := m.Set(key, Item{Value: []byte("on s1")}, time.Minute); err != nil {
				t.Fatal(err)
			}
			s[1].Stop()
			for i := 1; i <= 3; i++ {
				if _, err := m.Get(key); err == nil || errors.Is(err, ErrMiss) {
					t.Fatalf("get %d with its server down: %v; want a failure", i, err)
				}
			}
			if got := ev.list(); len(got) != 1 || !got[0].Ejected || got[0].Server != s[1].Addr || got[0].Err == nil {
				t.Fatalf("after 3 failures: events %s; want one ejection of %s", &ev, s[1].Addr)
			}
			a, _ := m.servers.PickServer(key)
			if a.String() == s[1].Addr {
				t.Fatalf("after the ejection %q is still on %s", key, a)
			}
			if _, err := m.Get(key); !errors.Is(err, ErrMiss) {
				t.Fatalf("get on the next server: %v; want a miss", err)
			}
			if err := m.Set(key, Item{Value: []byte("on the next")}, time.Minute); err != nil {
				t.Fatalf("set on the next server: %v", err)
			}
			if it, err := m.Get(key); err != nil || string(it.Value) != "on the next" {
				t.Fatalf("get on the next server: %q, %v", it.Value, err)
			}

			time.Sleep(retry + 50*time.Millisecond) // back on the ring, still down
			if _, err := m.Get(key); err == nil || errors.Is(err, ErrMiss) {
				t.Fatalf("get on the retry while down: %v; want a failure", err)
			}
			if it, err := m.Get(key); err != nil || string(it.Value) != "on the next" {
				t.Fatalf("get after the failed retry: %q, %v; want the next server's value", it.Value, err)
			}
			if n := m.Stats.Ejections.Load(); n != 2 || len(ev.list()) != 1 {
				t.Fatalf("after the failed retry: %d ejections, events %s; want 2 and still one event", n, &ev)
			}

			s[1].Start()
			time.Sleep(retry + 50*time.Millisecond)
			if _, err := m.Get(key); !errors.Is(err, ErrMiss) { // a restarted memcached is empty
				t.Fatalf("get after the return: %v; want a miss from the restarted server", err)
			}
			if a, _ := m.servers.PickServer(key); a.String() != s[1].Addr {
				t.Fatalf("after the return %q is on %s; want %s", key, a, s[1].Addr)
			}
			if err := m.Set(key, Item{Value: []byte("on s1 again")}, time.Minute); err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(s[1].Keys(), key) {
				t.Errorf("%q is not on %s after its return", key, s[1].Addr)
			}
			got := ev.list()
			if len(got) != 2 || got[1].Ejected || got[1].Server != s[1].Addr {
				t.Fatalf("events %s; want the ejection, then %s back", &ev, s[1].Addr)
			}
		})
	}
}

// TestEjectNotUnderModula: under modula a failing server stays where it
// is, since ejecting it would move almost every key.
func TestEjectNotUnderModula(t *testing.T) {
	a, b := pagecachetest.Start(t), pagecachetest.Start(t)
	var ev events
	m, err := NewMemcache(MemcacheOptions{Servers: []string{a.Addr, b.Addr}, Timeout: time.Second,
		AutoEject: true, FailureLimit: 1, RetryTimeout: time.Minute, OnServerEvent: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var key string
	for _, k := range ketamaKeys(100) {
		if s, _ := m.servers.PickServer(k); s.String() == b.Addr {
			key = k
			break
		}
	}
	b.Stop()
	for i := 0; i < 5; i++ {
		if _, err := m.Get(key); err == nil || errors.Is(err, ErrMiss) {
			t.Fatalf("get %d under modula with its server down: %v; want a failure", i, err)
		}
	}
	if m.Stats.Ejections.Load() != 0 || len(ev.list()) != 0 {
		t.Errorf("modula ejected: %d ejections, events %s", m.Stats.Ejections.Load(), &ev)
	}
}

// freeAddr returns a loopback address nothing listens on (for a moment).
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNutcracker runs twemproxy in front of servers with one pool,
// "distribution: ketama" and "hash: md5", and returns its address.
func startNutcracker(t *testing.T, bin string, servers []string) string {
	dir := t.TempDir()
	listen, stats := freeAddr(t), freeAddr(t)
	var conf strings.Builder
	fmt.Fprintf(&conf, "pool:\n  listen: %s\n  hash: md5\n  distribution: ketama\n  timeout: 1000\n  servers:\n", listen)
	for _, s := range servers {
		fmt.Fprintf(&conf, "    - %s:1\n", s)
	}
	if err := os.WriteFile(filepath.Join(dir, "nutcracker.yml"), []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(stats)
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "nutcracker.yml"), "-o", filepath.Join(dir, "nutcracker.log"),
		"-p", filepath.Join(dir, "nutcracker.pid"), "-a", host, "-s", port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", listen); err == nil {
			c.Close()
			return listen
		}
		if i == 200 {
			log, _ := os.ReadFile(filepath.Join(dir, "nutcracker.log"))
			t.Fatalf("nutcracker did not come up on %s: %s", listen, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKetamaWeightedAgreesWithTwemproxy writes keys through twemproxy
// (Debian's nutcracker) with "distribution: ketama" and "hash: md5", then
// reads each through Memcache with KetamaWeighted on the same servers.
func TestKetamaWeightedAgreesWithTwemproxy(t *testing.T) {
	bin := pagecachetest.Nutcracker(t)
	for _, tc := range []struct {
		name  string
		addrs []string
	}{
		{"other ports", []string{"", "", ""}},
		{"port 11211", []string{"127.0.0.2:11211", "127.0.0.3:11211", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var servers []*pagecachetest.Server
			var addrs []string
			for _, a := range tc.addrs {
				var s *pagecachetest.Server
				if a == "" {
					s = pagecachetest.Start(t)
				} else {
					s = pagecachetest.StartAt(t, a)
				}
				servers = append(servers, s)
				addrs = append(addrs, s.Addr)
			}
			proxy, err := NewMemcache(MemcacheOptions{Servers: []string{startNutcracker(t, bin, addrs)}, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			keys := ketamaKeys(1000)
			for _, k := range keys {
				if err := proxy.Set(k, Item{Value: []byte("value of " + k)}, time.Minute); err != nil {
					t.Fatalf("set %q through nutcracker: %v", k, err)
				}
			}
			holder := map[string]string{}
			for _, s := range servers {
				for _, k := range s.Keys() {
					holder[k] = s.Addr
				}
			}
			m, err := NewMemcache(MemcacheOptions{Servers: addrs, Distribution: KetamaWeighted, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			wrong := 0
			for _, k := range keys {
				a, _ := m.servers.PickServer(k)
				it, err := m.Get(k)
				if a.String() != holder[k] || err != nil || string(it.Value) != "value of "+k {
					if wrong++; wrong <= 5 {
						t.Errorf("%q: PickServer says %s, twemproxy put it on %q; Get = %q, %v", k, a, holder[k], it.Value, err)
					}
				}
			}
			if wrong > 0 {
				t.Fatalf("%d of %d keys disagree", wrong, len(keys))
			}
		})
	}
}
