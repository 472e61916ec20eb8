package conf

import (
	"bytes"
	"regexp"

	"github.com/pelletier/go-toml/v2"
)

// Effective renders c as TOML, every default filled in and secrets
// redacted: what `userrouter -check` prints.
func (c *Config) Effective() ([]byte, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(false)
	if err := enc.Encode(c.Redacted()); err != nil {
		return nil, err
	}
	// Values were expanded on load; escape what would expand again. Keys
	// are fixed names, so every "${" in the output is inside a value.
	return bytes.ReplaceAll(buf.Bytes(), []byte("${"), []byte("$${")), nil
}

// dsnPassword matches the password of "user:password@..." data source
// names, urlPassword that of "scheme://user:password@..." ones (and not
// "scheme://user@host/...?a=b:c@d").
var (
	dsnPassword = regexp.MustCompile(`^([^:@/]*):[^@]*@`)
	urlPassword = regexp.MustCompile(`^([a-z][a-z0-9+.-]*://[^:@/]*):[^@/]*@`)
	urlScheme   = regexp.MustCompile(`^[a-z][a-z0-9+.-]*://`)
)

// dsnPasswordParam matches a password given as a parameter: PostgreSQL's
// keyword/value "password=secret" (or 'quoted secret'), and a URL's
// "?password=secret".
var dsnPasswordParam = regexp.MustCompile(`(^|[\s?&])password\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s&]*)`)

func redactDSN(dsn string) string {
	if urlScheme.MatchString(dsn) {
		dsn = urlPassword.ReplaceAllString(dsn, "${1}:REDACTED@")
	} else {
		dsn = dsnPassword.ReplaceAllString(dsn, "${1}:REDACTED@")
	}
	return dsnPasswordParam.ReplaceAllString(dsn, "${1}password=REDACTED")
}
