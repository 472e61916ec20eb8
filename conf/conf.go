// Package conf loads, defaults and validates userrouter's TOML config file.
//
// The lifecycle is load → defaults → validate → use: Load starts from
// Default, lays the file over it (strictly: an unknown key is an error),
// expands ${ENV_VAR} references in strings, and validates the result,
// reporting every problem at once with the file and line it comes from.
// The doc comment of each field below is its user documentation; the same
// text, with the default, is in userrouter.example.toml.
package conf

import (
	"log/slog"
	"time"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/router"
	"github.com/userrouter/userrouter/sessioncheck"
)

// Config is userrouter's whole configuration.
type Config struct {
	Listen  Listen  `toml:"listen"`
	Backend Backend `toml:"backend"`
	Session Session `toml:"session"`
	// Credentials configures credential checks for APIs; see Credentials.
	Credentials Credentials `toml:"credentials"`
	Cache       Cache       `toml:"cache"`
	Purge       Purge       `toml:"purge"`
	Log         Log         `toml:"log"`

	// File is the path the config was loaded from; it is not a key.
	File string `toml:"-"`
}

// Listen configures the sockets userrouter accepts requests on.
type Listen struct {
	// Addr is the main listener nginx proxies to: "host:port" or
	// "unix:/path/to.sock". Default "127.0.0.1:8090".
	Addr string `toml:"addr"`
	// SocketMode is the permission of a unix socket Addr (and of a unix
	// socket AdminAddr), in octal.
	// Default "0660" (nginx's user must share userrouter's group).
	SocketMode FileMode `toml:"socket_mode"`
	// AdminAddr serves /healthz and the other admin endpoints. Keep it on
	// loopback: it is not authenticated. "" disables it.
	// Default "127.0.0.1:8091".
	AdminAddr string `toml:"admin_addr"`
	// TrustedProxies lists the peers (IPs or CIDRs) whose X-Forwarded-For,
	// X-Real-IP and X-Forwarded-Proto pass to the backend untouched. For any
	// other peer userrouter appends the peer address to X-Forwarded-For,
	// sets X-Real-IP to it and X-Forwarded-Proto to "http". Unix socket
	// peers are always trusted.
	// Default ["127.0.0.0/8", "::1/128"].
	TrustedProxies []Prefix `toml:"trusted_proxies"`
	// ReadTimeout bounds reading one whole request (headers and body) from
	// the client. nginx buffers request bodies, so this can stay short.
	// Default "60s".
	ReadTimeout Duration `toml:"read_timeout"`
	// WriteTimeout bounds writing one whole response to the client; "0s"
	// means no limit, which lets a large download stream as long as it takes.
	// Default "0s".
	WriteTimeout Duration `toml:"write_timeout"`
	// IdleTimeout closes a keep-alive connection with no request for this
	// long. Keep it above nginx's upstream keepalive_timeout (60s), so nginx
	// is the side that closes. Default "90s".
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxHeaderSize bounds the request line and headers of one request; a
	// backend response's status line and headers may take this or 32 KiB,
	// whichever is larger. Default "16KiB".
	MaxHeaderSize Size `toml:"max_header_size"`
	// MaxRequestBodySize bounds a request body (an upload); larger ones get
	// 413. Keep it at least nginx's client_max_body_size. Default "64MiB".
	MaxRequestBodySize Size `toml:"max_request_body_size"`
	// ShutdownTimeout is how long SIGTERM or SIGINT waits for in-flight
	// requests before closing what is left, and how long a reload lets the
	// previous config's requests finish. Default "30s".
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// Pprof serves Go's profiles under /debug/pprof/ on the admin
	// listener. Default false.
	Pprof bool `toml:"pprof"`
	// Metrics serves Prometheus metrics on the admin listener's /metrics
	// and times requests for its latency histograms. Default true.
	Metrics bool `toml:"metrics"`
	// MemoryLimit is the process's soft memory limit (Go's GOMEMLIMIT,
	// which it overrides): near it the garbage collector works harder
	// rather than let the heap grow, so resident memory follows the sizes
	// configured. When not set, it is derived from them: the pages held in
	// this process (with store "memory", cache.memory_size and a
	// sixteenth of it for the decoded copies of its hot pages;
	// cache.l1_size) and a quarter more, plus 24 MiB for the rest
	// (connections, fills in flight, session verdicts); none when the
	// process holds no pages. "0" sets none (GOMEMLIMIT's applies, if
	// any); one below the pages held plus 16 MiB is refused. -check
	// prints the value in force. Default: derived (for the default memory store of 128MiB,
	// "194MiB").
	MemoryLimit Size `toml:"memory_limit"`
}

