package router

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// limitedLog writes at most one line per kind per interval, so an outage
// does not write a line per request; the next line written for a kind says
// how many were suppressed. limitedLog is safe for concurrent use.
type limitedLog struct {
	log      *slog.Logger
	interval time.Duration

	mu    sync.Mutex
	kinds map[string]*logKind
}

type logKind struct {
	last       time.Time
	suppressed int
}

func newLimitedLog(log *slog.Logger, interval time.Duration) *limitedLog {
	return &limitedLog{log: log, interval: interval, kinds: map[string]*logKind{}}
}

// Log writes msg at level unless a line of the same kind was written less
// than the interval ago.
func (l *limitedLog) Log(level slog.Level, kind, msg string, attrs ...slog.Attr) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	l.mu.Lock()
	k := l.kinds[kind]
	if k == nil {
		k = &logKind{}
		l.kinds[kind] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < l.interval {
		k.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := k.suppressed
	k.last, k.suppressed = now, 0
	l.mu.Unlock()
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// fasthttpLogger adapts fasthttp's Printf logger to slog, rate-limited:
// fasthttp logs per connection (client resets, malformed requests).
type fasthttpLogger struct{ l *limitedLog }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Log(slog.LevelWarn, "fasthttp", "http server", slog.String("detail", fmt.Sprintf(format, args...)))
}
