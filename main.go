// Command userrouter is a session-aware edge router: it sits between nginx
// and a web application, serves anonymous visitors prerendered pages from a
// cache, and forwards everyone else to the application unchanged.
//
//	userrouter -config /etc/userrouter/userrouter.toml
//	userrouter -check -config /etc/userrouter/userrouter.toml
//	userrouter -version
package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"reflect"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	_ "time/tzdata" // session.time_zone works on hosts without zoneinfo

	"github.com/go-sql-driver/mysql"
	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/conf"
	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/router"
	"github.com/userrouter/userrouter/sessioncheck"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("userrouter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "`FILE` to read the configuration from (TOML; see conf/userrouter.example.toml)")
	check := fs.Bool("check", false, "validate the configuration, print it with every default filled in, and exit")
	connect := fs.Bool("connect", false, "with -check: also connect to every dependency (memcached servers, the session store with one lookup, each backend or its probe), one line each on stderr; exit 1 if any fails")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: userrouter -config FILE [-check [-connect]]
       userrouter [-config FILE] inspect [-json] URL
       userrouter [-config FILE] purge [-soft] URL... | -key [-soft] TAG... | -all
inspect and purge ask the running userrouter's admin API (listen.admin_addr,
with purge.token); without -config they read `+defaultConfig+`.
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "userrouter", version)
		return 0
	}
	if isSubcommand(fs.Args()) && !*check && !*connect {
		return subcommand(*configPath, fs.Args(), stdout, stderr)
	}
	if *configPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "userrouter: -config FILE is required (see conf/userrouter.example.toml)")
		fs.Usage()
		return 2
	}
	cfg, err := conf.Load(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if *check {
			fmt.Fprintf(stderr, "userrouter: configuration file %s test failed\n", *configPath)
		}
		return 1
	}
	if *check {
		out, err := cfg.Effective()
		if err != nil {
			fmt.Fprintln(stderr, "userrouter:", err)
			return 1
		}
		stdout.Write(out)
		fmt.Fprintf(stderr, "userrouter: configuration file %s test is successful\n", *configPath)
		if *connect && !connectAll(cfg, stderr) {
			fmt.Fprintln(stderr, "userrouter: a dependency did not answer")
			return 1
		}
		return 0
	}
	if *connect {
		fmt.Fprintln(stderr, "userrouter: -connect goes with -check")
		return 2
	}
	level := new(slog.LevelVar)
	logger := newLogger(cfg.Log, level, stderr)
	if err := serve(cfg, logger, level); err != nil {
		logger.Error("userrouter stopped", "error", err)
		return 1
	}
	return 0
}

