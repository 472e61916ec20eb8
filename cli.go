package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/userrouter/userrouter/conf"
	"github.com/userrouter/userrouter/router"
)

// defaultConfig is the config the subcommands read without -config: the
// one contrib/systemd's unit runs.
const defaultConfig = "/etc/userrouter/userrouter.toml"

// cliTimeout bounds one subcommand's request to the admin listener.
const cliTimeout = 10 * time.Second

// isSubcommand reports whether args (after the flags) name an operator
// subcommand.
func isSubcommand(args []string) bool {
	return len(args) > 0 && (args[0] == "inspect" || args[0] == "purge")
}

// subcommand runs "inspect URL" or "purge URL... | -key TAG... | -all
// [-soft]" against the running userrouter's admin listener (listen.admin_addr
// of the config at path), with purge.token as the bearer token. Exit codes:
// 0 done, 1 refused or failed, 2 usage.
func subcommand(path string, args []string, stdout, stderr io.Writer) int {
	if path == "" {
		path = defaultConfig
	}
	name, args := args[0], args[1:]
	fs := flag.NewFlagSet("userrouter "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the admin API's JSON answer as it is")
	var keys, all, soft *bool
	if name == "purge" {
		keys = fs.Bool("key", false, "the arguments are surrogate keys (tags), not URLs")
		all = fs.Bool("all", false, "purge every page (not soft)")
		soft = fs.Bool("soft", false, "make the pages stale (served while refreshed) instead of gone")
		fs.Usage = func() {
			fmt.Fprintln(stderr, "usage: userrouter [-config FILE] purge [-soft] URL... | -key [-soft] TAG... | -all")
			fs.PrintDefaults()
		}
	} else {
		fs.Usage = func() {
			fmt.Fprintln(stderr, "usage: userrouter [-config FILE] inspect [-json] URL")
			fs.PrintDefaults()
		}
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := conf.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	c, err := newAdminClient(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "userrouter:", err)
		return 1
	}
	switch {
	case name == "inspect" && fs.NArg() == 1:
		return c.inspect(fs.Arg(0), *asJSON, stdout, stderr)
	case name == "purge" && *all && fs.NArg() == 0 && !*keys && !*soft:
		return c.purge(router.PurgeRequest{All: true}, *asJSON, stdout, stderr)
	case name == "purge" && !*all && fs.NArg() > 0:
		req := router.PurgeRequest{Soft: *soft}
		if *keys {
			req.Keys = fs.Args()
		} else {
			req.URLs = fs.Args()
		}
		return c.purge(req, *asJSON, stdout, stderr)
	}
	fs.Usage()
	return 2
}

// adminClient talks to the admin listener of the config's userrouter.
type adminClient struct {
	base  string // "http://127.0.0.1:8091"
	token string
	http  *http.Client
}

func newAdminClient(cfg *conf.Config) (*adminClient, error) {
	a := cfg.Listen.AdminAddr
	if a == "" {
		return nil, fmt.Errorf("%s: listen.admin_addr is \"\": the admin listener is off, so there is no admin API to ask", cfg.File)
	}
	network, addr, err := router.SplitAddr(a)
	if err != nil {
		return nil, fmt.Errorf("%s: listen.admin_addr: %w", cfg.File, err)
	}
	base := "http://userrouter-admin"
	if network == "tcp" {
		// A wildcard address listens on loopback too.
		host, port, _ := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
			if ip != nil && ip.To4() == nil {
				host = "::1"
			}
		}
		addr = net.JoinHostPort(host, port)
		base = "http://" + addr
	}
	dial := &net.Dialer{Timeout: cliTimeout}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dial.DialContext(ctx, network, addr)
	}}
	return &adminClient{base: base, token: cfg.Purge.Token, http: &http.Client{Timeout: cliTimeout, Transport: tr}}, nil
}

