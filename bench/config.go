package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// config is everything the flags say, validated.
type config struct {
	url      string    // -url: the base URL (empty with -compare)
	compare  [2]string // -compare: the two base URLs, or empty
	rounds   int       // -rounds: A/B rounds of -compare
	names    [2]string // -names: what the reports call A and B
	conns    int       // -c: connections (closed loop) or requests in flight (open loop)
	duration time.Duration
	requests int64   // -requests: measured requests; 0 means no count bound
	rate     float64 // -rate: requests/s of the open loop; 0 means closed loop
	warmup   time.Duration
	timeout  time.Duration
	method   string
	headers  []header

	urlsFile string  // -urls
	paths    int     // -paths
	zipf     float64 // -zipf: 0 uniform, > 1 Zipf exponent

	identified     float64 // -identified: share of requests with an identified cookie
	anonSessions   float64 // -anon-sessions: share with an anonymous-session cookie
	identifiedKeys string  // -identified-keys FILE
	anonKeys       string  // -anon-keys FILE
	cookieName     string
	mint           int
	loginURL       string
	anonURL        string
	loginForm      url.Values // -login-form: credentials; nil: -login-url mints by a bare POST

	tokens      string // -tokens FILE: API tokens, one per connection in turn
	tokenHeader string // -token-header: the header carrying a token, "{token}" for it

	procs int // -procs: GOMAXPROCS for the run; 0: the command's default
	pid   int // -pid: the target's process id, for its RSS and CPU time; 0: none
	// netpoll: -netpoll, the closed loop through one goroutine per
	// connection (Go's netpoller) instead of the event loop.
	netpoll bool

	json     bool
	htmlFile string
}

// maxPaths bounds -paths: bench builds every URL before the run.
const maxPaths = 10_000_000

// A header is one -H flag.
type header struct{ name, value string }

// headerFlags collects repeated -H flags.
type headerFlags []header

func (h *headerFlags) String() string {
	var parts []string
	for _, x := range *h {
		parts = append(parts, x.name+": "+x.value)
	}
	return strings.Join(parts, ", ")
}

func (h *headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") {
		return fmt.Errorf("want 'Name: value', such as -H 'Accept-Language: fr'")
	}
	*h = append(*h, header{name: name, value: strings.TrimSpace(value)})
	return nil
}

