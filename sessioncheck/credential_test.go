package sessioncheck

import (
	"bytes"
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/userrouter/userrouter/sessioncheck/sessiontest"
)

const (
	drfToken  = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
	tastyKey  = "204db7bcfafb2deb7506b89eb3b9b715b09905c8"
	tastyForm = `(?P<user>[^:]+):(?P<key>[0-9a-f]{40})`
)

func TestCredentialFinder(t *testing.T) {
	token := CredentialOptions{Scheme: "Token"}
	apiKey := CredentialOptions{Scheme: "ApiKey", Pattern: tastyForm}
	both := CredentialOptions{Scheme: "Token", QueryParam: "api_key"}
	for _, tc := range []struct {
		name      string
		o         CredentialOptions
		auth      []string
		query     string
		want      Found
		user, key string
	}{
		{"none", token, nil, "", NoCredential, "", ""},
		{"empty header", token, []string{""}, "", NoCredential, "", ""},
		{"DRF token", token, []string{"Token " + drfToken}, "", CredentialFound, "", drfToken},
		{"scheme in any case", token, []string{"token " + drfToken}, "", CredentialFound, "", drfToken},
		{"several spaces", token, []string{"Token   " + drfToken}, "", CredentialFound, "", drfToken},
		{"Basic", token, []string{"Basic dXNlcjpwYXNz"}, "", OtherAuthorization, "", ""},
		{"scheme prefix of another", token, []string{"Tokens " + drfToken}, "", OtherAuthorization, "", ""},
		{"scheme alone", token, []string{"Token"}, "", OtherAuthorization, "", ""},
		{"scheme and space", token, []string{"Token "}, "", BadCredential, "", ""},
		{"space inside", token, []string{"Token abc def"}, "", BadCredential, "", ""},
		{"control byte", token, []string{"Token abc\x01"}, "", BadCredential, "", ""},
		{"NUL", token, []string{"Token abc\x00def"}, "", BadCredential, "", ""},
		{"non-ASCII", token, []string{"Token abcé"}, "", BadCredential, "", ""},
		{"too long", token, []string{"Token " + strings.Repeat("a", MaxCredentialLength+1)}, "", BadCredential, "", ""},
		{"longest", token, []string{"Token " + strings.Repeat("a", MaxCredentialLength)}, "", CredentialFound, "", strings.Repeat("a", MaxCredentialLength)},
		{"two headers", token, []string{"Token " + drfToken, "Token " + drfToken}, "", SeveralCredentials, "", ""},
		{"Tastypie", apiKey, []string{"ApiKey alice:" + tastyKey}, "", CredentialFound, "alice", tastyKey},
		{"Tastypie, no user", apiKey, []string{"ApiKey " + tastyKey}, "", BadCredential, "", ""},
		{"Tastypie, short key", apiKey, []string{"ApiKey alice:abc"}, "", BadCredential, "", ""},
		{"Tastypie, colon in user", apiKey, []string{"ApiKey a:b:" + tastyKey}, "", BadCredential, "", ""},
		{"Tastypie, trailing text", apiKey, []string{"ApiKey alice:" + tastyKey + "0"}, "", BadCredential, "", ""},
		{"query parameter", both, nil, "a=1&api_key=" + drfToken, CredentialFound, "", drfToken},
		{"query parameter, not plain", both, nil, "api_key=a%20b", BadCredential, "", ""},
		{"query parameter, empty", both, nil, "api_key=", BadCredential, "", ""},
		{"query parameter twice", both, nil, "api_key=a&api_key=b", SeveralCredentials, "", ""},
		{"query parameter and header", both, []string{"Token " + drfToken}, "api_key=a", SeveralCredentials, "", ""},
		{"query parameter and Basic", both, []string{"Basic x"}, "api_key=a", SeveralCredentials, "", ""},
		{"another parameter", both, nil, "api_key_x=a&x=api_key", NoCredential, "", ""},
		{"query parameter, name escaped", both, nil, "api%5Fkey=" + drfToken, BadCredential, "", ""},
		{"query parameter, name escaped, lower hex", both, nil, "%61pi_key=" + drfToken, BadCredential, "", ""},
		{"query parameter, escaped and plain", both, nil, "api_key=a&api%5fkey=b", SeveralCredentials, "", ""},
		{"query parameter, bad escape", both, nil, "api%5key=a&api%=b", NoCredential, "", ""},
		{"no parameter configured", token, nil, "api_key=a", NoCredential, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewCredentialFinder(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			var auth [][]byte
			for _, a := range tc.auth {
				auth = append(auth, []byte(a))
			}
			c, found := f.Find(auth, []byte(tc.query))
			if found != tc.want || string(c.User) != tc.user || string(c.Key) != tc.key {
				t.Errorf("got %d %q %q; want %d %q %q", found, c.User, c.Key, tc.want, tc.user, tc.key)
			}
			if found == CredentialFound && (c.Header == nil) == (c.Query == nil) {
				t.Errorf("got header %q and query %q; want exactly one", c.Header, c.Query)
			}
		})
	}
}

