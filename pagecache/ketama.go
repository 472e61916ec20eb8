package pagecache

import (
	"cmp"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// A Distribution says which of several memcached servers holds a key. Every
// program reading or writing the same keys must use the same one over the
// same server list, or each finds the others' pages missing.
type Distribution int

const (
	// Modula is gomemcache's own: the key's CRC32 (IEEE) modulo the number
	// of servers. Adding, removing or losing a server moves almost every
	// key.
	Modula Distribution = iota
	// Ketama is libmemcached's MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA with
	// its default hash, which is what pylibmc's behaviors {"ketama": True}
	// (and so Django's PyLibMCCache with them) sets: 100 points a server,
	// each the one-at-a-time hash of "host:port-N" (N from 0; "host-N" when
	// the port is 11211), and keys hashed with one-at-a-time too.
	Ketama
	// KetamaWeighted is libmemcached's MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED
	// (pylibmc's {"ketama_weighted": True}, PHP Memcached's
	// OPT_LIBKETAMA_COMPATIBLE), which is also twemproxy's
	// "distribution: ketama" with "hash: md5": 160 points a server, four
	// from each MD5 digest of "host:port-N" (the same names), and keys
	// hashed with MD5. Every server weighs 1.
	KetamaWeighted
)

var distributionNames = [...]string{"modula", "ketama", "ketama_weighted"}

func (d Distribution) String() string {
	if d < 0 || int(d) >= len(distributionNames) {
		return "Distribution(" + strconv.Itoa(int(d)) + ")"
	}
	return distributionNames[d]
}

// ParseDistribution reads "modula", "ketama" or "ketama_weighted".
func ParseDistribution(s string) (Distribution, error) {
	if i := slices.Index(distributionNames[:], s); i >= 0 {
		return Distribution(i), nil
	}
	return 0, fmt.Errorf("pagecache: distribution %q is not one of modula, ketama, ketama_weighted", s)
}

// Defaults of the ejection options of MemcacheOptions.
const (
	// DefaultFailureLimit is how many consecutive failures eject a server.
	DefaultFailureLimit = 3
	// DefaultRetryTimeout is how long an ejected server stays off the ring.
	DefaultRetryTimeout = 30 * time.Second
)

// A ServerEvent is a memcached server taken off the ring, or answering again
// after it was.
type ServerEvent struct {
	Server  string // as listed in MemcacheOptions.Servers
	Ejected bool   // true: off the ring; false: back and answering
	Err     error  // the failure that ejected it, when Ejected
	Retry   time.Duration
}

// The libmemcached and twemproxy constants the continuum is built from.
const (
	ketamaPoints         = 100 // MEMCACHED_POINTS_PER_SERVER
	ketamaWeightedPoints = 160 // MEMCACHED_POINTS_PER_SERVER_KETAMA, twemproxy's KETAMA_POINTS_PER_SERVER
	ketamaDefaultPort    = 11211
)

// A ringPoint is one point of a continuum: keys hashing after the previous
// point and up to this one belong to server.
type ringPoint struct {
	hash   uint32
	server int // index in the server list
}

// ringName is the name a server's points are hashed from: the host as
// written, then ":port" unless the port is memcached's default 11211
// (libmemcached leaves it out, and twemproxy follows it). A unix socket is
// its path with libmemcached's port 0.
func ringName(server string) (string, error) {
	if path, ok := strings.CutPrefix(server, "unix:"); ok {
		return path + ":0", nil
	}
	host, p, err := net.SplitHostPort(server)
	if err != nil {
		return "", err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", fmt.Errorf("port %q: %w", p, err)
	}
	if port == ketamaDefaultPort {
		return host, nil
	}
	return host + ":" + strconv.FormatUint(port, 10), nil
}

// oneAtATime is libhashkit's one-at-a-time hash. It reads the key as C
// chars, which are signed on the platforms libmemcached ships for: a byte
// of 0x80 or more adds its sign-extended value.
func oneAtATime(s string) uint32 {
	var h uint32
	for i := 0; i < len(s); i++ {
		h += uint32(int32(int8(s[i])))
		h += h << 10
		h ^= h >> 6
	}
	h += h << 3
	h ^= h >> 11
	h += h << 15
	return h
}

// md5Hash is libhashkit's and twemproxy's MD5 hash: the digest's first four
// bytes, little-endian.
func md5Hash(s string) uint32 {
	sum := md5.Sum([]byte(s))
	return binary.LittleEndian.Uint32(sum[:4])
}

// weightedPoints is how many points libmemcached and twemproxy give a server
// of weight w out of total with live servers on the ring, in their float
// arithmetic (which, for some counts of servers, rounds 40 groups of four
// down to 39).
func weightedPoints(w, total, live int) int {
	pct := float32(w) / float32(total)
	v := float32(float32(float32(pct*ketamaWeightedPoints)/4)*float32(live)) + 1e-10
	return int(math.Floor(float64(float32(v)))) * 4
}

// keyHash is the hash a key is looked up on the continuum with.
func (d Distribution) keyHash(key string) uint32 {
	if d == KetamaWeighted {
		return md5Hash(key)
	}
	return oneAtATime(key)
}

// continuum returns the sorted points of the servers named, skipping those
// not live, as libmemcached's update_continuum builds them: by point value,
// then by server index.
func (d Distribution) continuum(names []string, live []bool) []ringPoint {
	n := 0
	for _, l := range live {
		if l {
			n++
		}
	}
	var pts []ringPoint
	for i, name := range names {
		if !live[i] {
			continue
		}
		switch d {
		case Ketama:
			for j := 0; j < ketamaPoints; j++ {
				pts = append(pts, ringPoint{oneAtATime(name + "-" + strconv.Itoa(j)), i})
			}
		case KetamaWeighted:
			for j := 0; j < weightedPoints(1, n, n)/4; j++ {
				sum := md5.Sum([]byte(name + "-" + strconv.Itoa(j)))
				for x := 0; x < 4; x++ {
					pts = append(pts, ringPoint{binary.LittleEndian.Uint32(sum[4*x:]), i})
				}
			}
		}
	}
	slices.SortFunc(pts, func(a, b ringPoint) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.server, b.server))
	})
	return pts
}