// A usageError is a mistake in the command line or in a file it names:
// bench exits with status 2 and does not touch the network.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// usageText is -h's output. Keep it in step with newFlagSet: a test checks
// that every flag appears here.
const usageText = `bench: load-test an HTTP target (userrouter, nginx, an origin) and report
throughput, latency percentiles, errors, status codes and the Cache-Status
breakdown.

usage:
  bench -url URL [flags]
  bench -compare URL_A,URL_B [flags]

target
  -url URL               base URL to load (http:// or https://)
  -compare URL_A,URL_B   run A and B alternately, -rounds times each, and
                         print the median ratio B/A of throughput, p50, p99
  -rounds N              rounds of -compare (default 3)
  -names NAME_A,NAME_B   what the -compare reports call A and B, such as
                         'origin alone,behind userrouter' (default A,B)
  -method M              request method (default GET)
  -H 'Name: value'       extra request header; repeatable ('Host: x' sets Host)
  -timeout D             bound on one request, connect included (default 10s)

load
  -c N                   connections (default 64); with -rate, the most
                         requests in flight at once
  -duration D            measured time (default 10s); 0 with -requests means
                         no time bound
  -requests N            stop after N measured requests (or at -duration,
                         whichever comes first)
  -rate R                open loop: R requests/s on a fixed schedule; a
                         request that must wait for a free connection counts
                         its latency from its scheduled time (default 0:
                         closed loop, each connection sends its next request
                         when the previous answer arrived)
  -warmup D              unmeasured load before the measurement (default 1s)
  -procs N               CPUs bench runs on (GOMAXPROCS); default half of
                         them, at least 1, leaving the rest to a target on
                         the same machine (the GOMAXPROCS variable, when set,
                         is the default instead); on a dedicated load
                         machine give them all
  -pid PID               the target's process on this machine: report its
                         resident memory (VmRSS, peak and at the end,
                         sampled every 100ms) and CPU time per request
  -netpoll               run the closed loop with one goroutine per
                         connection through Go's netpoller instead of
                         bench's epoll event loop (Linux, plain HTTP);
                         the open loop, HTTPS and other systems always do

API credentials
  -tokens FILE           tokens, one per line ('#' comments): connection i
                         sends the i-th (round robin) in -token-header, as
                         one API client would
  -token-header 'Name: value'
                         the header carrying a token, {token} standing for
                         it (default 'Authorization: Token {token}'; for
                         Tastypie, 'Authorization: ApiKey {token}' with
                         user:key tokens)

traffic mix
  -urls FILE             paths or URLs, one per line ('#' comments); paths
                         are appended to -url (http://h/app/ and /p give
                         http://h/app/p), URLs are used as they are
  -paths N               generate paths /page/0 ... /page/N-1, appended to
                         -url (N at most 10000000)
  -zipf S                popularity skew over -urls or -paths: S > 1 is Zipf
                         with exponent S, 0 is uniform (default 0)

sessions
  -identified P          share 0..1 of requests with an identified session
                         cookie (default 0)
  -anon-sessions P       share 0..1 of requests with an anonymous-session
                         cookie (default 0)
  -identified-keys FILE  identified cookie values, one per line
  -anon-keys FILE        anonymous-session cookie values, one per line
  -cookie-name NAME      session cookie name (default sessionid)
  -mint N                before the run, mint N cookies of each kind by POSTing
                         to -login-url (identified) and -anon-url (anonymous)
  -login-url URL         POST here; the answer's Set-Cookie is identified
  -login-form FIELDS     log in at -login-url like a browser: GET its form,
                         keep its cookies and hidden fields (Django's CSRF
                         token), POST them with FIELDS, URL-encoded
                         credentials such as 'username=bench&password=s3cret',
                         and Referer; each login mints one session
  -anon-url URL          POST here; the answer's Set-Cookie is anonymous

output
  -json                  print one JSON object instead of the table
  -html FILE             also write a self-contained HTML report to FILE

exit status: 0 run done; 1 run failed (target unreachable, minting failed,
every request failed, the target could not sustain -rate, interrupted);
2 bad flags or files. Durations are Go durations: 500ms, 10s, 2m.

examples:
  bench -url http://127.0.0.1:8090/ -c 64 -duration 30s
  bench -url http://127.0.0.1:8090/ -rate 2000 -duration 1m -html report.html
  bench -url http://127.0.0.1:8090/ -paths 10000 -zipf 1.1 -identified 0.1 \
        -mint 50 -login-url http://127.0.0.1:8000/login
  bench -url http://127.0.0.1:8090/ -identified 0.1 -mint 20 \
        -login-url http://127.0.0.1:8000/accounts/login/ \
        -login-form 'username=bench&password=s3cret'
  bench -compare http://127.0.0.1:8000/,http://127.0.0.1:8090/ -rounds 5 \
        -names 'origin alone,behind userrouter' -json

(8090 is userrouter's default port, 8000 bin/origin's, which mints
sessions on POST /login and POST /cart)
`

