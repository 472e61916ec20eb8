package conf

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExampleListsEveryOptionWithItsDefault(t *testing.T) {
	data, err := os.ReadFile("userrouter.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("userrouter.example.toml", data)
	if err != nil {
		t.Fatalf("the example does not load:\n%v", err)
	}
	// The example sets every option to its default (backend.addrs aside).
	want := Default()
	want.Backend.Addrs = cfg.Backend.Addrs
	want.File = cfg.File
	want.Listen.MemoryLimit = want.DerivedMemoryLimit() // derived, unless set
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("the example's values differ from Default():\n got %+v\nwant %+v", cfg, want)
	}
	// Every key is present, with a comment naming its default.
	lines := keyLines(data)
	text := strings.Split(string(data), "\n")
	for _, key := range allKeys("", reflect.TypeFor[Config]()) {
		if key == "cache.keep_headers" {
			continue // retired: setting it is an error (TestProblems)
		}
		if key == "listen.memory_limit" {
			// Derived from the sizes when not set: the example shows it
			// commented, so that a copy of it keeps deriving.
			if !strings.Contains(string(data), "\n# memory_limit = \"194MiB\"\n") {
				t.Errorf("the example lacks listen.memory_limit, commented out with its derived default")
			}
			continue
		}
		line, ok := lines[key]
		if !ok {
			t.Errorf("the example lacks %s", key)
			continue
		}
		// The comment above the key, or above a run of keys documented together.
		comment := ""
		i := line - 2
		for i >= 0 && !strings.HasPrefix(text[i], "#") && strings.Contains(text[i], " = ") {
			i--
		}
		for ; i >= 0 && strings.HasPrefix(text[i], "#"); i-- {
			comment = text[i] + "\n" + comment
		}
		if !strings.Contains(comment, "Default") && !strings.Contains(comment, "Required") {
			t.Errorf("%s (line %d) has no comment stating its default", key, line)
		}
	}
}

// allKeys lists the dotted paths of every leaf option of t.
func allKeys(prefix string, t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := joinKey(prefix, name)
		if f.Type.Kind() == reflect.Struct && !isText(f.Type) {
			keys = append(keys, allKeys(key, f.Type)...)
			continue
		}
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct && !isText(f.Type.Elem()) {
			continue // arrays of tables are shown commented out
		}
		keys = append(keys, key)
	}
	return keys
}