// Backend configures the application servers requests are forwarded to.
type Backend struct {
	// Addrs lists the backends: "host:port" or "unix:/path/to.sock".
	// Requests are spread round robin. Required.
	Addrs []string `toml:"addrs"`
	// ConnectTimeout bounds connecting to one backend, and waiting for a
	// free connection when MaxConns are busy. Default "1s".
	ConnectTimeout Duration `toml:"connect_timeout"`
	// ReadTimeout bounds the wait between two reads from a backend, the
	// first byte of the response included (nginx's proxy_read_timeout); a
	// slow download keeps flowing as long as bytes keep coming. Exceeding it
	// answers 504. Default "60s".
	ReadTimeout Duration `toml:"read_timeout"`
	// WriteTimeout bounds the wait between two writes to a backend (nginx's
	// proxy_send_timeout). Default "60s".
	WriteTimeout Duration `toml:"write_timeout"`
	// MaxConns bounds the connections to each backend. Default 512.
	MaxConns int `toml:"max_conns"`
	// IdleTimeout closes a pooled keep-alive connection to a backend after
	// this long unused. Keep it below the backend's own keep-alive timeout
	// (gunicorn: 2s, uvicorn: 5s), or requests race the backend's close.
	// Default "1s".
	IdleTimeout Duration `toml:"idle_timeout"`
	// FailTimeout is how long a backend that refused a connection is skipped
	// (nginx's fail_timeout). When every backend is marked failed, all are
	// tried anyway. Default "10s".
	FailTimeout Duration `toml:"fail_timeout"`
	// Probe, when set, is a path every backend is asked with a GET every
	// ProbeInterval, answering 2xx or 3xx within ProbeTimeout (Varnish's
	// probes): a backend is healthy while ProbeThreshold of the last
	// ProbeWindow probes passed. A sick backend gets no request; with every
	// backend sick, requests fail at once with 503 and Retry-After
	// (anonymous visitors get stale pages where stale-if-error allows), and
	// /readyz says so. ProbeHost is the probe's Host (default the backend's
	// address). Default "": no probe.
	Probe          string   `toml:"probe"`
	ProbeHost      string   `toml:"probe_host"`
	ProbeInterval  Duration `toml:"probe_interval"`
	ProbeTimeout   Duration `toml:"probe_timeout"`
	ProbeWindow    int      `toml:"probe_window"`
	ProbeThreshold int      `toml:"probe_threshold"`
}

