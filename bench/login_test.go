package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// TestLoginFormDjango mints identified sessions through Django's own
// LoginView (contrib/django's testproject under gunicorn): bench GETs the
// form, sends back its csrftoken cookie and csrfmiddlewaretoken field with
// the credentials and a Referer, and collects the sessionid of each login.
// Django then says each minted session is the user's. Wrong credentials
// fail, naming the flag and what to check.
func TestLoginFormDjango(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Django")
	}
	python := sessiontest.Env(t, "USERROUTER_TEST_PYTHON")
	gunicorn := sessiontest.Env(t, "USERROUTER_TEST_GUNICORN")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	contrib := filepath.Join(repo, "contrib", "django")
	project := filepath.Join(contrib, "testproject")
	dir := t.TempDir()
	env := append(os.Environ(),
		"PYTHONPATH="+contrib+string(os.PathListSeparator)+project,
		"PYTHONDONTWRITEBYTECODE=1",
		"DJANGO_SETTINGS_MODULE=testproject.settings",
		"TESTPROJECT_DB="+filepath.Join(dir, "db.sqlite3"),
		"USERROUTER_PURGE_URL=",
	)
	shell := func(code string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, python, "manage.py", "shell", "-c", code)
		cmd.Dir, cmd.Env = project, env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("manage.py shell: %v\n%s%s", err, out, stderr.String())
		}
		return string(out)
	}
	uid := strings.TrimSpace(shell(`
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
print(User.objects.create_user("bench", password="s3cret pass&word").pk)
`))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logFile, err := os.Create(filepath.Join(dir, "gunicorn.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(gunicorn, "--bind", addr, "--workers", "2", "--graceful-timeout", "2", "testproject.wsgi")
	cmd.Dir, cmd.Env = project, env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("gunicorn log:\n%s", b)
		}
	}()
	loginURL := "http://" + addr + "/accounts/login/"
	for {
		resp, err := http.Get(loginURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("gunicorn did not serve %s: %v", loginURL, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	cfg, err := parseConfig([]string{"-url", "http://" + addr + "/articles/", "-identified", "1",
		"-mint", "6", "-login-url", loginURL, "-login-form", "username=bench&password=" + url.QueryEscape("s3cret pass&word")})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := mintSessions(ctx, cfg, "-login-url", loginURL)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 6 {
		t.Fatalf("minted %d distinct sessions %q; want 6", len(keys), keys)
	}
	// Django's word on each: the session is the user's.
	out := shell(fmt.Sprintf(`
from django.contrib.sessions.backends.db import SessionStore
for k in %q.split():
    print(SessionStore(session_key=k).get("_auth_user_id"))
`, strings.Join(keys, " ")))
	if got := strings.Fields(out); len(got) != 6 || slices.ContainsFunc(got, func(s string) bool { return s != uid }) {
		t.Errorf("Django reads the minted sessions' users as %q; want user %s six times", got, uid)
	}

	cfg.loginForm = url.Values{"username": {"bench"}, "password": {"wrong"}}
	if _, err := mintSessions(ctx, cfg, "-login-url", loginURL); err == nil ||
		!strings.Contains(err.Error(), "-login-url") || !strings.Contains(err.Error(), "credentials") {
		t.Errorf("wrong password: %v; want an error naming -login-url and the credentials", err)
	}
	cfg.loginForm = url.Values{"username": {"bench"}, "password": {"s3cret pass&word"}}
	if _, err := mintSessions(ctx, cfg, "-login-url", "http://"+addr+"/articles/"); err == nil || !strings.Contains(err.Error(), "no <form> with a password field") {
		t.Errorf("a page without a login form: %v; want an error saying so", err)
	}
}

func TestFindLoginForm(t *testing.T) {
	for _, tc := range []struct {
		name, page, action string
		hidden             url.Values
		ok                 bool
	}{
		{name: "django", page: `<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="a&amp;b">
<p><input type="text" name="username" autofocus required></p><input type="password" name="password"></form>`,
			hidden: url.Values{"csrfmiddlewaretoken": {"a&b"}}, ok: true},
		{name: "second form", page: `<form action="/search"><input type=hidden name=q value=x></form>
<FORM ACTION='/login?next=%2F' method=post><INPUT TYPE=HIDDEN NAME=t VALUE='1 2'><input type=password name=p></FORM>`,
			action: "/login?next=%2F", hidden: url.Values{"t": {"1 2"}}, ok: true},
		{name: "no password", page: `<form><input type="hidden" name="a" value="b"></form>`},
		{name: "unclosed", page: `<form><input type="password" name="p">`},
		{name: "empty", page: ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			action, hidden, ok := findLoginForm(tc.page)
			if ok != tc.ok || action != tc.action || (ok && !equalValues(hidden, tc.hidden)) {
				t.Errorf("got %q %v %v; want %q %v %v", action, hidden, ok, tc.action, tc.hidden, tc.ok)
			}
		})
	}
}

func equalValues(a, b url.Values) bool { return a.Encode() == b.Encode() }

func FuzzFindLoginForm(f *testing.F) {
	f.Add(`<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="x"><input type="password" name="password"></form>`)
	f.Add(`<form action='/a'><input type=password></form>`)
	f.Fuzz(func(t *testing.T, page string) {
		action, hidden, ok := findLoginForm(page)
		if !ok && (action != "" || hidden != nil) {
			t.Errorf("no form, yet action %q hidden %v", action, hidden)
		}
		if ok && !strings.Contains(strings.ToLower(page), "password") {
			t.Errorf("a form found without a password field in %q", page)
		}
	})
}

func BenchmarkFindLoginForm(b *testing.B) {
	page := `<!doctype html><html><head><title>Log in</title></head><body><h1>Log in</h1>
<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="8GkqIxQ0i1XqzXy9nJ4gIHoM3A9c2eWvN1y0U4fKqJ3xkzq5L0mR7bXy2cVdFh6T">
<p><label for="id_username">Username:</label> <input type="text" name="username" autofocus autocapitalize="none" autocomplete="username" maxlength="150" required id="id_username"></p>
<p><label for="id_password">Password:</label> <input type="password" name="password" autocomplete="current-password" required id="id_password"></p>
<button type="submit">Log in</button></form></body></html>`
	b.ReportAllocs()
	b.SetBytes(int64(len(page)))
	for b.Loop() {
		if _, _, ok := findLoginForm(page); !ok {
			b.Fatal("no form")
		}
	}
}

func TestLoginFormFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-url", "http://127.0.0.1:1/", "-login-form", "username=a&password=b"}, "-login-form needs -login-url"},
		{[]string{"-url", "http://127.0.0.1:1/", "-identified", "1", "-mint", "1", "-login-url", "http://127.0.0.1:1/login", "-login-form", ""}, "want URL-encoded form fields"},
		{[]string{"-url", "http://127.0.0.1:1/", "-identified", "1", "-mint", "1", "-login-url", "http://127.0.0.1:1/login", "-login-form", "a=%zz"}, "want URL-encoded form fields"},
	} {
		if _, err := parseConfig(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %q", tc.args, err, tc.want)
		}
	}
	cfg, err := parseConfig([]string{"-url", "http://127.0.0.1:1/", "-identified", "1", "-mint", "1",
		"-login-url", "http://127.0.0.1:1/login", "-login-form", "username=a&password=b%26c"})
	if err != nil || cfg.loginForm.Get("password") != "b&c" {
		t.Errorf("got %v, %v; want the password b&c", cfg, err)
	}
}