func TestNewCredentialFinderRefuses(t *testing.T) {
	for _, o := range []CredentialOptions{
		{},
		{Scheme: "To ken"},
		{Scheme: "Token", Pattern: "(?P<user>.+)"}, // no key group
		{Scheme: "Token", Pattern: "("},
		{QueryParam: "a=b"},
	} {
		if _, err := NewCredentialFinder(o); err == nil {
			t.Errorf("%+v: got no error", o)
		}
	}
}

func TestCredentialKey(t *testing.T) {
	k := CredentialKey(nil, []byte("alice"), []byte(tastyKey))
	if u, key := SplitCredentialKey(string(k)); u != "alice" || key != tastyKey {
		t.Errorf("got %q %q; want alice and the key", u, key)
	}
	if u, key := SplitCredentialKey(string(CredentialKey(nil, nil, []byte(drfToken)))); u != "" || key != drfToken {
		t.Errorf("got %q %q; want no user and the token", u, key)
	}
	if u, key := SplitCredentialKey("0123456789abcdef0123456789abcdef"); u != "" || key != "0123456789abcdef0123456789abcdef" {
		t.Errorf("a session key: got %q %q", u, key)
	}
}

func TestCompileQueryUser(t *testing.T) {
	q := "SELECT 1 FROM a WHERE k = :key AND u = :user"
	if _, _, err := compileQuery(q, QuestionMark, true, false); err == nil || !strings.Contains(err.Error(), ":user") {
		t.Errorf("a session query with :user: got %v; want an error naming :user", err)
	}
	got, params, err := compileQuery(q, QuestionMark, true, true)
	if err != nil || got != "SELECT 1 FROM a WHERE k = ? AND u = ?" || len(params) != 2 || params[1] != paramUser {
		t.Errorf("got %q %v %v", got, params, err)
	}
	if err := ValidateCredentialQuery("SELECT 1 FROM a WHERE u = :user"); err == nil {
		t.Error("a credential query without :key: got no error")
	}
	s := &SQLStore{params: []param{paramUser, paramKey}}
	if args := s.args(string(CredentialKey(nil, []byte("alice"), []byte("k1"))), time.Now()); args[0] != "alice" || args[1] != "k1" {
		t.Errorf("args: got %q; want alice, k1", args)
	}
}

func FuzzCredentialFinder(f *testing.F) {
	f.Add("Token "+drfToken, "")
	f.Add("ApiKey alice:"+tastyKey, "api_key=x")
	f.Add("", "a=1&api_key="+drfToken)
	f.Add("apikey  :", "api_key=&api_key")
	tok, _ := NewCredentialFinder(CredentialOptions{Scheme: "Token", QueryParam: "api_key"})
	api, _ := NewCredentialFinder(CredentialOptions{Scheme: "ApiKey", Pattern: tastyForm, QueryParam: "api_key"})
	f.Fuzz(func(t *testing.T, auth, query string) {
		for _, fd := range []*CredentialFinder{tok, api} {
			c, found := fd.Find([][]byte{[]byte(auth)}, []byte(query))
			if found != CredentialFound {
				if c.Key != nil || c.User != nil {
					t.Fatalf("%d with a credential %q %q", found, c.User, c.Key)
				}
				continue
			}
			if len(c.Key) == 0 || len(c.User)+len(c.Key) > MaxCredentialLength || !visible(c.User) || !visible(c.Key) {
				t.Fatalf("found %q %q: out of bounds", c.User, c.Key)
			}
			if bytes.IndexByte(c.User, 0) >= 0 || bytes.IndexByte(c.Key, 0) >= 0 {
				t.Fatalf("found a NUL in %q %q", c.User, c.Key)
			}
			if c.Header != nil && !strings.Contains(auth, string(c.Key)) || c.Query != nil && !strings.Contains(query, string(c.Key)) {
				t.Fatalf("found %q, not in the request", c.Key)
			}
		}
	})
}

func BenchmarkCredentialFinder(b *testing.B) {
	tok, _ := NewCredentialFinder(CredentialOptions{Scheme: "Token"})
	api, _ := NewCredentialFinder(CredentialOptions{Scheme: "ApiKey", Pattern: tastyForm})
	for _, bc := range []struct {
		name string
		f    *CredentialFinder
		auth [][]byte
	}{
		{"Token", tok, [][]byte{[]byte("Token " + drfToken)}},
		{"ApiKey", api, [][]byte{[]byte("ApiKey alice:" + tastyKey)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, found := bc.f.Find(bc.auth, nil); found != CredentialFound {
					b.Fatal(found)
				}
			}
		})
	}
}