// Session configures how visitors are told apart: anonymous visitors may be
// served from the cache, identified ones always reach the backend.
type Session struct {
	// Cookie is the name of the application's session cookie.
	// Default "sessionid" (Django's SESSION_COOKIE_NAME).
	Cookie string `toml:"cookie"`
	// KeyPattern is a regexp a session key must match in full before it is
	// looked up; a key failing it is ignored, as the application would
	// ignore it. Default "^[a-z0-9]{32}$" (Django's keys); with driver
	// "signed_cookies", "^[A-Za-z0-9_.:-]+$" (signed cookies, up to 4096
	// bytes).
	KeyPattern Regexp `toml:"key_pattern"`
	// Driver is the session store: "mysql" (MySQL or MariaDB), "postgres"
	// (PostgreSQL), "sqlite" (a SQLite file, Django's default db.sqlite3),
	// "redis" (a Redis server: Django's cache and cached_db engines through
	// django-redis or RedisCache, Rails' redis-session-store, Laravel's
	// redis session driver), "memcached" (one memcached server: Django's
	// cache and cached_db engines through pylibmc or pymemcache),
	// "signed_cookies" (no store: Django's signed_cookies engine keeps the
	// session in the cookie, read with secret_key and max_age), or "" for
	// none. With no store, every visitor carrying a session cookie is
	// forwarded. Default "".
	Driver string `toml:"driver"`
	// DSN is the driver's data source name. mysql:
	// "django:${DB_PASSWORD}@tcp(127.0.0.1:3306)/app". postgres: libpq's,
	// "postgres://django:${DB_PASSWORD}@127.0.0.1:5432/app?sslmode=verify-full"
	// or "host=/run/postgresql dbname=app"; TLS is set here (sslmode,
	// sslrootcert, sslcert, sslkey). sqlite: the database file, e.g.
	// "/srv/mysite/db.sqlite3", opened read-only; it must exist. redis:
	// "redis://[:${REDIS_PASSWORD}@]127.0.0.1:6379/0" ("rediss://" for
	// TLS, "unix:///run/redis/redis.sock?db=0"). memcached: one server,
	// "127.0.0.1:11211" or "unix:/run/memcached.sock". signed_cookies:
	// none. Default "".
	DSN string `toml:"dsn"`
	// Query reads one session. It must use the named parameter :key (the
	// session key) and may use :now (userrouter's current time, written in
	// time_zone) and :now_unix (the current Unix time in seconds). They are
	// bound parameters, never spliced into the SQL; "?" and other names are
	// refused.
	// Default "SELECT session_data FROM django_session WHERE session_key = :key AND expire_date > :now".
	Query string `toml:"query"`
	// Rule says what a row means: "django" (decode session_data and look
	// for _auth_user_id), "exists" (a row means identified), or "nonempty"
	// (the first column not NULL, empty or 0 means identified). With
	// driver "redis" or "memcached" it says how the value is read:
	// "django" (the session dict pickled by Django's cache backends; a
	// restricted reader that never runs or constructs anything),
	// "rails_json" (redis-session-store with serializer: :json; identified
	// when the object has identified_key), "laravel_php" (Laravel's
	// serialized session; identified when a key starts with
	// identified_key), or "exists" (a value means identified);
	// "rails_json" and "laravel_php" need key_pattern set. Default "django".
	Rule string `toml:"rule"`
	// KeyTemplate makes the Redis or memcached key from the session key:
	// {key} is the key, {key_sha256} its hex SHA-256 (Rack's private ids).
	// Django's cache engine: "<KEY_PREFIX>:<VERSION>:django.contrib.sessions.cache{key}",
	// cached_db: "…:django.contrib.sessions.cached_db{key}"; Rails'
	// redis-session-store 0.11+: "<key_prefix>2::{key_sha256}"; Laravel:
	// "laravel_database_laravel_cache_:{key}" (the Redis prefix, the cache
	// prefix, ":"). Default ":1:django.contrib.sessions.cache{key}".
	KeyTemplate string `toml:"key_template"`
	// IdentifiedKey is, for rule "rails_json", the session key whose
	// presence means a logged-in visitor (default "warden.user.user.key",
	// Devise's scope "user"); for "laravel_php", the prefix of such a key
	// (default "login_web_", SessionGuard's guard "web"). Default "".
	IdentifiedKey string `toml:"identified_key"`
	// MaxValueSize bounds a value read from Redis or memcached (after
	// inflating a compressed one); a larger one is forwarded.
	// Default "256KiB".
	MaxValueSize Size `toml:"max_value_size"`
	// FallbackDriver and FallbackDSN name the database of Django's
	// cached_db engine, with driver "redis" or "memcached": a session the
	// cache does not have is read there with query and rule "django", as
	// cached_db does. "mysql", "postgres", "sqlite" or "" for none.
	// Defaults "" and "".
	FallbackDriver string `toml:"fallback_driver"`
	FallbackDSN    string `toml:"fallback_dsn"`
	// Timeout bounds one session lookup; when it passes the visitor is
	// forwarded to the backend. Default "100ms".
	Timeout Duration `toml:"timeout"`
	// SecretKey, when set, is Django's SECRET_KEY: session_data signatures
	// are then verified, and a row that does not verify is forwarded. Rows
	// come from the application's own database, so this is defence in
	// depth, not needed to read them. With driver "signed_cookies", a
	// cookie that does not verify is anonymous, as Django reads it (see the
	// README). Use ${ENV_VAR}. Default "".
	SecretKey string `toml:"secret_key"`
	// SecretKeyFallbacks are Django's SECRET_KEY_FALLBACKS. Default [].
	SecretKeyFallbacks []string `toml:"secret_key_fallbacks"`
	// DjangoSalt is the session engine's key salt, "django.contrib.sessions."
	// + its SessionStore class name; change it only for a custom engine
	// class. Default "django.contrib.sessions.SessionStore". Not used by
	// "signed_cookies", whose salt is fixed.
	DjangoSalt string `toml:"django_salt"`
	// MaxAge is Django's SESSION_COOKIE_AGE, for driver "signed_cookies":
	// a cookie signed longer ago is anonymous, as Django reads it.
	// Default "336h" (1209600 seconds, Django's default).
	MaxAge Duration `toml:"max_age"`
	// TimeZone is the zone :now is written in: "UTC" for Django with
	// USE_TZ = True (the default since Django 5.0), TIME_ZONE otherwise.
	// postgres writes :now with its UTC offset, so Django's timestamptz
	// columns compare right either way. Default "UTC".
	TimeZone Location `toml:"time_zone"`
	// MaxConns bounds the connections to the session store, and so the
	// queries in flight; a lookup that gets none within timeout is
	// forwarded. Default 8.
	MaxConns int `toml:"max_conns"`
	// CacheEntries bounds the verdict cache (about 100 bytes an entry for
	// Django's keys; keys are at most 256 bytes). Default 100000.
	CacheEntries int `toml:"cache_entries"`
	// CacheTTLIdentified, CacheTTLAnonymous and CacheTTLNoRow are how long
	// a verdict is cached. Safe because Django, Rails and Laravel give a
	// session a new key at login and logout: a key's verdict only ends when
	// it expires or is deleted. No-row verdicts stay short in case a new
	// session has not reached a replica yet. Doubts are never cached. Each
	// entry's TTL varies by ±10%. Defaults "60s", "60s", "5s".
	CacheTTLIdentified Duration `toml:"cache_ttl_identified"`
	CacheTTLAnonymous  Duration `toml:"cache_ttl_anonymous"`
	CacheTTLNoRow      Duration `toml:"cache_ttl_no_row"`
	// BreakerFailures consecutive store failures open the circuit breaker:
	// for BreakerCooldown every visitor with a session is forwarded at once
	// without asking, then one lookup probes the store. Defaults 5, "2s".
	BreakerFailures int      `toml:"breaker_failures"`
	BreakerCooldown Duration `toml:"breaker_cooldown"`
}

// DerivedMemoryLimit is the listen.memory_limit that applies when none is
// set: the pages this process holds (MemorySize with store "memory", and
// L1Size) and a quarter more, plus memoryLimitBase; 0 (no limit) when it
// holds none.
func (c *Config) DerivedMemoryLimit() Size {
	pages := c.pagesInProcess()
	if pages <= 0 {
		return 0
	}
	return pages + pages/4 + memoryLimitBase
}

// pagesInProcess is what the config lets this process hold in pages: the
// memory store's size and its front's (pagecache.FrontSize), and the L1's.
func (c *Config) pagesInProcess() Size {
	pages := c.Cache.L1Size
	if c.Cache.Store == "memory" {
		pages += c.Cache.MemorySize
		if c.Cache.L1Size == 0 && c.Cache.Format != "raw" {
			pages += Size(pagecache.FrontSize(int64(c.Cache.MemorySize)))
		}
	}
	return pages
}

