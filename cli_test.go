package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOperatorSubcommands runs "userrouter inspect" and "userrouter purge"
// against a running userrouter (the built binary, memory store): what a
// URL holds before and after a fill and after purges by URL, by key, soft
// and all; that each purge is logged with what, how many and who; that a
// PURGE's outcome is in the access log; and that a wrong token is refused.
func TestOperatorSubcommands(t *testing.T) {
	bin := binary(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Surrogate-Key", "blog blog.post:42")
		w.Header().Set("X-Frame-Options", "DENY")
		fmt.Fprintf(w, "page %s at %d", r.URL.Path, time.Now().UnixNano())
	}))
	t.Cleanup(backend.Close)
	dir := t.TempDir()
	addr, admin := freeAddr(t), freeAddr(t)
	accessPath := filepath.Join(dir, "access.log")
	write := func(name, token string) string {
		path := filepath.Join(dir, name)
		cfg := fmt.Sprintf(`
[listen]
addr = %q
admin_addr = %q
[backend]
addrs = [%q]
[cache]
store = "memory"
hosts = ["example.com"]
grace = "1h"
[purge]
token = %q
[log]
access = "combined"
access_file = %q
`, addr, admin, strings.TrimPrefix(backend.URL, "http://"), token, accessPath)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfgPath := write("userrouter.toml", "s3cret")
	_, logs := startDaemon(t, bin, cfgPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("userrouter log:\n%s", logs.String())
		}
	})
	waitLog(t, logs, "userrouter started", 1)

	cli := func(cfg string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-config", cfg}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	get := func(path string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Host = "example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("Cache-Status")
	}
	const page = "http://example.com/blog/1"

	out, errOut, code := cli(cfgPath, "inspect", page)
	if code != 0 || !strings.Contains(out, "state        absent") {
		t.Fatalf("inspect before a fill: exit %d\n%s%s", code, out, errOut)
	}
	get("/blog/1")
	if s := get("/blog/1"); s != "userrouter; hit" {
		t.Fatalf("second GET: %q", s)
	}
	out, errOut, code = cli(cfgPath, "inspect", page)
	for _, want := range []string{"state        fresh", "status       200", "ttl left     4m", "grace left   1h4", "tag          blog.post:42: recorded", "  X-Frame-Options: DENY", "key          page:example.com/blog/1|n", "generations  namespace"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("inspect after a fill: no %q (exit %d)\n%s%s", want, code, out, errOut)
		}
	}
	out, _, _ = cli(cfgPath, "inspect", "-json", page)
	var ins struct {
		State   string
		Size    int
		Headers [][2]string
	}
	if err := json.Unmarshal([]byte(out), &ins); err != nil || ins.State != "fresh" || ins.Size == 0 || len(ins.Headers) == 0 {
		t.Errorf("inspect -json: %v %+v\n%s", err, ins, out)
	}

	// Purges, each logged with what, how many and who.
	for _, tc := range []struct {
		args  []string
		out   string
		state string
		log   string
	}{
		{[]string{"purge", "-soft", page}, "soft-purged (stale until refreshed) 1 URL(s)", "stale", `via=admin client=127.0.0.1 allow=127.0.0.0/8 token=sha256:`},
		{[]string{"purge", "-key", "blog.post:42"}, "purged 1 key(s)", "absent", `urls=0 keys=1 all=false soft=false what=key:blog.post:42`},
		{[]string{"purge", "-all"}, "purged everything", "absent", `urls=0 keys=0 all=true soft=false what=all`},
	} {
		get("/blog/1")
		get("/blog/1")
		before := strings.Count(logs.String(), "msg=purged")
		out, errOut, code := cli(cfgPath, tc.args...)
		if code != 0 || strings.TrimSpace(out) != tc.out {
			t.Errorf("%v: exit %d %q %q; want %q", tc.args, code, out, errOut, tc.out)
		}
		waitLog(t, logs, "msg=purged", before+1)
		if !strings.Contains(logs.String(), tc.log) {
			t.Errorf("%v: no %q in the log", tc.args, tc.log)
		}
		if out, _, _ := cli(cfgPath, "inspect", page); !strings.Contains(out, "state        "+tc.state) {
			t.Errorf("after %v: want state %s\n%s", tc.args, tc.state, out)
		}
	}
	if !strings.Contains(logs.String(), `what=url:http://example.com/blog/1`) {
		t.Errorf("no purged URL in the log")
	}

	// PURGE on the main listener: its outcome in the access log.
	req, _ := http.NewRequest("PURGE", "http://"+addr+"/blog/1", nil)
	req.Host = "example.com"
	req.Header.Set("Authorization", "Bearer s3cret")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PURGE: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ = http.NewRequest("PURGE", "http://"+addr+"/blog/1", nil)
	req.Host = "example.com"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("PURGE without the token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(accessPath)
		if strings.Contains(string(b), `"PURGE /blog/1 HTTP/1.1" 200`) && strings.Contains(string(b), `cache="purge; urls=1; keys=0"`) &&
			strings.Contains(string(b), `"PURGE /blog/1 HTTP/1.1" 403`) && strings.Contains(string(b), `cache="purge; refused"`) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("access log without the PURGE outcomes:\n%s", b)
		}
	}

	// A wrong token is refused, and says so.
	wrong := write("wrong.toml", "not-the-token")
	if _, errOut, code := cli(wrong, "purge", page); code != 1 || !strings.Contains(errOut, "missing or wrong bearer token") {
		t.Errorf("wrong token: exit %d %q", code, errOut)
	}
	if _, errOut, code := cli(wrong, "inspect", page); code != 1 || !strings.Contains(errOut, "missing or wrong bearer token") {
		t.Errorf("inspect with a wrong token: exit %d %q", code, errOut)
	}
	if _, _, code := cli(cfgPath, "purge"); code != 2 {
		t.Errorf("purge without arguments: exit %d; want 2", code)
	}
}