func newLogger(c conf.Log, level *slog.LevelVar, w io.Writer) *slog.Logger {
	level.Set(slog.Level(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs userrouter until SIGTERM or SIGINT, then shuts down
// gracefully; SIGHUP reloads the config.
func serve(cfg *conf.Config, logger *slog.Logger, level *slog.LevelVar) error {
	d := &daemon{cfg: cfg, logger: logger, level: level, metrics: router.NewMetrics(version),
		listen: cfg.Listen, logFormat: cfg.Log.Format}
	h, err := build(cfg, logger, d.metrics, nil, atStartup)
	if err != nil {
		return err
	}
	d.cur.Store(h)
	setMemoryLimit(cfg.Listen.MemoryLimit)
	l := &cfg.Listen
	mode := os.FileMode(l.SocketMode)
	ln, err := router.Listen(l.Addr, mode)
	if err != nil {
		h.Close()
		return fmt.Errorf("listen.addr: %w", err)
	}
	srv := router.NewServer(d.handle, router.ServerOptions{
		ReadTimeout:        l.ReadTimeout.D(),
		WriteTimeout:       l.WriteTimeout.D(),
		IdleTimeout:        l.IdleTimeout.D(),
		MaxHeaderSize:      int(l.MaxHeaderSize),
		MaxRequestBodySize: int(l.MaxRequestBodySize),
		Logger:             logger,
	})
	servers := []*fasthttp.Server{srv}
	listeners := []net.Listener{ln}
	if l.AdminAddr != "" {
		aln, err := router.Listen(l.AdminAddr, mode)
		if err != nil {
			ln.Close()
			h.Close()
			return fmt.Errorf("listen.admin_addr: %w", err)
		}
		admin := &router.Admin{Router: func() *router.Router { return d.cur.Load().Router }, Pprof: l.Pprof}
		if l.Metrics {
			admin.Metrics = d.metrics
		}
		servers = append(servers, router.NewAdminServer(admin, router.ServerOptions{
			ReadTimeout: l.ReadTimeout.D(), IdleTimeout: l.IdleTimeout.D(), Logger: logger}))
		listeners = append(listeners, aln)
	}

	// Signals are caught before "userrouter started" is logged: a SIGHUP
	// sent on seeing that line (a script, a test) reloads rather than
	// kills the process (Go's default for SIGHUP).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	failed := make(chan error, len(servers))
	for i, s := range servers {
		go func() { failed <- s.Serve(listeners[i]) }()
	}
	logger.Info("userrouter started", "version", version, "config", cfg.File,
		"addr", l.Addr, "admin_addr", l.AdminAddr, "backends", cfg.Backend.Addrs,
		"page_store", cfg.Cache.Store, "memcached", cfg.Cache.Servers, "l1_size", int64(cfg.Cache.L1Size), "outage_l1_size", int64(cfg.Cache.OutageL1Size),
		"session_driver", cmp.Or(cfg.Session.Driver, "none"), "memory_limit", int64(cfg.Listen.MemoryLimit))

	var serveErr error
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				d.reload()
				continue
			}
			logger.Info("shutting down", "signal", s.String(), "grace", l.ShutdownTimeout.D().String())
			break wait
		case <-d.retry:
			d.reload()
		case serveErr = <-failed:
			logger.Error("listener failed, shutting down", "error", serveErr)
			break wait
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), l.ShutdownTimeout.D())
	defer cancel()
	for _, s := range servers {
		if err := s.ShutdownWithContext(ctx); err != nil {
			logger.Warn("shutdown grace period ended with requests still in flight", "error", err)
		}
	}
	d.cur.Load().Close()
	if serveErr != nil {
		return serveErr
	}
	logger.Info("userrouter stopped")
	return nil
}

// daemon is the running userrouter: the handler in service, swapped
// whole on reload.
type daemon struct {
	cfg     *conf.Config // the config in service; only the signal loop touches it
	logger  *slog.Logger
	level   *slog.LevelVar
	metrics *router.Metrics // outlive reloads
	// listen and logFormat are the settings the listeners and the log
	// handler were made with, at startup: a reload does not change them.
	listen    conf.Listen
	logFormat string
	cur       atomic.Pointer[handler]
	// retry, when not nil, fires when a reload that waits for its new
	// session store to be verified should be tried again.
	retry <-chan time.Time
}

// reloadRetry is how often a reload waiting for its session store to be
// verified is tried again.
const reloadRetry = 5 * time.Second

// handle serves a request with the handler in service, counted, so a
// replaced handler is released only once its requests are done.
func (d *daemon) handle(ctx *fasthttp.RequestCtx) {
	h := d.cur.Load()
	h.inflight.Add(1)
	defer h.inflight.Add(-1)
	h.Handle(ctx)
}

