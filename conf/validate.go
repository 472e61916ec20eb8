package conf

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/router"
	"github.com/userrouter/userrouter/sessioncheck"
)

// validate records every problem with c in d.
func (c *Config) validate(d *decoder) {
	l := &c.Listen
	checkAddr(d, "listen.addr", l.Addr)
	if l.AdminAddr != "" {
		checkAddr(d, "listen.admin_addr", l.AdminAddr)
	}
	positive(d, "listen.read_timeout", l.ReadTimeout)
	positive(d, "listen.idle_timeout", l.IdleTimeout)
	atLeast(d, "listen.max_header_size", l.MaxHeaderSize, 1<<10)
	atLeast(d, "listen.max_request_body_size", l.MaxRequestBodySize, 1)
	if _, set := d.lines["listen.memory_limit"]; set && l.MemoryLimit != 0 {
		// Below the pages it holds, the collector would run without end.
		atLeast(d, "listen.memory_limit", l.MemoryLimit, max(16<<20, c.pagesInProcess()+16<<20))
	}
	if l.Addr == l.AdminAddr {
		d.errf("listen.admin_addr", "is the same address as listen.addr; give the admin listener its own")
	}

	b := &c.Backend
	if len(b.Addrs) == 0 {
		d.errf("backend.addrs", "is required: list at least one backend, like [\"127.0.0.1:8000\"] or [\"unix:/run/gunicorn.sock\"]")
	}
	for i, a := range b.Addrs {
		checkAddr(d, fmt.Sprintf("backend.addrs[%d]", i), a)
	}
	positive(d, "backend.connect_timeout", b.ConnectTimeout)
	positive(d, "backend.read_timeout", b.ReadTimeout)
	positive(d, "backend.write_timeout", b.WriteTimeout)
	if b.Probe != "" {
		if !strings.HasPrefix(b.Probe, "/") || strings.ContainsAny(b.Probe, " \t\r\n") {
			d.errf("backend.probe", "%q must be a path such as \"/healthz\"", b.Probe)
		}
		positive(d, "backend.probe_interval", b.ProbeInterval)
		positive(d, "backend.probe_timeout", b.ProbeTimeout)
		if b.ProbeWindow < 1 || b.ProbeWindow > 64 || b.ProbeThreshold < 1 || b.ProbeThreshold > b.ProbeWindow {
			d.errf("backend.probe_threshold", "%d of a window of %d: want 1 <= probe_threshold <= probe_window <= 64", b.ProbeThreshold, b.ProbeWindow)
		}
		if b.ProbeHost != "" && !router.ValidHost(b.ProbeHost) {
			d.errf("backend.probe_host", "%q is not a host name", b.ProbeHost)
		}
	}
	positive(d, "backend.idle_timeout", b.IdleTimeout)
	if b.MaxConns < 1 {
		d.errf("backend.max_conns", "must be at least 1, not %d", b.MaxConns)
	}

	s := &c.Session
	if !validToken(s.Cookie) {
		d.errf("session.cookie", "%q is not a cookie name (letters, digits and !#$%%&'*+-.^_`|~ only)", s.Cookie)
	}
	if n := len(s.KeyPattern.String()); n > 1024 {
		d.errf("session.key_pattern", "is %d bytes long; keep it under 1024", n)
	}
	oneOf(d, "session.driver", s.Driver, "", "mysql", "postgres", "sqlite", "redis", "memcached", "signed_cookies")
	checkSignedCookies(d, s)
	checkCacheSessions(d, s)
	if s.Driver != "" && s.Driver != "signed_cookies" && s.DSN == "" {
		d.errf("session.dsn", "is required when session.driver is %q", s.Driver)
	}
	if err := sessioncheck.ValidateQuery(s.Query); err != nil {
		d.errf("session.query", "%v", err)
	}
	if !cacheDriver(s.Driver) {
		oneOf(d, "session.rule", s.Rule, "django", "exists", "nonempty")
	}
	positive(d, "session.timeout", s.Timeout)
	if !strings.HasPrefix(s.DjangoSalt, "django.contrib.sessions.") {
		d.errf("session.django_salt", "%q must start with \"django.contrib.sessions.\"", s.DjangoSalt)
	}
	for _, kv := range []struct {
		key string
		n   int
	}{{"session.max_conns", s.MaxConns}, {"session.cache_entries", s.CacheEntries}, {"session.breaker_failures", s.BreakerFailures}} {
		if kv.n < 1 {
			d.errf(kv.key, "must be at least 1, not %d", kv.n)
		}
	}
	positive(d, "session.cache_ttl_identified", s.CacheTTLIdentified)
	positive(d, "session.cache_ttl_anonymous", s.CacheTTLAnonymous)
	positive(d, "session.cache_ttl_no_row", s.CacheTTLNoRow)
	positive(d, "session.breaker_cooldown", s.BreakerCooldown)

	k := &c.Cache
	oneOf(d, "cache.store", k.Store, "memcached", "memory", "none")
	if k.Store == "memory" {
		atLeast(d, "cache.memory_size", k.MemorySize, 1<<20)
	}
	if k.Store == "memcached" && len(k.Servers) == 0 {
		d.errf("cache.servers", "is required when cache.store is \"memcached\"")
	}
	for i, a := range k.Servers {
		checkAddr(d, fmt.Sprintf("cache.servers[%d]", i), a)
	}
	oneOf(d, "cache.distribution", k.Distribution, "modula", "ketama", "ketama_weighted")
	if k.ServerFailureLimit < 1 {
		d.errf("cache.server_failure_limit", "must be at least 1, not %d (auto_eject = false never ejects)", k.ServerFailureLimit)
	}
	positive(d, "cache.server_retry_timeout", k.ServerRetryTimeout)
	if k.AutoEject && k.Distribution == "modula" {
		d.errf("cache.auto_eject", "needs cache.distribution = \"ketama\" or \"ketama_weighted\" (matching the application's client): under \"modula\" ejecting a server would move almost every key to another server")
	}
	positive(d, "cache.timeout", k.Timeout)
	if k.MaxInFlight < 1 {
		d.errf("cache.max_in_flight", "must be at least 1, not %d", k.MaxInFlight)
	}
	atLeast(d, "cache.item_size_limit", k.ItemSizeLimit, 16<<10)
	tmpl, err := k.KeyTemplate()
	if err != nil {
		d.errf("cache.key", "%v", strings.TrimPrefix(err.Error(), "pagecache: "))
	} else {
		if len(k.Hosts) == 0 && !tmpl.HasHost() {
			d.errf("cache.hosts", "must list the site's host names when cache.key has no {host}, or one site's pages would be served for another")
		}
		for _, name := range tmpl.Cookies() {
			if name == s.Cookie {
				d.errf("cache.key", "{cookie:%s} names the session cookie (session.cookie): fills would carry a session and its page would be served to everyone; name a cookie like a language or currency", name)
			}
		}
	}
	if k.Prefix == "" || len(k.Prefix) > 64 || strings.ContainsAny(k.Prefix, " \t\r\n") {
		d.errf("cache.prefix", "%q must be a short memcached key prefix without spaces", k.Prefix)
	}
	oneOf(d, "cache.format", k.Format, "envelope", "raw")
	if k.L1Size > 0 || k.OutageL1Size > 0 {
		positive(d, "cache.l1_ttl", k.L1TTL)
	}
	if k.L1Size > 0 {
		if k.Format == "raw" {
			d.errf("cache.l1_size", "needs format \"envelope\": raw values carry no freshness to bound a copy by; set l1_size = \"0\"")
		}
	}
	oneOf(d, "cache.unsafe_invalidation", k.UnsafeInvalidation, "hard", "soft", "off")
	for i, h := range k.TagHeaders {
		if !validToken(h) {
			d.errf(fmt.Sprintf("cache.tag_headers[%d]", i), "%q is not a header name", h)
		}
	}
	if k.RawGzipFlag < 0 || k.RawGzipFlag > 1<<31 || k.RawGzipFlag&1 != 0 {
		d.errf("cache.raw_gzip_flag", "%d must be a memcached flag bit other than 1 (which marks Python pickles)", k.RawGzipFlag)
	}
	// default_ttl may be 0: only what the backend made explicitly
	// cacheable is stored, as a strictly conforming shared cache would.
	positive(d, "cache.max_ttl", k.MaxTTL)
	positive(d, "cache.uncacheable_ttl", k.UncacheableTTL)
	for i, st := range k.Statuses {
		if st < 100 || st > 599 {
			d.errf(fmt.Sprintf("cache.statuses[%d]", i), "%d is not an HTTP status", st)
		}
	}
	for i, h := range k.Hosts {
		if !router.ValidHost(h) {
			d.errf(fmt.Sprintf("cache.hosts[%d]", i), "%q is not a host name (write it as userrouter receives the Host header: \"example.com\" behind the shipped nginx snippet, whose $host never has a port, whatever port nginx listens on; \"example.com:8080\" only for clients that reach userrouter directly on port 8080)", h)
		}
	}
	for i, p := range k.BypassPaths {
		if !strings.HasPrefix(p, "/") {
			d.errf(fmt.Sprintf("cache.bypass_paths[%d]", i), "%q must start with /", p)
		}
	}
	checkStoredHeaders(d, k, s.Cookie)
	if k.MaxBackgroundFills < 1 {
		d.errf("cache.max_background_fills", "must be at least 1, not %d", k.MaxBackgroundFills)
	}
	if k.MaxVariants < 1 {
		d.errf("cache.max_variants", "must be at least 1, not %d", k.MaxVariants)
	}
	for i, r := range k.Rules {
		key := fmt.Sprintf("cache.rule[%d]", i)
		if r.Path.String() == "" {
			d.errf(key+".path", "is required: a regexp such as \"^/blog/\"")
		}
		if r.Host != "" && !router.ValidHost(r.Host) {
			d.errf(key+".host", "%q is not a host name", r.Host)
		}
	}

	checkCredentials(d, c)

	oneOf(d, "log.format", c.Log.Format, "text", "json")
	oneOf(d, "log.access", c.Log.Access, "", "combined", "json")
	if c.Log.AccessFile == "" {
		d.errf("log.access_file", "must be a path, \"stdout\" or \"stderr\"")
	}
	if c.Log.AccessQueue < 16 {
		d.errf("log.access_queue", "must be at least 16, not %d", c.Log.AccessQueue)
	}
}

