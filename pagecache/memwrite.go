package pagecache

import (
	"fmt"
	"strconv"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// The write path of Set and Add: like the reads (memread.go), on the
// store's own connections rather than through gomemcache, which formats
// each command with fmt and copies a page through its 4 KiB write buffer.
// Here the command line, the value and its CRLF go out in one writev,
// the value not copied, and the one-line reply is read back.

// store sends "<cmd> <key> <flags> <exptime> <bytes>" and the value, and
// reads the reply: nil for STORED, ErrNotStored for NOT_STORED.
func (m *Memcache) store(cmd, key string, it Item, exp int32) error {
	if !sendableKey(key) {
		m.Stats.Errors.Add(1)
		return memcache.ErrMalformedKey
	}
	a, err := m.servers.PickServer(key)
	if err != nil {
		m.Stats.Errors.Add(1)
		return err
	}
	op := readOp{s: m.byAddr[a]}
	if err := m.take(op.s, time.Now().Add(m.timeout)); err != nil {
		return err
	}
	op.slot = true
	m.Stats.Ops.Add(1)
	op.start = time.Now()
	stored := true
	if op.c, op.err = op.s.conn(m.timeout); op.err == nil {
		stored, op.err = op.c.store(cmd, key, it, exp, op.start.Add(m.timeout))
	}
	err = op.err
	m.finish(&op)
	if err == nil && !stored {
		return ErrNotStored
	}
	return err
}

// store writes one storage command and reads its reply by deadline.
func (c *mcConn) store(cmd, key string, it Item, exp int32, deadline time.Time) (stored bool, err error) {
	w := appendStorage(c.w[:0], cmd, key, it, exp)
	c.w = w
	if err := c.nc.SetDeadline(deadline); err != nil {
		return false, err
	}
	c.vec = [3][]byte{w, it.Value, crlf}
	c.bufs = c.vec[:] // WriteTo consumes the vector, not vec
	_, err = c.bufs.WriteTo(c.nc)
	c.vec[1] = nil // do not keep the value alive
	if err != nil {
		return false, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return false, fmt.Errorf("pagecache: memcached %s: %w", cmd, cmpErr(err))
	}
	switch string(line) {
	case "STORED\r\n":
		return true, nil
	case "NOT_STORED\r\n":
		return false, nil
	}
	return false, replyError(cmd, line)
}

var crlf = []byte("\r\n")

// appendStorage appends the line of a storage command,
// "<cmd> <key> <flags> <exptime> <bytes>\r\n", to w.
func appendStorage(w []byte, cmd, key string, it Item, exp int32) []byte {
	w = append(append(append(append(w, cmd...), ' '), key...), ' ')
	w = strconv.AppendUint(w, uint64(it.Flags), 10)
	w = append(w, ' ')
	w = strconv.AppendInt(w, int64(exp), 10)
	w = append(w, ' ')
	w = strconv.AppendInt(w, int64(len(it.Value)), 10)
	return append(w, "\r\n"...)
}

// AddGetSet makes AddGetMulti(keys, adds, items) and sets it under key
// for ttl, in one round trip (see AddGetSetter): on one server, the adds,
// the gets and the set go in one writev, the value not copied; on
// several, each is written its part before any reply is read. The
// operation counts once per server.
func (m *Memcache) AddGetSet(keys []string, adds, items []Item, key string, it Item, ttl time.Duration) error {
	if len(keys) != len(adds) || len(keys) != len(items) {
		return fmt.Errorf("pagecache: AddGetSet: %d keys, %d adds, %d items", len(keys), len(adds), len(items))
	}
	if len(key)+len(it.Value)+64 > m.maxItem {
		m.Stats.TooLarge.Add(1)
		return ErrTooLarge
	}
	for i, k := range keys {
		if len(k)+len(adds[i].Value)+64 > m.maxItem {
			m.Stats.TooLarge.Add(1)
			return ErrTooLarge
		}
	}
	set := setCmd{key: key, it: it, exp: expiration(ttl, time.Now())}
	return m.getMulti(keys, adds, items, nil, &set)
}

// readStored reads the reply to a set: STORED.
func readStored(c *mcConn) error {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("pagecache: memcached set: %w", cmpErr(err))
	}
	if string(line) != "STORED\r\n" {
		return replyError("set", line)
	}
	return nil
}
