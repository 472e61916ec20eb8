package sessioncheck

import (
	"bytes"
	"cmp"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
)

// Defaults of the cache-backed stores.
const (
	// DefaultKeyTemplate is the key Django's cache session engine uses
	// through any cache backend with the default KEY_PREFIX ("") and
	// VERSION (1): make_key's ":1:" + the engine's
	// "django.contrib.sessions.cache" + the session key.
	DefaultKeyTemplate = ":1:django.contrib.sessions.cache{key}"
	// DefaultMaxValueSize bounds a session value read from Redis or
	// memcached; a larger one is a doubt.
	DefaultMaxValueSize = 256 << 10
)

// A KeyTemplate makes a cache key from a session key: its text with
// {key} replaced by the session key and {key_sha256} by the lowercase hex
// SHA-256 of it (Rack's private session ids, "2::{key_sha256}", as
// redis-session-store 0.11 and later write them). It must use one of them.
type KeyTemplate struct {
	parts []string // literal, placeholder, literal, placeholder, ... literal
}

// ParseKeyTemplate checks a key template.
func ParseKeyTemplate(t string) (KeyTemplate, error) {
	var kt KeyTemplate
	rest := t
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			kt.parts = append(kt.parts, rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return KeyTemplate{}, fmt.Errorf("sessioncheck: key template %q: unclosed {", t)
		}
		name := rest[i+1 : i+j]
		if name != "key" && name != "key_sha256" {
			return KeyTemplate{}, fmt.Errorf("sessioncheck: key template %q: unknown {%s} (use {key} or {key_sha256})", t, name)
		}
		kt.parts = append(kt.parts, rest[:i], name)
		rest = rest[i+j+1:]
	}
	if len(kt.parts) < 3 {
		return KeyTemplate{}, fmt.Errorf("sessioncheck: key template %q must use {key} or {key_sha256}", t)
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] == 0x7f {
			return KeyTemplate{}, fmt.Errorf("sessioncheck: key template %q holds a space or control character, which memcached keys cannot", t)
		}
	}
	return kt, nil
}

// Key returns the cache key for a session key.
func (kt KeyTemplate) Key(key string) string {
	var b strings.Builder
	for i, p := range kt.parts {
		switch {
		case i%2 == 0:
			b.WriteString(p)
		case p == "key":
			b.WriteString(key)
		default:
			sum := sha256.Sum256([]byte(key))
			b.WriteString(hex.EncodeToString(sum[:]))
		}
	}
	return b.String()
}

// RedisOptions configures a RedisStore.
type RedisOptions struct {
	// URL is go-redis's: "redis://[[user]:password@]host:6379/db",
	// "rediss://…" for TLS, or "unix:///run/redis/redis.sock?db=0".
	URL string
	// KeyTemplate makes the Redis key. Default DefaultKeyTemplate.
	KeyTemplate string
	// MaxValueSize bounds a value; a longer one is ErrUndecodable.
	// Default DefaultMaxValueSize.
	MaxValueSize int
	// MaxConns bounds the pool. Default DefaultMaxQueries.
	MaxConns int
	// Timeout bounds a read or write on a connection, as the lookup's
	// context does. Default DefaultTimeout.
	Timeout time.Duration
}

// RedisStore reads sessions from Redis (github.com/redis/go-redis/v9): one
// command per lookup, GETRANGE key 0 MaxValueSize, which is GET with a
// bound on what the reply may carry. No retries (a lookup gets one
// timeout), a bounded pool, connections dialed with a one-second bound.
// RedisStore is safe for concurrent use.
type RedisStore struct {
	client   *redis.Client
	tmpl     KeyTemplate
	maxValue int
}

var (
	_ Store  = (*RedisStore)(nil)
	_ Pinger = (*RedisStore)(nil)
)

// quietRedis silences go-redis's package-wide logger, which would
// otherwise write a line to stderr for each failed dial: a library does
// not log, and the breaker already reports an outage once.
var quietRedis sync.Once

type noRedisLog struct{}

func (noRedisLog) Printf(context.Context, string, ...any) {}

