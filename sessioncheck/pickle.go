package sessioncheck

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Limits on one pickle: a session that needs more is in doubt.
const (
	maxPickleStack = 4096 // values and marks on the stack at once
	maxPickleMarks = 64   // open marks: the nesting of multi-item containers
	maxPickleMemo  = 1 << 16
)

// pyKind is the type of a value a pickle builds.
type pyKind uint8

const (
	pyNone pyKind = iota
	pyBool
	pyInt
	pyFloat
	pyStr
	pyList
	pyTuple
	pyDict
	pyMark // a MARK on the stack, not a value
)

// pyValue is one value of a pickle: a scalar, or a container shared by
// every reference to it (the memo), as in Python.
type pyValue struct {
	kind pyKind
	// hashable: may be a dict key (not a list or dict, nor a tuple
	// holding one).
	hashable bool
	str      []byte // pyStr: UTF-8, aliasing the input
	num      int64  // pyBool, pyInt (LONG1 up to 8 bytes), pyFloat's bits
	c        *pyContainer
}

// pyContainer holds a list's or tuple's items, or a dict's keys and values
// alternating.
type pyContainer struct{ items []pyValue }

// ParsePickledSession reads a Django session dict pickled by a cache
// backend (django-redis, Django's RedisCache, PyMemcacheCache,
// PyLibMCCache: protocols 2 to 5) and reports whether it holds
// _auth_user_id, as Django's auth reads it.
//
// It is a restricted reader, not an unpickler: it accepts only the opcodes
// that a dict of str, int, float, bool, None, list, tuple and dict needs,
// and never imports, calls or constructs anything. Any other opcode (a
// class, a reduce, bytes, a persistent id), a value that is not a dict, or
// a pickle past its limits returns ErrUndecodable: a doubt.
func ParsePickledSession(data []byte) (bool, error) {
	v, err := unpickle(data)
	if err != nil {
		return false, err
	}
	if v.kind != pyDict {
		return false, fmt.Errorf("%w: the pickle holds a %s, not a session dict", ErrUndecodable, pyKindNames[v.kind])
	}
	items := v.c.items
	for i := 0; i+1 < len(items); i += 2 {
		if items[i].kind == pyStr && string(items[i].str) == djangoAuthKey {
			return true, nil
		}
	}
	return false, nil
}

// djangoAuthKey is django.contrib.auth's SESSION_KEY.
const djangoAuthKey = "_auth_user_id"

var pyKindNames = [...]string{"None", "bool", "int", "float", "str", "list", "tuple", "dict", "mark"}

// Pickle opcodes (Python's Lib/pickle.py names).
const (
	opMark            = '('
	opStop            = '.'
	opNone            = 'N'
	opBinInt          = 'J'
	opBinInt1         = 'K'
	opBinInt2         = 'M'
	opBinFloat        = 'G'
	opBinUnicode      = 'X'
	opAppend          = 'a'
	opAppends         = 'e'
	opEmptyDict       = '}'
	opEmptyList       = ']'
	opEmptyTuple      = ')'
	opSetItem         = 's'
	opSetItems        = 'u'
	opTuple           = 't'
	opBinGet          = 'h'
	opLongBinGet      = 'j'
	opBinPut          = 'q'
	opLongBinPut      = 'r'
	opProto           = 0x80
	opTuple1          = 0x85
	opTuple2          = 0x86
	opTuple3          = 0x87
	opNewTrue         = 0x88
	opNewFalse        = 0x89
	opLong1           = 0x8a
	opShortBinUnicode = 0x8c
	opBinUnicode8     = 0x8d
	opMemoize         = 0x94
	opFrame           = 0x95
)

type unpickler struct {
	data  []byte
	pos   int
	stack []pyValue
	marks []int // stack lengths at each open MARK
	memo  []pyValue
}

func (u *unpickler) errf(format string, a ...any) error {
	return fmt.Errorf("%w: pickle at byte %d: %s", ErrUndecodable, u.pos, fmt.Sprintf(format, a...))
}

func (u *unpickler) take(n int) ([]byte, bool) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, false
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, true
}

func (u *unpickler) push(v pyValue) error {
	if len(u.stack) >= maxPickleStack {
		return u.errf("more than %d values at once", maxPickleStack)
	}
	u.stack = append(u.stack, v)
	return nil
}

// pop removes the top value; a mark is not a value.
func (u *unpickler) pop() (pyValue, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) {
		return pyValue{}, u.errf("stack underflow")
	}
	v := u.stack[n-1]
	u.stack = u.stack[:n-1]
	return v, nil
}

