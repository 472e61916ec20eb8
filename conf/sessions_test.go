package conf

import (
	"strings"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck"
)

const backendDoc = "[backend]\naddrs = [\"127.0.0.1:8000\"]\n"

func TestPostgresConfig(t *testing.T) {
	cfg, err := Parse("t.toml", []byte(backendDoc+"[session]\ndriver = \"postgres\"\ndsn = \"postgres://django:${UR_TEST_PG_PW}@db:5432/app?sslmode=verify-full\"\n"))
	if err == nil || !strings.Contains(err.Error(), "UR_TEST_PG_PW is not set") {
		t.Fatalf("got %v; want the unset variable reported", err)
	}
	t.Setenv("UR_TEST_PG_PW", "pg-s3cr3t")
	cfg, err = Parse("t.toml", []byte(backendDoc+"[session]\ndriver = \"postgres\"\ndsn = \"postgres://django:${UR_TEST_PG_PW}@db:5432/app?sslmode=verify-full\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Session.Query != "SELECT session_data FROM django_session WHERE session_key = :key AND expire_date > :now" {
		t.Errorf("postgres query default %q; want Django's, as for mysql", cfg.Session.Query)
	}
	_, err = Parse("t.toml", []byte(backendDoc+"[session]\ndriver = \"postgres\"\n"))
	if err == nil || !strings.Contains(err.Error(), `t.toml:3: session.dsn: is required when session.driver is "postgres"`) {
		t.Errorf("postgres without dsn: %v", err)
	}
	_, err = Parse("t.toml", []byte(backendDoc+"[session]\ndriver = \"postgresql\"\ndsn = \"x\"\n"))
	if err == nil || !strings.Contains(err.Error(), `t.toml:4: session.driver: "postgresql" is not one of "", "mysql", "postgres", "sqlite", "redis", "memcached", "signed_cookies"`) {
		t.Errorf("a misspelt driver: %v", err)
	}
}

func TestRedactPostgresDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://django:pw@db/app?sslmode=require":          "postgres://django:REDACTED@db/app?sslmode=require",
		"postgres://django@db/app?password=pw&sslmode=require": "postgres://django@db/app?password=REDACTED&sslmode=require",
		"host=db user=django password=pw dbname=app":           "host=db user=django password=REDACTED dbname=app",
		"host=db password = 'p w\\' x' dbname=app":             "host=db password=REDACTED dbname=app",
		"password=pw host=db":                                  "password=REDACTED host=db",
		"host=db dbname=app sslpassword=keypw":                 "host=db dbname=app sslpassword=keypw",
		"django:pw@tcp(127.0.0.1:3306)/app":                    "django:REDACTED@tcp(127.0.0.1:3306)/app",
		"django:p/w@unix(/run/mysqld/mysqld.sock)/app":         "django:REDACTED@unix(/run/mysqld/mysqld.sock)/app",
		"redis://:pw@127.0.0.1:6379/0":                         "redis://:REDACTED@127.0.0.1:6379/0",
	} {
		if got := redactDSN(in); got != want {
			t.Errorf("redactDSN(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestSignedCookiesConfig(t *testing.T) {
	cfg, err := Parse("t.toml", []byte(backendDoc+"[session]\ndriver = \"signed_cookies\"\nsecret_key = \"k\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Session.KeyPattern.String(); got != sessioncheck.SignedCookiePattern {
		t.Errorf("key_pattern default %q; want %q", got, sessioncheck.SignedCookiePattern)
	}
	if cfg.Session.MaxAge.D() != 1209600*time.Second {
		t.Errorf("max_age default %v; want Django's SESSION_COOKIE_AGE, 1209600 s", cfg.Session.MaxAge.D())
	}
	for _, c := range signedCookieSamples {
		if !cfg.Session.KeyPattern.MatchString(c) {
			t.Errorf("the default pattern refuses %q", c)
		}
	}
	cfg, err = Parse("t.toml", []byte(backendDoc+"[session]\ndriver = \"signed_cookies\"\nkey_pattern = \"^[A-Za-z0-9_.:-]{20,}$\"\nmax_age = \"1h\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Session.KeyPattern.String() != "^[A-Za-z0-9_.:-]{20,}$" || cfg.Session.MaxAge.D() != time.Hour {
		t.Errorf("set key_pattern and max_age not kept: %q, %v", cfg.Session.KeyPattern.String(), cfg.Session.MaxAge.D())
	}
	// The default key pattern of the other drivers is kept for them.
	cfg, err = Parse("t.toml", []byte(backendDoc+"[session]\ndriver = \"postgres\"\ndsn = \"host=db\"\n"))
	if err != nil || cfg.Session.KeyPattern.String() != "^[a-z0-9]{32}$" {
		t.Errorf("postgres key_pattern: %v, %v", cfg.Session.KeyPattern, err)
	}

	_, err = Parse("t.toml", []byte(backendDoc+`[session]
driver = "signed_cookies"
dsn = "host=db"
query = "SELECT 1 WHERE :key = ''"
rule = "exists"
key_pattern = "^[a-z0-9]{32}$"
max_age = "0s"
`))
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("got %v; want Problems", err)
	}
	want := []string{
		`t.toml:5: session.dsn: is not used by session.driver "signed_cookies"`,
		`t.toml:6: session.query: is not used by session.driver "signed_cookies"`,
		`t.toml:7: session.rule: must be "django" with session.driver "signed_cookies"`,
		`t.toml:8: session.key_pattern: does not match Django's signed cookies`,
		`t.toml:9: session.max_age: must be at least 1s`,
	}
	if len(ps) != len(want) {
		t.Errorf("got %d problems; want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		if i < len(ps) && !strings.Contains(ps[i].String(), w) {
			t.Errorf("problem %d: got %q; want it to contain %q", i, ps[i].String(), w)
		}
	}
}

func TestCacheSessionDrivers(t *testing.T) {
	cfg, err := Parse("t.toml", []byte(backendDoc+"[session]\ndriver = \"redis\"\ndsn = \"redis://:secret@127.0.0.1:6379/1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Session
	if s.KeyTemplate != ":1:django.contrib.sessions.cache{key}" || s.Rule != "django" || s.MaxValueSize != 256<<10 || s.FallbackDriver != "" {
		t.Errorf("redis defaults: %+v", s)
	}
	cfg, err = Parse("t.toml", []byte(backendDoc+`[session]
driver = "memcached"
dsn = "127.0.0.1:11211"
key_template = "www:1:django.contrib.sessions.cached_db{key}"
fallback_driver = "postgres"
fallback_dsn = "postgres://django:pw@db:5432/app"
`))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Redacted(); strings.Contains(r.Session.FallbackDSN, "pw@") {
		t.Errorf("fallback_dsn not redacted: %q", r.Session.FallbackDSN)
	}
	if _, err := Parse("t.toml", []byte(backendDoc+"[session]\ndriver = \"redis\"\ndsn = \"redis://r:6379\"\nrule = \"rails_json\"\nidentified_key = \"warden.user.admin.key\"\nkey_pattern = \"^[0-9a-f]{32}$\"\nkey_template = \"s:2::{key_sha256}\"\n")); err != nil {
		t.Errorf("rails: %v", err)
	}

	_, err = Parse("t.toml", []byte(backendDoc+`[session]
driver = "redis"
dsn = "127.0.0.1:6379"
rule = "nonempty"
key_template = "session:{id}"
identified_key = "x"
max_value_size = "8MiB"
fallback_dsn = "x"
query = "SELECT 1 FROM t WHERE k = :key"
`))
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("got %v; want Problems", err)
	}
	want := []string{
		`t.toml:5: session.dsn: must be a URL`,
		`t.toml:6: session.rule: "nonempty" is not one of "django", "rails_json", "laravel_php", "exists"`,
		`t.toml:7: session.key_template: key template "session:{id}": unknown {id}`,
		`t.toml:8: session.identified_key: is only used by rule "rails_json" or "laravel_php"`,
		`t.toml:9: session.max_value_size: must be at most 4MiB`,
		`t.toml:10: session.fallback_dsn: is set but session.fallback_driver is not`,
		`t.toml:11: session.query: is only used with a session.fallback_driver`,
	}
	checkProblems(t, ps, want)

	_, err = Parse("t.toml", []byte(backendDoc+`[session]
driver = "memcached"
dsn = "a:11211,b:11211"
fallback_driver = "mongodb"
`))
	ps, _ = err.(Problems)
	checkProblems(t, ps, []string{
		`t.toml:5: session.dsn: names one memcached server`,
		`t.toml:6: session.fallback_driver: "mongodb" is not one of`,
	})

	_, err = Parse("t.toml", []byte(backendDoc+`[session]
driver = "memcached"
dsn = "127.0.0.1:11211"
fallback_driver = "postgres"
fallback_dsn = "postgres://django@db:5432/app"
`))
	ps, _ = err.(Problems)
	checkProblems(t, ps, []string{
		`t.toml:6: session.fallback_driver: is Django's cached_db, whose keys are not the default key_template's: set key_template = ":1:django.contrib.sessions.cached_db{key}"`,
	})

	_, err = Parse("t.toml", []byte(backendDoc+"[session]\ndriver = \"redis\"\ndsn = \"redis://r\"\nrule = \"laravel_php\"\n"))
	ps, _ = err.(Problems)
	checkProblems(t, ps, []string{
		`t.toml:6: session.rule: "laravel_php" needs key_pattern set`,
	})

	_, err = Parse("t.toml", []byte(backendDoc+`[session]
driver = "mysql"
dsn = "u@tcp(db)/app"
key_template = "x{key}"
fallback_driver = "mysql"
`))
	ps, _ = err.(Problems)
	checkProblems(t, ps, []string{
		`t.toml:6: session.key_template: is only used by session.driver "redis" or "memcached", not "mysql"`,
		`t.toml:7: session.fallback_driver: is only used by session.driver "redis" or "memcached"`,
	})
}

func checkProblems(t *testing.T, ps Problems, want []string) {
	t.Helper()
	if len(ps) != len(want) {
		t.Errorf("got %d problems; want %d:\n%v", len(ps), len(want), ps)
	}
	for i, w := range want {
		if i < len(ps) && !strings.Contains(ps[i].String(), w) {
			t.Errorf("problem %d: got %q; want it to contain %q", i, ps[i].String(), w)
		}
	}
}
