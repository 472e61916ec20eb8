package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// withServices runs .ci/with-services with extra environment and a shell
// script as its command, and returns the command's stdout lines as they
// come, its stdin (closing it lets a script waiting on `read` finish) and
// a wait function returning the whole stderr. It skips unless the test runs
// as root under `make test`: with-services installs packages and starts
// services.
func withServices(t *testing.T, ctx context.Context, env []string, script string) (<-chan string, io.WriteCloser, func() (string, error)) {
	t.Helper()
	sessiontest.Env(t, "USERROUTER_TEST_MYSQL_DSN")
	if os.Geteuid() != 0 {
		t.Skip("with-services runs as root only")
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(".ci", "with-services"), "sh", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines, stdin, func() (string, error) {
		stdin.Close()
		for range lines {
		}
		err := cmd.Wait()
		return stderr.String(), err
	}
}

// TestWithServicesKeepsGivenDSNs: a DSN the user set is the one the tests
// get, for MariaDB and PostgreSQL alike (with-services used to overwrite
// USERROUTER_TEST_MYSQL_DSN with root's).
func TestWithServicesKeepsGivenDSNs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs .ci/with-services")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const (
		mysqlDSN = "someone:secret@tcp(127.0.0.1:3306)/"
		pgDSN    = "postgres://someone:secret@127.0.0.1:5432/postgres?sslmode=disable"
	)
	lines, _, wait := withServices(t, ctx,
		[]string{"USERROUTER_TEST_MYSQL_DSN=" + mysqlDSN, "USERROUTER_TEST_POSTGRES_DSN=" + pgDSN},
		`printf '%s\n%s\n' "$USERROUTER_TEST_MYSQL_DSN" "$USERROUTER_TEST_POSTGRES_DSN"`)
	var got []string
	for l := range lines {
		got = append(got, l)
	}
	if logs, err := wait(); err != nil {
		t.Fatalf("with-services: %v\n%s", err, logs)
	}
	if len(got) != 2 || got[0] != mysqlDSN || got[1] != pgDSN {
		t.Errorf("the tests got the DSNs %q; want the ones given, %q and %q", got, mysqlDSN, pgDSN)
	}
}

// TestWithServicesDedicatedUsers: when with-services needs an account of
// its own (root or postgres may not log in over TCP without a password), it
// creates one that can do what the tests do, changes no existing account,
// and drops its own on exit. USERROUTER_SERVICES_DEDICATED_USER=1 takes
// that path on a machine where root could log in.
func TestWithServicesDedicatedUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs .ci/with-services")
	}
	rootMySQL := sessiontest.Env(t, "USERROUTER_TEST_MYSQL_DSN")
	rootPG := sessiontest.Env(t, "USERROUTER_TEST_POSTGRES_DSN")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	my, err := sql.Open("mysql", rootMySQL)
	if err != nil {
		t.Fatal(err)
	}
	defer my.Close()
	pg, err := sql.Open("pgx", rootPG)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	// accounts lists every account with what authenticates it.
	accounts := func() (string, string) {
		t.Helper()
		var a, b strings.Builder
		rows, err := my.QueryContext(ctx, "SELECT CONCAT(user, '@', host, ' ', plugin, ' ', authentication_string) FROM mysql.user ORDER BY user, host")
		if err != nil {
			t.Fatalf("MariaDB accounts: %v", err)
		}
		for rows.Next() {
			var s string
			rows.Scan(&s)
			a.WriteString(s + "\n")
		}
		rows.Close()
		rows, err = pg.QueryContext(ctx, "SELECT rolname || ' ' || COALESCE(rolpassword, '-') FROM pg_authid ORDER BY rolname")
		if err != nil {
			// pg_authid needs a superuser; pg_roles hides passwords.
			rows, err = pg.QueryContext(ctx, "SELECT rolname FROM pg_roles ORDER BY rolname")
			if err != nil {
				t.Fatalf("PostgreSQL roles: %v", err)
			}
		}
		for rows.Next() {
			var s string
			rows.Scan(&s)
			b.WriteString(s + "\n")
		}
		rows.Close()
		return a.String(), b.String()
	}
	myBefore, pgBefore := accounts()

	lines, _, wait := withServices(t, ctx,
		[]string{"USERROUTER_TEST_MYSQL_DSN=", "USERROUTER_TEST_POSTGRES_DSN=", "USERROUTER_SERVICES_DEDICATED_USER=1"},
		`printf '%s\n%s\n' "$USERROUTER_TEST_MYSQL_DSN" "$USERROUTER_TEST_POSTGRES_DSN"; read -r _ || true`)
	var dsns []string
	for l := range lines {
		if dsns = append(dsns, l); len(dsns) == 2 {
			break
		}
	}
	if len(dsns) != 2 {
		logs, err := wait()
		t.Fatalf("with-services printed %q (%v)\n%s", dsns, err, logs)
	}
	for _, d := range []struct{ driver, dsn string }{{"mysql", dsns[0]}, {"pgx", dsns[1]}} {
		if strings.HasPrefix(d.dsn, "root@") || strings.Contains(d.dsn, "//postgres") || !strings.Contains(d.dsn, "urtest_") {
			t.Errorf("%s DSN %q: want a user of its own", d.driver, d.dsn)
			continue
		}
		// What the tests do: create a database and drop it.
		db, err := sql.Open(d.driver, d.dsn)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("userrouter_ci_%d", time.Now().UnixNano())
		for _, q := range []string{"CREATE DATABASE " + name, "DROP DATABASE " + name} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Errorf("%s as with-services' own user: %s: %v", d.driver, q, err)
			}
		}
		db.Close()
	}
	if logs, err := wait(); err != nil {
		t.Fatalf("with-services: %v\n%s", err, logs)
	}
	myAfter, pgAfter := accounts()
	if myAfter != myBefore {
		t.Errorf("MariaDB accounts changed:\nbefore\n%s\nafter\n%s", myBefore, myAfter)
	}
	if pgAfter != pgBefore {
		t.Errorf("PostgreSQL roles changed:\nbefore\n%s\nafter\n%s", pgBefore, pgAfter)
	}
}