// memoryLimitBase is what the derived memory limit allows besides pages:
// the binary's runtime structures, connection buffers, fills in flight,
// session verdicts, the decompressed bodies kept for clients without
// gzip, the response heads kept for hits (8 MiB at most) and the pages'
// tag hints (4 MiB at most).
const memoryLimitBase = 24 << 20

// Credentials configures how API credentials (keys, tokens) are checked,
// for the cache rules that serve them ([[cache.rule]] credentials =
// "shared" or "per-credential"). They are checked as sessions are: a
// parameterized query against the application's own table, verdicts
// cached, lookups coalesced and bounded, a circuit breaker, and any doubt
// forwarded. Off (every request with Authorization forwarded) unless
// scheme or query_param is set.
type Credentials struct {
	// Scheme is the Authorization scheme credentials come with: "Token"
	// (Django REST framework's TokenAuthentication), "ApiKey" (Tastypie),
	// "Bearer", ...; compared without regard to case. "" reads no header.
	// Default "".
	Scheme string `toml:"scheme"`
	// Pattern, when set, is a regexp the credentials after the scheme must
	// match in full, with named groups "key" (required) and "user"
	// (optional), bound to :key and :user: for Tastypie's "ApiKey
	// user:key", "(?P<user>[^:]+):(?P<key>[0-9a-f]{40})". Without it the
	// whole of them is the key. A credential that fails it is forwarded.
	// Default "".
	Pattern string `toml:"pattern"`
	// QueryParam, when set, is a query parameter carrying the key
	// ("api_key"); its value must be plain (letters, digits, -._~). It is
	// left out of page keys (added to cache.ignore_query_params) and sent
	// with fills. Default "".
	QueryParam string `toml:"query_param"`
	// Driver is the credential store: "mysql", "postgres" or "sqlite";
	// "" means session.driver. Default "".
	Driver string `toml:"driver"`
	// DSN is the driver's data source name; "" means session.dsn.
	// Default "".
	DSN string `toml:"dsn"`
	// Query reads one credential: a row means valid. It must use :key and
	// may use :user (the pattern's groups), :now and :now_unix, all bound,
	// never spliced. Required when a rule serves credentials. For Django
	// REST framework: "SELECT user_id FROM authtoken_token WHERE `key` =
	// :key" (MySQL needs the backticks: KEY is a reserved word). Default "".
	Query string `toml:"query"`
	// Timeout bounds one credential lookup; when it passes the request is
	// forwarded. Default "100ms".
	Timeout Duration `toml:"timeout"`
	// MaxConns bounds the connections to the credential store, and so
	// the queries in flight. Default 8.
	MaxConns int `toml:"max_conns"`
	// CacheEntries bounds the verdict cache. Default 100000.
	CacheEntries int `toml:"cache_entries"`
	// CacheTTLValid and CacheTTLInvalid are how long a verdict is cached:
	// a revoked key keeps being served its copies that long, a new one is
	// forwarded that long. Doubts are never cached. Each entry's TTL varies
	// by ±10%. Defaults "60s", "5s".
	CacheTTLValid   Duration `toml:"cache_ttl_valid"`
	CacheTTLInvalid Duration `toml:"cache_ttl_invalid"`
	// BreakerFailures consecutive store failures open the circuit breaker:
	// for BreakerCooldown every request with a credential is forwarded at
	// once, then one lookup probes the store. Defaults 5, "2s".
	BreakerFailures int      `toml:"breaker_failures"`
	BreakerCooldown Duration `toml:"breaker_cooldown"`
	// HashKey keys the hash of a credential in per-credential page keys
	// (HMAC-SHA256; the credential itself is never in a key). Required
	// when a rule is "per-credential": at least 16 bytes, secret, the same
	// on every instance sharing the store. Use ${ENV_VAR}. Default "".
	HashKey string `toml:"hash_key"`
	// MaxPrivateFills bounds the per-credential copies one credential
	// fills a minute on each instance; beyond it its misses are forwarded
	// without a fill (Cache-Status detail=credential-limit). Default 256.
	MaxPrivateFills int `toml:"max_private_fills"`
}

// Enabled reports whether credentials are read at all.
func (c *Credentials) Enabled() bool { return c.Scheme != "" || c.QueryParam != "" }