// OpenRedis checks the URL and the template and makes the pool; it does
// not connect. A *DSNError means the URL is wrong. It turns go-redis's
// own logging off, for the whole process.
func OpenRedis(o RedisOptions) (*RedisStore, error) {
	quietRedis.Do(func() { redis.SetLogger(noRedisLog{}) })
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, &DSNError{Err: err}
	}
	tmpl, err := ParseKeyTemplate(cmp.Or(o.KeyTemplate, DefaultKeyTemplate))
	if err != nil {
		return nil, err
	}
	timeout := cmp.Or(o.Timeout, DefaultTimeout)
	opt.PoolSize = cmp.Or(o.MaxConns, DefaultMaxQueries)
	opt.MaxActiveConns = opt.PoolSize
	opt.PoolTimeout = timeout
	opt.ReadTimeout, opt.WriteTimeout = timeout, timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.DialTimeout = time.Second
	opt.DialerRetries = 1
	opt.Protocol = 2 // no HELLO: proxies (twemproxy, Envoy) and old servers
	opt.DisableIdentity = true
	return &RedisStore{client: redis.NewClient(opt), tmpl: tmpl, maxValue: cmp.Or(o.MaxValueSize, DefaultMaxValueSize)}, nil
}

// Lookup reads the value under key's cache key. A missing key, or an
// empty value (no session is stored empty), is ErrNoRow.
func (s *RedisStore) Lookup(ctx context.Context, key string, _ time.Time) (Row, error) {
	v, err := s.client.GetRange(ctx, s.tmpl.Key(key), 0, int64(s.maxValue)).Bytes()
	if err != nil {
		if strings.HasPrefix(err.Error(), "WRONGTYPE") {
			// Redis answered: the key holds a hash, a list… not a
			// session string (key_template names the wrong keys).
			return Row{}, fmt.Errorf("%w: redis: %v", ErrUndecodable, err)
		}
		return Row{}, fmt.Errorf("sessioncheck: redis: %w", err)
	}
	if len(v) == 0 {
		return Row{}, ErrNoRow
	}
	if len(v) > s.maxValue {
		return Row{}, fmt.Errorf("%w: a value over %d bytes", ErrUndecodable, s.maxValue)
	}
	return Row{Value: v}, nil
}

// Ping checks that Redis answers.
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("sessioncheck: redis: %w", err)
	}
	return nil
}

// Close closes the pool.
func (s *RedisStore) Close() error { return s.client.Close() }

// Flags of the values Python memcached clients write for a session (a
// pickled dict, or an int), on which pymemcache's serde and pylibmc agree;
// their other flags differ (16 is a str to pymemcache, a bool to pylibmc)
// and are a doubt.
const (
	mcFlagPickle = 1
	mcFlagInt    = 2
	mcFlagLong   = 4
	mcFlagZlib   = 8 // pylibmc: compressed (min_compress_len)
)

// MemcacheOptions configures a MemcacheStore.
type MemcacheOptions struct {
	// Server is one memcached server, "host:port" or a unix socket path.
	Server string
	// KeyTemplate makes the memcached key. Default DefaultKeyTemplate.
	KeyTemplate string
	// MaxValueSize bounds a value, after inflating a compressed one; a
	// longer one is ErrUndecodable. Default DefaultMaxValueSize.
	MaxValueSize int
	// MaxConns bounds the idle connections kept. Default DefaultMaxQueries.
	MaxConns int
	// Timeout bounds a lookup (gomemcache's Client.Timeout).
	// Default DefaultTimeout.
	Timeout time.Duration
}

// MemcacheStore reads the sessions Django's cache and cached_db engines
// keep in memcached through pymemcache (PyMemcacheCache) or pylibmc
// (PyLibMCCache): one get per lookup. It reads the value's flags as those
// clients write them: 1 a pickle, 2 and 4 an integer in decimal, 8 (with
// 1) a zlib-compressed pickle, inflated within MaxValueSize; any other
// flag is ErrUndecodable. A value is bounded by memcached's own item size
// (-I, 1 MiB by default) when read, and by MaxValueSize after.
// MemcacheStore is safe for concurrent use.
type MemcacheStore struct {
	client   *memcache.Client
	tmpl     KeyTemplate
	maxValue int
}

var (
	_ Store  = (*MemcacheStore)(nil)
	_ Pinger = (*MemcacheStore)(nil)
)

