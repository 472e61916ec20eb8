// Command demo shows what userrouter does to a site's capacity, on this
// machine, with nothing installed but Go: it starts the origin (a stand-in
// Django site: SQLite sessions, 20 ms per page, 8 workers) and userrouter
// in front of it (memory page store, the same SQLite sessions), mints
// signed-in and anonymous sessions, loads the origin alone and then
// userrouter with the same mix (by default 90% anonymous visitors, 5%
// anonymous with a session, 5% signed in), prints both side by side and
// writes bench's HTML report. Everything runs on loopback and stops at
// the end, on Ctrl-C, or after -timeout.
//
//	make demo                  # builds bin/ and runs bin/demo
//	bin/demo -duration 20s -html demo-report.html
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	bin        string
	duration   time.Duration
	warmup     time.Duration
	conns      int
	render     time.Duration
	workers    int
	pages      int
	identified float64
	anon       float64
	html       string
	timeout    time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.bin, "bin", "", "`directory` holding userrouter, bench and origin (default: the directory of this program)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each of the two runs")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each run's measurement")
	fs.IntVar(&o.conns, "c", 64, "connections")
	fs.DurationVar(&o.render, "render", 20*time.Millisecond, "the origin's time to render a page")
	fs.IntVar(&o.workers, "workers", 8, "pages the origin renders at once (gunicorn workers)")
	fs.IntVar(&o.pages, "pages", 1000, "distinct pages, visited with a Zipf skew")
	fs.Float64Var(&o.identified, "identified", 0.05, "share of requests from signed-in visitors")
	fs.Float64Var(&o.anon, "anon-sessions", 0.05, "share of requests from anonymous visitors with a session (a cart)")
	fs.StringVar(&o.html, "html", "demo-report.html", "write bench's HTML report to `FILE` (\"\" for none)")
	fs.DurationVar(&o.timeout, "timeout", 110*time.Second, "stop everything after this long, whatever happens")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.duration <= 0 || o.warmup < 0 || o.conns < 1 || o.pages < 1 || o.identified < 0 || o.anon < 0 || o.identified+o.anon > 1 {
		fmt.Fprintln(stderr, "demo: bad arguments: -duration above 0, -c and -pages at least 1, shares between 0 and 1")
		return 2
	}
	if o.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "demo:", err)
			return 1
		}
		o.bin = filepath.Dir(exe)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	d := &demo{o: o, stdout: stdout, stderr: stderr}
	err := d.run(ctx)
	d.cleanup()
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled):
		fmt.Fprintln(stderr, "demo: interrupted; everything it started is stopped")
		return 130
	default:
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
}

type demo struct {
	o      options
	stdout io.Writer
	stderr io.Writer
	dir    string
	procs  []*process
}

// A process is a program the demo started, with its output kept for
// when it fails.
type process struct {
	name string
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
}

// A lockedBuffer is a bytes.Buffer that a process writes while the demo
// may read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.stderr, "demo: "+format+"\n", args...) }

func (d *demo) run(ctx context.Context) error {
	for _, name := range []string{"userrouter", "bench", "origin"} {
		if _, err := os.Stat(filepath.Join(d.o.bin, name)); err != nil {
			return fmt.Errorf("%s not found in %s: run `make demo` (or `make build`) first", name, d.o.bin)
		}
	}
	var err error
	if d.dir, err = os.MkdirTemp("", "userrouter-demo-"); err != nil {
		return err
	}
	originAddr, routerAddr, adminAddr, err := freeAddrs()
	if err != nil {
		return err
	}
	db := filepath.Join(d.dir, "db.sqlite3")

	origin, err := d.start(ctx, "origin", "-addr", originAddr, "-sqlite", db, "-render", d.o.render.String(),
		"-workers", fmt.Sprint(d.o.workers), "-size", "20480")
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, "http://"+originAddr+"/healthz", origin); err != nil {
		return err
	}
	cfg := filepath.Join(d.dir, "userrouter.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(config, routerAddr, adminAddr, originAddr, db)), 0o600); err != nil {
		return err
	}
	router, err := d.start(ctx, "userrouter", "-config", cfg)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, "http://"+adminAddr+"/readyz", router); err != nil {
		return err
	}
	d.say("origin on %s (SQLite sessions, %v per page, %d workers), userrouter on %s (memory store, same sessions)",
		originAddr, d.o.render, d.o.workers, routerAddr)
	d.say("loading each for %v after %v of warm-up, %d connections, %d pages (Zipf), %.0f%% signed in, %.0f%% anonymous with a session",
		d.o.duration, d.o.warmup, d.o.conns, d.o.pages, 100*d.o.identified, 100*d.o.anon)

	args := []string{
		"-compare", "http://" + originAddr + "/,http://" + routerAddr + "/", "-rounds", "1",
		"-names", "origin alone,behind userrouter",
		"-c", fmt.Sprint(d.o.conns), "-duration", d.o.duration.String(), "-warmup", d.o.warmup.String(),
		"-paths", fmt.Sprint(d.o.pages), "-zipf", "1.1",
		"-identified", fmt.Sprint(d.o.identified), "-anon-sessions", fmt.Sprint(d.o.anon),
		"-mint", "100", "-login-url", "http://" + originAddr + "/login", "-anon-url", "http://" + originAddr + "/cart",
		"-json",
	}
	if d.o.html != "" {
		args = append(args, "-html", d.o.html)
	}
	var out bytes.Buffer
	bench := exec.CommandContext(ctx, filepath.Join(d.o.bin, "bench"), args...)
	bench.Stdout, bench.Stderr = &out, d.stderr
	bench.Cancel = func() error { return bench.Process.Signal(syscall.SIGINT) } // bench stops and reports
	bench.WaitDelay = 5 * time.Second
	if err := bench.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("bench: %v", err)
	}
	var res result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res.Rounds) == 0 {
		return fmt.Errorf("bench printed no comparison (%v): %.300s", err, out.String())
	}
	d.table(res.Rounds[0].A, res.Rounds[0].B)
	if d.o.html != "" {
		abs, _ := filepath.Abs(d.o.html)
		fmt.Fprintf(d.stdout, "\nHTML report: %s (self-contained; open it in a browser)\n", abs)
	}
	return nil
}