func TestMinimalConfig(t *testing.T) {
	cfg, err := Parse("min.toml", []byte("[backend]\naddrs = [\"unix:/run/gunicorn.sock\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Backend.Addrs = []string{"unix:/run/gunicorn.sock"}
	want.File = "min.toml"
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v; want the defaults", cfg)
	}
	if cfg.Session.Driver != "" {
		t.Errorf("got session driver %q; want none by default", cfg.Session.Driver)
	}
}

func TestValues(t *testing.T) {
	t.Setenv("UR_TEST_DSN_PASSWORD", "s3cr3t")
	t.Setenv("UR_TEST_EMPTY", "")
	cfg, err := Parse("v.toml", []byte(`
[listen]
addr = "unix:/run/userrouter.sock"
read_timeout = "1.5s"
max_header_size = 32768
max_request_body_size = "2MiB"
[backend]
addrs = ["10.0.0.1:8000", "[::1]:8001", "unix:/run/app.sock"]
[session]
driver = "mysql"
dsn = "django:${UR_TEST_DSN_PASSWORD}@tcp(127.0.0.1:3306)/app${UR_TEST_EMPTY}"
key_pattern = "^$${literal}$"
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Listen.ReadTimeout.D(), 1500*time.Millisecond; got != want {
		t.Errorf("read_timeout: got %v; want %v", got, want)
	}
	if cfg.Listen.MaxHeaderSize != 32768 || cfg.Listen.MaxRequestBodySize != 2<<20 {
		t.Errorf("sizes: got %d and %d", cfg.Listen.MaxHeaderSize, cfg.Listen.MaxRequestBodySize)
	}
	if got, want := cfg.Session.DSN, "django:s3cr3t@tcp(127.0.0.1:3306)/app"; got != want {
		t.Errorf("dsn: got %q; want %q", got, want)
	}
	if got, want := cfg.Session.KeyPattern.String(), "^${literal}$"; got != want {
		t.Errorf("key_pattern: got %q; want %q", got, want)
	}
	out, err := cfg.Effective()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cr3t") || !strings.Contains(string(out), "django:REDACTED@tcp") {
		t.Errorf("effective config does not redact the password:\n%s", out)
	}
	if _, err := Parse("again.toml", out); err != nil {
		t.Errorf("the effective config does not load back: %v\n%s", err, out)
	}
}

func TestProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string // each a substring of one problem, in order
	}{
		{
			name: "missing backend",
			doc:  "[listen]\naddr = \"127.0.0.1:9000\"\n",
			want: []string{"t.toml: backend.addrs: is required"},
		},
		{
			name: "unknown and misspelt keys",
			doc:  "[listen]\nadr = \"x\"\n[backend]\naddrs = [\"127.0.0.1:8000\"]\nconect_timeout = \"1s\"\n[bogus]\nx = 1\n",
			want: []string{
				`t.toml:2: listen.adr: unknown key (did you mean "addr"?)`,
				`t.toml:5: backend.conect_timeout: unknown key (did you mean "connect_timeout"?)`,
				`t.toml:6: bogus: unknown key`,
			},
		},
		{
			name: "bad values, all reported",
			doc: `[listen]
addr = "localhost"
read_timeout = "5 seconds"
idle_timeout = 5
max_header_size = "lots"
socket_mode = "rw"
trusted_proxies = ["10.0.0.0/33"]
[backend]
addrs = ["http://127.0.0.1:8000", "unix:relative.sock", "127.0.0.1:99999"]
max_conns = 0
[log]
level = "verbose"
`,
			want: []string{
				`t.toml:2: listen.addr: "localhost" is not host:port or unix:/path`,
				`t.toml:3: listen.read_timeout: "5 seconds" is not a duration`,
				`t.toml:4: listen.idle_timeout: must be a duration string like "250ms" or "2s", not an integer`,
				`t.toml:5: listen.max_header_size: "lots" is not a size`,
				`t.toml:6: listen.socket_mode: "rw" is not a file mode`,
				`t.toml:7: listen.trusted_proxies[0]: "10.0.0.0/33" is not an IP address or CIDR`,
				`t.toml:9: backend.addrs[0]: "http://127.0.0.1:8000": write host:port without a scheme`,
				`t.toml:9: backend.addrs[1]: "unix:relative.sock": a unix socket needs an absolute path`,
				`t.toml:9: backend.addrs[2]: "127.0.0.1:99999": port "99999" is not a number from 1 to 65535`,
				`t.toml:10: backend.max_conns: must be at least 1, not 0`,
				`t.toml:12: log.level: "verbose" is not one of "debug", "info", "warn", "error"`,
			},
		},
		{
			name: "wrong types",
			doc:  "listen = 3\n[backend]\naddrs = \"127.0.0.1:8000\"\n",
			want: []string{
				`t.toml:1: listen: must be a table ([listen]), not an integer`,
				`t.toml:3: backend.addrs: must be a list of strings like ["a", "b"], not a string`,
			},
		},
		{
			name: "unset environment variable",
			doc:  "[backend]\naddrs = [\"127.0.0.1:8000\"]\n[purge]\ntoken = \"${UR_TEST_SURELY_UNSET}\"\n",
			want: []string{`t.toml:4: purge.token: environment variable UR_TEST_SURELY_UNSET is not set`},
		},
		{
			name: "syntax error",
			doc:  "[backend]\naddrs = [\"127.0.0.1:8000\"\n",
			want: []string{`t.toml:2: TOML syntax:`},
		},
		{
			name: "stored headers that cannot be safe, and the retired keep_headers",
			doc: `[backend]
addrs = ["127.0.0.1:8000"]
[cache]
keep_headers = ["X-Ok"]
strip_set_cookies = ["csrftoken", "sessionid"]
collapse_timeout = "-1s"
drop_headers = ["X-Debug", "not a header"]
`,
			want: []string{
				`t.toml:4: cache.keep_headers: is retired: every end-to-end header of a response is now stored with its page (RFC 9111 section 3.1), so there is nothing to keep by hand; remove keep_headers, and list any header a hit must not carry in drop_headers`,
				`t.toml:5: cache.strip_set_cookies[1]: "sessionid" is the session cookie`,
				`t.toml:6: cache.collapse_timeout: "-1s" is negative`,
				`t.toml:7: cache.drop_headers[1]: "not a header" is not a header name`,
			},
		},
		{
			name: "a key on the session cookie, or on a bad cookie name",
			doc: `[backend]
addrs = ["127.0.0.1:8000"]
[session]
cookie = "sid"
[cache]
key = "page:{host}{uri}|{cookie:lang}|{cookie:sid}"
`,
			want: []string{`t.toml:6: cache.key: {cookie:sid} names the session cookie (session.cookie)`},
		},
		{
			name: "a host written as a URL",
			doc:  "[backend]\naddrs = [\"127.0.0.1:8000\"]\n[cache]\nhosts = [\"http://example.com\"]\n",
			want: []string{`t.toml:4: cache.hosts[0]: "http://example.com" is not a host name (write it as userrouter receives the Host header: "example.com" behind the shipped nginx snippet, whose $host never has a port`},
		},
		{
			name: "a key on an empty cookie name",
			doc:  "[backend]\naddrs = [\"127.0.0.1:8000\"]\n[cache]\nkey = \"page:{uri}{cookie:}\"\nhosts = [\"example.com\"]\n",
			want: []string{`t.toml:4: cache.key: key template "page:{uri}{cookie:}": {cookie:}: "" is not a cookie name`},
		},
		{
			name: "session store without dsn",
			doc:  "[backend]\naddrs = [\"127.0.0.1:8000\"]\n[session]\ndriver = \"mysql\"\nkey_pattern = \"(\"\n",
			want: []string{
				`t.toml:3: session.dsn: is required when session.driver is "mysql"`,
				`t.toml:5: session.key_pattern: is not a regexp`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tc.doc))
			ps, ok := err.(Problems)
			if !ok {
				t.Fatalf("got %v; want Problems", err)
			}
			if len(ps) != len(tc.want) {
				t.Errorf("got %d problems; want %d:\n%v", len(ps), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i < len(ps) && !strings.Contains(ps[i].String(), w) {
					t.Errorf("problem %d: got %q; want it to contain %q", i, ps[i].String(), w)
				}
			}
		})
	}
}

func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"512", 512, true}, {"64KiB", 64 << 10, true}, {"64kb", 64 << 10, true}, {"1M", 1 << 20, true},
		{"2 GiB", 2 << 30, true}, {"1.5MiB", 0, false}, {"-1", 0, false}, {"", 0, false}, {"9999999GiB", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestMemoryLimit: listen.memory_limit is derived from the pages the
// process holds unless set; "0" sets none; one below the pages is refused.
func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       Size
		problem    string
	}{
		{"default memory store", `[cache]
store = "memory"`, 194 << 20, ""},
		{"memory store", `[cache]
store = "memory"
memory_size = "64MiB"`, 109 << 20, ""},
		{"memcached and L1", `[cache]
l1_size = "256MiB"`, 344 << 20, ""},
		{"memcached alone", ``, 0, ""},
		{"set", `[listen]
memory_limit = "1GiB"
[cache]
store = "memory"`, 1 << 30, ""},
		{"off", `[listen]
memory_limit = "0"
[cache]
store = "memory"`, 0, ""},
		{"below the pages", `[listen]
memory_limit = "130MiB"
[cache]
store = "memory"`, 0, "listen.memory_limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("t.toml", []byte("[backend]\naddrs = [\"127.0.0.1:8000\"]\n"+tc.toml+"\n"))
			if tc.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("got %v; want a problem with %s", err, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Listen.MemoryLimit; got != tc.want {
				t.Errorf("got %d; want %d", got, tc.want)
			}
		})
	}
}
