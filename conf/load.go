package conf

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// A Problem is one thing wrong with a config file.
type Problem struct {
	File string
	Line int    // 0 when the key is not in the file (a missing value)
	Key  string // dotted path, e.g. "backend.addrs" or "cache.rule[1].path"
	Msg  string
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc += ":" + strconv.Itoa(p.Line)
	}
	if p.Key == "" {
		return loc + ": " + p.Msg
	}
	return loc + ": " + p.Key + ": " + p.Msg
}

// Problems is the error Load returns: every problem found, in file order.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads the config file at path. The error, if any, is Problems (or an
// I/O error when the file cannot be read).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("conf: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for a config held in memory; name is used in messages.
func Parse(name string, data []byte) (*Config, error) {
	cfg := Default()
	cfg.File = name
	d := &decoder{file: name}

	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, _ := de.Position()
			msg := strings.TrimPrefix(de.Error(), "toml: ")
			return nil, Problems{{File: name, Line: line, Msg: "TOML syntax: " + msg}}
		}
		return nil, Problems{{File: name, Msg: err.Error()}}
	}
	d.lines = keyLines(data)
	d.decodeStruct("", doc, reflect.ValueOf(cfg).Elem())
	if p := cfg.Credentials.QueryParam; p != "" && !slices.Contains(cfg.Cache.IgnoreQueryParams, p) {
		// A credential is never part of a page key: fills send it apart.
		cfg.Cache.IgnoreQueryParams = append(cfg.Cache.IgnoreQueryParams, p)
	}
	d.validating = true
	cfg.validate(d) // values that failed to decode kept their defaults
	if _, set := d.lines["listen.memory_limit"]; !set {
		cfg.Listen.MemoryLimit = cfg.DerivedMemoryLimit()
	}
	if len(d.problems) > 0 {
		sort.SliceStable(d.problems, func(i, j int) bool {
			a, b := d.problems[i], d.problems[j]
			if (a.Line == 0) != (b.Line == 0) {
				return b.Line == 0 // problems without a line go last
			}
			return a.Line < b.Line
		})
		return nil, d.problems
	}
	return cfg, nil
}

// decoder lays a generic TOML document over a defaulted struct, strictly.
type decoder struct {
	file     string
	lines    map[string]int // key path → line
	problems Problems
	// validating is set once decoding is done: a key that failed to decode
	// is not reported a second time.
	validating bool
}

// errf records a problem at key (a dotted path). A key that is not in the
// file is reported at the line of its nearest enclosing table.
func (d *decoder) errf(key, format string, args ...any) {
	if d.validating {
		for _, p := range d.problems {
			if related(p.Key, key) {
				return
			}
		}
	}
	line := 0
	for k := key; k != ""; k = parentKey(k) {
		if l, ok := d.lines[k]; ok {
			line = l
			break
		}
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// related reports whether one key is the other or inside it.
func related(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return a == b || strings.HasPrefix(b, a) && (b[len(a)] == '.' || b[len(a)] == '[')
}

func parentKey(k string) string {
	if i := strings.LastIndexAny(k, ".["); i >= 0 {
		return k[:i]
	}
	return ""
}

func joinKey(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// A defaulter is a config element (of an array of tables) that sets its own
// defaults before the file's values are laid over it.
type defaulter interface{ setDefaults() }

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

// isText reports whether values of t are written as strings and parsed
// by their UnmarshalText (Regexp, Prefix, FileMode, Location, Level).
func isText(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

func (d *decoder) decodeStruct(path string, m map[string]any, v reflect.Value) {
	fields := tomlFields(v.Type())
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		key := joinKey(path, k)
		i, ok := fields[k]
		if !ok {
			d.errf(key, "unknown key%s", suggest(k, fields))
			continue
		}
		d.decodeValue(key, m[k], v.Field(i))
	}
}

func (d *decoder) decodeValue(key string, val any, f reflect.Value) {
	switch {
	case f.Type() == durationType:
		s, ok := val.(string)
		if !ok {
			d.errf(key, "must be a duration string like \"250ms\" or \"2s\", not %s", tomlType(val))
			return
		}
		dur, err := parseDuration(d.expand(key, s))
		if err != nil {
			d.errf(key, "%v", err)
			return
		}
		f.Set(reflect.ValueOf(dur))
	case f.Type() == sizeType:
		var sz Size
		var err error
		switch x := val.(type) {
		case int64:
			if x < 0 {
				err = fmt.Errorf("%d is negative", x)
			}
			sz = Size(x)
		case string:
			sz, err = parseSize(d.expand(key, x))
		default:
			err = fmt.Errorf("must be a size like \"64KiB\" or a number of bytes, not %s", tomlType(val))
		}
		if err != nil {
			d.errf(key, "%v", err)
			return
		}
		f.Set(reflect.ValueOf(sz))
	case isText(f.Type()):
		d.decodeText(key, val, f)
	case f.Kind() == reflect.Slice && isText(f.Type().Elem()):
		list, ok := val.([]any)
		if !ok {
			d.errf(key, "must be a list of strings like [\"a\", \"b\"], not %s", tomlType(val))
			return
		}
		out := reflect.MakeSlice(f.Type(), 0, len(list))
		for i, e := range list {
			v := reflect.New(f.Type().Elem()).Elem()
			if d.decodeText(fmt.Sprintf("%s[%d]", key, i), e, v) {
				out = reflect.Append(out, v)
			}
		}
		f.Set(out)
	case f.Kind() == reflect.String:
		s, ok := val.(string)
		if !ok {
			d.errf(key, "must be a string, not %s", tomlType(val))
			return
		}
		f.SetString(d.expand(key, s))
	case f.Kind() == reflect.Bool:
		b, ok := val.(bool)
		if !ok {
			d.errf(key, "must be true or false, not %s", tomlType(val))
			return
		}
		f.SetBool(b)
	case f.Kind() == reflect.Int:
		n, ok := val.(int64)
		if !ok {
			d.errf(key, "must be an integer, not %s", tomlType(val))
			return
		}
		f.SetInt(n)
	case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Bool:
		b, ok := val.(bool)
		if !ok {
			d.errf(key, "must be true or false, not %s", tomlType(val))
			return
		}
		f.Set(reflect.ValueOf(&b))
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Int:
		list, ok := val.([]any)
		if !ok {
			d.errf(key, "must be a list of integers like [200, 301], not %s", tomlType(val))
			return
		}
		out := make([]int, 0, len(list))
		for i, e := range list {
			n, ok := e.(int64)
			if !ok {
				d.errf(fmt.Sprintf("%s[%d]", key, i), "must be an integer, not %s", tomlType(e))
				continue
			}
			out = append(out, int(n))
		}
		f.Set(reflect.ValueOf(out))
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
		list, ok := val.([]any)
		if !ok {
			d.errf(key, "must be a list of strings like [\"a\", \"b\"], not %s", tomlType(val))
			return
		}
		out := make([]string, 0, len(list))
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				d.errf(fmt.Sprintf("%s[%d]", key, i), "must be a string, not %s", tomlType(e))
				continue
			}
			out = append(out, d.expand(key, s))
		}
		f.Set(reflect.ValueOf(out))
	case f.Kind() == reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			d.errf(key, "must be a table ([%s]), not %s", key, tomlType(val))
			return
		}
		d.decodeStruct(key, m, f)
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
		list, ok := val.([]any)
		if !ok {
			d.errf(key, "must be an array of tables ([[%s]]), not %s", key, tomlType(val))
			return
		}
		out := reflect.MakeSlice(f.Type(), len(list), len(list))
		for i, e := range list {
			ekey := fmt.Sprintf("%s[%d]", key, i)
			m, ok := e.(map[string]any)
			if !ok {
				d.errf(ekey, "must be a table, not %s", tomlType(e))
				continue
			}
			if df, ok := out.Index(i).Addr().Interface().(defaulter); ok {
				df.setDefaults()
			}
			d.decodeStruct(ekey, m, out.Index(i))
		}
		f.Set(out)
	default:
		panic(fmt.Sprintf("conf: field %s has unsupported type %s", key, f.Type()))
	}
}

