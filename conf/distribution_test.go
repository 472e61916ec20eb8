package conf

import (
	"strings"
	"testing"
	"time"
)

// TestDistribution: cache.distribution takes "modula" (the default),
// "ketama" and "ketama_weighted"; auto_eject is off by default and needs a
// ketama distribution; its limit and timeout are checked.
func TestDistribution(t *testing.T) {
	const head = "[backend]\naddrs = [\"127.0.0.1:8000\"]\n[cache]\n"
	cfg, err := Parse("t.toml", []byte(head))
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Cache
	if k.Distribution != "modula" || k.AutoEject || k.ServerFailureLimit != 3 || k.ServerRetryTimeout.D() != 30*time.Second {
		t.Errorf("defaults: distribution %q, auto_eject %v, server_failure_limit %d, server_retry_timeout %v; want modula, false, 3, 30s",
			k.Distribution, k.AutoEject, k.ServerFailureLimit, k.ServerRetryTimeout.D())
	}
	for _, v := range []string{"modula", "ketama", "ketama_weighted"} {
		cfg, err := Parse("t.toml", []byte(head+"distribution = \""+v+"\"\n"))
		if err != nil || cfg.Cache.Distribution != v {
			t.Errorf("%q: %v", v, err)
		}
	}
	cfg, err = Parse("t.toml", []byte(head+"distribution = \"ketama\"\nauto_eject = true\nserver_failure_limit = 5\nserver_retry_timeout = \"2s\"\n"))
	if err != nil || !cfg.Cache.AutoEject || cfg.Cache.ServerFailureLimit != 5 || cfg.Cache.ServerRetryTimeout.D() != 2*time.Second {
		t.Errorf("ketama with ejection: %+v, %v", cfg.Cache, err)
	}
	if _, err := Parse("t.toml", []byte(head+"auto_eject = false\nserver_failure_limit = 3\n")); err != nil {
		t.Errorf("modula with auto_eject = false written out (as -check prints it): %v", err)
	}
	for _, tc := range []struct{ name, lines, want string }{
		{"unknown", `distribution = "consistent"`, `t.toml:4: cache.distribution: "consistent" is not one of "modula", "ketama", "ketama_weighted"`},
		{"eject under modula", `auto_eject = true`, `t.toml:4: cache.auto_eject: needs cache.distribution = "ketama" or "ketama_weighted"`},
		{"eject under explicit modula", "distribution = \"modula\"\nauto_eject = true", `t.toml:5: cache.auto_eject: needs cache.distribution`},
		{"limit 0", "distribution = \"ketama\"\nserver_failure_limit = 0", `t.toml:5: cache.server_failure_limit: must be at least 1, not 0`},
		{"retry 0", "distribution = \"ketama\"\nserver_retry_timeout = \"0s\"", `t.toml:5: cache.server_retry_timeout: must be more than zero`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(head+tc.lines+"\n"))
			ps, ok := err.(Problems)
			if !ok || len(ps) != 1 || !strings.Contains(ps[0].String(), tc.want) {
				t.Errorf("got %v; want one problem containing %q", err, tc.want)
			}
		})
	}
}