// reload re-reads the config file. A config with problems, or one whose
// stores cannot be built, leaves the running one in service. So does one
// whose session store settings changed and could not be verified (the
// database unreachable): the reload is tried again every reloadRetry
// until the database accepts the query (the config is applied) or rejects
// it (an error; the running config stays), or another SIGHUP comes. A
// config is applied whole or not at all. Otherwise a
// complete new handler (routes, rules, backends, session store, page
// store) replaces the old at once; requests under way finish on the old
// one, which is then closed. The listeners stay: changes to [listen]
// addresses, timeouts and sizes, and to log.format, need a restart.
func (d *daemon) reload() {
	d.logger.Info("reloading", "config", d.cfg.File)
	d.retry = nil // this attempt replaces any that was waiting
	cfg, err := conf.Load(d.cfg.File)
	if err != nil {
		d.metrics.Reloads[1].Add(1)
		d.logger.Error("reload failed: the config has problems; still serving the previous one", "problems", err.Error())
		return
	}
	if keys := restartOnly(d.listen, d.logFormat, cfg); len(keys) > 0 {
		d.logger.Warn("reload: these settings differ from the running listeners' and are applied at restart only; the rest is applied now",
			"keys", strings.Join(keys, ","))
	}
	verify := !reflect.DeepEqual(cfg.Session, d.cfg.Session) || !reflect.DeepEqual(cfg.Credentials, d.cfg.Credentials)
	h, err := build(cfg, d.logger, d.metrics, d.cur.Load().memory, whenReload(verify))
	var uv *unverifiedError
	switch {
	case errors.As(err, &uv):
		d.retry = time.After(reloadRetry)
		d.logger.Warn("reload waits: the new session store could not be verified at reload; still serving the previous config, trying again", "every", reloadRetry.String(), "error", uv.err.Error())
		return
	case err != nil:
		d.metrics.Reloads[1].Add(1)
		d.logger.Error("reload failed; still serving the previous config", "error", err)
		return
	}
	d.metrics.Reloads[0].Add(1)
	d.level.Set(slog.Level(cfg.Log.Level))
	prev := d.cur.Swap(h)
	d.cfg = cfg
	setMemoryLimit(cfg.Listen.MemoryLimit)
	go func() {
		deadline := time.Now().Add(cfg.Listen.ShutdownTimeout.D())
		for prev.inflight.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		prev.Close()
	}()
	d.logger.Info("reloaded", "config", cfg.File, "backends", cfg.Backend.Addrs)
}

// setMemoryLimit applies listen.memory_limit (derived from the sizes when
// not set) as the runtime's soft memory limit, in place of GOMEMLIMIT;
// 0 leaves GOMEMLIMIT's, or none.
func setMemoryLimit(limit conf.Size) {
	if limit <= 0 {
		debug.SetMemoryLimit(envMemoryLimit)
		return
	}
	debug.SetMemoryLimit(int64(limit))
}

// envMemoryLimit is the limit the runtime took from GOMEMLIMIT, if any.
var envMemoryLimit = debug.SetMemoryLimit(-1)

// handler is the running router and what must be released with it.
type handler struct {
	*router.Router
	closers  []io.Closer
	inflight atomic.Int64
	memory   *pagecache.Memory // the "memory" page store, handed on at reload
}

func (h *handler) Close() {
	for _, c := range h.closers {
		c.Close()
	}
}

