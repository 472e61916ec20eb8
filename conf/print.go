package conf

import (
	"bytes"
	"reflect"
	"regexp"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Effective renders c as TOML, every default filled in and secrets
// redacted: what `userrouter -check` prints.
func (c *Config) Effective() ([]byte, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(false)
	// Values were expanded on load; escape what would expand again.
	printable := mapStrings(reflect.ValueOf(c.Redacted()).Elem(), func(s string) string {
		return strings.ReplaceAll(s, "${", "$${")
	})
	if err := enc.Encode(printable.Interface()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// dsnPassword matches the password of "user:password@..." and
// "scheme://user:password@..." data source names.
var dsnPassword = regexp.MustCompile(`^((?:[a-z][a-z0-9+.-]*://)?[^:@/]*):[^@]*@`)

func redactDSN(dsn string) string {
	return dsnPassword.ReplaceAllString(dsn, "${1}:REDACTED@")
}

// mapStrings returns a deep copy of v with f applied to every string in it.
func mapStrings(v reflect.Value, f func(string) string) reflect.Value {
	switch v.Kind() {
	case reflect.String:
		out := reflect.New(v.Type()).Elem()
		out.SetString(f(v.String()))
		return out
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		for i := range v.NumField() {
			if out.Field(i).CanSet() {
				out.Field(i).Set(mapStrings(v.Field(i), f))
			}
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(mapStrings(v.Index(i), f))
		}
		return out
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type().Elem())
		out.Elem().Set(mapStrings(v.Elem(), f))
		return out
	}
	return v
}