// pick returns the server of the first point at or after h, wrapping
// around; -1 when there are no points.
func pick(pts []ringPoint, h uint32) int {
	if len(pts) == 0 {
		return -1
	}
	i, _ := slices.BinarySearchFunc(pts, h, func(p ringPoint, h uint32) int { return cmp.Compare(p.hash, h) })
	if i == len(pts) {
		i = 0
	}
	return pts[i].server
}

// A ring is a memcache.ServerSelector that places keys on a ketama
// continuum and, when ejecting, takes off it the servers that failed
// limit times in a row, for retry, as twemproxy's auto_eject_hosts does:
// their keys go to the next server on the ring meanwhile. It is safe for
// concurrent use.
type ring struct {
	dist    Distribution
	servers []*ringServer
	names   []string
	limit   int32 // 0: never eject
	retry   time.Duration
	onEvent func(ServerEvent)
	stats   *MemcacheStats
	now     func() time.Time

	points    atomic.Pointer[[]ringPoint]
	nextRetry atomic.Int64 // unix nanoseconds of the earliest return; 0 for none

	mu sync.Mutex // serialises ejections, returns and rebuilds
}

// A ringServer is one listed server; it is the net.Addr gomemcache dials.
type ringServer struct {
	network, addr string
	listed        string

	failures atomic.Int32 // consecutive
	// down is set from an ejection until the server answers again, on the
	// ring after its retry time (on probation: one failure ejects it again).
	down    atomic.Bool
	retryAt time.Time // under ring.mu; zero while on the ring
}

func (s *ringServer) Network() string { return s.network }
func (s *ringServer) String() string  { return s.addr }

var _ memcache.ServerSelector = (*ring)(nil)