// Cache configures the page cache.
type Cache struct {
	// Store is where pages are kept: "memcached" (shared by every
	// instance), "memory" (in this process, bounded by MemorySize; purges
	// reach only this instance), or "none" to forward everything.
	// Default "memcached".
	Store string `toml:"store"`
	// MemorySize bounds the "memory" store: each page is charged what it
	// costs in the heap (key, headers, body, the store's entry); a reload
	// keeps the store unless this changes. listen.memory_limit, unless
	// set, is derived from it. Default "128MiB".
	MemorySize Size `toml:"memory_size"`
	// Servers lists the memcached servers ("host:port" or "unix:/path").
	// Default ["127.0.0.1:11211"].
	Servers []string `toml:"servers"`
	// Distribution places keys on Servers, and must be what every other
	// program reading or writing them uses: "modula" (gomemcache's CRC32
	// modulo the server count; adding or losing a server moves almost
	// every key), "ketama" (libmemcached's consistent hashing as pylibmc's
	// behaviors {"ketama": True} set it, Django's PyLibMCCache included),
	// or "ketama_weighted" (pylibmc's {"ketama_weighted": True}, PHP
	// Memcached's OPT_LIBKETAMA_COMPATIBLE, twemproxy's "distribution:
	// ketama" with "hash: md5"). Write servers as the other programs do:
	// a point's name is the host as written. Default "modula", the
	// placement of earlier versions.
	Distribution string `toml:"distribution"`
	// AutoEject, with a ketama distribution, takes a server off the ring
	// after ServerFailureLimit consecutive failures (refused, reset or timed
	// out) for ServerRetryTimeout: its keys go to the next server on the
	// ring meanwhile, and a failure on its return ejects it again. It needs
	// a ketama distribution: under "modula" ejecting a server would move
	// almost every key. Default false, as twemproxy's auto_eject_hosts.
	AutoEject bool `toml:"auto_eject"`
	// ServerFailureLimit is the consecutive failures that eject a server.
	// Default 3.
	ServerFailureLimit int `toml:"server_failure_limit"`
	// ServerRetryTimeout is how long an ejected server stays off the ring.
	// Default "30s".
	ServerRetryTimeout Duration `toml:"server_retry_timeout"`
	// Timeout bounds one memcached operation; a slower one counts as a
	// miss. Default "100ms".
	Timeout Duration `toml:"timeout"`
	// MaxInFlight bounds the operations in flight to each memcached server
	// (and the idle connections kept to it: as many for gets, sets and
	// adds, and as many for increments and deletes). Default 64.
	MaxInFlight int `toml:"max_in_flight"`
	// ItemSizeLimit is memcached's -I: larger pages are not stored (in the
	// "memory" store too); a page's body may use it less 8 KiB, kept for
	// the key, headers and tags. Default "1MiB".
	ItemSizeLimit Size `toml:"item_size_limit"`
	// Key is the template of a page's key, with the tokens {scheme},
	// {host}, {path}, {query}, {uri}, {header:Name} and {cookie:Name}.
	// Match what another filler writes ("page:{uri}" for nginx's
	// $request_uri style). {cookie:Name} is a cookie's value (a language,
	// currency or theme: "page:{host}{uri}|{cookie:django_language}"): up
	// to 64 bytes of ASCII letters, digits, "-", "_", "." and "+" (spaces
	// and quotes around it removed), absent and empty alike; any other
	// value, or the cookie twice with different values, is forwarded, not
	// cached (detail=key-cookie). A fill sends those cookies, with the
	// key's values, and no other. Never the session cookie (an error).
	// Default "page:{host}{uri}".
	Key string `toml:"key"`
	// Prefix starts userrouter's own keys: hashed page keys (for URLs too
	// long for memcached) and the generation counters purges change.
	// Default "ur:".
	Prefix string `toml:"prefix"`
	// TagHeaders are the response headers carrying surrogate keys (space
	// or comma separated). A tag is printable ASCII of at most 1024 bytes;
	// a response with more than 256 tags, or a tag header line over 16 KiB,
	// is not stored. Default ["Surrogate-Key", "xkey", "Cache-Tag"].
	TagHeaders []string `toml:"tag_headers"`
	// StripTagHeaders removes the tag headers from what clients see.
	// Default true.
	StripTagHeaders bool `toml:"strip_tag_headers"`
	// TagCacheTTL, when above 0, keeps purge counters (namespace, URL and
	// tag generations) in process that long: hits skip reading them from
	// memcached, and a purge may take that long to reach every instance
	// (the instance that purges sees it at once). Default "0s": exact.
	TagCacheTTL Duration `toml:"tag_cache_ttl"`
	// L1Size, when not 0, keeps that much of the hottest fresh pages in
	// this process in front of memcached: such a hit costs no round trip.
	// A purge received by this instance applies to its copies at once; one
	// received by another instance within L1TTL. Envelope format only.
	// Default "0": off, so that purges are exact unless the operator
	// chooses the bound.
	L1Size Size `toml:"l1_size"`
	// L1TTL bounds how long a copy is served after memcached last showed
	// it valid (and never past its freshness). Default "1s".
	L1TTL Duration `toml:"l1_ttl"`
	// OutageL1Size is how much of the pages filled while memcached fails
	// this process keeps, so that an outage of memcached is not a flood of
	// the backend: while memcached is down (its breaker open, or a lookup
	// failed), anonymous misses of one page still wait for one fill, are
	// served its answer, and the page is kept here for L1TTL at most, never
	// past its freshness (Cache-Status "hit; detail=store-down"). Only
	// outages use it: while memcached answers it is empty. A purge
	// received by this instance drops its copies at once (even when
	// memcached cannot take it); one received by another instance reaches
	// them within L1TTL. With l1_size set, the L1 plays this part. Envelope
	// format only. "0" turns it off: each anonymous request of an outage
	// is then forwarded. Default "16MiB".
	OutageL1Size Size `toml:"outage_l1_size"`
	// UnsafeInvalidation is what a 2xx or 3xx answer to a POST, PUT, PATCH
	// or DELETE does to the stored page of its URL and of the same-host URLs
	// in the answer's Location and Content-Location (RFC 9111 section
	// 4.4): "hard" purges them, "soft" makes them stale (served while
	// refreshed), "off" leaves them. Default "hard".
	UnsafeInvalidation string `toml:"unsafe_invalidation"`
	// IgnoreQueryParams are dropped from the key: names, or prefixes
	// ending in "*". Default ["utm_*", "fbclid", "gclid"].
	IgnoreQueryParams []string `toml:"ignore_query_params"`
	// SortQuery orders the remaining query parameters in the key, so that
	// ?a=1&b=2 and ?b=2&a=1 share an entry. Default false.
	SortQuery bool `toml:"sort_query"`
	// Format is how a page is stored: "envelope" (status, headers, times
	// and body; userrouter's own) or "raw" (the body alone, as another
	// program writes it; only purges by URL reach raw pages).
	// Default "envelope".
	Format string `toml:"format"`
	// RawContentType is the Content-Type of raw pages.
	// Default "text/html; charset=utf-8".
	RawContentType string `toml:"raw_content_type"`
	// RawGzipFlag, when not 0, is the memcached flag bit marking a gzipped
	// raw page (nginx's memcached_gzip_flag). Default 0.
	RawGzipFlag int `toml:"raw_gzip_flag"`
	// RawFill makes userrouter write raw bodies on a miss too; without it,
	// in raw mode it only reads what another program wrote. Default false.
	RawFill bool `toml:"raw_fill"`
	// DefaultTTL is how long a page is fresh when the backend's
	// Cache-Control, Surrogate-Control and Expires say nothing (RFC 9111
	// section 4.2.2's heuristic freshness, the operator's); "0s" stores
	// only what the backend made explicitly cacheable. Default "60s".
	DefaultTTL Duration `toml:"default_ttl"`
	// MaxTTL caps every freshness lifetime. Default "24h".
	MaxTTL Duration `toml:"max_ttl"`
	// Grace is how long past its freshness a page may be served stale while
	// one background request refreshes it; a response's
	// stale-while-revalidate overrides it, must-revalidate forbids it.
	// Default "10s".
	Grace Duration `toml:"grace"`
	// StaleIfError is how long past its freshness a page may be served
	// stale when the backend fails (down, timing out, answering 5xx), RFC
	// 5861; a response's stale-if-error overrides it, must-revalidate and
	// no-cache forbid it. Pages stay in the store that long past their
	// grace. "0s" turns it off. Default "1h".
	StaleIfError Duration `toml:"stale_if_error"`
	// UncacheableTTL is how long a URL whose response could not be stored
	// goes straight to the backend, with the visitor's cookies and no fill
	// (Varnish's hit-for-pass); a 5xx answer leaves no such marker.
	// Default "2m".
	UncacheableTTL Duration `toml:"uncacheable_ttl"`
	// Statuses that may be stored. Default [200, 203, 301, 404, 410].
	Statuses []int `toml:"statuses"`
	// StripSetCookies names cookies whose Set-Cookie is removed from the
	// stored copy; any other Set-Cookie prevents storing. Beware: a page
	// whose HTML embeds a CSRF token must not be shared. Default [].
	StripSetCookies []string `toml:"strip_set_cookies"`
	// DropHeaders are response headers never stored with a page. Every
	// other end-to-end header is stored and served on hits, repeated ones
	// in order (RFC 9111 section 3.1); Set-Cookie, hop-by-hop headers,
	// those Connection names, Content-Length and Age never are, nor the
	// tag headers when strip_tag_headers. Default [].
	DropHeaders []string `toml:"drop_headers"`
	// KeepHeaders is retired: every end-to-end header is stored now.
	// Setting it is an error that says so.
	KeepHeaders []string `toml:"keep_headers,omitempty"`
	// FillStripHeaders are request headers removed from fill requests.
	// A fill carries only what the page key is built from (Host, the
	// query the key keeps, the {header:Name} headers) and userrouter's
	// own forwarding headers, so this only matters for a header the key
	// names. Default [].
	FillStripHeaders []string `toml:"fill_strip_headers"`
	// Hosts lists the Host values whose pages may be cached; requests for
	// any other host are forwarded, never cached (fwd=bypass; detail=host,
	// logged once per host). Write them as userrouter receives them:
	// behind the shipped nginx snippet, which sends nginx's $host, without
	// a port whatever port nginx listens on ("example.com"); with a port
	// only for clients that reach userrouter directly on a port other than
	// 80 ("example.com:8080"). Empty means every host, allowed only when
	// key has {host}. Default [].
	Hosts []string `toml:"hosts"`
	// BypassPaths are path prefixes never cached ("/admin/"); matched
	// against the raw path and the decoded, cleaned one. Default [].
	BypassPaths []string `toml:"bypass_paths"`
	// BypassPathRegexps are path regexps never cached. Default [].
	BypassPathRegexps []Regexp `toml:"bypass_path_regexps"`
	// BypassCookies are cookie names whose presence forwards the request
	// uncached ("messages"). Default [].
	BypassCookies []string `toml:"bypass_cookies"`
	// BypassQueryParams are query parameter names whose presence forwards
	// the request uncached ("preview"). Default [].
	BypassQueryParams []string `toml:"bypass_query_params"`
	// MaxBackgroundFills bounds the fills running for visitors who carry
	// cookies. Default 64.
	MaxBackgroundFills int `toml:"max_background_fills"`
	// MaxVariants bounds the variants of one URL (a response whose Vary
	// names request headers the key does not include, stored per value
	// of them) each instance fills while the URL's variants marker lasts;
	// beyond it requests are forwarded and not stored (Cache-Status
	// detail=variants). Default 16.
	MaxVariants int `toml:"max_variants"`
	// CollapseTimeout bounds how long a miss waits for another request's
	// fill of the same page; then it forwards its own request
	// (Cache-Status detail=collapse-timeout). Default "0s": the backend's
	// read_timeout.
	CollapseTimeout Duration `toml:"collapse_timeout"`
	// Rules set caching per URL, the first match applying; see CacheRule.
	Rules []CacheRule `toml:"rule"`
}

