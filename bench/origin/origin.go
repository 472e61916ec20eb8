package main

import (
	"bytes"
	"cmp"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"html"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userrouter/userrouter/sessioncheck"
)

// Options configure an Origin.
type Options struct {
	Size      int           // page body size in bytes
	Render    time.Duration // time to render one page
	Workers   int           // pages rendered at once; default 8
	MaxAge    time.Duration // Cache-Control max-age of public pages
	DB        *sql.DB       // the session store; nil refuses logins
	SecretKey string        // signs sessions
	Cookie    string        // session cookie name; default "sessionid"
}

// Counters are what /stats reports.
type Counters struct {
	Requests atomic.Uint64
	Renders  atomic.Uint64 // pages rendered (public and personal)
	Personal atomic.Uint64 // of which for signed-in visitors
	Sessions atomic.Uint64 // session reads
	Logins   atomic.Uint64
	Carts    atomic.Uint64
}

// Origin is the stand-in application.
type Origin struct {
	o       Options
	signer  *sessioncheck.DjangoSigner
	workers chan struct{}
	filler  []byte
	users   atomic.Int64
	Stats   Counters
}

// New returns an Origin.
func New(o Options) *Origin {
	o.Workers = cmp.Or(o.Workers, 8)
	o.Cookie = cmp.Or(o.Cookie, "sessionid")
	line := []byte("<p>userrouter origin: a page as a web application would render it.</p>\n")
	return &Origin{
		o:       o,
		signer:  &sessioncheck.DjangoSigner{Secrets: []string{cmp.Or(o.SecretKey, "userrouter-origin-not-secret")}},
		workers: make(chan struct{}, o.Workers),
		filler:  bytes.Repeat(line, o.Size/len(line)+1),
	}
}

// Handle serves one request.
func (g *Origin) Handle(ctx *fasthttp.RequestCtx) {
	g.Stats.Requests.Add(1)
	path := string(ctx.Path())
	switch {
	case path == "/healthz":
		ctx.SetBodyString("ok\n")
	case path == "/stats":
		g.stats(ctx)
	case path == "/login" || path == "/cart":
		if !ctx.IsPost() {
			ctx.Response.Header.Set("Allow", "POST")
			ctx.Error("POST only\n", fasthttp.StatusMethodNotAllowed)
			return
		}
		g.work(func() { g.startSession(ctx, path == "/login") })
	default:
		g.work(func() { g.page(ctx, path) })
	}
}

// work runs f in one of the workers, waiting for a free one first, and
// pays the render time there, as a gunicorn worker would.
func (g *Origin) work(f func()) {
	g.workers <- struct{}{}
	defer func() { <-g.workers }()
	if g.o.Render > 0 {
		time.Sleep(g.o.Render)
	}
	f()
}

// page renders path: a personal page for a signed-in session, the public
// page otherwise.
func (g *Origin) page(ctx *fasthttp.RequestCtx, path string) {
	g.Stats.Renders.Add(1)
	h := &ctx.Response.Header
	ctx.SetContentType("text/html; charset=utf-8")
	signedIn := false
	if key := ctx.Request.Header.Cookie(g.o.Cookie); len(key) > 0 {
		h.Set("Vary", "Cookie") // Django's SessionMiddleware, once the session was read
		var err error
		if signedIn, err = g.signedIn(string(key)); err != nil {
			ctx.Error("session store: "+err.Error()+"\n", fasthttp.StatusInternalServerError)
			return
		}
	}
	if st, err := strconv.Atoi(string(ctx.QueryArgs().Peek("status"))); err == nil && st >= 200 && st <= 599 {
		ctx.SetStatusCode(st)
	}
	var body bytes.Buffer
	body.Grow(g.o.Size + 256)
	fmt.Fprintf(&body, "<!doctype html>\n<title>%s</title>\n", html.EscapeString(path))
	if signedIn {
		g.Stats.Personal.Add(1)
		h.Set("Cache-Control", "private")
		fmt.Fprintf(&body, "<p class=user>Signed in: this page is yours alone (%s).</p>\n", time.Now().UTC().Format(time.RFC3339Nano))
	} else {
		h.Set("Cache-Control", "max-age="+strconv.Itoa(int(g.o.MaxAge/time.Second)))
		h.Set("Surrogate-Key", surrogateKeys(path, ctx.QueryArgs().GetUintOrZero("tags")))
		if ctx.QueryArgs().Has("set-cookie") {
			h.Set("Set-Cookie", "csrftoken="+newSessionKey()+"; Path=/; SameSite=Lax")
		}
	}
	if body.Len() < g.o.Size {
		body.Write(g.filler[:g.o.Size-body.Len()])
	}
	ctx.SetBody(body.Bytes())
}