// newRing resolves servers ("host:port" or "unix:/path") and builds their
// continuum; limit 0 never ejects.
func newRing(d Distribution, servers []string, limit int, retry time.Duration, onEvent func(ServerEvent), stats *MemcacheStats) (*ring, error) {
	r := &ring{dist: d, limit: int32(limit), retry: retry, onEvent: onEvent, stats: stats, now: time.Now}
	for _, s := range servers {
		name, err := ringName(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		var a net.Addr
		if path, ok := strings.CutPrefix(s, "unix:"); ok {
			a, err = net.ResolveUnixAddr("unix", path)
		} else {
			a, err = net.ResolveTCPAddr("tcp", s)
		}
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, &ringServer{network: a.Network(), addr: a.String(), listed: s})
		r.names = append(r.names, name)
	}
	r.rebuild()
	return r, nil
}

// rebuild lays the servers on the ring out again; r.mu is held, or r is new.
func (r *ring) rebuild() {
	live := make([]bool, len(r.servers))
	var next time.Time
	for i, s := range r.servers {
		live[i] = s.retryAt.IsZero()
		if !live[i] && (next.IsZero() || s.retryAt.Before(next)) {
			next = s.retryAt
		}
	}
	pts := r.dist.continuum(r.names, live)
	r.points.Store(&pts)
	if next.IsZero() {
		r.nextRetry.Store(0)
	} else {
		r.nextRetry.Store(next.UnixNano())
	}
}

// PickServer returns the server holding key, or memcache.ErrNoServers when
// every server is off the ring.
func (r *ring) PickServer(key string) (net.Addr, error) {
	if next := r.nextRetry.Load(); next != 0 && r.now().UnixNano() >= next {
		r.readmit()
	}
	i := pick(*r.points.Load(), r.dist.keyHash(key))
	if i < 0 {
		return nil, memcache.ErrNoServers
	}
	return r.servers[i], nil
}

// Each calls f on every listed server, on the ring or not, in order.
func (r *ring) Each(f func(net.Addr) error) error {
	for _, s := range r.servers {
		if err := f(s); err != nil {
			return err
		}
	}
	return nil
}

// readmit puts back on the ring the servers whose retry time has come.
func (r *ring) readmit() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now, back := r.now(), false
	for _, s := range r.servers {
		if !s.retryAt.IsZero() && !now.Before(s.retryAt) {
			s.retryAt = time.Time{}
			back = true
		}
	}
	if back {
		r.rebuild()
	}
}

// report accounts for the outcome err of an operation sent to a (as
// PickServer returned it).
func (r *ring) report(a net.Addr, err error) {
	s, ok := a.(*ringServer)
	if !ok || r.limit == 0 {
		return
	}
	switch {
	case answered(err):
		if s.failures.Load() != 0 {
			s.failures.Store(0)
		}
		if s.down.Load() {
			r.back(s)
		}
	case unreachable(err):
		if n := s.failures.Add(1); n >= r.limit || s.down.Load() {
			r.eject(s, err)
		}
	}
}

func (r *ring) eject(s *ringServer, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !s.retryAt.IsZero() {
		return // already off the ring
	}
	s.retryAt = r.now().Add(r.retry)
	s.failures.Store(0)
	wasDown := s.down.Swap(true)
	r.rebuild()
	r.stats.Ejections.Add(1)
	if !wasDown && r.onEvent != nil {
		r.onEvent(ServerEvent{Server: s.listed, Ejected: true, Err: err, Retry: r.retry})
	}
}

func (r *ring) back(s *ringServer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !s.retryAt.IsZero() || !s.down.Load() {
		return // ejected again meanwhile, or already back
	}
	s.down.Store(false)
	if r.onEvent != nil {
		r.onEvent(ServerEvent{Server: s.listed})
	}
}

// answered tells whether err, an operation's outcome, shows that its server
// answered.
func answered(err error) bool {
	return err == nil || errors.Is(err, memcache.ErrCacheMiss) || errors.Is(err, memcache.ErrNotStored) ||
		errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrServerError)
}

// unreachable tells whether err shows that its server could not be reached
// or did not answer in time: not a refusal of the operation, nor a local
// shortage such as ErrBusy.
func unreachable(err error) bool {
	var ct *memcache.ConnectTimeoutError
	var ne net.Error
	return errors.As(err, &ct) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
