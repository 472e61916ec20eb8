package pagecache

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// The read path: Get and GetMulti speak memcached's text protocol
// themselves ("get k1 k2 ...") over connections of their own, rather than
// through gomemcache, whose GetMulti allocates a map, an Item and a value
// per key and spawns a goroutine per server at every call, and cannot read
// into memory the caller chooses. Here a lookup of a page and its counters
// costs one request write and one reply read per server, requests to
// several servers are all written before any reply is read (they are
// served in parallel without a goroutine), and the values found are
// carved out of one allocation. Placement, slots, timeouts, ejection and
// stats are the store's, as for the writes.

// slabSpare is the room an allocation for a value keeps for the values
// after it: a page's counters come after it in the same reply.
const slabSpare = 256

var (
	// errProtocol: a reply memcached's text protocol does not allow, or
	// over the item size limit; the connection is closed.
	errProtocol = errors.New("pagecache: memcached: malformed reply")
	// errServerReply: the server refused the request (ERROR or
	// CLIENT_ERROR): it answered, but not with values.
	errServerReply = errors.New("pagecache: memcached: request refused")
	// errAbandoned: another server of the same operation used up its
	// deadline before this one's reply was read; the connection is
	// closed, and the server not blamed.
	errAbandoned = errors.New("pagecache: memcached: reply not read: the operation's deadline passed on another server")
)