// build wires the concrete types the config asks for into a router,
// counting into m (whose histograms are fed when listen.metrics is on).
// memory is the running "memory" page store, if any: it is kept, pages
// and all, when the new config asks for one of the same size.
func build(cfg *conf.Config, logger *slog.Logger, m *router.Metrics, memory *pagecache.Memory, when buildTime) (*handler, error) {
	b := &cfg.Backend
	backends, err := router.NewBackends(router.BackendOptions{
		Addrs:          b.Addrs,
		ConnectTimeout: b.ConnectTimeout.D(),
		ReadTimeout:    b.ReadTimeout.D(),
		WriteTimeout:   b.WriteTimeout.D(),
		IdleTimeout:    b.IdleTimeout.D(),
		FailTimeout:    b.FailTimeout.D(),
		MaxConns:       b.MaxConns,
		MaxHeaderSize:  int(cfg.Listen.MaxHeaderSize),
	})
	if err != nil {
		return nil, fmt.Errorf("backend.addrs: %w", err)
	}
	keys, err := sessioncheck.NewKeyFinder(cfg.Session.Cookie, cfg.Session.KeyPattern.String())
	if err != nil {
		return nil, err
	}
	if cfg.Session.Driver == "signed_cookies" {
		// The cookie is the session: every value a header can carry
		// reaches the Checker, which bounds it.
		keys = keys.WithMaxLength(int(cfg.Listen.MaxHeaderSize))
	}
	if cfg.Session.Rule != "django" {
		// Django keeps the last of a repeated cookie; Rack and PHP keep
		// the first: with no framework known for sure, a repeated session
		// cookie with differing values is a doubt.
		keys = keys.WithDuplicates(sessioncheck.DuplicatesDoubt)
	}
	h := &handler{closers: []io.Closer{backends}}
	backends.StartProbes(router.ProbeOptions{
		Path: b.Probe, Host: b.ProbeHost, Interval: b.ProbeInterval.D(), Timeout: b.ProbeTimeout.D(),
		Window: b.ProbeWindow, Threshold: b.ProbeThreshold,
		OnChange: func(addr string, err error) {
			if err != nil {
				logger.Warn("backend sick: failing its health probe; it gets no requests until it passes again", "backend", addr, "error", err.Error())
				return
			}
			logger.Info("backend healthy again", "backend", addr)
		},
		OnAllSick: func(all bool) {
			if all {
				logger.Error("every backend is sick: requests answer 503 at once; anonymous visitors get stale pages where stale-if-error allows")
				return
			}
			logger.Info("a backend is healthy again: serving")
		},
	})
	sessions, err := buildSessions(cfg.Session, logger, m, cfg.Listen.Metrics, when)
	if err != nil {
		h.Close()
		return nil, err
	}
	if c, ok := sessions.(io.Closer); ok {
		h.closers = append(h.closers, c)
	}
	creds, credCloser, err := buildCredentials(cfg, logger, m, cfg.Listen.Metrics, when)
	if err != nil {
		h.Close()
		return nil, err
	}
	if credCloser != nil {
		h.closers = append(h.closers, credCloser)
	}
	cacheOpts, err := buildCache(cfg.Cache, cfg.Backend.ReadTimeout.D(), m, cfg.Listen.Metrics, memory, logger)
	if err != nil {
		h.Close()
		return nil, err
	}
	if cacheOpts != nil {
		if p, ok := cacheOpts.Store.(pagecache.Pinger); ok {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := p.Ping(ctx); err != nil {
				logger.Warn("page store unreachable "+when.String()+"; pages come from the backends until it answers", "error", err)
			}
			cancel()
		}
		cacheOpts.OnStoreBreaker = breakerLog(logger, "page store", router.DefaultStoreBreakerCooldown)
		h.closers = append(h.closers, cacheOpts.Store)
		h.memory, _ = cacheOpts.Store.(*pagecache.Memory)
	}
	access, err := openAccessLog(cfg.Log, &m.Access)
	if err != nil {
		h.Close()
		return nil, err
	}
	if access != nil {
		h.closers = append(h.closers, access)
	}
	r, err := router.New(router.Options{
		Backends:           backends,
		Keys:               keys,
		Sessions:           sessions,
		Cache:              cacheOpts,
		Credentials:        creds,
		TrustedProxies:     conf.Prefixes(cfg.Listen.TrustedProxies),
		MaxRequestBodySize: int(cfg.Listen.MaxRequestBodySize),
		PurgeAllow:         conf.Prefixes(cfg.Purge.Allow),
		PurgeToken:         cfg.Purge.Token,
		AccessLog:          access,
		Stats:              &m.Router,
		Durations:          durations(m, cfg.Listen.Metrics),
		Logger:             logger,
	})
	if err != nil {
		h.Close()
		return nil, err
	}
	h.Router = r
	return h, nil
}

// durations are the router's histograms, nil when metrics are off.
func durations(m *router.Metrics, on bool) *router.Durations {
	if !on {
		return nil
	}
	return &m.Durations
}