// OpenMemcache checks the server address and the template; it does not
// connect.
func OpenMemcache(o MemcacheOptions) (*MemcacheStore, error) {
	tmpl, err := ParseKeyTemplate(cmp.Or(o.KeyTemplate, DefaultKeyTemplate))
	if err != nil {
		return nil, err
	}
	var sl memcache.ServerList
	if err := sl.SetServers(strings.TrimPrefix(o.Server, "unix:")); err != nil {
		return nil, &DSNError{Err: err}
	}
	c := memcache.NewFromSelector(&sl)
	c.Timeout = cmp.Or(o.Timeout, DefaultTimeout)
	c.MaxIdleConns = cmp.Or(o.MaxConns, DefaultMaxQueries)
	return &MemcacheStore{client: c, tmpl: tmpl, maxValue: cmp.Or(o.MaxValueSize, DefaultMaxValueSize)}, nil
}

// Lookup gets key's cache key. gomemcache takes no context: its Timeout,
// the lookup's, bounds each network operation.
func (s *MemcacheStore) Lookup(ctx context.Context, key string, _ time.Time) (Row, error) {
	it, err := s.client.Get(s.tmpl.Key(key))
	switch {
	case errors.Is(err, memcache.ErrCacheMiss):
		return Row{}, ErrNoRow
	case errors.Is(err, memcache.ErrMalformedKey):
		// Over 250 bytes with its template: no client could have
		// stored it; memcached was not asked.
		return Row{}, fmt.Errorf("%w: memcached: %v", ErrUndecodable, err)
	case err != nil:
		return Row{}, fmt.Errorf("sessioncheck: memcached: %w", err)
	}
	v, err := memcacheValue(it.Value, it.Flags, s.maxValue)
	if err != nil {
		return Row{}, err
	}
	return Row{Value: v}, nil
}

// memcacheValue reads a value by the flags python's clients set.
func memcacheValue(v []byte, flags uint32, maxValue int) ([]byte, error) {
	if len(v) > maxValue {
		return nil, fmt.Errorf("%w: a value over %d bytes", ErrUndecodable, maxValue)
	}
	switch flags {
	case mcFlagPickle:
		return v, nil
	case mcFlagInt, mcFlagLong:
		if !isDigits(v) {
			return nil, fmt.Errorf("%w: an integer flag on %q", ErrUndecodable, v[:min(len(v), 16)])
		}
		return v, nil
	case mcFlagPickle | mcFlagZlib:
		zr, err := zlib.NewReader(bytes.NewReader(v))
		if err != nil {
			return nil, fmt.Errorf("%w: compressed value: %v", ErrUndecodable, err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, int64(maxValue)+1))
		if err != nil {
			return nil, fmt.Errorf("%w: compressed value: %v", ErrUndecodable, err)
		}
		if len(out) > maxValue {
			return nil, fmt.Errorf("%w: a value over %d bytes once inflated", ErrUndecodable, maxValue)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: memcached flags %d (not a pickled session: 1, or 9 compressed)", ErrUndecodable, flags)
}

// Ping checks that memcached answers.
func (s *MemcacheStore) Ping(context.Context) error {
	if err := s.client.Ping(); err != nil {
		return fmt.Errorf("sessioncheck: memcached: %w", err)
	}
	return nil
}

// Close closes the idle connections.
func (s *MemcacheStore) Close() error { return s.client.Close() }

// Fallback is the store of Django's cached_db engine: the cache first,
// then, when the cache has no session for the key, the database, which is
// authoritative. A cache that fails is a failure of the lookup (a doubt),
// not a reason to ask the database: the breaker then spares both. Fallback
// is safe for concurrent use.
type Fallback struct {
	Cache, DB Store
}

var (
	_ Store  = (*Fallback)(nil)
	_ Pinger = (*Fallback)(nil)
)

// Lookup asks the cache, then the database on a miss.
func (f *Fallback) Lookup(ctx context.Context, key string, now time.Time) (Row, error) {
	r, err := f.Cache.Lookup(ctx, key, now)
	if !errors.Is(err, ErrNoRow) {
		return r, err
	}
	return f.DB.Lookup(ctx, key, now)
}

// Ping pings both, when they can be.
func (f *Fallback) Ping(ctx context.Context) error {
	for _, s := range []Store{f.Cache, f.DB} {
		if p, ok := s.(Pinger); ok {
			if err := p.Ping(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close closes both.
func (f *Fallback) Close() error { return errors.Join(f.Cache.Close(), f.DB.Close()) }