// newFlagSet defines bench's flags on a fresh FlagSet writing into cfg.
func newFlagSet(cfg *config) *flag.FlagSet {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints errors and usage itself
	fs.StringVar(&cfg.url, "url", "", "base `URL`")
	fs.Func("compare", "`URL_A,URL_B`", func(s string) error {
		a, b, ok := strings.Cut(s, ",")
		if !ok || strings.Contains(b, ",") || strings.TrimSpace(a) == "" || strings.TrimSpace(b) == "" {
			return errors.New("want two base URLs separated by one comma")
		}
		cfg.compare = [2]string{strings.TrimSpace(a), strings.TrimSpace(b)}
		return nil
	})
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds of -compare")
	cfg.names = [2]string{"A", "B"}
	fs.Func("names", "`NAME_A,NAME_B`", func(s string) error {
		a, b, ok := strings.Cut(s, ",")
		a, b = strings.TrimSpace(a), strings.TrimSpace(b)
		if !ok || strings.Contains(b, ",") || a == "" || b == "" || a == b {
			return errors.New("want two different names separated by one comma, such as -names 'origin alone,behind userrouter'")
		}
		cfg.names = [2]string{a, b}
		return nil
	})
	fs.StringVar(&cfg.method, "method", "GET", "request method")
	fs.Var((*headerFlags)(&cfg.headers), "H", "extra request header 'Name: value'")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "bound on one request")
	fs.IntVar(&cfg.conns, "c", 64, "connections")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time")
	fs.Int64Var(&cfg.requests, "requests", 0, "measured requests")
	fs.Float64Var(&cfg.rate, "rate", 0, "open-loop requests/s")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured warm-up")
	fs.StringVar(&cfg.urlsFile, "urls", "", "file of paths or URLs")
	fs.IntVar(&cfg.paths, "paths", 0, "generated paths /page/0 ... /page/N-1")
	fs.Float64Var(&cfg.zipf, "zipf", 0, "Zipf exponent (> 1), 0 for uniform")
	fs.Float64Var(&cfg.identified, "identified", 0, "share of identified requests")
	fs.Float64Var(&cfg.anonSessions, "anon-sessions", 0, "share of anonymous-session requests")
	fs.StringVar(&cfg.identifiedKeys, "identified-keys", "", "file of identified cookie values")
	fs.StringVar(&cfg.anonKeys, "anon-keys", "", "file of anonymous-session cookie values")
	fs.StringVar(&cfg.cookieName, "cookie-name", "sessionid", "session cookie name")
	fs.IntVar(&cfg.mint, "mint", 0, "cookies of each kind to mint")
	fs.StringVar(&cfg.loginURL, "login-url", "", "URL minting identified sessions")
	fs.StringVar(&cfg.anonURL, "anon-url", "", "URL minting anonymous sessions")
	fs.Func("login-form", "`FIELDS` posted to the login form at -login-url", func(s string) error {
		v, err := url.ParseQuery(s)
		if err != nil || len(v) == 0 {
			return errors.New("want URL-encoded form fields, such as 'username=bench&password=s3cret'")
		}
		cfg.loginForm = v
		return nil
	})
	fs.StringVar(&cfg.tokens, "tokens", "", "file of API tokens, one per connection in turn")
	fs.StringVar(&cfg.tokenHeader, "token-header", "Authorization: Token {token}", "the header carrying a token ({token})")
	fs.IntVar(&cfg.procs, "procs", 0, "CPUs bench runs on (GOMAXPROCS)")
	fs.IntVar(&cfg.pid, "pid", 0, "the target's process id")
	fs.BoolVar(&cfg.netpoll, "netpoll", false, "closed loop through Go's netpoller, not the event loop")
	fs.BoolVar(&cfg.json, "json", false, "print JSON")
	fs.StringVar(&cfg.htmlFile, "html", "", "HTML report file")
	return fs
}

// parseConfig parses and validates args. It returns flag.ErrHelp for -h,
// a *usageError for any other mistake, naming the flag and the fix.
func parseConfig(args []string) (*config, error) {
	cfg := &config{}
	fs := newFlagSet(cfg)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q: every setting is a flag; did you mean -url %s?", fs.Arg(0), fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := cfg.validate(set); err != nil {
		return nil, err
	}
	return cfg, nil
}

