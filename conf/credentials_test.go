package conf

import (
	"slices"
	"strings"
	"testing"

	"github.com/userrouter/userrouter/pagecache"
)

const credentialsDoc = backendDoc + `[session]
driver = "mysql"
dsn = "django:pw@tcp(127.0.0.1:3306)/app"
`

func TestCredentialsConfig(t *testing.T) {
	t.Setenv("UR_TEST_HASH_KEY", "0123456789abcdef0123")
	cfg, err := Parse("t.toml", []byte(credentialsDoc+"[credentials]\nscheme = \"Token\"\nquery_param = \"api_key\"\n"+
		"query = \"SELECT user_id FROM authtoken_token WHERE `key` = :key\"\nhash_key = \"${UR_TEST_HASH_KEY}\"\n"+
		"[[cache.rule]]\npath = \"^/api/shared/\"\ncredentials = \"shared\"\n"+
		"[[cache.rule]]\npath = \"^/api/\"\ncredentials = \"per-credential\"\nstore_private = true\n"+
		"[[cache.rule]]\npath = \"^/\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cfg.Cache.IgnoreQueryParams, "api_key") {
		t.Errorf("ignore_query_params %q; want api_key added", cfg.Cache.IgnoreQueryParams)
	}
	if cfg.Credentials.HashKey != "0123456789abcdef0123" || cfg.Redacted().Credentials.HashKey != "REDACTED" {
		t.Errorf("hash_key %q, redacted %q", cfg.Credentials.HashKey, cfg.Redacted().Credentials.HashKey)
	}
	for i, want := range []pagecache.Credentials{pagecache.CredentialsShared, pagecache.CredentialsPerCredential, pagecache.CredentialsBypass} {
		if got, _ := pagecache.ParseCredentials(cfg.Cache.Rules[i].Credentials); got != want {
			t.Errorf("rule %d: %v; want %v", i, got, want)
		}
	}

	for _, tc := range []struct{ name, doc, want string }{
		{"rule without [credentials]", credentialsDoc + "[[cache.rule]]\npath = \"^/api/\"\ncredentials = \"shared\"\n", "credentials.scheme: is required"},
		{"misspelt mode", credentialsDoc + "[credentials]\nscheme = \"Token\"\nquery = \"SELECT 1 FROM t WHERE k = :key\"\n[[cache.rule]]\npath = \"^/\"\ncredentials = \"per-token\"\n", `cache.rule[0].credentials: "per-token" is not`},
		{"no query", credentialsDoc + "[credentials]\nscheme = \"Token\"\n", "credentials.query: is required"},
		{"query with ?", credentialsDoc + "[credentials]\nscheme = \"Token\"\nquery = \"SELECT 1 FROM t WHERE k = ?\"\n", "credentials.query: write the parameters as :key, :user"},
		{"pattern without key", credentialsDoc + "[credentials]\nscheme = \"ApiKey\"\npattern = \"(?P<user>.+)\"\nquery = \"SELECT 1 FROM t WHERE k = :key\"\n", "credentials.pattern: credential pattern"},
		{"per-credential without hash key", credentialsDoc + "[credentials]\nscheme = \"Token\"\nquery = \"SELECT 1 FROM t WHERE k = :key\"\n[[cache.rule]]\npath = \"^/\"\ncredentials = \"per-credential\"\n", "credentials.hash_key: must be at least 16 bytes"},
		{"store_private on a shared rule", credentialsDoc + "[credentials]\nscheme = \"Token\"\nquery = \"SELECT 1 FROM t WHERE k = :key\"\n[[cache.rule]]\npath = \"^/\"\ncredentials = \"shared\"\nstore_private = true\n", "store_private: needs credentials"},
		{"store_set_cookie with credentials", credentialsDoc + "[credentials]\nscheme = \"Token\"\nquery = \"SELECT 1 FROM t WHERE k = :key\"\n[[cache.rule]]\npath = \"^/\"\ncredentials = \"shared\"\nstore_set_cookie = true\n", "store_set_cookie: cannot be used with credentials"},
		{"no database", backendDoc + "[credentials]\nscheme = \"Token\"\nquery = \"SELECT 1 FROM t WHERE k = :key\"\n", "credentials.driver: is required"},
		{"a cache session store", backendDoc + "[session]\ndriver = \"redis\"\ndsn = \"redis://r:6379\"\n[credentials]\nscheme = \"Token\"\nquery = \"SELECT 1 FROM t WHERE k = :key\"\n", "credentials.driver: is required"},
		{"own driver without dsn", credentialsDoc + "[credentials]\nscheme = \"Token\"\ndriver = \"postgres\"\nquery = \"SELECT 1 FROM t WHERE k = :key\"\n", "credentials.dsn: is required when"},
		{"format raw", credentialsDoc + "[credentials]\nscheme = \"Token\"\nquery = \"SELECT 1 FROM t WHERE k = :key\"\n[cache]\nformat = \"raw\"\n[[cache.rule]]\npath = \"^/\"\ncredentials = \"shared\"\n", `cache.format: must be "envelope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want %q", err, tc.want)
			}
		})
	}
}