// config is userrouter's config for the demo: the memory store, the
// origin's SQLite sessions, quiet logs.
const config = `# written by bench/demo
[listen]
addr = %q
admin_addr = %q
[backend]
addrs = [%q]
[session]
driver = "sqlite"
dsn = %q
[cache]
store = "memory"
memory_size = "256MiB"
[log]
level = "warn"
`

// start runs bin/name with args until the demo ends.
func (d *demo) start(ctx context.Context, name string, args ...string) (*process, error) {
	p := &process{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(d.o.bin, name), args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	d.procs = append(d.procs, p)
	go func() { p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// cleanup stops every process the demo started (SIGTERM, then SIGKILL
// after 5 s) and removes its files.
func (d *demo) cleanup() {
	for _, p := range d.procs {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	}
	for _, p := range d.procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
}

// waitHTTP waits up to 10 s for url to answer 200.
func waitHTTP(ctx context.Context, url string, p *process) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := getOK(ctx, url)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %s", p.name, strings.TrimSpace(p.out.String()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %s within 10s: %v\n%s", p.name, url, err, p.out.String())
		}
	}
}

// getOK GETs url, within a second, and wants status 200.
func getOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// freeAddrs returns three loopback addresses nothing listens on.
func freeAddrs() (string, string, string, error) {
	var addrs [3]string
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", "", err
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs[0], addrs[1], addrs[2], nil
}

// result is the part of bench's -compare JSON the demo prints.
type result struct {
	Rounds []struct {
		A runJSON `json:"a"`
		B runJSON `json:"b"`
	} `json:"rounds"`
}

type runJSON struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	DurationS         float64 `json:"duration_s"`
	Responses         uint64  `json:"responses"`
	Errors            uint64  `json:"errors"`
	Latency           struct {
		P50, P90, P99, P999, Max float64
	} `json:"latency_ms"`
	HitRatio     float64 `json:"hit_ratio"`
	CacheClasses map[string]struct {
		Count uint64 `json:"count"`
	} `json:"cache_classes"`
	Visitors map[string]struct {
		Requests uint64 `json:"requests"`
	} `json:"visitors"`
}

// table prints the origin alone and behind userrouter side by side.
func (d *demo) table(origin, router runJSON) {
	w := tabwriter.NewWriter(d.stdout, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(d.stdout)
	row := func(name, a, b, ratio string) { fmt.Fprintf(w, "%s\t%s\t%s\t%s\t\n", name, a, b, ratio) }
	row("", "origin alone", "behind userrouter", "")
	row("requests/s", fmt.Sprintf("%.0f", origin.RequestsPerSecond), fmt.Sprintf("%.0f", router.RequestsPerSecond),
		times(router.RequestsPerSecond, origin.RequestsPerSecond, " the throughput"))
	for _, l := range []struct {
		name string
		a, b float64
	}{
		{"latency p50", origin.Latency.P50, router.Latency.P50},
		{"latency p90", origin.Latency.P90, router.Latency.P90},
		{"latency p99", origin.Latency.P99, router.Latency.P99},
		{"latency p99.9", origin.Latency.P999, router.Latency.P999},
		{"latency max", origin.Latency.Max, router.Latency.Max},
	} {
		row(l.name, ms(l.a), ms(l.b), faster(l.a, l.b))
	}
	row("errors", fmt.Sprint(origin.Errors), fmt.Sprint(router.Errors), "")
	// The origin alone has no cache: no hit ratio, not 0%.
	row("served from the cache", "–", fmt.Sprintf("%.1f%%", 100*router.HitRatio), "")
	// Under userrouter the origin renders what was not a hit.
	renders := router.Responses - router.CacheClasses["hit"].Count
	perSecond := 0.0
	if router.DurationS > 0 {
		perSecond = float64(renders) / router.DurationS // the measured window, as requests/s
	}
	row("pages the origin rendered/s", fmt.Sprintf("%.0f", origin.RequestsPerSecond), fmt.Sprintf("%.0f", perSecond), "")
	w.Flush()
	fmt.Fprintf(d.stdout, "\nSame machine, same mix, one run each: %d connections for %v. Signed-in visitors always reach the\n"+
		"origin; anonymous ones, with a session or not, are served from userrouter's cache once a page is in it.\n", d.o.conns, d.o.duration)
}

func ms(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// times says a/b as a factor followed by what: "12.3× the throughput".
func times(a, b float64, what string) string {
	if b <= 0 || a <= 0 {
		return "–"
	}
	return factor(a/b) + what
}

// faster says how the latency after compares with before: "25× faster",
// "1.20× slower".
func faster(before, after float64) string {
	switch {
	case before <= 0 || after <= 0:
		return "–"
	case after < before:
		return factor(before/after) + " faster"
	case after > before:
		return factor(after/before) + " slower"
	}
	return "the same"
}

// factor formats x with the digits that matter: 1.25×, 12.5×, 125×.
func factor(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f×", x)
	case x >= 10:
		return fmt.Sprintf("%.1f×", x)
	}
	return fmt.Sprintf("%.2f×", x)
}