// CacheRule is one [[cache.rule]]: the first rule whose path (and host,
// when set) matches a request sets its caching.
type CacheRule struct {
	// Path is a regexp matched against the request path. Required.
	Path Regexp `toml:"path"`
	// Host, when set, limits the rule to one Host. Default "".
	Host string `toml:"host"`
	// Cache false forwards matching requests uncached. Default true.
	Cache bool `toml:"cache"`
	// TTL is the freshness lifetime when the backend says nothing (or
	// always, with honor_cache_control = false). Default: cache.default_ttl.
	TTL Duration `toml:"ttl"`
	// HonorCacheControl follows the backend's Cache-Control and Expires.
	// Default true.
	HonorCacheControl bool `toml:"honor_cache_control"`
	// StoreSetCookie stores responses that set cookies, every Set-Cookie
	// removed from the stored copy. Not with credentials. Default false.
	StoreSetCookie bool `toml:"store_set_cookie"`
	// Credentials is what becomes of requests carrying a credential (see
	// [credentials]): "bypass" forwards them; "shared" serves every
	// verified credential one copy, filled with one of them (any other
	// request, with no credential or one that does not verify, is
	// forwarded); "per-credential" keeps a copy per credential, keyed by
	// its keyed hash and served to it alone. Responses that set a cookie,
	// are private (unless store_private) or vary on a header outside the
	// key are not stored. Default "bypass".
	Credentials string `toml:"credentials"`
	// StorePrivate stores responses marked Cache-Control: private, for
	// credentials = "per-credential" only (each copy is one credential's).
	// Default false.
	StorePrivate bool `toml:"store_private"`
}

