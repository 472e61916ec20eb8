package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDemo builds the four programs as `make demo` does and runs a short
// demo: the table comes out, userrouter beats the origin alone, the HTML
// report is written, and nothing is left running or on disk.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the demo")
	}
	bin := t.TempDir()
	for pkg, name := range map[string]string{"../..": "userrouter", "..": "bench", "../origin": "origin", ".": "demo"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "userrouter-demo-*"))
	report := filepath.Join(t.TempDir(), "report.html")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "demo"), "-duration", "2s", "-warmup", "500ms", "-c", "16", "-html", report)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	m := regexp.MustCompile(`requests/s\s+(\d+)\s+(\d+)\s+([0-9.]+)× the throughput`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no requests/s row:\n%s", out)
	}
	if ratio, _ := strconv.ParseFloat(m[3], 64); ratio <= 1 {
		t.Errorf("userrouter did not beat the origin alone:\n%s", out)
	}
	for _, want := range []string{"served from the cache", "latency p99", "× faster", "HTML report: " + report} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	html, err := os.ReadFile(report)
	if err != nil || !bytes.Contains(html, []byte("<svg")) {
		t.Errorf("the HTML report is missing or has no chart: %v", err)
	}
	// The report names its runs, and the origin alone has no hit ratio.
	for _, want := range []string{"<h1>behind userrouter against origin alone</h1>", "origin alone round 1", "behind userrouter round 1", "<td class=\"n\">–</td>"} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "userrouter-demo-*"))
	if len(after) > len(before) {
		t.Errorf("the demo left its directory behind: %v", after)
	}
	if out, _ := exec.Command("pgrep", "-f", bin).Output(); len(out) > 0 {
		t.Errorf("the demo left processes running: %s", out)
	}
}

func TestDemoBadArguments(t *testing.T) {
	var out bytes.Buffer
	for _, args := range [][]string{{"-duration", "0"}, {"-identified", "0.7", "-anon-sessions", "0.7"}, {"-c", "0"}, {"extra"}} {
		if code := run(args, &out, &out); code != 2 {
			t.Errorf("%v: exit %d; want 2", args, code)
		}
	}
	out.Reset()
	if code := run([]string{"-bin", t.TempDir()}, &out, &out); code != 1 || !strings.Contains(out.String(), "make demo") {
		t.Errorf("without the programs: exit %d, %q; want 1 and a hint", code, out.String())
	}
}
