package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

// Sessions as Django's cache engine stores them: pickle.dumps (protocol 5)
// of {'_auth_user_id': '1'} and of {'cart': [1]}.
var (
	pickledLogin, _ = hex.DecodeString("80059518000000000000007d948c0d5f617574685f757365725f6964948c013194732e")
	pickledCart, _  = hex.DecodeString("80059510000000000000007d948c0463617274945d944b0161732e")
)

// TestBinaryRedis: driver = "redis" reads Django's pickled sessions under
// the configured key template, from the machine's Redis.
func TestBinaryRedis(t *testing.T) {
	addr := sessiontest.Env(t, "USERROUTER_TEST_REDIS")
	prefix := fmt.Sprintf("urbin%d%06d", time.Now().UnixNano(), rand.IntN(1e6))
	rc := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	ctx := context.Background()
	anon, login := strings.Repeat("a", 32), strings.Repeat("b", 32)
	t.Cleanup(func() {
		rc.Del(ctx, prefix+":1:django.contrib.sessions.cache"+anon, prefix+":1:django.contrib.sessions.cache"+login)
		rc.Close()
	})
	get, hits := sessionDaemon(t, fmt.Sprintf("driver = \"redis\"\ndsn = \"redis://%s/0\"\nkey_template = \"%s:1:django.contrib.sessions.cache{key}\"", addr, prefix))
	// Written once the daemon runs: building it may take longer than a TTL.
	rc.Set(ctx, prefix+":1:django.contrib.sessions.cache"+anon, pickledCart, 10*time.Minute)
	rc.Set(ctx, prefix+":1:django.contrib.sessions.cache"+login, pickledLogin, 10*time.Minute)
	get("/a", "")
	if cs := get("/a", anon); !strings.Contains(cs, "hit") {
		t.Errorf("anonymous session: Cache-Status %q; want a hit", cs)
	}
	before := hits()
	if cs := get("/a", login); strings.Contains(cs, "hit") || hits() != before+1 {
		t.Errorf("signed in: Cache-Status %q; want a forward", cs)
	}
}

// TestCheckConnectCacheSessions: -check -connect reaches a Redis or
// memcached session store, and says FAIL when it does not answer.
func TestCheckConnectCacheSessions(t *testing.T) {
	bin := binary(t)
	rd := sessiontest.Env(t, "USERROUTER_TEST_REDIS")
	mc := sessiontest.Env(t, "USERROUTER_TEST_MEMCACHED")
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(backend.Close)
	write := func(session string) string {
		return writeConfig(t, fmt.Sprintf("[backend]\naddrs = [%q]\n[session]\n%s\n[cache]\nstore = \"none\"\n", strings.TrimPrefix(backend.URL, "http://"), session))
	}
	for _, tc := range []struct {
		name, session, want string
		code                int
	}{
		{"redis", fmt.Sprintf("driver = \"redis\"\ndsn = \"redis://%s/0\"", rd), "ok    session store (redis), one lookup of a random key", 0},
		{"memcached", fmt.Sprintf("driver = \"memcached\"\ndsn = %q", mc), "ok    session store (memcached), one lookup of a random key", 0},
		{"redis down", fmt.Sprintf("driver = \"redis\"\ndsn = \"redis://%s/0\"", freeAddr(t)), "FAIL  session store (redis)", 1},
		{"memcached down", fmt.Sprintf("driver = \"memcached\"\ndsn = %q", freeAddr(t)), "FAIL  session store (memcached)", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errb strings.Builder
			cmd := exec.Command(bin, "-check", "-connect", "-config", write(tc.session))
			cmd.Stderr = &errb
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tc.code || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d; want %d, and %q in:\n%s", code, tc.code, tc.want, errb.String())
			}
		})
	}
}
