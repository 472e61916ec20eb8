// Command bench is userrouter's load-test tool: it loads an HTTP target in
// a closed loop (N connections, each sending its next request when the
// previous answer arrived, like wrk) or an open loop (a fixed arrival rate,
// latency counted from each request's scheduled time, so a stalled target
// shows up as latency), with a mix of URLs and session cookies, and reports
// throughput, latency percentiles, errors, status codes and the RFC 9211
// Cache-Status breakdown as a table, JSON or an HTML page. With -compare it
// runs two targets alternately and reports the median ratio B/A.
//
// See docs/bench.md, or run bench -h.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"syscall"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // the run failed: unreachable target, minting failed, rate not sustained, ...
	exitUsage  = 2 // bad flags or files; nothing was sent
)

// prefix starts every line bench writes to stderr.
const prefix = "bench: "

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second signal kills at once
	status := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr, defaultProcs())
	stop()
	os.Exit(status)
}

// run is bench with command-line arguments args (without the program
// name): it writes the report to stdout and diagnostics to stderr and
// returns the exit status. It never calls os.Exit, so tests can drive it.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr, 0)
}

// defaultProcs is the command's GOMAXPROCS when -procs is not given: half
// the CPUs, at least 1, so that a target on the same machine keeps the
// other half (Go's scheduler spends CPU looking for work on idle threads,
// which a target sharing the machine would rather have). A GOMAXPROCS
// environment variable wins. It returns 0 to leave GOMAXPROCS alone.
func defaultProcs() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0
	}
	return max(1, runtime.NumCPU()/2)
}

// runContext is run, stopping the load early (and reporting what was
// measured) when ctx is done. Without -procs it sets GOMAXPROCS to
// autoProcs, or leaves it alone when autoProcs is 0 (as run does, so that
// tests keep their own).
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer, autoProcs int) int {
	cfg, err := parseConfig(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usageText)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s%v\nrun 'bench -h' for the flags\n", prefix, err)
		return exitUsage
	}
	specs, err := buildSpecs(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s%v\n", prefix, err)
		return exitUsage
	}
	if procs := cmp.Or(cfg.procs, autoProcs); procs > 0 {
		runtime.GOMAXPROCS(procs)
	}
	for _, s := range specs {
		if err := preflight(s); err != nil {
			fmt.Fprintf(stderr, "%s%v\n", prefix, err)
			return exitFailed
		}
	}
	if err := mintAll(ctx, cfg, specs); err != nil {
		fmt.Fprintf(stderr, "%s%v\n", prefix, err)
		return exitFailed
	}

	var progress io.Writer
	if isTerminal(stderr) {
		progress = stderr
	}
	if cfg.compare[0] != "" {
		return runCompare(ctx, cfg, specs, stdout, stderr, progress)
	}
	spec := specs[0]
	if progress != nil {
		fmt.Fprintf(progress, "%s%s against %s\n", prefix, spec.describeLoad(), describeTargets(spec.urls))
	}
	r := execute(ctx, spec, progress)

	status := exitOK
	msgs, failed := r.warnings()
	if failed {
		status = exitFailed
	}
	return emit(cfg, stdout, stderr, status, msgs, func() any { return r.toJSON() }, r.writeText, func() *htmlPage { return htmlRun(r) })
}

// emit writes a report: JSON or text on stdout, then the warnings on
// stderr, then the HTML file when -html asks for one. It returns status,
// or exitFailed when a write failed.
func emit(cfg *config, stdout, stderr io.Writer, status int, msgs []string, asJSON func() any, text func(io.Writer), page func() *htmlPage) int {
	if cfg.json {
		if err := writeJSON(stdout, asJSON()); err != nil {
			fmt.Fprintf(stderr, "%swriting the report: %v\n", prefix, err)
			status = exitFailed
		}
	} else {
		text(stdout)
	}
	for _, m := range msgs {
		fmt.Fprintf(stderr, "%s%s\n", prefix, m)
	}
	if cfg.htmlFile != "" {
		if err := writeHTMLFile(cfg.htmlFile, page()); err != nil {
			fmt.Fprintf(stderr, "%s-html %s: %v\n", prefix, cfg.htmlFile, err)
			status = exitFailed
		}
	}
	return status
}

// buildSpecs turns cfg into the runs to do: one, or A and B for -compare.
// It reads the -urls and key files; its errors are usage errors.
func buildSpecs(cfg *config) ([]*runSpec, error) {
	refs, err := targetRefs(cfg)
	if err != nil {
		return nil, err
	}
	var identified, anon []string
	if cfg.identified > 0 && cfg.identifiedKeys != "" {
		if identified, err = readCookieValues("-identified-keys", cfg.identifiedKeys); err != nil {
			return nil, err
		}
	}
	if cfg.anonSessions > 0 && cfg.anonKeys != "" {
		if anon, err = readCookieValues("-anon-keys", cfg.anonKeys); err != nil {
			return nil, err
		}
	}
	var tokens []string
	var tokenHeader header
	if cfg.tokens != "" {
		if tokenHeader, tokens, err = readTokens(cfg); err != nil {
			return nil, err
		}
	}
	bases := []string{cfg.url}
	labels := []string{""}
	if cfg.compare[0] != "" {
		bases, labels = cfg.compare[:], cfg.names[:]
	}
	var specs []*runSpec
	for i, base := range bases {
		urls, err := resolveTargets(base, refs, cfg.compare[0] != "")
		if err != nil {
			return nil, err
		}
		targets, endpoints := makeTargets(urls, cfg.method, cfg.headers)
		specs = append(specs, &runSpec{
			label:        labels[i],
			urls:         urls,
			targets:      targets,
			endpoints:    endpoints,
			conns:        cfg.conns,
			rate:         cfg.rate,
			duration:     cfg.duration,
			requests:     cfg.requests,
			warmup:       cfg.warmup,
			timeout:      cfg.timeout,
			method:       cfg.method,
			headers:      cfg.headers,
			zipf:         cfg.zipf,
			pid:          cfg.pid,
			netpoll:      cfg.netpoll,
			cookieName:   cfg.cookieName,
			identified:   identified,
			anon:         anon,
			pIdentified:  cfg.identified,
			pAnonSession: cfg.anonSessions,
			tokens:       tokens,
			tokenHeader:  tokenHeader,
		})
	}
	return specs, nil
}

// mintAll mints the cookies -mint asks for and adds them to every spec's
// lists (after those read from files).
func mintAll(ctx context.Context, cfg *config, specs []*runSpec) error {
	if cfg.mint == 0 {
		return nil
	}
	for _, m := range []struct {
		flag, url string
		add       func(s *runSpec, v []string)
	}{
		{"-login-url", cfg.loginURL, func(s *runSpec, v []string) { s.identified = slices.Concat(s.identified, v) }},
		{"-anon-url", cfg.anonURL, func(s *runSpec, v []string) { s.anon = slices.Concat(s.anon, v) }},
	} {
		if m.url == "" {
			continue
		}
		values, err := mintSessions(ctx, cfg, m.flag, m.url)
		if err != nil {
			return err
		}
		for _, s := range specs {
			m.add(s, values)
		}
	}
	return nil
}
