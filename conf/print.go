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

// dsnPassword matches the password of "user:password@..." and
// "scheme://user:password@..." data source names.
var dsnPassword = regexp.MustCompile(`^((?:[a-z][a-z0-9+.-]*://)?[^:@/]*):[^@]*@`)

func redactDSN(dsn string) string {
	return dsnPassword.ReplaceAllString(dsn, "${1}:REDACTED@")
}