func (r *CacheRule) setDefaults() {
	r.Cache = true
	r.HonorCacheControl = true
	r.Credentials = "bypass"
}

// Purge configures who may purge the cache: PURGE /path on the main
// listener, POST /purge on the admin listener.
type Purge struct {
	// Allow lists the client IPs or CIDRs allowed to purge. On the main
	// listener, behind a trusted proxy, the client is X-Real-IP (or the last
	// X-Forwarded-For address); on the admin listener it is the peer.
	// Default ["127.0.0.0/8", "::1/128"].
	Allow []Prefix `toml:"allow"`
	// Token, when set, must also be sent as "Authorization: Bearer
	// <token>". Use ${ENV_VAR}. Default "".
	Token string `toml:"token"`
}

// Log configures userrouter's own log and the optional access log.
type Log struct {
	// Level is the least severe level written: "debug", "info", "warn" or
	// "error"; a reload applies it. Default "info".
	Level Level `toml:"level"`
	// Format is "text" or "json"; a change needs a restart. Default "text".
	Format string `toml:"format"`
	// Access is the access log's format: "" (off: nginx logs requests
	// already), "combined" (nginx's, with cache, verdict, rt and urt
	// fields) or "json". Default "".
	Access string `toml:"access"`
	// AccessFile is where access lines go: a path (opened again on
	// reload, for log rotation), "stdout" or "stderr". Default "stdout".
	AccessFile string `toml:"access_file"`
	// AccessQueue bounds the lines waiting to be written; when the disk
	// cannot keep up, lines beyond it are dropped and counted, never
	// slowing requests. Default 8192.
	AccessQueue int `toml:"access_queue"`
}