// openAccessLog opens the access log the config asks for; nil for none.
func openAccessLog(c conf.Log, stats *router.AccessStats) (*router.AccessLog, error) {
	if c.Access == "" {
		return nil, nil
	}
	var w io.WriteCloser
	switch c.AccessFile {
	case "stdout":
		w = nopCloser{os.Stdout}
	case "stderr":
		w = nopCloser{os.Stderr}
	default:
		f, err := os.OpenFile(c.AccessFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("log.access_file: %w", err)
		}
		w = f
	}
	return router.NewAccessLog(w, c.Access, c.AccessQueue, stats), nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// buildCache builds the page cache the config asks for; nil for none.
// A "memory" store reuses keep when its options match.
func buildCache(c conf.Cache, backendReadTimeout time.Duration, m *router.Metrics, observe bool, keep *pagecache.Memory, logger *slog.Logger) (*router.CacheOptions, error) {
	if c.Store == "none" {
		return nil, nil
	}
	keys, err := c.KeyTemplate()
	if err != nil {
		return nil, fmt.Errorf("cache.key: %w", err)
	}
	rules := make([]pagecache.Rule, len(c.Rules))
	for i, r := range c.Rules {
		rules[i] = pagecache.Rule{
			Path:              r.Path.Regexp,
			Host:              strings.ToLower(r.Host),
			Cache:             r.Cache,
			TTL:               cmp.Or(r.TTL.D(), c.DefaultTTL.D()),
			HonorCacheControl: r.HonorCacheControl,
			StoreSetCookie:    r.StoreSetCookie,
			StorePrivate:      r.StorePrivate,
		}
		rules[i].Credentials, _ = pagecache.ParseCredentials(r.Credentials) // checked by conf
	}
	policy := pagecache.NewPolicy(pagecache.PolicyOptions{
		Statuses:        c.Statuses,
		StripSetCookies: c.StripSetCookies,
		MaxTTL:          c.MaxTTL.D(),
		Grace:           c.Grace.D(),
		StaleIfError:    c.StaleIfError.D(),
		DropHeaders:     c.DropHeaders,
		VaryHeaders:     keys.Headers(),
		Rules:           rules,
		Default:         pagecache.Rule{Cache: true, TTL: c.DefaultTTL.D(), HonorCacheControl: true},
	})
	store, err := pageStore(c, m, observe, keep, logger)
	if err != nil {
		return nil, err
	}
	o := &router.CacheOptions{
		Store:              store,
		Keys:               keys,
		Policy:             policy,
		Hosts:              c.Hosts,
		BypassPaths:        c.BypassPaths,
		BypassPathRegexps:  conf.Regexps(c.BypassPathRegexps),
		BypassCookies:      c.BypassCookies,
		BypassQueryParams:  c.BypassQueryParams,
		FillStripHeaders:   c.FillStripHeaders,
		UncacheableTTL:     c.UncacheableTTL.D(),
		MaxBodySize:        int(c.ItemSizeLimit) - 8<<10,
		MaxBackgroundFills: c.MaxBackgroundFills,
		MaxVariants:        c.MaxVariants,
		CollapseTimeout:    cmp.Or(c.CollapseTimeout.D(), backendReadTimeout),
		Prefix:             c.Prefix,
		TagHeaders:         c.TagHeaders,
		StripTagHeaders:    c.StripTagHeaders,
		TagCacheTTL:        c.TagCacheTTL.D(),
		L1Size:             int64(c.L1Size),
		L1TTL:              c.L1TTL.D(),
		OutageL1Size:       int64(c.OutageL1Size),
	}
	if o.UnsafeInvalidation, err = router.ParseInvalidation(c.UnsafeInvalidation); err != nil {
		return nil, fmt.Errorf("cache.unsafe_invalidation: %w", err)
	}
	if c.Format == "raw" {
		o.Raw = &router.RawOptions{ContentType: c.RawContentType, GzipFlag: uint32(c.RawGzipFlag), Fill: c.RawFill}
	}
	return o, nil
}

// pageStore opens the page store the config names.
func pageStore(c conf.Cache, m *router.Metrics, observe bool, keep *pagecache.Memory, logger *slog.Logger) (pagecache.Store, error) {
	if c.Store == "memory" {
		mo := pagecache.MemoryOptions{MaxBytes: int64(c.MemorySize), MaxItemSize: int(c.ItemSizeLimit)}
		if keep != nil && keep.Options() == mo {
			return keep, nil
		}
		return pagecache.NewMemory(mo)
	}
	dist, err := pagecache.ParseDistribution(c.Distribution)
	if err != nil {
		return nil, fmt.Errorf("cache.distribution: %w", err) // refused by conf
	}
	mo := pagecache.MemcacheOptions{
		Servers:       c.Servers,
		Distribution:  dist,
		AutoEject:     c.AutoEject,
		FailureLimit:  c.ServerFailureLimit,
		RetryTimeout:  c.ServerRetryTimeout.D(),
		OnServerEvent: logServerEvent(logger),
		Timeout:       c.Timeout.D(),
		MaxInFlight:   c.MaxInFlight,
		MaxItemSize:   int(c.ItemSizeLimit),
		Stats:         &m.Memcache,
	}
	if observe {
		mo.OpDuration = m.MemcacheOp
	}
	store, err := pagecache.NewMemcache(mo)
	if err != nil {
		return nil, fmt.Errorf("cache.servers: %w", err)
	}
	return store, nil
}

// logServerEvent logs a memcached server leaving the ring or coming back.
func logServerEvent(logger *slog.Logger) func(pagecache.ServerEvent) {
	return func(e pagecache.ServerEvent) {
		if e.Ejected {
			logger.Warn("memcached server ejected: its keys go to the next server on the ring until it answers again",
				"server", e.Server, "error", e.Err, "retry_in", e.Retry.String())
		} else {
			logger.Info("memcached server back on the ring", "server", e.Server)
		}
	}
}

// buildSessions opens the session store the config names and checks its
// query against it. A query the database rejects stops startup; a database
// that cannot be reached does not: visitors with a session are forwarded
// until it answers.
func buildSessions(c conf.Session, logger *slog.Logger, m *router.Metrics, observe bool, when buildTime) (sessioncheck.Checker, error) {
	if c.Driver == "" {
		logger.Info("no session store configured: visitors with a session cookie are forwarded", "cookie", c.Cookie)
		return sessioncheck.NoStore{}, nil
	}
	if c.Driver == "signed_cookies" {
		return signedCookies(c, logger, m)
	}
	var signer *sessioncheck.DjangoSigner
	if c.SecretKey != "" {
		signer = &sessioncheck.DjangoSigner{Secrets: append([]string{c.SecretKey}, c.SecretKeyFallbacks...), Salt: c.DjangoSalt}
	}
	var store sessioncheck.Store
	var rule sessioncheck.Rule
	var err error
	if c.Driver == "redis" || c.Driver == "memcached" {
		store, err = openCacheStore(c, logger, when)
		if err == nil {
			rule, err = sessioncheck.NewCacheRule(c.Rule, c.IdentifiedKey, signer)
		}
	} else {
		store, err = openSessionSQL(c, c.Driver, c.DSN, "session.dsn", logger, when)
		if err == nil {
			rule, err = sessioncheck.NewRule(c.Rule, signer)
		}
	}
	if err != nil {
		if store != nil {
			store.Close()
		}
		return nil, err
	}
	o := sessioncheck.Options{
		Store:           store,
		Rule:            rule,
		Timeout:         c.Timeout.D(),
		MaxQueries:      c.MaxConns,
		CacheEntries:    c.CacheEntries,
		TTLIdentified:   c.CacheTTLIdentified.D(),
		TTLAnonymous:    c.CacheTTLAnonymous.D(),
		TTLNoRow:        c.CacheTTLNoRow.D(),
		BreakerFailures: c.BreakerFailures,
		BreakerCooldown: c.BreakerCooldown.D(),
		Stats:           &m.Sessions,
		OnBreaker:       breakerLog(logger, "session store", c.BreakerCooldown.D()),
	}
	if observe {
		o.QueryDuration = m.SessionQuery
	}
	return sessioncheck.New(o)
}

// storeParams say which SQL store to open, for a section of the config
// ("session" or "credentials", named in messages).
type storeParams struct {
	section, driver, dsn, query string
	maxConns                    int
	timeout                     time.Duration
	zone                        *time.Location
	user                        bool   // the query may use :user (credentials)
	dsnKey                      string // the DSN's key in messages; "" means section.dsn
}

// openStore opens an SQL store and checks its query against it. A query
// the database rejects stops startup; a database that cannot be reached
// does not: its visitors are forwarded until it answers.
func openStore(p storeParams, logger *slog.Logger, when buildTime) (*sessioncheck.SQLStore, error) {
	so := sessioncheck.SQLOptions{Query: p.query, Placeholder: sessioncheck.QuestionMark, Zone: p.zone, User: p.user}
	var db *sql.DB
	var err error
	switch p.driver {
	case "mysql":
		mysql.SetLogger(driverLog{logger})
		db, err = sessioncheck.OpenMySQL(p.dsn, p.maxConns)
		so.HashComments, so.QueryError, so.DSNError = true, sessioncheck.MySQLQueryError, sessioncheck.MySQLDSNError
	case "postgres":
		db, err = sessioncheck.OpenPostgres(p.dsn, p.maxConns, p.timeout)
		so.Placeholder, so.NowOffset = sessioncheck.Dollar, true
		so.QueryError, so.DSNError = sessioncheck.PostgresQueryError, sessioncheck.PostgresDSNError
	case "sqlite":
		db, err = sessioncheck.OpenSQLite(p.dsn, p.maxConns, p.timeout)
		so.QueryError = sessioncheck.SQLiteQueryError
	default:
		err = fmt.Errorf("%s.driver %q is not supported", p.section, p.driver) // refused by conf
	}
	if err != nil {
		return nil, err
	}
	store, err := sessioncheck.NewSQLStore(db, so)
	if err != nil {
		db.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var qe *sessioncheck.QueryError
	var de *sessioncheck.DSNError
	switch err := store.Validate(ctx); {
	case errors.As(err, &de):
		store.Close()
		dsnKey := cmp.Or(p.dsnKey, p.section+".dsn")
		return nil, fmt.Errorf("%[1]s is refused by the database (%[2]w): fix the user, password or database name in %[1]s", dsnKey, de.Err)
	case errors.As(err, &qe):
		store.Close()
		return nil, fmt.Errorf("%s.query is rejected by the database: %w", p.section, err)
	case err != nil && when == atReloadVerify:
		store.Close()
		return nil, &unverifiedError{err}
	case err != nil:
		who := "visitors with a session"
		if p.user {
			who = "requests with a credential"
		}
		logger.Warn(strings.TrimSuffix(p.section, "s")+" store unreachable "+when.String()+"; "+who+" are forwarded until it answers", "error", err)
	}
	return store, nil
}

// openCacheStore opens the Redis or memcached session store and pings it,
// with the database of Django's cached_db behind it when fallback_driver
// is set. A store that does not answer is an error only when a reload
// must verify it.
func openCacheStore(c conf.Session, logger *slog.Logger, when buildTime) (sessioncheck.Store, error) {
	var store sessioncheck.Store
	var err error
	switch c.Driver {
	case "redis":
		store, err = sessioncheck.OpenRedis(sessioncheck.RedisOptions{
			URL: c.DSN, KeyTemplate: c.KeyTemplate, MaxValueSize: int(c.MaxValueSize), MaxConns: c.MaxConns, Timeout: c.Timeout.D(),
		})
	default:
		store, err = sessioncheck.OpenMemcache(sessioncheck.MemcacheOptions{
			Server: c.DSN, KeyTemplate: c.KeyTemplate, MaxValueSize: int(c.MaxValueSize), MaxConns: c.MaxConns, Timeout: c.Timeout.D(),
		})
	}
	if err != nil {
		return nil, fmt.Errorf("session.dsn: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = store.(sessioncheck.Pinger).Ping(ctx)
	cancel()
	switch {
	case err != nil && when == atReloadVerify:
		store.Close()
		return nil, &unverifiedError{err}
	case err != nil:
		logger.Warn("session store unreachable "+when.String()+"; visitors with a session are forwarded until it answers", "error", err)
	}
	if c.FallbackDriver == "" {
		return store, nil
	}
	db, err := openSessionSQL(c, c.FallbackDriver, c.FallbackDSN, "session.fallback_dsn", logger, when)
	if err != nil {
		store.Close()
		return nil, err
	}
	return &sessioncheck.Fallback{Cache: store, DB: db}, nil
}

// openSessionSQL opens the SQL store behind the session section: the
// session store itself, or the database of Django's cached_db engine
// (dsnKey names which in messages). It returns a nil interface, never a
// nil *SQLStore in one, when it fails.
func openSessionSQL(c conf.Session, driver, dsn, dsnKey string, logger *slog.Logger, when buildTime) (sessioncheck.Store, error) {
	store, err := openStore(storeParams{section: "session", driver: driver, dsn: dsn, dsnKey: dsnKey, query: c.Query,
		maxConns: c.MaxConns, timeout: c.Timeout.D(), zone: c.TimeZone.Location}, logger, when)
	if err != nil {
		return nil, err
	}
	return store, nil
}

// buildCredentials opens the credential store [credentials] names (the
// session store's database unless it names its own) behind a verdict
// cache; nil when credentials are off.
func buildCredentials(cfg *conf.Config, logger *slog.Logger, m *router.Metrics, observe bool, when buildTime) (*router.CredentialOptions, io.Closer, error) {
	c := &cfg.Credentials
	if !c.Enabled() {
		return nil, nil, nil
	}
	finder, err := sessioncheck.NewCredentialFinder(sessioncheck.CredentialOptions{Scheme: c.Scheme, Pattern: c.Pattern, QueryParam: c.QueryParam})
	if err != nil {
		return nil, nil, err
	}
	driver, dsn := cmp.Or(c.Driver, cfg.Session.Driver), c.DSN
	if dsn == "" && driver == cfg.Session.Driver {
		dsn = cfg.Session.DSN
	}
	store, err := openStore(storeParams{section: "credentials", driver: driver, dsn: dsn, query: c.Query,
		maxConns: c.MaxConns, timeout: c.Timeout.D(), zone: cfg.Session.TimeZone.Location, user: true}, logger, when)
	if err != nil {
		return nil, nil, err
	}
	o := sessioncheck.Options{
		Store:           store,
		Rule:            sessioncheck.RuleExists,
		Timeout:         c.Timeout.D(),
		MaxQueries:      c.MaxConns,
		CacheEntries:    c.CacheEntries,
		TTLIdentified:   c.CacheTTLValid.D(),
		TTLAnonymous:    c.CacheTTLInvalid.D(),
		TTLNoRow:        c.CacheTTLInvalid.D(),
		BreakerFailures: c.BreakerFailures,
		BreakerCooldown: c.BreakerCooldown.D(),
		Stats:           &m.Credentials,
		OnBreaker:       breakerLog(logger, "credential store", c.BreakerCooldown.D()),
	}
	if observe {
		o.QueryDuration = m.CredentialQuery
	}
	checker, err := sessioncheck.New(o)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return &router.CredentialOptions{Finder: finder, Checker: checker, HashKey: []byte(c.HashKey), MaxPrivateFills: c.MaxPrivateFills}, checker, nil
}

// signedCookies builds the Checker for Django's signed_cookies engine:
// no store, the session read from the cookie.
func signedCookies(c conf.Session, logger *slog.Logger, m *router.Metrics) (sessioncheck.Checker, error) {
	var secrets []string
	if c.SecretKey != "" {
		secrets = append([]string{c.SecretKey}, c.SecretKeyFallbacks...)
	} else {
		logger.Info("signed_cookies without secret_key: signatures are not checked; a cookie naming a user is forwarded, and Django checks it")
	}
	return sessioncheck.NewSignedCookies(sessioncheck.SignedCookieOptions{
		Secrets:       secrets,
		MaxAge:        c.MaxAge.D(),
		CacheEntries:  c.CacheEntries,
		TTLIdentified: c.CacheTTLIdentified.D(),
		TTLAnonymous:  c.CacheTTLAnonymous.D(),
		Stats:         &m.Sessions,
	})
}

// buildTime says when a handler is built: at startup, or at a reload
// whose session store settings changed (and must then be verified before
// they take over) or did not.
type buildTime uint8

const (
	atStartup buildTime = iota
	atReload
	atReloadVerify
)

func whenReload(verify bool) buildTime {
	if verify {
		return atReloadVerify
	}
	return atReload
}

func (w buildTime) String() string {
	if w == atStartup {
		return "at startup"
	}
	return "at reload"
}

// unverifiedError: a reload's new session store could not be reached to
// check its query.
type unverifiedError struct{ err error }

func (e *unverifiedError) Error() string {
	return "the new session store could not be verified: " + e.err.Error()
}

// breakerLog writes one line each time a dependency's circuit breaker
// opens (a warning) or closes again.
func breakerLog(logger *slog.Logger, what string, cooldown time.Duration) func(string) {
	return func(state string) {
		if state == "open" {
			logger.Warn(what+" failing: circuit breaker open; requests skip it, one probe every cooldown", "cooldown", cooldown.String())
			return
		}
		logger.Info(what + " answering again: circuit breaker closed")
	}
}

// driverLog sends the MySQL driver's own messages (dropped connections)
// to the log at debug level.
type driverLog struct{ l *slog.Logger }

func (d driverLog) Print(v ...any) { d.l.Debug("mysql driver", "detail", fmt.Sprint(v...)) }