// decodeText sets f, a text type (see isText), from a string value, and
// reports whether it could.
func (d *decoder) decodeText(key string, val any, f reflect.Value) bool {
	s, ok := val.(string)
	if !ok {
		d.errf(key, "must be a string, not %s", tomlType(val))
		return false
	}
	n := len(d.problems)
	if s = d.expand(key, s); len(d.problems) > n {
		return false // reported: a bad ${} reference
	}
	if err := f.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
		d.errf(key, "%v", err)
		return false
	}
	return true
}

var envRef = regexp.MustCompile(`\$\$\{|\$\{([^}]*)\}`)

// expand replaces ${NAME} with the environment variable NAME; "$${" stands
// for a literal "${". An unset variable is a problem (set it, even empty).
func (d *decoder) expand(key, s string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	return envRef.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$${" {
			return "${"
		}
		name := ref[2 : len(ref)-1]
		if !validEnvName(name) {
			d.errf(key, "%q is not a valid environment variable reference (write ${NAME}, or $${ for a literal ${)", ref)
			return ""
		}
		v, ok := os.LookupEnv(name)
		if !ok {
			d.errf(key, "environment variable %s is not set (export it, even empty, or remove the reference)", name)
		}
		return v
	})
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// tomlFields maps the toml names of t's fields to their indexes.
func tomlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

// suggest names the known key closest to a misspelt one.
func suggest(k string, fields map[string]int) string {
	best, bestDist := "", 3
	for name := range fields {
		if dist := editDistance(k, name); dist < bestDist || (dist == bestDist && name < best) {
			best, bestDist = name, dist
		}
	}
	if best == "" {
		known := make([]string, 0, len(fields))
		for name := range fields {
			known = append(known, name)
		}
		slices.Sort(known)
		return " (known keys here: " + strings.Join(known, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// keyLines maps each key path in a TOML document to the line it is on:
// "listen" (a table header), "listen.addr", "cache.rule[1].path".
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	arrays := map[string]int{} // array-of-tables path → elements seen
	var p unstable.Parser
	p.Reset(data)
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		var parts []string
		line := 0
		for it := e.Key(); it.Next(); {
			n := it.Node()
			parts = append(parts, string(n.Data))
			if line == 0 {
				line = p.Shape(n.Raw).Start.Line
			}
		}
		path := strings.Join(parts, ".")
		switch e.Kind {
		case unstable.Table:
			table = path
		case unstable.ArrayTable:
			table = fmt.Sprintf("%s[%d]", path, arrays[path])
			arrays[path]++
		case unstable.KeyValue:
			for i := 1; i < len(parts); i++ { // the tables a dotted key implies
				if prefix := joinKey(table, strings.Join(parts[:i], ".")); lines[prefix] == 0 {
					lines[prefix] = line
				}
			}
			path = joinKey(table, path)
		default:
			continue
		}
		if _, seen := lines[path]; !seen {
			lines[path] = line
		}
	}
	return lines
}