// signedIn reads the session as Django's middleware would.
func (g *Origin) signedIn(key string) (bool, error) {
	if g.o.DB == nil || len(key) > 40 {
		return false, nil
	}
	g.Stats.Sessions.Add(1)
	var data string
	err := g.o.DB.QueryRow("SELECT session_data FROM django_session WHERE session_key = ? AND expire_date > ?",
		key, time.Now().UTC().Format(djangoTime)).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ok, err := sessioncheck.ParseDjangoSession([]byte(data), g.signer)
	if err != nil {
		return false, nil // Django logs "Session data corrupted" and starts afresh
	}
	return ok, nil
}

// djangoTime is how Django writes expire_date: UTC, microseconds.
const djangoTime = "2006-01-02 15:04:05.000000"

// startSession writes a new session, signed in (login) or holding a cart,
// and sets its cookie, as django.contrib.auth.login and a cart view do.
func (g *Origin) startSession(ctx *fasthttp.RequestCtx, login bool) {
	if g.o.DB == nil {
		ctx.Error("no session store: start origin with -sqlite or -mysql\n", fasthttp.StatusServiceUnavailable)
		return
	}
	var session map[string]any
	if login {
		id := g.users.Add(1)
		session = map[string]any{
			"_auth_user_id":      strconv.FormatInt(id, 10),
			"_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
			"_auth_user_hash":    fmt.Sprintf("%040x", id),
		}
	} else {
		session = map[string]any{"cart": []int{1}}
	}
	now := time.Now()
	data, err := g.signer.Encode(session, now)
	if err != nil {
		ctx.Error(err.Error()+"\n", fasthttp.StatusInternalServerError)
		return
	}
	key := newSessionKey()
	expires := now.Add(14 * 24 * time.Hour)
	if _, err := g.o.DB.Exec("INSERT INTO django_session (session_key, session_data, expire_date) VALUES (?, ?, ?)",
		key, data, expires.UTC().Format(djangoTime)); err != nil {
		ctx.Error("session store: "+err.Error()+"\n", fasthttp.StatusInternalServerError)
		return
	}
	if login {
		g.Stats.Logins.Add(1)
	} else {
		g.Stats.Carts.Add(1)
	}
	var c fasthttp.Cookie
	c.SetKey(g.o.Cookie)
	c.SetValue(key)
	c.SetPath("/")
	c.SetHTTPOnly(true)
	c.SetExpire(expires)
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	ctx.Response.Header.SetCookie(&c)
	ctx.Response.Header.Set("Cache-Control", "private, no-store")
	ctx.SetBodyString(map[bool]string{true: "signed in\n", false: "cart started\n"}[login])
}

func (g *Origin) stats(ctx *fasthttp.RequestCtx) {
	s := &g.Stats
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	b, _ := json.Marshal(map[string]uint64{
		"requests": s.Requests.Load(), "renders": s.Renders.Load(), "personal": s.Personal.Load(),
		"session_reads": s.Sessions.Load(), "logins": s.Logins.Load(), "carts": s.Carts.Load(),
	})
	ctx.SetBody(append(b, '\n'))
}

// surrogateKeys names a page for purges: "all", its section (the first
// path segment) and the page itself ("page-17" for /page/17), plus n
// numbered tags.
func surrogateKeys(path string, n int) string {
	trimmed := strings.Trim(path, "/")
	page := tagSafe(strings.ReplaceAll(trimmed, "/", "-"))
	if page == "" {
		page = "home"
	}
	section, _, _ := strings.Cut(trimmed, "/")
	keys := []string{"all", "section-" + cmp.Or(tagSafe(section), "home"), page}
	for i := range min(n, 64) {
		keys = append(keys, "tag-"+strconv.Itoa(i))
	}
	return strings.Join(keys, " ")
}

// tagSafe returns s when it is a short run of letters, digits, '-', '_'
// and '.', and a hash of it otherwise.
func tagSafe(s string) string {
	ok := len(s) <= 64
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	if ok {
		return s
	}
	h := fnv.New64a()
	h.Write([]byte(s))
	return fmt.Sprintf("h-%016x", h.Sum64())
}
