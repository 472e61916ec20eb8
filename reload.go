package main

import (
	"reflect"
	"strings"

	"github.com/userrouter/userrouter/conf"
)

// restartOnly names the settings of next that differ from those the
// running listeners and log handler were made with (listen, logFormat:
// the startup config's, which a reload never changes), in the config
// file's spelling ("listen.read_timeout", "log.format"): a reload cannot
// apply them. Compared with what runs, not with the previous reload, so a
// change that was reverted is no longer reported. listen.trusted_proxies
// and listen.max_request_body_size are applied by the new router and
// never reported.
func restartOnly(listen conf.Listen, logFormat string, next *conf.Config) []string {
	var keys []string
	was, now := reflect.ValueOf(listen), reflect.ValueOf(next.Listen)
	for i := range was.NumField() {
		f := was.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" || name == "trusted_proxies" || name == "max_request_body_size" || name == "memory_limit" {
			continue
		}
		if !reflect.DeepEqual(was.Field(i).Interface(), now.Field(i).Interface()) {
			keys = append(keys, "listen."+name)
		}
	}
	if next.Log.Format != logFormat {
		keys = append(keys, "log.format")
	}
	return keys
}
