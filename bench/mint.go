package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"net"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// mintConcurrency bounds the minting requests in flight at once.
const mintConcurrency = 8

// mintCookies POSTs n times to rawURL (with the -H headers and an empty
// form body) and collects the value of the cookieName cookie each answer
// sets. It returns the distinct values in the order they came. It fails on
// the first request that gets no answer or an answer without that cookie,
// naming flag, so the user knows which URL to fix. Each request is bounded
// by timeout; ctx stops the minting early.
func mintCookies(ctx context.Context, flag, rawURL string, n int, cookieName string, headers []header, timeout time.Duration) ([]string, error) {
	pool := newClientPool(mintConcurrency, timeout)
	client := pool.client(rawURL)
	defer pool.closeIdle()

	return mintDistinct(ctx, flag, n, "cookies", func() (func() (string, error), func()) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		prepareRequest(req, &runSpec{method: fasthttp.MethodPost, headers: headers})
		req.Header.SetContentType("application/x-www-form-urlencoded")
		req.SetRequestURI(rawURL)
		c := fasthttp.AcquireCookie()
		mint := func() (string, error) {
			if err := exchange(client, req, resp, timeout); err != nil {
				return "", fmt.Errorf("%s %s: %s", flag, rawURL, explainError(err, timeout))
			}
			c.Reset()
			c.SetKey(cookieName)
			if !resp.Header.Cookie(c) || len(c.Value()) == 0 {
				return "", fmt.Errorf("%s %s: the answer (status %d) set no %q cookie; check the URL, and -cookie-name if the application names its session cookie differently",
					flag, rawURL, resp.StatusCode(), cookieName)
			}
			return string(c.Value()), nil
		}
		return mint, func() {
			fasthttp.ReleaseCookie(c)
			fasthttp.ReleaseRequest(req)
			fasthttp.ReleaseResponse(resp)
		}
	})
}

// maxLoginPage bounds the login form page mintLogins reads.
const maxLoginPage = 1 << 20

// mintLogins logs in n times through the HTML form at rawURL as a browser
// does, and collects the distinct values of the cookieName cookie the
// logins set. Each login GETs the form page, keeps the cookies it sets
// (Django's csrftoken) and the hidden fields of the form holding a password
// field (Django's csrfmiddlewaretoken), then POSTs them with fields (the
// credentials, which win over a hidden field of the same name) to the
// form's action, with the cookies, Referer and Origin, and takes the session
// cookie from the answer, without following its redirect. Each login starts
// with no cookie, so each gets a session of its own. Errors name flag.
func mintLogins(ctx context.Context, flag, rawURL string, n int, cookieName string, fields url.Values, headers []header, timeout time.Duration) ([]string, error) {
	base, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v", flag, rawURL, err)
	}
	port := base.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[base.Scheme]
	}
	client := &fasthttp.HostClient{
		Addr:                      net.JoinHostPort(base.Hostname(), port),
		IsTLS:                     base.Scheme == "https",
		MaxConns:                  mintConcurrency,
		MaxConnWaitTimeout:        timeout,
		MaxIdemponentCallAttempts: 1,
		NoDefaultUserAgentHeader:  true,
		ReadTimeout:               timeout,
		WriteTimeout:              timeout,
		MaxResponseBodySize:       maxLoginPage,
	}
	if client.IsTLS {
		client.TLSConfig = &tls.Config{ServerName: base.Hostname()}
	}
	defer client.CloseIdleConnections()

	return mintDistinct(ctx, flag, n, "logins", func() (func() (string, error), func()) {
		return func() (string, error) {
			v, err := login(client, base, cookieName, fields, headers, timeout)
			if err != nil {
				return "", fmt.Errorf("%s %s: %w", flag, rawURL, err)
			}
			return v, nil
		}, func() {}
	})
}