// tastypieDDL is Tastypie's tables on MySQL as its migration and Django's
// auth create them (the columns the query reads).
const tastypieDDL = `
CREATE TABLE auth_user (id integer AUTO_INCREMENT NOT NULL PRIMARY KEY, password varchar(128) NOT NULL,
  username varchar(150) NOT NULL UNIQUE, is_active bool NOT NULL);
CREATE TABLE tastypie_apikey (id integer AUTO_INCREMENT NOT NULL PRIMARY KEY, ` + "`key`" + ` varchar(128) NOT NULL,
  created datetime(6) NOT NULL, user_id integer NOT NULL UNIQUE,
  CONSTRAINT tastypie_apikey_user_id_fk FOREIGN KEY (user_id) REFERENCES auth_user (id));
CREATE INDEX tastypie_apikey_key ON tastypie_apikey (` + "`key`" + `)`

// tastypieQuery is what Tastypie's ApiKeyAuthentication checks: the user
// named, active, whose key it is.
const tastypieQuery = "SELECT a.user_id FROM tastypie_apikey a JOIN auth_user u ON u.id = a.user_id " +
	"WHERE a.`key` = :key AND u.username = :user AND u.is_active"

// TestMySQLTastypieApiKey checks "ApiKey user:key" credentials, taken out
// of the header by the pattern, against a Tastypie-shaped table on the
// test MariaDB: the user and key are bound, and only the pair an active
// user has is valid.
func TestMySQLTastypieApiKey(t *testing.T) {
	dsn := sessiontest.MySQLDSN(t)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sessiontest.Exec(t, db, tastypieDDL)
	const other = "f00dfeedf00dfeedf00dfeedf00dfeedf00dfeed"
	const idle = "1111111111111111111111111111111111111111"
	sessiontest.Exec(t, db,
		"INSERT INTO auth_user (id, password, username, is_active) VALUES (1, '!', 'alice', 1), (2, '!', 'bob', 1), (3, '!', 'carol', 0)",
		"INSERT INTO tastypie_apikey (`key`, created, user_id) VALUES ('"+tastyKey+"', NOW(6), 1), ('"+other+"', NOW(6), 2), ('"+idle+"', NOW(6), 3)")

	db2, err := OpenMySQL(dsn, 4)
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewSQLStore(db2, SQLOptions{Query: tastypieQuery, Placeholder: QuestionMark, HashComments: true, QueryError: MySQLQueryError, User: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Store: store, Rule: RuleExists})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f, err := NewCredentialFinder(CredentialOptions{Scheme: "ApiKey", Pattern: tastyForm})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, header, want string }{
		{"alice's key", "ApiKey alice:" + tastyKey, "valid"},
		{"bob's key", "ApiKey bob:" + other, "valid"},
		// MariaDB's default collation ignores case, as Django's
		// username lookup on it does: Tastypie accepts it too.
		{"user in another case", "ApiKey ALICE:" + tastyKey, "valid"},
		{"alice with bob's key", "ApiKey alice:" + other, "invalid"},
		{"bob with alice's key", "ApiKey bob:" + tastyKey, "invalid"},
		{"inactive user", "ApiKey carol:" + idle, "invalid"},
		{"unknown user", "ApiKey dave:" + tastyKey, "invalid"},
		{"unknown key", "ApiKey alice:" + strings.Repeat("0", 40), "invalid"},
		{"quote in user", "ApiKey alice'--:" + tastyKey, "invalid"},
		{"injection in user", "ApiKey x'/**/OR/**/'1'='1:" + tastyKey, "invalid"},
		{"not the form", "ApiKey " + tastyKey, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, found := f.Find([][]byte{[]byte(tc.header)}, nil)
			if found != CredentialFound {
				if tc.want != "not found" {
					t.Fatalf("got %d; want a credential", found)
				}
				return
			}
			for range 2 { // the second from the verdict cache
				v, err := s.Check(context.Background(), CredentialKey(nil, c.User, c.Key))
				got := map[Verdict]string{Identified: "valid", Anonymous: "invalid"}[v]
				if err != nil {
					got = "doubt:" + Reason(err)
				}
				if got != tc.want {
					t.Errorf("got %s; want %s", got, tc.want)
				}
			}
		})
	}
	if s.Stats.CacheHits.Load() == 0 || s.Stats.Queries.Load() != 10 {
		t.Errorf("got %d queries, %d cache hits; want 10 queries and the rest from the cache", s.Stats.Queries.Load(), s.Stats.CacheHits.Load())
	}
}
