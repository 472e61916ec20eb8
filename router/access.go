package router

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// AccessLog writes one line per request, away from the request: the
// handler formats the line into a pooled buffer and queues it; one
// goroutine writes queued lines through a buffer, flushed every 100 ms.
// When the queue is full the line is dropped and counted, so a slow disk
// never slows requests. AccessLog is safe for concurrent use.
type AccessLog struct {
	json  bool
	w     io.WriteCloser
	queue chan *[]byte
	done  chan struct{}
	Stats *AccessStats
}

// AccessStats counts an access log's lines.
type AccessStats struct {
	Written atomic.Uint64 // lines written
	Dropped atomic.Uint64 // lines dropped: the queue was full
}

// NewAccessLog writes to w in format "combined" (nginx's, with
// cache="<Cache-Status>" verdict=<who> rt=<seconds> urt=<backend seconds>
// appended) or "json", queueing at most queue lines. stats may be nil.
func NewAccessLog(w io.WriteCloser, format string, queue int, stats *AccessStats) *AccessLog {
	if stats == nil {
		stats = new(AccessStats)
	}
	a := &AccessLog{json: format == "json", w: w, queue: make(chan *[]byte, max(queue, 16)), done: make(chan struct{}), Stats: stats}
	go a.run()
	return a
}

func (a *AccessLog) run() {
	defer close(a.done)
	bw := bufio.NewWriterSize(a.w, 64<<10)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case b, ok := <-a.queue:
			if !ok {
				bw.Flush()
				return
			}
			bw.Write(*b)
			lineBufs.Put(b)
			a.Stats.Written.Add(1)
		case <-tick.C:
			bw.Flush()
		}
	}
}

// Close writes what is queued and closes the writer.
func (a *AccessLog) Close() error {
	close(a.queue)
	<-a.done
	return a.w.Close()
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// write formats and queues the line of a finished request.
func (a *AccessLog) write(ctx *fasthttp.RequestCtx, rec *accessRecord, client []byte) {
	bp := lineBufs.Get().(*[]byte)
	b := (*bp)[:0]
	h := &ctx.Request.Header
	status := ctx.Response.StatusCode()
	// Body() would read a streamed body into memory (and before the
	// server writes it): its declared length is used instead.
	var size int
	if ctx.Response.IsBodyStream() || ctx.Request.Header.IsHead() {
		size = max(0, ctx.Response.Header.ContentLength())
	} else {
		size = len(ctx.Response.Body())
	}
	rt := time.Since(rec.start)
	cache := ctx.Response.Header.Peek(headerCacheStatus)
	if rec.cache != "" {
		cache = []byte(rec.cache)
	}
	if a.json {
		b = append(b, `{"time":"`...)
		b = rec.start.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","remote":"`...)
		b = appendJSON(b, client)
		b = append(b, `","method":"`...)
		b = appendJSON(b, h.Method())
		b = append(b, `","uri":"`...)
		b = appendJSON(b, h.RequestURI())
		b = append(b, `","status":`...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, `,"bytes":`...)
		b = strconv.AppendInt(b, int64(size), 10)
		b = append(b, `,"referer":"`...)
		b = appendJSON(b, h.Referer())
		b = append(b, `","user_agent":"`...)
		b = appendJSON(b, h.UserAgent())
		b = append(b, `","cache":"`...)
		b = appendJSON(b, cache)
		b = append(b, `","verdict":"`...)
		b = append(b, rec.verdict...)
		b = append(b, `","rt":`...)
		b = strconv.AppendFloat(b, rt.Seconds(), 'f', 6, 64)
		b = append(b, `,"urt":`...)
		if rec.upstream > 0 {
			b = strconv.AppendFloat(b, rec.upstream.Seconds(), 'f', 6, 64)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, "}\n"...)
	} else {
		b = append(b, client...)
		b = append(b, " - - ["...)
		b = append(b, logTime(rec.start)...)
		b = append(b, `] "`...)
		b = appendEscaped(b, h.Method())
		b = append(b, ' ')
		b = appendEscaped(b, h.RequestURI())
		b = append(b, ' ')
		b = append(b, h.Protocol()...)
		b = append(b, `" `...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(size), 10)
		b = append(b, ` "`...)
		b = appendEscapedOr(b, h.Referer())
		b = append(b, `" "`...)
		b = appendEscapedOr(b, h.UserAgent())
		b = append(b, `" cache="`...)
		b = appendEscaped(b, cache)
		b = append(b, `" verdict=`...)
		b = append(b, rec.verdict...)
		b = append(b, " rt="...)
		b = strconv.AppendFloat(b, rt.Seconds(), 'f', 3, 64)
		b = append(b, " urt="...)
		if rec.upstream > 0 {
			b = strconv.AppendFloat(b, rec.upstream.Seconds(), 'f', 3, 64)
		} else {
			b = append(b, '-')
		}
		b = append(b, '\n')
	}
	*bp = b
	select {
	case a.queue <- bp:
	default:
		a.Stats.Dropped.Add(1)
		lineBufs.Put(bp)
	}
}

// logTime is nginx's $time_local, formatted once a second.
func logTime(t time.Time) []byte {
	sec := t.Unix()
	if c := cachedTime.Load(); c != nil && c.sec == sec {
		return c.text
	}
	c := &timeText{sec: sec, text: t.AppendFormat(nil, "02/Jan/2006:15:04:05 -0700")}
	cachedTime.Store(c)
	return c.text
}

type timeText struct {
	sec  int64
	text []byte
}

var cachedTime atomic.Pointer[timeText]

// appendEscaped writes b as nginx escapes log fields: quotes, backslashes,
// control and non-ASCII bytes as \xHH.
func appendEscaped(dst, b []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range b {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			dst = append(dst, '\\', 'x', hex[c>>4], hex[c&15])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

func appendEscapedOr(dst, b []byte) []byte {
	if len(b) == 0 {
		return append(dst, '-')
	}
	return appendEscaped(dst, b)
}

// appendJSON writes b as the inside of a JSON string; invalid UTF-8 is
// replaced.
func appendJSON(dst, b []byte) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, b[i:i+n]...)
		}
		i += n
	}
	return dst
}