// popMark removes the values since the last MARK, which it closes.
func (u *unpickler) popMark() ([]pyValue, error) {
	if len(u.marks) == 0 {
		return nil, u.errf("no mark")
	}
	at := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := u.stack[at:]
	u.stack = u.stack[:at]
	return items, nil
}

// top is the value under the top n, which must be a container of kind k.
func (u *unpickler) top(k pyKind) (*pyContainer, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) || u.stack[n-1].kind != k {
		return nil, u.errf("no %s to add to", pyKindNames[k])
	}
	return u.stack[n-1].c, nil
}

func (u *unpickler) put(i uint64) error {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) {
		return u.errf("memoizing nothing")
	}
	switch {
	case i < uint64(len(u.memo)):
		u.memo[i] = u.stack[n-1]
	case i == uint64(len(u.memo)) && i < maxPickleMemo:
		u.memo = append(u.memo, u.stack[n-1])
	default:
		return u.errf("memo index %d out of order", i)
	}
	return nil
}

func (u *unpickler) get(i uint64) error {
	if i >= uint64(len(u.memo)) {
		return u.errf("memo index %d unknown", i)
	}
	return u.push(u.memo[i])
}

func (u *unpickler) str(n uint64) error {
	if n > uint64(len(u.data)-u.pos) {
		return u.errf("string past the end")
	}
	b, _ := u.take(int(n))
	return u.push(pyValue{kind: pyStr, hashable: true, str: b})
}

func (u *unpickler) tuple(items []pyValue) error {
	t := pyValue{kind: pyTuple, hashable: true, c: &pyContainer{items: append([]pyValue(nil), items...)}}
	for _, it := range items {
		t.hashable = t.hashable && it.hashable
	}
	return u.push(t)
}

func (u *unpickler) setItems(d *pyContainer, kv []pyValue) error {
	if len(kv)%2 != 0 {
		return u.errf("a key without a value")
	}
	for i := 0; i < len(kv); i += 2 {
		if !kv[i].hashable {
			return u.errf("a %s as a dict key", pyKindNames[kv[i].kind])
		}
	}
	d.items = append(d.items, kv...)
	return nil
}