// login is one browser-like login through the form at page; it returns
// the session cookie's value.
func login(client *fasthttp.HostClient, page *url.URL, cookieName string, fields url.Values, headers []header, timeout time.Duration) (string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	prepareRequest(req, &runSpec{method: fasthttp.MethodGet, headers: headers})
	req.SetRequestURI(page.String())
	if err := client.DoTimeout(req, resp, timeout); err != nil {
		return "", fmt.Errorf("GET the login form: %s", explainError(err, timeout))
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return "", fmt.Errorf("GET the login form: status %d; want 200 and the page with the form", resp.StatusCode())
	}
	jar := map[string]string{}
	var order []string
	resp.Header.VisitAllCookie(func(key, value []byte) {
		c := fasthttp.AcquireCookie()
		defer fasthttp.ReleaseCookie(c)
		if c.ParseBytes(value) == nil && len(c.Value()) > 0 {
			if _, ok := jar[string(c.Key())]; !ok {
				order = append(order, string(c.Key()))
			}
			jar[string(c.Key())] = string(c.Value())
		}
	})
	action, hidden, ok := findLoginForm(string(resp.Body()))
	if !ok {
		return "", errors.New("the page has no <form> with a password field; -login-url must name the login form's page")
	}
	target, err := page.Parse(action)
	if err != nil || (target.Scheme != page.Scheme || target.Host != page.Host) {
		return "", fmt.Errorf("the form posts to %q, not to the login page's own host", action)
	}
	body := url.Values{}
	for name, vs := range hidden {
		if _, mine := fields[name]; !mine {
			body[name] = vs
		}
	}
	for name, vs := range fields {
		body[name] = vs
	}

	req.Reset()
	resp.Reset()
	prepareRequest(req, &runSpec{method: fasthttp.MethodPost, headers: headers})
	req.SetRequestURI(target.String())
	req.Header.SetContentType("application/x-www-form-urlencoded")
	req.Header.Set("Referer", page.String())
	req.Header.Set("Origin", page.Scheme+"://"+page.Host)
	for _, name := range order {
		req.Header.SetCookie(name, jar[name])
	}
	req.SetBodyString(body.Encode())
	if err := client.DoTimeout(req, resp, timeout); err != nil {
		return "", fmt.Errorf("POST the login form: %s", explainError(err, timeout))
	}
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(cookieName)
	if !resp.Header.Cookie(c) || len(c.Value()) == 0 {
		hint := "check -cookie-name"
		switch code := resp.StatusCode(); {
		case code == fasthttp.StatusOK:
			hint = "the form came back: check the credentials in -login-form"
		case code == fasthttp.StatusForbidden:
			hint = "refused: a CSRF check failed? (Django: CSRF_TRUSTED_ORIGINS, the Host bench sends)"
		}
		return "", fmt.Errorf("POST the login form: the answer (status %d) set no %q cookie; %s", resp.StatusCode(), cookieName, hint)
	}
	return string(c.Value()), nil
}

var (
	formTag  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form\s*>`)
	inputTag = regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	attr     = regexp.MustCompile(`(?is)([a-z_:][-a-z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>` + "`" + `]+))`)
)

// findLoginForm finds the first form in page with an <input type=password>
// and returns its action attribute ("" posts to the page itself) and its
// hidden fields. It reads HTML as browsers write it for a login form, not
// every HTML: enough for Django's and most frameworks' login pages.
func findLoginForm(page string) (action string, hidden url.Values, ok bool) {
	for _, form := range formTag.FindAllStringSubmatch(page, -1) {
		attrs := attributes(form[1])
		hidden = url.Values{}
		password := false
		for _, input := range inputTag.FindAllStringSubmatch(form[2], -1) {
			a := attributes(input[1])
			switch strings.ToLower(a["type"]) {
			case "password":
				password = true
			case "hidden":
				if a["name"] != "" {
					hidden.Add(a["name"], a["value"])
				}
			}
		}
		if password {
			return attrs["action"], hidden, true
		}
	}
	return "", nil, false
}

// attributes parses a tag's attributes, names lower-cased, values with
// their character references decoded.
func attributes(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attr.FindAllStringSubmatch(s, -1) {
		m[strings.ToLower(a[1])] = html.UnescapeString(a[2] + a[3] + a[4])
	}
	return m
}

// mintSessions mints cfg.mint session cookies at rawURL, named by flag:
// through the login form there when flag is -login-url and -login-form
// gives the credentials, else by POSTing to it (mintCookies).
func mintSessions(ctx context.Context, cfg *config, flag, rawURL string) ([]string, error) {
	if flag == "-login-url" && cfg.loginForm != nil {
		return mintLogins(ctx, flag, rawURL, cfg.mint, cfg.cookieName, cfg.loginForm, cfg.headers, cfg.timeout)
	}
	return mintCookies(ctx, flag, rawURL, cfg.mint, cfg.cookieName, cfg.headers, cfg.timeout)
}

// mintDistinct mints n values on at most mintConcurrency goroutines and
// returns the distinct ones in the order they came. setup runs once a
// goroutine and returns its mint and what to release when it is done. The
// first error stops the minting and is returned; ctx stops it early, what
// ("cookies", "logins") naming the minted things in the message.
func mintDistinct(ctx context.Context, flag string, n int, what string, setup func() (mint func() (string, error), release func())) ([]string, error) {
	var (
		mu     sync.Mutex
		values []string
		seen   = map[string]bool{}
		first  error
		next   int
		wg     sync.WaitGroup
	)
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if first != nil || next >= n || ctx.Err() != nil {
			return false
		}
		next++
		return true
	}
	for range min(n, mintConcurrency) {
		wg.Go(func() {
			mint, release := setup()
			defer release()
			for take() {
				v, err := mint()
				mu.Lock()
				switch {
				case err != nil && first == nil:
					first = err
				case err == nil && !seen[v]:
					seen[v] = true
					values = append(values, v)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: minting interrupted after %d %s", flag, len(values), what)
	}
	return values, nil
}