// TestNoFilesLeftBehind runs the binary-building helper in a child test
// process whose TMPDIR is an empty directory, and checks that the
// directory is empty again once the child is done: no built binary, no
// build directory (each `make test` used to leave a 20 MB binary in /tmp).
//
// The second child panics once the binary is built, as a test that panics
// or runs past -timeout does: TestMain's clean-up never runs, and the
// binary must still not be left in TMPDIR (it is built in go test's own
// work directory, which the go command removes).
func TestNoFilesLeftBehind(t *testing.T) {
	switch os.Getenv("USERROUTER_TEST_CHILD") {
	case "binary":
		if _, err := os.Stat(binary(t)); err != nil {
			t.Fatal(err)
		}
		return
	case "binary-panic":
		binary(t)
		panic("child: a test panics after building the binary")
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	for _, child := range []string{"binary", "binary-panic"} {
		tmp := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run", "^TestNoFilesLeftBehind$", "-test.count", "1")
		cmd.Env = append(os.Environ(), "USERROUTER_TEST_CHILD="+child, "TMPDIR="+tmp)
		out, err := cmd.CombinedOutput()
		if child == "binary" && (err != nil || !strings.Contains(string(out), "PASS")) {
			t.Fatalf("child test: %v\n%s", err, out)
		}
		if child == "binary-panic" && !strings.Contains(string(out), "child: a test panics") {
			t.Fatalf("child test did not panic as asked: %v\n%s", err, out)
		}
		left, err := os.ReadDir(tmp)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range left {
			t.Errorf("%s: left behind in TMPDIR: %s", child, e.Name())
		}
		if cmd.Process != nil {
			// The panicking child's binary, beside ours in go's work
			// directory: the go command removes it too, but not before the
			// package's tests end.
			os.Remove(filepath.Join(filepath.Dir(os.Args[0]), fmt.Sprintf("userrouter-%d", cmd.Process.Pid)))
		}
	}
}

// TestMakeInstall installs into a temporary DESTDIR with a PREFIX of its
// own and checks that every path the installed systemd unit names
// (ExecStart=, ExecStartPre=, Documentation=, EnvironmentFile= aside, which
// the operator writes) is there, and that the installed config passes
// -check.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	makePath, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	dest := t.TempDir()
	cmd := exec.Command(makePath, "install", "DESTDIR="+dest, "PREFIX=/opt/ur", "VERSION=test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/userrouter.service"))
	if err != nil {
		t.Fatal(err)
	}
	var execStart string
	named := 0
	for line := range strings.Lines(string(unit)) {
		key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(key, "#") {
			continue
		}
		var paths []string
		switch key {
		case "ExecStart", "ExecStartPre":
			f := strings.Fields(value)
			paths = append(paths, f[0])
			for i := range f[:len(f)-1] {
				if f[i] == "-config" {
					paths = append(paths, f[i+1])
				}
			}
			if key == "ExecStart" {
				execStart = value
			}
		case "Documentation":
			for _, u := range strings.Fields(value) {
				if p, ok := strings.CutPrefix(u, "file://"); ok {
					paths = append(paths, p)
				}
			}
		}
		for _, p := range paths {
			named++
			if !strings.HasPrefix(p, "/opt/ur/") && !strings.HasPrefix(p, "/etc/userrouter/") {
				t.Errorf("%s= names %s, outside PREFIX /opt/ur and /etc/userrouter", key, p)
			}
			if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
				t.Errorf("%s= names %s, which make install did not install: %v", key, p, err)
			}
		}
	}
	if named < 4 || execStart == "" {
		t.Fatalf("the unit names %d paths (ExecStart %q); want the binary, the config and the docs:\n%s", named, execStart, unit)
	}
	f := strings.Fields(execStart)
	check := exec.Command(filepath.Join(dest, f[0]), "-check", "-config", filepath.Join(dest, f[2]))
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("the installed binary rejects the installed config: %v\n%s", err, out)
	}
	for _, p := range []string{"opt/ur/share/doc/userrouter/docs/bench.md", "opt/ur/share/doc/userrouter/userrouter.example.toml"} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
}

// TestMakeRunPorts: `make run` listens where PORT and ADMIN_PORT say (it
// used to be fixed on 8090 and 8091, awkward on a shared host).
func TestMakeRunPorts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	makePath, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	main, admin := freeAddr(t), freeAddr(t)
	_, port, _ := net.SplitHostPort(main)
	_, adminPort, _ := net.SplitHostPort(admin)
	cmd := exec.Command(makePath, "run")
	cmd.Env = append(os.Environ(), "PORT="+port, "ADMIN_PORT="+adminPort)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		os.Remove(filepath.Join("bin", "run.toml"))
	}()
	deadline := time.Now().Add(5 * time.Minute) // make build first
	for _, addr := range []string{admin, main} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-done:
				t.Fatalf("make run ended (%v) before listening on %s:\n%s", err, addr, out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("make run PORT=%s ADMIN_PORT=%s: nothing listens on %s:\n%s", port, adminPort, addr, out.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