// checkStoredHeaders refuses the retired keep_headers, drop_headers that
// are not header names, and strip_set_cookies naming the session cookie (a
// login's Set-Cookie dropped from a page then served to everyone).
func checkStoredHeaders(d *decoder, k *Cache, sessionCookie string) {
	if k.KeepHeaders != nil {
		d.errf("cache.keep_headers", "is retired: every end-to-end header of a response is now stored with its page (RFC 9111 section 3.1), so there is nothing to keep by hand; remove keep_headers, and list any header a hit must not carry in drop_headers")
	}
	for i, h := range k.DropHeaders {
		if !validToken(h) {
			d.errf(fmt.Sprintf("cache.drop_headers[%d]", i), "%q is not a header name", h)
		}
	}
	for i, name := range k.StripSetCookies {
		if name == sessionCookie {
			d.errf(fmt.Sprintf("cache.strip_set_cookies[%d]", i), "%q is the session cookie (session.cookie): a page that sets it starts or changes a session and must never be stored; remove it", name)
		}
	}
}

// checkAddr checks a listen, backend or memcached address as the
// router and the memcached store will read it.
func checkAddr(d *decoder, key, a string) {
	if _, _, err := router.SplitAddr(a); err != nil {
		d.errf(key, "%v", err)
	}
}

