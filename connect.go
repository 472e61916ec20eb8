package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/conf"
	"github.com/userrouter/userrouter/pagecache"
	"github.com/userrouter/userrouter/router"
	"github.com/userrouter/userrouter/sessioncheck"
)

// connectTimeout bounds each dependency check of -check -connect.
const connectTimeout = 3 * time.Second

// connectAll is -check -connect: it reaches every dependency the config
// names (each memcached server, the session store and the credential store
// with one lookup of a random key each, each backend through its probe or a connection) and writes
// one line per dependency to w. It reports whether all answered.
func connectAll(cfg *conf.Config, w io.Writer) bool {
	ok := true
	line := func(what string, start time.Time, err error) {
		ms := float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			ok = false
			fmt.Fprintf(w, "FAIL  %s: %v (%.1f ms)\n", what, err, ms)
			return
		}
		fmt.Fprintf(w, "ok    %s (%.1f ms)\n", what, ms)
	}
	if cfg.Cache.Store == "memcached" {
		for _, s := range cfg.Cache.Servers {
			start := time.Now()
			m, err := pagecache.NewMemcache(pagecache.MemcacheOptions{Servers: []string{s}, Timeout: connectTimeout})
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
				err = m.Ping(ctx)
				cancel()
				m.Close()
			}
			line("memcached "+s, start, err)
		}
	}
	if cfg.Session.Driver != "" {
		start := time.Now()
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		sessions, err := buildSessions(cfg.Session, quiet, router.NewMetrics(version), false, atReloadVerify)
		if err == nil {
			var b [16]byte
			rand.Read(b[:])
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
			_, err = sessions.Check(ctx, []byte(hex.EncodeToString(b[:])))
			cancel()
			if c, ok := sessions.(io.Closer); ok {
				c.Close()
			}
		}
		line("session store ("+cfg.Session.Driver+"), one lookup of a random key", start, err)
	}
	if cfg.Credentials.Enabled() {
		start := time.Now()
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		creds, closer, err := buildCredentials(cfg, quiet, router.NewMetrics(version), false, atReloadVerify)
		if err == nil {
			var b [20]byte
			rand.Read(b[:])
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
			_, err = creds.Checker.Check(ctx, sessioncheck.CredentialKey(nil, nil, []byte(hex.EncodeToString(b[:]))))
			cancel()
			closer.Close()
		}
		line("credential store ("+cmp.Or(cfg.Credentials.Driver, cfg.Session.Driver)+"), one lookup of a random key", start, err)
	}
	for _, a := range cfg.Backend.Addrs {
		start := time.Now()
		line("backend "+a+probeLabel(cfg.Backend.Probe), start, checkBackend(a, cfg.Backend))
	}
	return ok
}

func probeLabel(probe string) string {
	if probe == "" {
		return ", a connection"
	}
	return ", probe GET " + probe
}

// checkBackend connects to a backend, and asks its probe when one is set.
func checkBackend(addr string, b conf.Backend) error {
	network, address, err := router.SplitAddr(addr)
	if err != nil {
		return err
	}
	dial := func(string) (net.Conn, error) { return net.DialTimeout(network, address, connectTimeout) }
	if b.Probe == "" {
		c, err := dial("")
		if err != nil {
			return err
		}
		return c.Close()
	}
	hc := &fasthttp.HostClient{Addr: addr, Dial: dial}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(b.Probe)
	req.Header.SetHost(b.ProbeHost)
	if b.ProbeHost == "" {
		req.Header.SetHost(addr)
	}
	if err := hc.DoTimeout(req, resp, connectTimeout); err != nil {
		return err
	}
	if st := resp.StatusCode(); st < 200 || st > 399 {
		return fmt.Errorf("the probe answered %d", st)
	}
	return nil
}