// do sends a request to the admin API and returns the answer's status and
// body (at most 1 MiB).
func (c *adminClient) do(method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("the admin listener did not answer (is userrouter running?): %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

func (c *adminClient) inspect(u string, asJSON bool, stdout, stderr io.Writer) int {
	status, body, err := c.do("GET", "/inspect?url="+url.QueryEscape(u), nil)
	if err != nil {
		fmt.Fprintln(stderr, "userrouter:", err)
		return 1
	}
	var ins router.Inspection
	if err := json.Unmarshal(body, &ins); err != nil {
		fmt.Fprintf(stderr, "userrouter: the admin API answered %d, not an inspection: %.200s\n", status, body)
		return 1
	}
	if status != http.StatusOK {
		fmt.Fprintf(stderr, "userrouter: inspect %s: %s\n", u, ins.Error)
		return 1
	}
	if asJSON {
		stdout.Write(body)
		return 0
	}
	printInspection(stdout, &ins)
	return 0
}

// printInspection writes an inspection for people: one field a line.
func printInspection(w io.Writer, ins *router.Inspection) {
	line := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%-12s "+format+"\n", append([]any{name}, args...)...)
	}
	secs := func(f *float64) string {
		return (time.Duration(*f * float64(time.Second))).Round(time.Millisecond).String()
	}
	line("url", "%s", ins.URL)
	line("key", "%s", ins.Key)
	line("state", "%s", ins.State)
	if ins.Vary != "" {
		line("vary", "%s (each variant is stored under its own key)", ins.Vary)
	}
	if ins.StoredAt != nil {
		line("stored at", "%s", ins.StoredAt.Format(time.RFC3339))
		line("age", "%s", secs(ins.Age))
		line("ttl left", "%s", secs(ins.TTLLeft))
		line("grace left", "%s", secs(ins.GraceLeft))
	}
	if ins.Status != 0 {
		line("status", "%d", ins.Status)
	}
	if ins.State != "absent" {
		line("size", "%d bytes stored (body %d)", ins.Size, ins.BodySize)
	}
	if g := ins.Generations; g != nil {
		cur := func(p *uint64) string {
			if p == nil {
				return "missing"
			}
			return fmt.Sprint(*p)
		}
		line("generations", "namespace %d; url counter %s: current %s", g.Namespace, g.URLCounter, cur(g.URLCurrent))
		if g.URLRecorded != nil {
			line("", "recorded by the page: url %d", *g.URLRecorded)
		}
		for _, t := range ins.Tags {
			line("tag", "%s: recorded %d, current %s", t.Tag, t.Recorded, cur(t.Current))
		}
	}
	if len(ins.Headers) > 0 {
		fmt.Fprintln(w, "headers")
		for _, h := range ins.Headers {
			fmt.Fprintf(w, "  %s: %s\n", h[0], h[1])
		}
	}
}

func (c *adminClient) purge(req router.PurgeRequest, asJSON bool, stdout, stderr io.Writer) int {
	body, _ := json.Marshal(req)
	status, answer, err := c.do("POST", "/purge", body)
	if err != nil {
		fmt.Fprintln(stderr, "userrouter:", err)
		return 1
	}
	var res router.PurgeResult
	if err := json.Unmarshal(answer, &res); err != nil {
		fmt.Fprintf(stderr, "userrouter: the admin API answered %d, not a purge result: %.200s\n", status, answer)
		return 1
	}
	if status != http.StatusOK {
		fmt.Fprintf(stderr, "userrouter: purge: %s\n", res.Error)
		return 1
	}
	if asJSON {
		stdout.Write(answer)
		return 0
	}
	var what []string
	if res.URLs > 0 || len(req.URLs) > 0 {
		what = append(what, fmt.Sprintf("%d URL(s)", res.URLs))
	}
	if res.Keys > 0 || len(req.Keys) > 0 {
		what = append(what, fmt.Sprintf("%d key(s)", res.Keys))
	}
	if res.All {
		what = append(what, "everything")
	}
	how := "purged"
	if res.Soft {
		how = "soft-purged (stale until refreshed)"
	}
	fmt.Fprintf(stdout, "%s %s\n", how, strings.Join(what, " and "))
	return 0
}