// validate checks the flags against each other. set holds the names of
// the flags given on the command line.
func (cfg *config) validate(set map[string]bool) error {
	compare := cfg.compare[0] != ""
	switch {
	case compare && set["url"]:
		return usagef("-url and -compare both given: -compare takes the two base URLs itself; drop -url")
	case !compare && cfg.url == "" && cfg.urlsFile == "":
		return usagef("-url is required: give the target, such as -url http://127.0.0.1:8090/ (or -compare URL_A,URL_B)")
	case !compare && set["rounds"]:
		return usagef("-rounds applies to -compare only")
	case !compare && set["names"]:
		return usagef("-names applies to -compare only")
	case cfg.rounds < 1:
		return usagef("-rounds %d: want at least 1", cfg.rounds)
	}
	for _, u := range []struct{ flag, value string }{
		{"-url", cfg.url}, {"-compare", cfg.compare[0]}, {"-compare", cfg.compare[1]},
		{"-login-url", cfg.loginURL}, {"-anon-url", cfg.anonURL},
	} {
		if u.value == "" {
			continue
		}
		if _, err := parseBaseURL(u.value); err != nil {
			return usagef("%s %q: %v", u.flag, u.value, err)
		}
	}
	switch {
	case cfg.pid < 0:
		return usagef("-pid %d: want the target's process id", cfg.pid)
	case cfg.pid > 0 && !procReadable(cfg.pid):
		return usagef("-pid %d: cannot read /proc/%d/status: no such process here (bench must run on the target's machine), or /proc is not mounted", cfg.pid, cfg.pid)
	case cfg.procs < 0:
		return usagef("-procs %d: want a number of CPUs, or 0 for the default (half of them)", cfg.procs)
	case cfg.conns < 1:
		return usagef("-c %d: want at least 1 connection", cfg.conns)
	case cfg.requests < 0:
		return usagef("-requests %d: want a positive count, or 0 for no count bound", cfg.requests)
	case cfg.duration <= 0 && cfg.requests == 0:
		return usagef("-duration %v: want a positive duration such as -duration 10s, or a count with -requests N (then -duration 0 means no time bound)", cfg.duration)
	case cfg.duration < 0:
		return usagef("-duration %v: want a positive duration, or 0 with -requests for no time bound", cfg.duration)
	case cfg.warmup < 0:
		return usagef("-warmup %v: want 0 or a positive duration", cfg.warmup)
	case cfg.timeout <= 0:
		return usagef("-timeout %v: want a positive duration such as -timeout 10s", cfg.timeout)
	case cfg.rate < 0 || math.IsNaN(cfg.rate) || math.IsInf(cfg.rate, 0):
		return usagef("-rate %v: want requests per second (> 0), or 0 for the closed loop", cfg.rate)
	case cfg.rate > 0 && cfg.rate < 0.01:
		return usagef("-rate %v: want at least 0.01 requests per second", cfg.rate)
	case cfg.rate > 10_000_000:
		return usagef("-rate %v: more than 10 million requests per second is beyond one load generator", cfg.rate)
	case !validToken(cfg.method):
		return usagef("-method %q: want an HTTP method such as GET or HEAD", cfg.method)
	case cfg.paths < 0:
		return usagef("-paths %d: want a positive count of generated paths", cfg.paths)
	case cfg.paths > maxPaths:
		return usagef("-paths %d: at most %d generated paths (each takes memory for its URL)", cfg.paths, maxPaths)
	case cfg.paths > 0 && cfg.urlsFile != "":
		return usagef("-paths and -urls both given: pick one source of paths")
	case cfg.paths > 0 && cfg.url == "" && !compare:
		return usagef("-paths needs -url: the paths /page/N are appended to it")
	case cfg.zipf != 0 && !(cfg.zipf > 1) || math.IsInf(cfg.zipf, 0):
		return usagef("-zipf %v: want an exponent above 1 (such as 1.1; math/rand's Zipf needs s > 1), or 0 for uniform", cfg.zipf)
	case cfg.zipf != 0 && cfg.paths == 0 && cfg.urlsFile == "":
		return usagef("-zipf needs several paths to skew over: add -paths N or -urls FILE")
	}
	for _, f := range []struct {
		flag string
		v    float64
	}{{"-identified", cfg.identified}, {"-anon-sessions", cfg.anonSessions}} {
		if !(f.v >= 0 && f.v <= 1) {
			return usagef("%s %v: want a fraction of requests between 0 and 1, such as %s 0.1", f.flag, f.v, f.flag)
		}
	}
	switch {
	case cfg.identified+cfg.anonSessions > 1+1e-9:
		return usagef("-identified %v plus -anon-sessions %v is more than all requests: they must add up to at most 1", cfg.identified, cfg.anonSessions)
	case cfg.cookieName == "" || !validToken(cfg.cookieName):
		return usagef("-cookie-name %q: want a cookie name such as sessionid", cfg.cookieName)
	case cfg.mint < 0:
		return usagef("-mint %d: want a positive count of cookies to mint", cfg.mint)
	case cfg.mint > 0 && cfg.loginURL == "" && cfg.anonURL == "":
		return usagef("-mint %d needs -login-url URL (identified sessions) and/or -anon-url URL (anonymous sessions)", cfg.mint)
	case cfg.mint == 0 && (cfg.loginURL != "" || cfg.anonURL != ""):
		return usagef("-login-url and -anon-url are used by -mint N: add -mint N (cookies of each kind to mint)")
	case cfg.loginForm != nil && cfg.loginURL == "":
		return usagef("-login-form needs -login-url URL: the page with the login form")
	case cfg.mint > 1_000_000:
		return usagef("-mint %d: at most 1000000 cookies of each kind", cfg.mint)
	case cfg.identified == 0 && (cfg.identifiedKeys != "" || cfg.loginURL != ""):
		return usagef("identified cookies given (-identified-keys or -login-url) but -identified is 0: set the share of requests that carry them, such as -identified 0.1")
	case cfg.anonSessions == 0 && (cfg.anonKeys != "" || cfg.anonURL != ""):
		return usagef("anonymous-session cookies given (-anon-keys or -anon-url) but -anon-sessions is 0: set the share of requests that carry them, such as -anon-sessions 0.2")
	case cfg.identified > 0 && cfg.identifiedKeys == "" && (cfg.mint == 0 || cfg.loginURL == ""):
		return usagef("-identified %v needs identified cookies: give -identified-keys FILE, or -mint N with -login-url URL", cfg.identified)
	case cfg.anonSessions > 0 && cfg.anonKeys == "" && (cfg.mint == 0 || cfg.anonURL == ""):
		return usagef("-anon-sessions %v needs anonymous-session cookies: give -anon-keys FILE, or -mint N with -anon-url URL", cfg.anonSessions)
	}
	if cfg.htmlFile != "" {
		dir := filepath.Dir(cfg.htmlFile)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return usagef("-html %s: directory %s does not exist; create it or write the report elsewhere", cfg.htmlFile, dir)
		}
	}
	return nil
}

