package main

import (
	"context"
	"fmt"
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
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	for range min(n, mintConcurrency) {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			prepareRequest(req, &runSpec{method: fasthttp.MethodPost, headers: headers})
			req.Header.SetContentType("application/x-www-form-urlencoded")
			req.SetRequestURI(rawURL)
			c := fasthttp.AcquireCookie()
			defer fasthttp.ReleaseCookie(c)
			for take() {
				if err := exchange(client, req, resp, timeout); err != nil {
					fail(fmt.Errorf("%s %s: %s", flag, rawURL, explainError(err, timeout)))
					return
				}
				c.Reset()
				c.SetKey(cookieName)
				if !resp.Header.Cookie(c) || len(c.Value()) == 0 {
					fail(fmt.Errorf("%s %s: the answer (status %d) set no %q cookie; check the URL, and -cookie-name if the application names its session cookie differently",
						flag, rawURL, resp.StatusCode(), cookieName))
					return
				}
				v := string(c.Value())
				mu.Lock()
				if !seen[v] {
					seen[v] = true
					values = append(values, v)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: minting interrupted after %d cookies", flag, len(values))
	}
	return values, nil
}
