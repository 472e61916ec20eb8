package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// TestDjangoEndToEnd runs the contrib/django test project under gunicorn
// behind a real userrouter and memcached, and checks the coherence story:
// pages are cached, and a change made through Django's ORM in another
// process (manage.py shell) purges, through userrouter's admin API, exactly
// what it must, so that the next request is fresh: an edited article, a new
// one in a list, a newly tagged one in a list that was empty, a deleted one.
func TestDjangoEndToEnd(t *testing.T) {
	bin := binary(t) // first: it skips in -short mode
	python := sessiontest.Env(t, "USERROUTER_TEST_PYTHON")
	gunicorn := sessiontest.Env(t, "USERROUTER_TEST_GUNICORN")
	memcached := sessiontest.Env(t, "USERROUTER_TEST_MEMCACHED")

	// Everything below shares one deadline, well under a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)

	dir := t.TempDir()
	repo, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	contrib := filepath.Join(repo, "contrib", "django")
	project := filepath.Join(contrib, "testproject")

	listen, admin, backend := freeAddr(t), freeAddr(t), freeAddr(t)
	env := append(os.Environ(),
		"PYTHONPATH="+contrib+string(os.PathListSeparator)+project,
		"PYTHONDONTWRITEBYTECODE=1", // keep the source tree clean
		"DJANGO_SETTINGS_MODULE=testproject.settings",
		"TESTPROJECT_DB="+filepath.Join(dir, "db.sqlite3"),
		"USERROUTER_PURGE_URL=http://"+admin+"/purge",
		"USERROUTER_PURGE_LOG_LEVEL=DEBUG", // each purge logs userrouter's answer
	)
	// manage runs `manage.py shell -c code` and returns its standard
	// output. With purge, every purge it sends must be answered by
	// userrouter; without, USERROUTER_PURGE_URL is unset.
	manage := func(code string, purge bool) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, python, "manage.py", "shell", "-c", code)
		cmd.Dir, cmd.Env = project, env
		if !purge {
			cmd.Env = append(env[:len(env):len(env)], "USERROUTER_PURGE_URL=")
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("manage.py shell -c %q: %v\n%s%s", code, err, stdout.String(), stderr.String())
		}
		logs := stderr.String()
		if purge && (!strings.Contains(logs, `userrouter answered {"urls":0,"keys":`) ||
			strings.Contains(logs, "failed") || strings.Contains(logs, "refused")) {
			t.Fatalf("manage.py shell -c %q: a purge did not reach userrouter:\n%s", code, logs)
		}
		return stdout.String()
	}

	// A fresh database with three articles and an unused tag. userrouter is
	// not running yet, so this one purges nothing.
	ids := strings.Fields(manage(`
from django.core.management import call_command
call_command("migrate", verbosity=0)
from blog.models import Article, Tag
Tag.objects.create(name="go")
for title in ["First article", "Second article", "Third article"]:
    print(Article.objects.create(title=title, body="About " + title).pk)
`, false))
	if len(ids) != 3 {
		t.Fatalf("seeding printed %q; want three article ids", ids)
	}

	djangoStart(t, dir, "gunicorn", project, env, gunicorn,
		"--bind", backend, "--workers", "2", "--graceful-timeout", "2",
		"--access-logfile", "-", "testproject.wsgi")

	cfg := filepath.Join(dir, "userrouter.toml")
	prefix := fmt.Sprintf("dj%d:", rand.Uint32())
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[listen]
addr = %q
admin_addr = %q
[backend]
addrs = [%q]
[cache]
store = "memcached"
servers = [%q]
prefix = %q
key = "%spage:{host}{uri}"
default_ttl = "1h"
[log]
level = "debug"
`, listen, admin, backend, memcached, prefix, prefix)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, bin, "-check", "-config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("userrouter -check: %v\n%s", err, out)
	}
	djangoStart(t, dir, "userrouter", dir, nil, bin, "-config", cfg)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	t.Cleanup(client.CloseIdleConnections)
	djangoWaitFor(ctx, t, client, "http://"+admin+"/healthz")
	djangoWaitFor(ctx, t, client, "http://"+backend+"/articles/")

	// The application tags its pages; userrouter keeps the tags to itself.
	if _, _, h := djangoGet(t, client, "http://"+backend+"/articles/"); !strings.Contains(" "+h.Get("Surrogate-Key")+" ", " blog.article ") {
		t.Fatalf("gunicorn answered /articles/ with Surrogate-Key %q; want blog.article among them", h.Get("Surrogate-Key"))
	}
	base := "http://" + listen
	// page GETs a page through userrouter, checks its Cache-Status and
	// that no Surrogate-Key reached the client, and returns its body.
	page := func(path string, wantStatus int, wantHit bool) string {
		t.Helper()
		status, body, h := djangoGet(t, client, base+path)
		cs := h.Get("Cache-Status")
		if status != wantStatus {
			t.Fatalf("GET %s: status %d (Cache-Status %q); want %d\n%s", path, status, cs, wantStatus, body)
		}
		if hit := strings.HasPrefix(cs, "userrouter; hit"); hit != wantHit {
			t.Fatalf("GET %s: Cache-Status %q; want a hit: %v", path, cs, wantHit)
		}
		if !wantHit && cs != "userrouter; fwd=miss; stored" {
			t.Fatalf("GET %s: Cache-Status %q; want %q", path, cs, "userrouter; fwd=miss; stored")
		}
		for _, name := range []string{"Surrogate-Key", "xkey", "Cache-Tag"} {
			if v := h.Values(name); len(v) > 0 {
				t.Fatalf("GET %s: the client got %s: %q; userrouter must strip it", path, name, v)
			}
		}
		return body
	}
	contains := func(path, body string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Fatalf("GET %s lacks %q:\n%s", path, w, body)
			}
		}
	}
	lacks := func(path, body string, unwanted ...string) {
		t.Helper()
		for _, w := range unwanted {
			if strings.Contains(body, w) {
				t.Fatalf("GET %s still shows %q:\n%s", path, w, body)
			}
		}
	}

	list, first, second, tag := "/articles/", "/articles/"+ids[0]+"/", "/articles/"+ids[1]+"/", "/tags/go/"
	for _, p := range []string{list, first, second, tag} {
		page(p, 200, false)
		page(p, 200, true)
	}
	contains(list, page(list, 200, true), "First article", "Second article", "Third article")
	contains(tag, page(tag, 200, true), "No articles yet")

	t.Log("edit an article: its page and the list are fresh at the next request")
	manage(`from blog.models import Article
