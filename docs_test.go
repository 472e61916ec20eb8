package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// A docBlock is a shell block of a document marked runnable: the line
// before its ```sh fence is <!-- runnable [background] [wait=ADDR]
// [timeout=D] [needs=ENV] -->.
type docBlock struct {
	file       string
	line       int // of the fence
	script     string
	background bool          // started and left running until the file's last block is done
	wait       string        // with background: poll this address until it accepts connections
	timeout    time.Duration // for a foreground block; default 60s
	needs      []string      // environment variables the block needs (USERROUTER_TEST_*)
}

var runnableMarker = regexp.MustCompile(`^<!--\s*runnable\b(.*?)-->\s*$`)

// docBlocks extracts the runnable blocks of a Markdown file.
func docBlocks(path string) ([]docBlock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	var blocks []docBlock
	for i := 0; i < len(lines); i++ {
		m := runnableMarker.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil {
			continue
		}
		blk := docBlock{file: path, line: i + 2, timeout: 60 * time.Second}
		for _, opt := range strings.Fields(m[1]) {
			key, value, _ := strings.Cut(opt, "=")
			switch key {
			case "background":
				blk.background = true
			case "wait":
				blk.wait = value
			case "timeout":
				if blk.timeout, err = time.ParseDuration(value); err != nil {
					return nil, fmt.Errorf("%s:%d: runnable timeout=%q: %v", path, i+1, value, err)
				}
			case "needs":
				blk.needs = append(blk.needs, strings.Split(value, ",")...)
			default:
				return nil, fmt.Errorf("%s:%d: unknown runnable option %q (background, wait=ADDR, timeout=D, needs=ENV)", path, i+1, opt)
			}
		}
		if i+1 >= len(lines) || !(lines[i+1] == "```sh" || lines[i+1] == "```bash") {
			return nil, fmt.Errorf("%s:%d: <!-- runnable --> must be followed by a ```sh fence", path, i+1)
		}
		var body []string
		j := i + 2
		for ; j < len(lines) && lines[j] != "```"; j++ {
			body = append(body, lines[j])
		}
		if j == len(lines) {
			return nil, fmt.Errorf("%s:%d: unclosed ```sh block", path, i+2)
		}
		blk.script = strings.Join(body, "\n") + "\n"
		blocks = append(blocks, blk)
		i = j
	}
	return blocks, nil
}

// docAddrs are the addresses the documents use, which the test replaces
// with free loopback ports so that it runs beside anything already on the
// machine (README, Development: "Commands in the docs").
var docAddrs = []struct{ doc, env string }{
	{"127.0.0.1:8090", "PORT"},        // userrouter's listener
	{"127.0.0.1:8091", "ADMIN_PORT"},  // its admin listener
	{"127.0.0.1:8000", "APP_PORT"},    // the application (bin/origin)
	{"127.0.0.1:8010", "DJANGO_PORT"}, // contrib/django's testproject under gunicorn
}

// TestDocCommands runs the shell blocks of README.md, docs/*.md and
// contrib/*/README.md marked runnable, in order, each file's blocks in one
// shell environment from the repository root, so that a command in the
// docs cannot drift from what the code does.
func TestDocCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the documented commands")
	}
	files := []string{"README.md"}
	for _, g := range []string{"docs/*.md", "contrib/*/README.md"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	total := 0
	for _, f := range files {
		blocks, err := docBlocks(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) == 0 {
			continue
		}
		total += len(blocks)
		t.Run(strings.ReplaceAll(f, "/", "_"), func(t *testing.T) { runDocBlocks(t, blocks) })
	}
	if total == 0 {
		t.Fatal("no block is marked runnable")
	}
}

func runDocBlocks(t *testing.T, blocks []docBlock) {
	for _, b := range blocks {
		for _, env := range b.needs {
			sessiontest.Env(t, env)
		}
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	repl := make([]string, 0, 2*len(docAddrs))
	env := os.Environ()
	for _, a := range docAddrs {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		repl = append(repl, a.doc, addr)
		env = append(env, a.env+"="+port)
	}
	subst := strings.NewReplacer(repl...)
	// Blocks write their scratch files under bin/: remove what they added
	// there, except executables (make build's output), once the file's
	// blocks and background processes are done.
	before := map[string]bool{}
	if entries, err := os.ReadDir("bin"); err == nil {
		for _, e := range entries {
			before[e.Name()] = true
		}
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir("bin")
		for _, e := range entries {
			if info, err := e.Info(); err == nil && !before[e.Name()] && (e.IsDir() || info.Mode()&0o111 == 0) {
				os.RemoveAll(filepath.Join("bin", e.Name()))
			}
		}
	})
	// Each block sees the environment the previous ones exported, as in
	// one terminal.
	envFile := filepath.Join(t.TempDir(), "env")
	for _, b := range blocks {
		script := subst.Replace(b.script)
		run := script
		if !b.background {
			run += "env -0 >" + envFile + "\n"
		}
		where := fmt.Sprintf("%s:%d", b.file, b.line)
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", run)
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if b.background {
			if err := cmd.Start(); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					<-done
				}
				if t.Failed() {
					t.Logf("%s (background) output:\n%s", where, out.String())
				}
			})
			if b.wait != "" {
				addr := subst.Replace(b.wait)
				deadline := time.Now().Add(30 * time.Second)
				for {
					if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
						c.Close()
						break
					}
					select {
					case err := <-done:
						t.Fatalf("%s: exited before listening on %s: %v\n%s", where, addr, err, out.String())
					default:
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: nothing listens on %s after 30 s\n%s", where, addr, out.String())
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("%s: %v", where, err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-ctx.Done():
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			err = fmt.Errorf("still running after %v", b.timeout)
		}
		cancel()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything it left running
		if err != nil {
			t.Fatalf("%s: %v\n--- script\n%s--- output\n%s", where, err, script, tail(out.String(), 4000))
		}
		if exported, err := os.ReadFile(envFile); err == nil {
			env = strings.Split(strings.TrimSuffix(string(exported), "\x00"), "\x00")
		}
		// A block may say what it prints: a line `# => TEXT` asks for TEXT
		// somewhere in its output.
		sc := bufio.NewScanner(strings.NewReader(script))
		for sc.Scan() {
			if _, want, ok := strings.Cut(sc.Text(), "# => "); ok && !strings.Contains(out.String(), strings.TrimSpace(want)) {
				t.Errorf("%s: the output lacks %q\n--- output\n%s", where, strings.TrimSpace(want), tail(out.String(), 4000))
			}
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestDocBlocksParse checks the marker's grammar on a document of its own.
func TestDocBlocksParse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.md")
	doc := "text\n<!-- runnable -->\n```sh\necho a\n```\n\n```sh\nnot runnable\n```\n" +
		"<!-- runnable background wait=127.0.0.1:8000 timeout=5s needs=X,Y -->\n```sh\nsleep 9\n```\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	blocks, err := docBlocks(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 2 || blocks[0].script != "echo a\n" || blocks[0].line != 3 || blocks[0].background ||
		!blocks[1].background || blocks[1].wait != "127.0.0.1:8000" || blocks[1].timeout != 5*time.Second || len(blocks[1].needs) != 2 {
		t.Errorf("got %+v", blocks)
	}
	for _, bad := range []string{"<!-- runnable -->\ntext\n", "<!-- runnable nope -->\n```sh\n```\n", "<!-- runnable -->\n```sh\necho\n"} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := docBlocks(path); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