// sendableKey reports whether key may be sent in a command: 1 to 250
// bytes, no space or control character (which could end the command
// early).
func sendableKey(key string) bool {
	if len(key) == 0 || len(key) > MaxKeyLength {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// Get returns the item under key; its Value is the caller's.
func (m *Memcache) Get(key string) (Item, error) {
	keys := [1]string{key}
	var items [1]Item
	if err := m.GetMulti(keys[:], items[:]); err != nil {
		return Item{}, err
	}
	if !items[0].Found() {
		m.Stats.Misses.Add(1)
		return Item{}, ErrMiss
	}
	return items[0], nil
}

// A readOp is one server's part of a GetMulti.
type readOp struct {
	s     *mcServer
	c     *mcConn
	slot  bool // s's slot is held
	adds  int  // add commands sent before the get
	gets  int  // keys asked in the get; no get when 0
	set   bool // the set (getMulti's set) follows the get
	start time.Time
	err   error
}

// GetMulti sets items[i] to the item under keys[i], if any, in one round
// trip per server: every server's request is written before any reply is
// read. When a server fails, the items of the others are still set. The
// values are the caller's; they share one allocation when they fit.
func (m *Memcache) GetMulti(keys []string, items []Item) error {
	return m.getMulti(keys, nil, items, nil, nil)
}

// GetMultiBuf is GetMulti with the values carved out of buf, from its
// length up to its capacity, while they fit (see BufferedGetter).
func (m *Memcache) GetMultiBuf(keys []string, items []Item, buf []byte) error {
	return m.getMulti(keys, nil, items, buf, nil)
}

// AddGetMulti is GetMulti after adding adds[i] under keys[i], with no
// expiry, wherever adds[i].Value is not nil: each server is sent its adds
// and then its get in one write, and answers them in order.
func (m *Memcache) AddGetMulti(keys []string, adds, items []Item) error {
	for i, a := range adds {
		if a.Value != nil && len(keys[i])+len(a.Value)+64 > m.maxItem {
			clear(items)
			m.Stats.TooLarge.Add(1)
			return ErrTooLarge
		}
	}
	return m.getMulti(keys, adds, items, nil, nil)
}

// opFor returns ops and the index in it of the operation on key's
// server, appending one for a server not in ops yet; a key memcached would refuse,
// or no server for it, is an error (counted).
func (m *Memcache) opFor(ops []readOp, key string) ([]readOp, int, error) {
	if !sendableKey(key) {
		m.Stats.Errors.Add(1)
		return ops, 0, memcache.ErrMalformedKey
	}
	a, err := m.servers.PickServer(key)
	if err != nil {
		m.Stats.Errors.Add(1)
		return ops, 0, err
	}
	s := m.byAddr[a]
	for i := range ops {
		if ops[i].s == s {
			return ops, i, nil
		}
	}
	return append(ops, readOp{s: s}), len(ops), nil
}

// A setCmd is a set that getMulti sends after its server's get (see
// AddGetSet).
type setCmd struct {
	key string
	it  Item
	exp int32
}

// getMulti reads keys into items, after adds when not nil, then makes
// set when not nil; values are carved out of slab while they fit, then
// out of new allocations.
func (m *Memcache) getMulti(keys []string, adds, items []Item, slab []byte, set *setCmd) error {
	clear(items)
	if len(keys) == 0 && set == nil {
		return nil
	}
	var whoAt [16]int32
	who := whoAt[:0]
	if len(keys) > len(whoAt) {
		who = make([]int32, 0, len(keys))
	}
	var opsAt [4]readOp
	ops := opsAt[:0]
	for _, k := range keys {
		var i int
		var err error
		if ops, i, err = m.opFor(ops, k); err != nil {
			return err
		}
		who = append(who, int32(i))
		ops[i].gets++
	}
	if set != nil {
		var i int
		var err error
		if ops, i, err = m.opFor(ops, set.key); err != nil {
			return err
		}
		ops[i].set = true
	}
	deadline := time.Now().Add(m.timeout)
	for i := range ops {
		op := &ops[i]
		if op.err = m.take(op.s, deadline); op.err != nil {
			continue
		}
		op.slot = true
		m.Stats.Ops.Add(1)
		op.start = time.Now()
		if op.c, op.err = op.s.conn(time.Until(deadline)); op.err != nil {
			continue
		}
		c := op.c
		c.w = c.w[:0]
		for j, a := range adds {
			if a.Value != nil && who[j] == int32(i) {
				c.w = append(append(append(c.w, "add "...), keys[j]...), ' ')
				c.w = strconv.AppendUint(c.w, uint64(a.Flags), 10)
				c.w = append(c.w, " 0 "...)
				c.w = strconv.AppendInt(c.w, int64(len(a.Value)), 10)
				c.w = append(append(append(c.w, "\r\n"...), a.Value...), "\r\n"...)
				op.adds++
			}
		}
		if op.gets > 0 {
			c.w = append(c.w, "get"...)
			for j, k := range keys {
				if who[j] == int32(i) {
					c.w = append(append(c.w, ' '), k...)
				}
			}
			c.w = append(c.w, "\r\n"...)
		}
		// One deadline for every server: the operation costs one timeout
		// at most, whichever servers are slow.
		if op.err = c.nc.SetDeadline(deadline); op.err != nil {
			continue
		}
		if !op.set {
			_, op.err = c.nc.Write(c.w)
			continue
		}
		// The set's value goes out from where it is, in the same writev
		// (as memwrite.go's store).
		c.w = appendStorage(c.w, "set", set.key, set.it, set.exp)
		c.vec = [3][]byte{c.w, set.it.Value, crlf}
		c.bufs = c.vec[:]
		_, op.err = c.bufs.WriteTo(c.nc)
		c.vec[1] = nil // do not keep the value alive
	}
	for i := range ops {
		op := &ops[i]
		if op.err == nil && i > 0 && !time.Now().Before(deadline) {
			op.err = errAbandoned
		}
		if op.err == nil {
			op.err = readAdds(op.c, op.adds)
		}
		if op.err == nil && op.gets > 0 {
			op.err = m.readValues(op.c, keys, who, int32(i), items, &slab)
		}
		if op.err == nil && op.set {
			op.err = readStored(op.c)
		}
	}
	var first error
	for i := range ops {
		op := &ops[i]
		if op.slot {
			m.finish(op)
		}
		if op.err != nil && first == nil {
			first = op.err
		}
	}
	return first
}

// take waits until deadline for a slot of s.
func (m *Memcache) take(s *mcServer, deadline time.Time) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-t.C:
		m.Stats.Busy.Add(1)
		m.Stats.Errors.Add(1)
		return ErrBusy
	}
}

// finish accounts for an operation sent, keeps or closes its connection
// and gives its slot back.
func (m *Memcache) finish(op *readOp) {
	if m.observer != nil {
		m.observer.UpdateDuration(op.start)
	}
	if op.err == errAbandoned {
		op.c.nc.Close() // at no reply boundary; the server is not to blame
		<-op.s.slots
		return
	}
	if m.ring != nil {
		m.ring.report(op.s.addr, op.err)
	}
	if op.err != nil {
		m.Stats.Errors.Add(1)
		if IsTimeout(op.err) {
			m.Stats.Timeouts.Add(1)
		}
		if op.c != nil {
			op.c.nc.Close()
		}
		m.dropIdle(op.s, op.err)
	} else {
		op.s.put(op.c, m.closed.Load())
	}
	<-op.s.slots
}

// dropIdle, after err on s, closes the idle connections to s when err
// shows s gone (refused, reset, closed; not a timeout, which an overloaded
// server gives too): once one has failed (a restarted or stopped server)
// the others would too, each costing an operation. gomemcache's,
// which it cannot close for one server, are closed for all.
func (m *Memcache) dropIdle(s *mcServer, err error) {
	if unreachable(err) && !IsTimeout(err) {
		s.closeIdle()
		m.client.Close()
	}
}

