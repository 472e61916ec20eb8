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
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
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
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "userrouter", version)
		return 0
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
		return 0
	}
	logger := newLogger(cfg.Log, stderr)
	if err := serve(cfg, logger); err != nil {
		logger.Error("userrouter stopped", "error", err)
		return 1
	}
	return 0
}

func newLogger(c conf.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by conf
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs userrouter until SIGTERM or SIGINT, then shuts down gracefully.
func serve(cfg *conf.Config, logger *slog.Logger) error {
	h, err := build(cfg, logger)
	if err != nil {
		return err
	}
	mode, _ := strconv.ParseUint(cfg.Listen.SocketMode, 8, 32) // validated by conf
	ln, err := router.Listen(cfg.Listen.Addr, os.FileMode(mode))
	if err != nil {
		return err
	}
	l := &cfg.Listen
	srv := router.NewServer(h.Handle, router.ServerOptions{
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
		aln, err := router.Listen(l.AdminAddr, os.FileMode(mode))
		if err != nil {
			ln.Close()
			return err
		}
		admin := &router.Admin{Router: func() *router.Router { return h.Router }}
		servers = append(servers, router.NewAdminServer(admin, router.ServerOptions{
			ReadTimeout: l.ReadTimeout.D(), IdleTimeout: l.IdleTimeout.D(), Logger: logger}))
		listeners = append(listeners, aln)
	}

	failed := make(chan error, len(servers))
	for i, s := range servers {
		go func() { failed <- s.Serve(listeners[i]) }()
	}
	logger.Info("userrouter started", "version", version, "config", cfg.File,
		"addr", l.Addr, "admin_addr", l.AdminAddr, "backends", cfg.Backend.Addrs)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	var serveErr error
	select {
	case s := <-sig:
		logger.Info("shutting down", "signal", s.String(), "grace", l.ShutdownTimeout.D().String())
	case serveErr = <-failed:
		logger.Error("listener failed, shutting down", "error", serveErr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), l.ShutdownTimeout.D())
	defer cancel()
	for _, s := range servers {
		if err := s.ShutdownWithContext(ctx); err != nil {
			logger.Warn("shutdown grace period ended with requests still in flight", "error", err)
		}
	}
	h.Close()
	if serveErr != nil {
		return serveErr
	}
	logger.Info("userrouter stopped")
	return nil
}

// handler is the running router and what must be released with it.
type handler struct {
	*router.Router
	closers []io.Closer
}

func (h *handler) Close() {
	for _, c := range h.closers {
		c.Close()
	}
}

// build wires the concrete types the config asks for into a router.
func build(cfg *conf.Config, logger *slog.Logger) (*handler, error) {
	trusted, err := conf.ParsePrefixes(cfg.Listen.TrustedProxies)
	if err != nil {
		return nil, err // validated by conf; kept for safety
	}
	purgeAllow, err := conf.ParsePrefixes(cfg.Purge.Allow)
	if err != nil {
		return nil, err
	}
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
		return nil, err
	}
	keys, err := sessioncheck.NewKeyFinder(cfg.Session.Cookie, cfg.Session.KeyPattern)
	if err != nil {
		return nil, err
	}
	h := &handler{}
	sessions, err := buildSessions(cfg.Session, logger)
	if err != nil {
		return nil, err
	}
	if c, ok := sessions.(io.Closer); ok {
		h.closers = append(h.closers, c)
	}
	cacheOpts, err := buildCache(cfg.Cache)
	if err != nil {
		h.Close()
		return nil, err
	}
	if cacheOpts != nil {
		h.closers = append(h.closers, cacheOpts.Store)
	}
	r, err := router.New(router.Options{
		Backends:           backends,
		Keys:               keys,
		Sessions:           sessions,
		Cache:              cacheOpts,
		TrustedProxies:     trusted,
		MaxRequestBodySize: int(cfg.Listen.MaxRequestBodySize),
		PurgeAllow:         purgeAllow,
		PurgeToken:         cfg.Purge.Token,
		Logger:             logger,
	})
	if err != nil {
		h.Close()
		return nil, err
	}
	h.Router = r
	return h, nil
}

// buildCache builds the page cache the config asks for; nil for none.
func buildCache(c conf.Cache) (*router.CacheOptions, error) {
	if c.Store == "none" {
		return nil, nil
	}
	keys, err := pagecache.NewKeyTemplate(pagecache.KeyOptions{
		Template:          c.Key,
		IgnoreQueryParams: c.IgnoreQueryParams,
		SortQuery:         c.SortQuery,
		HashPrefix:        c.Prefix + "h:",
	})
	if err != nil {
		return nil, err
	}
	rules := make([]pagecache.Rule, len(c.Rules))
	for i, r := range c.Rules {
		rules[i] = pagecache.Rule{
			Path:              regexp.MustCompile(r.Path), // validated by conf
			Host:              strings.ToLower(r.Host),
			Cache:             r.Cache,
			TTL:               cmp.Or(r.TTL.D(), c.DefaultTTL.D()),
			HonorCacheControl: r.HonorCacheControl,
			StoreSetCookie:    r.StoreSetCookie,
		}
	}
	policy := pagecache.NewPolicy(pagecache.PolicyOptions{
		Statuses:        c.Statuses,
		StripSetCookies: c.StripSetCookies,
		MaxTTL:          c.MaxTTL.D(),
		Grace:           c.Grace.D(),
		KeepHeaders:     c.KeepHeaders,
		VaryHeaders:     keys.Headers(),
		Rules:           rules,
		Default:         pagecache.Rule{Cache: true, TTL: c.DefaultTTL.D(), HonorCacheControl: true},
	})
	var regexps []*regexp.Regexp
	for _, p := range c.BypassPathRegexps {
		regexps = append(regexps, regexp.MustCompile(p)) // validated by conf
	}
	store, err := pagecache.NewMemcache(pagecache.MemcacheOptions{
		Servers:     c.Servers,
		Timeout:     c.Timeout.D(),
		MaxInFlight: c.MaxInFlight,
		MaxItemSize: int(c.ItemSizeLimit),
	})
	if err != nil {
		return nil, err
	}
	o := &router.CacheOptions{
		Store:              store,
		Keys:               keys,
		Policy:             policy,
		Hosts:              c.Hosts,
		BypassPaths:        c.BypassPaths,
		BypassPathRegexps:  regexps,
		BypassCookies:      c.BypassCookies,
		BypassQueryParams:  c.BypassQueryParams,
		FillStripHeaders:   c.FillStripHeaders,
		UncacheableTTL:     c.UncacheableTTL.D(),
		MaxBodySize:        int(c.ItemSizeLimit) - 8<<10,
		MaxBackgroundFills: c.MaxBackgroundFills,
		Prefix:             c.Prefix,
		TagHeaders:         c.TagHeaders,
		StripTagHeaders:    c.StripTagHeaders,
		TagCacheTTL:        c.TagCacheTTL.D(),
	}
	if c.Format == "raw" {
		o.Raw = &router.RawOptions{ContentType: c.RawContentType, GzipFlag: uint32(c.RawGzipFlag), Fill: c.RawFill}
	}
	return o, nil
}

// buildSessions opens the session store the config names and checks its
// query against it. A query the database rejects stops startup; a database
// that cannot be reached does not: visitors with a session are forwarded
// until it answers.
func buildSessions(c conf.Session, logger *slog.Logger) (sessioncheck.Checker, error) {
	if c.Driver == "" {
		logger.Info("no session store configured: visitors with a session cookie are forwarded", "cookie", c.Cookie)
		return sessioncheck.NoStore{}, nil
	}
	mysql.SetLogger(driverLog{logger})
	db, err := sessioncheck.OpenMySQL(c.DSN, c.MaxConns)
	if err != nil {
		return nil, err
	}
	zone, _ := time.LoadLocation(c.TimeZone) // validated by conf
	store, err := sessioncheck.NewSQLStore(db, sessioncheck.SQLOptions{
		Query:        c.Query,
		Placeholder:  sessioncheck.QuestionMark,
		HashComments: true,
		Zone:         zone,
		QueryError:   sessioncheck.MySQLQueryError,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var qe *sessioncheck.QueryError
	switch err := store.Validate(ctx); {
	case errors.As(err, &qe):
		store.Close()
		return nil, fmt.Errorf("session.query is rejected by the database: %w", err)
	case err != nil:
		logger.Warn("session store unreachable at startup; visitors with a session are forwarded until it answers", "error", err)
	}
	var signer *sessioncheck.DjangoSigner
	if c.SecretKey != "" {
		signer = &sessioncheck.DjangoSigner{Secrets: append([]string{c.SecretKey}, c.SecretKeyFallbacks...), Salt: c.DjangoSalt}
	}
	rule, err := sessioncheck.NewRule(c.Rule, signer)
	if err != nil {
		store.Close()
		return nil, err
	}
	return sessioncheck.New(sessioncheck.Options{
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
	})
}

// driverLog sends the MySQL driver's own messages (dropped connections)
// to the log at debug level.
type driverLog struct{ l *slog.Logger }

func (d driverLog) Print(v ...any) { d.l.Debug("mysql driver", "detail", fmt.Sprint(v...)) }