a = Article.objects.get(pk=`+ids[0]+`)
a.title = "Edited title"
a.save()`, true)
	contains(first, page(first, 200, false), "Edited title")
	body := page(list, 200, false)
	contains(list, body, "Edited title", "Second article")
	lacks(list, body, "First article")
	page(list, 200, true)

	t.Log("create an article: the list shows it")
	newID := strings.TrimSpace(manage(`from blog.models import Article
print(Article.objects.create(title="Brand new article").pk)`, true))
	contains(list, page(list, 200, false), "Brand new article", "Edited title")
	page(list, 200, true)

	t.Log("tag it: the tag's list, cached empty, shows it")
	manage(`from blog.models import Article, Tag
Article.objects.get(pk=`+newID+`).tags.add(Tag.objects.get(name="go"))`, true)
	body = page(tag, 200, false)
	contains(tag, body, "Brand new article")
	lacks(tag, body, "No articles yet")

	t.Log("delete an article: the list no longer shows it, its page is gone")
	manage(`from blog.models import Article
Article.objects.get(pk=`+ids[1]+`).delete()`, true)
	body = page(list, 200, false)
	lacks(list, body, "Second article")
	contains(list, body, "Brand new article", "Third article")
	page(second, 404, false)
	page(second, 404, true)
}

// djangoStart runs a server in its own process group, its output in dir/name.log,
// and stops the whole group when the test ends: SIGTERM, then SIGKILL after
// 3s. The log is shown when the test failed.
func djangoStart(t *testing.T, dir, name, wd string, env []string, prog string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prog, args...)
	cmd.Dir, cmd.Env = wd, env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		syscall.Kill(-pgid, syscall.SIGKILL) // workers left behind, if any
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				if len(b) > 8000 {
					b = b[len(b)-8000:]
				}
				t.Logf("%s log (end):\n%s", name, b)
			}
		}
	})
}

// djangoWaitFor polls url until it answers 200, or fails the test at the deadline.
func djangoWaitFor(ctx context.Context, t *testing.T, client *http.Client, url string) {
	t.Helper()
	deadline, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(deadline, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(resp.Status)
		}
		last = err
		select {
		case <-deadline.Done():
			t.Fatalf("%s did not answer 200 within 20s: %v", url, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func djangoGet(t *testing.T, client *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header
}