// validToken reports whether s is a non-empty RFC 9110 token, as method
// and cookie names must be.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// parseBaseURL parses an absolute http or https URL.
func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL (%v); want an absolute URL such as http://127.0.0.1:8090/", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("want an absolute http:// or https:// URL, such as http://127.0.0.1:8090/")
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("no host: want an absolute URL such as http://127.0.0.1:8090/")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q out of range 1..65535", p)
		}
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.Fragment = ""
	return u, nil
}

// readLines reads the non-empty lines of the file named by flag, without
// surrounding white space, skipping lines that start with '#'. An error
// names the flag.
func readLines(flag, name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, usagef("%s %s: %v; check the path", flag, name, errors.Unwrap(err))
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, usagef("%s %s: %v", flag, name, err)
	}
	if len(lines) == 0 {
		return nil, usagef("%s %s: the file has no entries (one per line; blank lines and '#' comments are skipped)", flag, name)
	}
	return lines, nil
}

// readCookieValues reads cookie values from the file named by flag and
// checks that each can be sent in a Cookie header.
func readCookieValues(flag, name string) ([]string, error) {
	lines, err := readLines(flag, name)
	if err != nil {
		return nil, err
	}
	for i, v := range lines {
		if strings.ContainsAny(v, "; \t\"\\,") {
			return nil, usagef("%s %s: value %d %q is not a bare cookie value (it holds a space, ';', ',', '\"' or '\\'); put one cookie value per line, without the name", flag, name, i+1, v)
		}
	}
	return lines, nil
}

// readTokens reads the -tokens file and checks -token-header: each token
// must fit in a header value as it is.
func readTokens(cfg *config) (header, []string, error) {
	name, value, ok := strings.Cut(cfg.tokenHeader, ":")
	value = strings.TrimSpace(value)
	if !ok || strings.TrimSpace(name) == "" || strings.Count(value, "{token}") != 1 {
		return header{}, nil, usagef("-token-header %q: want 'Name: value' with one {token}, like 'Authorization: Token {token}'", cfg.tokenHeader)
	}
	lines, err := readLines("-tokens", cfg.tokens)
	if err != nil {
		return header{}, nil, err
	}
	for i, v := range lines {
		for _, c := range []byte(v) {
			if c < 0x21 || c > 0x7e {
				return header{}, nil, usagef("-tokens %s: token %d %q holds a space or a byte a header value cannot carry", cfg.tokens, i+1, v)
			}
		}
	}
	return header{name: strings.TrimSpace(name), value: value}, lines, nil
}