func positive(d *decoder, key string, v Duration) {
	if v <= 0 {
		d.errf(key, "must be more than zero")
	}
}

func atLeast(d *decoder, key string, v, min Size) {
	if v < min {
		b, _ := min.MarshalText()
		d.errf(key, "must be at least %s", b)
	}
}

func oneOf(d *decoder, key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	d.errf(key, "%q is not one of %s", v, strings.Join(quoted, ", "))
}

// validToken accepts an RFC 9110 token: a cookie or header name.
func validToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// checkCredentials checks [credentials] and the rules that serve them.
func checkCredentials(d *decoder, c *Config) {
	cr := &c.Credentials
	shared, private := false, false
	for i, r := range c.Cache.Rules {
		key := fmt.Sprintf("cache.rule[%d]", i)
		mode, ok := pagecache.ParseCredentials(r.Credentials)
		if !ok {
			d.errf(key+".credentials", "%q is not \"bypass\", \"shared\" or \"per-credential\"", r.Credentials)
			continue
		}
		if r.StorePrivate && mode != pagecache.CredentialsPerCredential {
			d.errf(key+".store_private", "needs credentials = \"per-credential\": a private answer is never shared")
		}
		if mode == pagecache.CredentialsBypass || !r.Cache {
			continue
		}
		if r.StoreSetCookie {
			d.errf(key+".store_set_cookie", "cannot be used with credentials: an answer that sets a cookie is never stored for one")
		}
		shared = shared || mode == pagecache.CredentialsShared
		private = private || mode == pagecache.CredentialsPerCredential
	}
	if !shared && !private && !cr.Enabled() {
		return
	}
	if !cr.Enabled() {
		d.errf("credentials.scheme", "is required (or credentials.query_param) when a cache rule serves credentials: say where they come from, like \"Token\"")
	}
	if cr.Scheme != "" && !validToken(cr.Scheme) {
		d.errf("credentials.scheme", "%q is not an HTTP authentication scheme (a token such as \"Token\" or \"ApiKey\")", cr.Scheme)
	}
	if _, err := sessioncheck.NewCredentialFinder(sessioncheck.CredentialOptions{Scheme: cr.Scheme, Pattern: cr.Pattern, QueryParam: cr.QueryParam}); err != nil && cr.Enabled() {
		key := "credentials.pattern"
		if strings.Contains(err.Error(), "query parameter") {
			key = "credentials.query_param"
		}
		d.errf(key, "%v", strings.TrimPrefix(err.Error(), "sessioncheck: "))
	}
	driver := cmp.Or(cr.Driver, c.Session.Driver)
	oneOf(d, "credentials.driver", cr.Driver, "", "mysql", "postgres", "sqlite")
	switch {
	case driver == "" || driver == "signed_cookies" || cacheDriver(driver):
		d.errf("credentials.driver", "is required (or a session.driver with a database): credentials are checked against the application's table (mysql, postgres or sqlite)")
	case cr.Driver != "" && cr.Driver != c.Session.Driver && cr.DSN == "":
		d.errf("credentials.dsn", "is required when credentials.driver differs from session.driver")
	case cmp.Or(cr.DSN, c.Session.DSN) == "":
		d.errf("credentials.dsn", "is required (or session.dsn)")
	}
	if cr.Query == "" {
		d.errf("credentials.query", "is required: a query whose row means a valid credential, like \"SELECT user_id FROM authtoken_token WHERE `key` = :key\"")
	} else if err := sessioncheck.ValidateCredentialQuery(cr.Query); err != nil {
		d.errf("credentials.query", "%v", err)
	}
	positive(d, "credentials.timeout", cr.Timeout)
	for _, kv := range []struct {
		key string
		n   int
	}{{"credentials.max_conns", cr.MaxConns}, {"credentials.cache_entries", cr.CacheEntries}, {"credentials.breaker_failures", cr.BreakerFailures}, {"credentials.max_private_fills", cr.MaxPrivateFills}} {
		if kv.n < 1 {
			d.errf(kv.key, "must be at least 1, not %d", kv.n)
		}
	}
	positive(d, "credentials.cache_ttl_valid", cr.CacheTTLValid)
	positive(d, "credentials.cache_ttl_invalid", cr.CacheTTLInvalid)
	positive(d, "credentials.breaker_cooldown", cr.BreakerCooldown)
	if (private || cr.HashKey != "") && len(cr.HashKey) < 16 {
		d.errf("credentials.hash_key", "must be at least 16 bytes when a cache rule is \"per-credential\": a secret, the same on every instance, like \"${USERROUTER_CREDENTIAL_HASH_KEY}\"")
	}
	if (shared || private) && c.Cache.Format == "raw" {
		d.errf("cache.format", "must be \"envelope\" when a cache rule serves credentials: raw values keep no surrogate keys to purge them by")
	}
}