// unpickle runs the restricted machine over data and returns the value
// STOP leaves.
func unpickle(data []byte) (pyValue, error) {
	if len(data) == 0 || len(data) > maxSessionData {
		return pyValue{}, fmt.Errorf("%w: a pickle of %d bytes", ErrUndecodable, len(data))
	}
	if data[0] != opProto {
		if isDigits(data) {
			// django-redis stores an int as its digits, unpickled.
			return pyValue{kind: pyInt, hashable: true}, nil
		}
		return pyValue{}, fmt.Errorf("%w: not a pickle of protocol 2 or later", ErrUndecodable)
	}
	u := unpickler{data: data}
	for {
		if u.pos >= len(u.data) {
			return pyValue{}, u.errf("no STOP")
		}
		op := u.data[u.pos]
		u.pos++
		var err error
		switch op {
		case opProto:
			b, ok := u.take(1)
			if !ok || b[0] < 2 || b[0] > 5 || u.pos != 2 {
				return pyValue{}, u.errf("protocol not 2 to 5, or not first")
			}
		case opFrame:
			// A frame only announces how many bytes follow.
			if _, ok := u.take(8); !ok {
				return pyValue{}, u.errf("short FRAME")
			}
		case opStop:
			v, err := u.pop()
			if err != nil || len(u.stack) != 0 || len(u.marks) != 0 {
				return pyValue{}, u.errf("STOP leaves the stack unbalanced")
			}
			if u.pos != len(u.data) {
				return pyValue{}, u.errf("bytes after STOP")
			}
			return v, nil
		case opMark:
			if len(u.marks) >= maxPickleMarks {
				return pyValue{}, u.errf("nested deeper than %d", maxPickleMarks)
			}
			u.marks = append(u.marks, len(u.stack))
		case opNone:
			err = u.push(pyValue{kind: pyNone, hashable: true})
		case opNewTrue, opNewFalse:
			err = u.push(pyValue{kind: pyBool, hashable: true, num: int64(opNewFalse - op)})
		case opBinInt:
			b, ok := u.take(4)
			if !ok {
				return pyValue{}, u.errf("short BININT")
			}
			err = u.push(pyValue{kind: pyInt, hashable: true, num: int64(int32(binary.LittleEndian.Uint32(b)))})
		case opBinInt1:
			b, ok := u.take(1)
			if !ok {
				return pyValue{}, u.errf("short BININT1")
			}
			err = u.push(pyValue{kind: pyInt, hashable: true, num: int64(b[0])})
		case opBinInt2:
			b, ok := u.take(2)
			if !ok {
				return pyValue{}, u.errf("short BININT2")
			}
			err = u.push(pyValue{kind: pyInt, hashable: true, num: int64(binary.LittleEndian.Uint16(b))})
		case opLong1:
			n, ok := u.take(1)
			if !ok || n[0] > 8 {
				return pyValue{}, u.errf("LONG1 missing or over 8 bytes")
			}
			b, ok := u.take(int(n[0]))
			if !ok {
				return pyValue{}, u.errf("short LONG1")
			}
			var x int64
			for i := len(b) - 1; i >= 0; i-- {
				x = x<<8 | int64(b[i])
			}
			if len(b) > 0 && len(b) < 8 && b[len(b)-1]&0x80 != 0 {
				x -= 1 << (8 * len(b)) // two's complement, as Python writes it
			}
			err = u.push(pyValue{kind: pyInt, hashable: true, num: x})
		case opBinFloat:
			b, ok := u.take(8)
			if !ok {
				return pyValue{}, u.errf("short BINFLOAT")
			}
			// The value is not needed, only that it is a float: its
			// IEEE 754 bits are kept as they are.
			err = u.push(pyValue{kind: pyFloat, hashable: true, num: int64(binary.BigEndian.Uint64(b))})
		case opShortBinUnicode:
			n, ok := u.take(1)
			if !ok {
				return pyValue{}, u.errf("short SHORT_BINUNICODE")
			}
			err = u.str(uint64(n[0]))
		case opBinUnicode:
			n, ok := u.take(4)
			if !ok {
				return pyValue{}, u.errf("short BINUNICODE")
			}
			err = u.str(uint64(binary.LittleEndian.Uint32(n)))
		case opBinUnicode8:
			n, ok := u.take(8)
			if !ok {
				return pyValue{}, u.errf("short BINUNICODE8")
			}
			err = u.str(binary.LittleEndian.Uint64(n))
		case opEmptyDict:
			err = u.push(pyValue{kind: pyDict, c: new(pyContainer)})
		case opEmptyList:
			err = u.push(pyValue{kind: pyList, c: new(pyContainer)})
		case opEmptyTuple:
			err = u.push(pyValue{kind: pyTuple, hashable: true, c: new(pyContainer)})
		case opTuple:
			var items []pyValue
			if items, err = u.popMark(); err == nil {
				err = u.tuple(items)
			}
		case opTuple1, opTuple2, opTuple3:
			n := int(op-opTuple1) + 1
			at := len(u.stack) - n
			if at < 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] > at) {
				return pyValue{}, u.errf("TUPLE%d over too few values", n)
			}
			items := u.stack[at:]
			u.stack = u.stack[:at]
			err = u.tuple(items)
		case opAppend:
			var v pyValue
			if v, err = u.pop(); err == nil {
				var l *pyContainer
				if l, err = u.top(pyList); err == nil {
					l.items = append(l.items, v)
				}
			}
		case opAppends:
			var items []pyValue
			if items, err = u.popMark(); err == nil {
				var l *pyContainer
				if l, err = u.top(pyList); err == nil {
					l.items = append(l.items, items...)
				}
			}
		case opSetItem:
			var k, v pyValue
			if v, err = u.pop(); err == nil {
				if k, err = u.pop(); err == nil {
					var d *pyContainer
					if d, err = u.top(pyDict); err == nil {
						err = u.setItems(d, []pyValue{k, v})
					}
				}
			}
		case opSetItems:
			var items []pyValue
			if items, err = u.popMark(); err == nil {
				var d *pyContainer
				if d, err = u.top(pyDict); err == nil {
					err = u.setItems(d, items)
				}
			}
		case opMemoize:
			err = u.put(uint64(len(u.memo)))
		case opBinPut:
			b, ok := u.take(1)
			if !ok {
				return pyValue{}, u.errf("short BINPUT")
			}
			err = u.put(uint64(b[0]))
		case opLongBinPut:
			b, ok := u.take(4)
			if !ok {
				return pyValue{}, u.errf("short LONG_BINPUT")
			}
			err = u.put(uint64(binary.LittleEndian.Uint32(b)))
		case opBinGet:
			b, ok := u.take(1)
			if !ok {
				return pyValue{}, u.errf("short BINGET")
			}
			err = u.get(uint64(b[0]))
		case opLongBinGet:
			b, ok := u.take(4)
			if !ok {
				return pyValue{}, u.errf("short LONG_BINGET")
			}
			err = u.get(uint64(binary.LittleEndian.Uint32(b)))
		default:
			return pyValue{}, u.errf("opcode 0x%02x is not one a session dict needs", op)
		}
		if err != nil {
			return pyValue{}, err
		}
	}
}

func isDigits(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("-"))
	if len(b) == 0 || len(b) > 20 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
