package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestAgreesWithWrk runs wrk and bench alternately against one in-test
// server whose answers take a fixed 10ms, so the server, not either load
// generator, sets the pace (the race detector slows bench, not wrk). Both
// must then report the same throughput within 10% and the same median
// latency within 20%. docs/bench.md describes the full check against
// nginx. It skips when wrk is not installed.
func TestAgreesWithWrk(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		if os.Getenv("USERROUTER_REQUIRE_INTEGRATION") != "" {
			t.Fatal("wrk is not installed; .ci/with-services installs it")
		}
		t.Skip("wrk is not installed (Debian: apt-get install wrk); `make test` installs it and runs the bench-vs-wrk agreement check")
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte("x"), 2048)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		time.Sleep(10 * time.Millisecond)
		ctx.SetBody(page)
	}}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown() })
	url := "http://" + l.Addr().String() + "/"

	const conns, seconds, rounds = 16, 2, 3 // the median of 3 drops one round a busy machine disturbed
	var wrkRPS, wrkP50, benchRPS, benchP50 []float64
	for range rounds {
		rps, p50 := runWrk(t, wrk, url, conns, seconds)
		wrkRPS, wrkP50 = append(wrkRPS, rps), append(wrkP50, p50)

		r := measure(t, "-url", url, "-c", fmt.Sprint(conns), "-duration", fmt.Sprint(seconds, "s"), "-warmup", "0")
		benchRPS, benchP50 = append(benchRPS, r.rps()), append(benchP50, latencyOf(r.hist).P50)
	}
	t.Logf("wrk:   req/s %.0f, p50 %.2fms", wrkRPS, wrkP50)
	t.Logf("bench: req/s %.0f, p50 %.2fms", benchRPS, benchP50)

	wr, br := median(wrkRPS), median(benchRPS)
	if ratio := br / wr; ratio < 0.9 || ratio > 1.1 {
		t.Errorf("bench measured %.0f req/s, wrk %.0f (ratio %.3f); want agreement within 10%%", br, wr, ratio)
	}
	wp, bp := median(wrkP50), median(benchP50)
	if ratio := bp / wp; ratio < 0.8 || ratio > 1.2 {
		t.Errorf("bench measured p50 %.2fms, wrk %.2fms (ratio %.3f); want agreement within 20%%", bp, wp, ratio)
	}
}

// runWrk runs wrk against url and returns its requests per second and its
// median latency in milliseconds.
func runWrk(t *testing.T, wrk, url string, conns, seconds int) (rps, p50 float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+10)*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, wrk, "-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", seconds), "--latency", url).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	rps, p50, err = parseWrk(string(out))
	if err != nil {
		t.Fatalf("%v in wrk's output:\n%s", err, out)
	}
	return rps, p50
}

var (
	wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP50 = regexp.MustCompile(`\n\s+50%\s+([0-9.]+)(us|ms|s)\b`)
)

// parseWrk reads requests per second and the median latency (ms) from
// the output of wrk --latency.
func parseWrk(out string) (rps, p50 float64, err error) {
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no Requests/sec line")
	}
	rps, _ = strconv.ParseFloat(m[1], 64)
	m = wrkP50.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no 50%% latency line (was --latency given?)")
	}
	p50, _ = strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "us":
		p50 /= 1000
	case "s":
		p50 *= 1000
	}
	return rps, p50, nil
}

func TestParseWrk(t *testing.T) {
	out := `Running 2s test @ http://127.0.0.1:40000/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.13ms  120.05us   4.01ms   90.12%
    Req/Sec     1.88k    50.11     1.95k    80.00%
  Latency Distribution
     50%    2.10ms
     75%    2.16ms
     90%  850.00us
     99%    1.20s
  7511 requests in 2.00s, 15.53MB read
Requests/sec:   3751.47
Transfer/sec:      7.76MB
`
	rps, p50, err := parseWrk(out)
	if err != nil || rps != 3751.47 || p50 != 2.10 {
		t.Errorf("parseWrk = %v, %v, %v; want 3751.47, 2.1, nil", rps, p50, err)
	}
	if _, _, err := parseWrk("Requests/sec: 12\n"); err == nil {
		t.Errorf("parseWrk without a latency distribution: got no error; want one")
	}
}
