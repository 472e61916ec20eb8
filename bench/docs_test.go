package main

import (
	"errors"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docEndpoints are the session-minting URLs the docs may name, with what
// serves them: bench/origin's POST /login and POST /cart, and Django's
// LoginView in contrib/django's test project.
var docEndpoints = map[string]map[string]bool{
	"-login-url": {"/login": true, "/accounts/login/": true},
	"-anon-url":  {"/cart": true},
}

// TestDocExamples parses every bench command line in the README, docs/
// and contrib/*/README.md shell blocks (runnable or not) and in bench -h's
// examples with bench's own
// flags, and checks the addresses and minting paths against what the
// project serves, so that an example cannot drift from the code: port 8090
// for userrouter (its default) or 8000/8010 for the application, never
// 8080; -login-url and -anon-url paths that bin/origin or the Django test
// project serve.
func TestDocExamples(t *testing.T) {
	files := []string{"../README.md"}
	for _, g := range []string{"../docs/*.md", "../contrib/*/README.md"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	found := 0
	for _, f := range append(files, "bench -h") {
		var doc string
		if f == "bench -h" {
			_, examples, _ := strings.Cut(usageText, "\nexamples:\n")
			doc = "```sh\n" + examples + "```\n"
		} else {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			doc = string(b)
		}
		for _, cmd := range benchCommands(doc) {
			found++
			args, err := shellWords(cmd.text)
			if err != nil {
				t.Errorf("%s:%d: %v", f, cmd.line, err)
				continue
			}
			cfg, err := parseConfig(args)
			if errors.Is(err, flag.ErrHelp) {
				continue
			}
			if err != nil {
				t.Errorf("%s:%d: bench %s: %v", f, cmd.line, strings.Join(args, " "), err)
				continue
			}
			check := func(flagName, raw string) {
				if raw == "" {
					return
				}
				u, err := url.Parse(raw)
				if err != nil {
					t.Errorf("%s:%d: %s %q: %v", f, cmd.line, flagName, raw, err)
					return
				}
				switch u.Port() {
				case "8090", "8000", "8010", "18080":
				default:
					t.Errorf("%s:%d: %s %s: port %s; the docs use 8090 (userrouter's default), 8000 or 8010 (the application)", f, cmd.line, flagName, raw, u.Port())
				}
				if paths, ok := docEndpoints[flagName]; ok && !paths[u.Path] {
					t.Errorf("%s:%d: %s %s: nothing the docs run serves %s", f, cmd.line, flagName, raw, u.Path)
				}
			}
			check("-url", cfg.url)
			check("-compare", cfg.compare[0])
			check("-compare", cfg.compare[1])
			check("-login-url", cfg.loginURL)
			check("-anon-url", cfg.anonURL)
		}
	}
	t.Logf("%d bench command lines checked", found)
	if found < 5 {
		t.Errorf("found %d bench command lines in the docs; the extraction is broken", found)
	}
}

type docCommand struct {
	line int
	text string // the arguments after the program name
}

// benchCommands returns the bench command lines of the shell blocks of a
// Markdown document, continuation lines joined, without what follows a
// pipe or a comment.
func benchCommands(doc string) []docCommand {
	var cmds []docCommand
	lines := strings.Split(doc, "\n")
	inBlock := false
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "```") {
			inBlock = !inBlock && (l == "```sh" || l == "```bash")
			continue
		}
		if !inBlock {
			continue
		}
		var rest string
		var ok bool
		for _, prog := range []string{"bench ", "bin/bench ", "go run ./bench "} {
			if rest, ok = strings.CutPrefix(l, prog); ok {
				break
			}
		}
		if !ok {
			continue
		}
		start := i
		for strings.HasSuffix(rest, `\`) && i+1 < len(lines) {
			i++
			rest = strings.TrimSuffix(rest, `\`) + " " + strings.TrimSpace(lines[i])
		}
		cmds = append(cmds, docCommand{line: start + 1, text: rest})
	}
	return cmds
}

// shellWords splits a command line as sh does for the simple cases the
// docs use: blanks, single and double quotes; it stops at an unquoted '|',
// ';', '&' or '#'.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, errors.New("unclosed quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.IndexByte("|;&#", c) >= 0 && !inWord:
			return words, nil
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// TestDocsNameRealEndpoints: bench -h and docs/bench.md point at
// userrouter's default port (8090) and at the endpoints bin/origin
// serves (POST /login, POST /cart), not at 8080 or /bench/login/, which
// nothing serves.
func TestDocsNameRealEndpoints(t *testing.T) {
	doc, err := os.ReadFile("../docs/bench.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"bench -h": usageText, "docs/bench.md": string(doc)} {
		for _, bad := range []string{":8080/", "/bench/login/", "/bench/anon/"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s mentions %q", name, bad)
			}
		}
		for _, want := range []string{"http://127.0.0.1:8090/", "-login-url http://127.0.0.1:8000/login"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %q", name, want)
			}
		}
	}
}