// readValues reads one server's reply to a get of the keys whose server
// is srv (who[i] for keys[i]) up to its END, setting their items; values
// are carved out of *slab.
func (m *Memcache) readValues(c *mcConn, keys []string, who []int32, srv int32, items []Item, slab *[]byte) error {
	next := 0 // memcached answers in the order asked: look from here first
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("pagecache: memcached get: %w", cmpErr(err))
		}
		if string(line) == "END\r\n" {
			return nil
		}
		key, flags, size, ok := parseValueLine(line)
		if !ok {
			return replyError("get", line)
		}
		if size > m.maxItem {
			return errProtocol
		}
		j := matchKey(keys, who, srv, items, key, next)
		if j < 0 {
			return errProtocol // a key not asked for
		}
		v := carve(slab, size)
		if _, err := io.ReadFull(c.r, v); err != nil {
			return fmt.Errorf("pagecache: memcached get: %w", cmpErr(err))
		}
		if cr, err := c.r.ReadByte(); err != nil || cr != '\r' {
			return errProtocol
		}
		if lf, err := c.r.ReadByte(); err != nil || lf != '\n' {
			return errProtocol
		}
		items[j] = Item{Value: v, Flags: flags}
		next = j + 1
	}
}

// readAdds reads the replies to n add commands: each STORED, or
// NOT_STORED when its key held something.
func readAdds(c *mcConn, n int) error {
	for range n {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("pagecache: memcached add: %w", cmpErr(err))
		}
		if string(line) != "STORED\r\n" && string(line) != "NOT_STORED\r\n" {
			return replyError("add", line)
		}
	}
	return nil
}

// cmpErr turns a line longer than the read buffer into a protocol error.
func cmpErr(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	if errors.Is(err, bufio.ErrBufferFull) {
		return errProtocol
	}
	return err
}

// matchKey returns the index of the key asked of server srv that the
// reply's key names, not yet set, looking from next first; -1 if none.
func matchKey(keys []string, who []int32, srv int32, items []Item, key []byte, next int) int {
	for j := next; j < len(keys); j++ {
		if who[j] == srv && items[j].Value == nil && keys[j] == string(key) {
			return j
		}
	}
	for j := 0; j < next && j < len(keys); j++ {
		if who[j] == srv && items[j].Value == nil && keys[j] == string(key) {
			return j
		}
	}
	return -1
}

// carve returns n bytes of *slab, allocating a new one (with slabSpare
// more) when it has no room left; the value's capacity ends with it.
func carve(slab *[]byte, n int) []byte {
	s := *slab
	if s == nil || cap(s)-len(s) < n {
		s = make([]byte, 0, n+slabSpare)
	}
	at := len(s)
	*slab = s[:at+n]
	return s[at : at+n : at+n]
}

// parseValueLine reads "VALUE <key> <flags> <bytes>[ <cas>]\r\n".
func parseValueLine(line []byte) (key []byte, flags uint32, size int, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte("VALUE "))
	if !ok {
		return nil, 0, 0, false
	}
	rest, ok = bytes.CutSuffix(rest, []byte("\r\n"))
	if !ok {
		return nil, 0, 0, false
	}
	key, rest, ok = bytes.Cut(rest, []byte(" "))
	if !ok || len(key) == 0 {
		return nil, 0, 0, false
	}
	f, rest, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return nil, 0, 0, false
	}
	fl, ok := parseDecimal(f, 1<<32-1)
	if !ok {
		return nil, 0, 0, false
	}
	n, _, _ := bytes.Cut(rest, []byte(" ")) // a cas unique may follow
	sz, ok := parseDecimal(n, 1<<31-1)
	if !ok {
		return nil, 0, 0, false
	}
	return key, uint32(fl), int(sz), true
}

// parseDecimal reads 1 to 10 decimal digits, at most limit.
func parseDecimal(b []byte, limit uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= limit
}

// replyError is the error an unexpected reply line to cmd says.
func replyError(cmd string, line []byte) error {
	msg := string(bytes.TrimRight(line, "\r\n"))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	switch {
	case bytes.HasPrefix(line, []byte("SERVER_ERROR")):
		return fmt.Errorf("pagecache: memcached %s: %w: %q", cmd, memcache.ErrServerError, msg)
	case bytes.HasPrefix(line, []byte("CLIENT_ERROR")), bytes.HasPrefix(line, []byte("ERROR")):
		return fmt.Errorf("%w: %q", errServerReply, msg)
	}
	return fmt.Errorf("%w: %q", errProtocol, msg)
}