// Default returns the configuration used for every key a file leaves out.
// Where a library has a default of its own, this is it.
func Default() *Config {
	loopback := func() []Prefix { return []Prefix{mustPrefix("127.0.0.0/8"), mustPrefix("::1/128")} }
	return &Config{
		Listen: Listen{
			Addr:               "127.0.0.1:8090",
			SocketMode:         0o660,
			AdminAddr:          "127.0.0.1:8091",
			TrustedProxies:     loopback(),
			ReadTimeout:        Duration(60e9),
			WriteTimeout:       0,
			IdleTimeout:        Duration(90e9),
			MaxHeaderSize:      16 << 10,
			MaxRequestBodySize: router.DefaultMaxRequestBodySize,
			ShutdownTimeout:    Duration(30e9),
			Metrics:            true,
		},
		Backend: Backend{
			ConnectTimeout: Duration(1e9),
			ReadTimeout:    Duration(60e9),
			WriteTimeout:   Duration(60e9),
			MaxConns:       512,
			IdleTimeout:    Duration(1e9),
			FailTimeout:    Duration(10e9),
			ProbeInterval:  Duration(router.DefaultProbeInterval),
			ProbeTimeout:   Duration(router.DefaultProbeTimeout),
			ProbeWindow:    router.DefaultProbeWindow,
			ProbeThreshold: router.DefaultProbeThreshold,
		},
		Session: Session{
			Cookie:             "sessionid",
			KeyPattern:         mustRegexp("^[a-z0-9]{32}$"),
			Query:              "SELECT session_data FROM django_session WHERE session_key = :key AND expire_date > :now",
			Rule:               "django",
			Timeout:            Duration(sessioncheck.DefaultTimeout),
			SecretKeyFallbacks: []string{},
			DjangoSalt:         sessioncheck.DefaultDjangoSalt,
			KeyTemplate:        sessioncheck.DefaultKeyTemplate,
			MaxValueSize:       sessioncheck.DefaultMaxValueSize,
			MaxAge:             Duration(sessioncheck.DefaultSignedCookieMaxAge),
			TimeZone:           Location{time.UTC},
			MaxConns:           sessioncheck.DefaultMaxQueries,
			CacheEntries:       sessioncheck.DefaultCacheEntries,
			CacheTTLIdentified: Duration(sessioncheck.DefaultTTLIdentified),
			CacheTTLAnonymous:  Duration(sessioncheck.DefaultTTLAnonymous),
			CacheTTLNoRow:      Duration(sessioncheck.DefaultTTLNoRow),
			BreakerFailures:    sessioncheck.DefaultBreakerFailures,
			BreakerCooldown:    Duration(sessioncheck.DefaultBreakerCooldown),
		},
		Credentials: Credentials{
			Timeout:         Duration(sessioncheck.DefaultTimeout),
			MaxConns:        sessioncheck.DefaultMaxQueries,
			CacheEntries:    sessioncheck.DefaultCacheEntries,
			CacheTTLValid:   Duration(sessioncheck.DefaultTTLIdentified),
			CacheTTLInvalid: Duration(sessioncheck.DefaultTTLNoRow),
			BreakerFailures: sessioncheck.DefaultBreakerFailures,
			BreakerCooldown: Duration(sessioncheck.DefaultBreakerCooldown),
			MaxPrivateFills: router.DefaultMaxPrivateFills,
		},
		Cache: Cache{
			Store:              "memcached",
			MemorySize:         pagecache.DefaultMemorySize,
			Servers:            []string{"127.0.0.1:11211"},
			Distribution:       "modula",
			ServerFailureLimit: pagecache.DefaultFailureLimit,
			ServerRetryTimeout: Duration(pagecache.DefaultRetryTimeout),
			Timeout:            Duration(pagecache.DefaultMemcacheTimeout),
			MaxInFlight:        pagecache.DefaultMaxInFlight,
			ItemSizeLimit:      pagecache.DefaultMaxItemSize,
			Key:                pagecache.DefaultKeyTemplate,
			Prefix:             pagecache.DefaultPrefix,
			TagHeaders:         router.DefaultTagHeaders(),
			StripTagHeaders:    true,
			IgnoreQueryParams:  []string{"utm_*", "fbclid", "gclid"},
			Format:             "envelope",
			UnsafeInvalidation: "hard",
			RawContentType:     router.DefaultRawContentType,
			DefaultTTL:         Duration(60e9),
			MaxTTL:             Duration(pagecache.DefaultMaxTTL),
			Grace:              Duration(10e9),
			StaleIfError:       Duration(pagecache.DefaultStaleIfError),
			L1TTL:              Duration(pagecache.DefaultL1TTL),
			OutageL1Size:       pagecache.DefaultOutageL1Size,
			UncacheableTTL:     Duration(router.DefaultUncacheableTTL),
			Statuses:           pagecache.DefaultStatuses(),
			StripSetCookies:    []string{},
			DropHeaders:        []string{},
			FillStripHeaders:   []string{},
			Hosts:              []string{},
			BypassPaths:        []string{},
			BypassPathRegexps:  []Regexp{},
			BypassCookies:      []string{},
			BypassQueryParams:  []string{},
			MaxBackgroundFills: router.DefaultMaxBackgroundFills,
			MaxVariants:        pagecache.DefaultMaxVariants,
		},
		Purge: Purge{
			Allow: loopback(),
		},
		Log: Log{
			Level:       Level(slog.LevelInfo),
			Format:      "text",
			AccessFile:  "stdout",
			AccessQueue: 8192,
		},
	}
}

// Redacted returns a copy of c with secrets replaced, fit for printing.
func (c *Config) Redacted() *Config {
	r := *c
	r.Session.DSN = redactDSN(c.Session.DSN)
	r.Session.FallbackDSN = redactDSN(c.Session.FallbackDSN)
	if r.Session.SecretKey != "" {
		r.Session.SecretKey = "REDACTED"
	}
	if len(r.Session.SecretKeyFallbacks) > 0 {
		r.Session.SecretKeyFallbacks = []string{"REDACTED"}
	}
	if r.Purge.Token != "" {
		r.Purge.Token = "REDACTED"
	}
	r.Credentials.DSN = redactDSN(c.Credentials.DSN)
	if r.Credentials.HashKey != "" {
		r.Credentials.HashKey = "REDACTED"
	}
	return &r
}

// KeyTemplate builds the page key template c describes. Validation and
// the daemon both build it here, so -check checks what runs.
func (c *Cache) KeyTemplate() (*pagecache.KeyTemplate, error) {
	return pagecache.NewKeyTemplate(pagecache.KeyOptions{
		Template:          c.Key,
		IgnoreQueryParams: c.IgnoreQueryParams,
		SortQuery:         c.SortQuery,
		HashPrefix:        c.Prefix + "h:",
	})
}
