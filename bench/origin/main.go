// Command origin is a stand-in web application for benchmarks, the demo
// and tests: it renders pages of a configurable size after a configurable
// delay.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen `address`")
	size := flag.Int("size", 20<<10, "page size in `bytes`")
	render := flag.Duration("render", 0, "time to render a page")
	flag.Parse()

	page := bytes.Repeat([]byte("<p>userrouter origin page.</p>\n"), *size/31+1)[:*size]
	h := func(ctx *fasthttp.RequestCtx) {
		if *render > 0 {
			time.Sleep(*render)
		}
		ctx.SetContentType("text/html; charset=utf-8")
		if n, _ := ctx.QueryArgs().GetUint("tags"); n > 0 {
			tags := make([]string, n)
			for i := range tags {
				tags[i] = fmt.Sprintf("tag-%d", i)
			}
			ctx.Response.Header.Set("Surrogate-Key", strings.Join(tags, " "))
		}
		ctx.SetBody(page)
	}
	fmt.Printf("origin on %s, %d-byte pages\n", *addr, *size)
	log.Fatal((&fasthttp.Server{Handler: h, Name: "origin"}).ListenAndServe(*addr))
}
