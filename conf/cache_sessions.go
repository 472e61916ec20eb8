package conf

import (
	"strings"

	"github.com/userrouter/userrouter/sessioncheck"
)

// cacheDriver reports whether a session driver reads a cache (Redis,
// memcached) rather than a database.
func cacheDriver(driver string) bool { return driver == "redis" || driver == "memcached" }

// maxValueSizeLimit is the largest session.max_value_size: the session
// decoders' own bound.
const maxValueSizeLimit = 4 << 20

// checkCacheSessions checks the keys of drivers "redis" and "memcached",
// and refuses them with any other driver.
func checkCacheSessions(d *decoder, s *Session) {
	if !cacheDriver(s.Driver) {
		// Set to other than the default (the example file sets them all).
		for _, kv := range []struct {
			key   string
			unset bool
		}{
			{"key_template", s.KeyTemplate == sessioncheck.DefaultKeyTemplate},
			{"identified_key", s.IdentifiedKey == ""},
			{"max_value_size", s.MaxValueSize == sessioncheck.DefaultMaxValueSize},
			{"fallback_driver", s.FallbackDriver == ""},
			{"fallback_dsn", s.FallbackDSN == ""},
		} {
			if !kv.unset {
				d.errf("session."+kv.key, "is only used by session.driver \"redis\" or \"memcached\", not %q; remove it", s.Driver)
			}
		}
		return
	}
	oneOf(d, "session.rule", s.Rule, "django", "rails_json", "laravel_php", "exists")
	if _, err := sessioncheck.ParseKeyTemplate(s.KeyTemplate); err != nil {
		d.errf("session.key_template", "%v", strings.TrimPrefix(err.Error(), "sessioncheck: "))
	}
	if s.Rule == "rails_json" || s.Rule == "laravel_php" {
		// The default pattern is Django's: with another framework's ids
		// every visitor would pass for anonymous.
		if _, set := d.lines["session.key_pattern"]; !set {
			d.errf("session.rule", "%q needs key_pattern set to the framework's session ids (Rails: \"^[0-9a-f]{32}$\", Laravel: \"^[A-Za-z0-9]{40}$\"); the default is Django's", s.Rule)
		}
	}
	if s.IdentifiedKey != "" && s.Rule != "rails_json" && s.Rule != "laravel_php" {
		d.errf("session.identified_key", "is only used by rule \"rails_json\" or \"laravel_php\", not %q; remove it", s.Rule)
	}
	atLeast(d, "session.max_value_size", s.MaxValueSize, 1<<10)
	if s.MaxValueSize > maxValueSizeLimit {
		d.errf("session.max_value_size", "must be at most 4MiB")
	}
	switch s.Driver {
	case "redis":
		if s.DSN != "" && !strings.HasPrefix(s.DSN, "redis://") && !strings.HasPrefix(s.DSN, "rediss://") && !strings.HasPrefix(s.DSN, "unix://") {
			d.errf("session.dsn", "must be a URL: \"redis://host:6379/0\", \"rediss://…\" (TLS) or \"unix:///run/redis.sock?db=0\"")
		}
	case "memcached":
		if s.DSN != "" {
			if strings.Contains(s.DSN, ",") {
				d.errf("session.dsn", "names one memcached server; several would need the application's key distribution")
			} else {
				checkAddr(d, "session.dsn", s.DSN)
			}
		}
	}
	switch s.FallbackDriver {
	case "", "mysql", "postgres", "sqlite":
	default:
		oneOf(d, "session.fallback_driver", s.FallbackDriver, "", "mysql", "postgres", "sqlite")
		return
	}
	if s.FallbackDriver == "" {
		if s.FallbackDSN != "" {
			d.errf("session.fallback_dsn", "is set but session.fallback_driver is not")
		}
		if s.Query != Default().Session.Query {
			d.errf("session.query", "is only used with a session.fallback_driver (Django's cached_db) when session.driver is %q; remove it", s.Driver)
		}
		return
	}
	if s.FallbackDSN == "" {
		d.errf("session.fallback_dsn", "is required when session.fallback_driver is %q", s.FallbackDriver)
	}
	if _, set := d.lines["session.key_template"]; !set {
		// The default is the cache engine's keys: cached_db writes others,
		// and every lookup would miss the cache for the database.
		d.errf("session.fallback_driver", "is Django's cached_db, whose keys are not the default key_template's: set key_template = \":1:django.contrib.sessions.cached_db{key}\" (with KEY_PREFIX and VERSION as in CACHES)")
	}
	if s.Rule != "django" {
		d.errf("session.fallback_driver", "is Django's cached_db: it needs rule \"django\", not %q", s.Rule)
	}
}
