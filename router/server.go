package router

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// DefaultMaxRequestBodySize is the largest request body the server reads
// and the router forwards when their options leave it 0: 64 MiB.
const DefaultMaxRequestBodySize = 64 << 20

// ServerOptions configures the main HTTP server.
type ServerOptions struct {
	ReadTimeout        time.Duration // one whole request, body included
	WriteTimeout       time.Duration // one whole response; 0 = none
	IdleTimeout        time.Duration // between requests on a keep-alive connection
	MaxHeaderSize      int
	MaxRequestBodySize int // 0 means DefaultMaxRequestBodySize
	Logger             *slog.Logger
}

// NewServer returns the fasthttp server userrouter listens with: it adds no
// Server, Date or Content-Type header of its own, streams request bodies to
// the handler instead of buffering them, and never parses forms.
func NewServer(h fasthttp.RequestHandler, o ServerOptions) *fasthttp.Server {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &fasthttp.Server{
		Handler:                      h,
		NoDefaultServerHeader:        true,
		NoDefaultDate:                true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		StreamRequestBody:            true,
		ReadTimeout:                  o.ReadTimeout,
		WriteTimeout:                 o.WriteTimeout,
		IdleTimeout:                  o.IdleTimeout,
		ReadBufferSize:               o.MaxHeaderSize,
		WriteBufferSize:              ioBufferSize,
		MaxRequestBodySize:           cmp.Or(o.MaxRequestBodySize, DefaultMaxRequestBodySize),
		CloseOnShutdown:              true,
		Logger:                       fasthttpLogger{newLimitedLog(logger, time.Second)},
		ErrorHandler:                 requestError,
	}
}

// NewAdminServer returns the admin listener's server: small requests only
// (a purge body is at most 1 MiB).
func NewAdminServer(a *Admin, o ServerOptions) *fasthttp.Server {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &fasthttp.Server{
		Handler:               a.Handle,
		NoDefaultServerHeader: true,
		ReadTimeout:           o.ReadTimeout,
		IdleTimeout:           o.IdleTimeout,
		MaxRequestBodySize:    1 << 20,
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{newLimitedLog(logger, time.Second)},
		ErrorHandler:          requestError,
	}
}

// requestError answers a request fasthttp could not read.
func requestError(ctx *fasthttp.RequestCtx, err error) {
	status, text := fasthttp.StatusBadRequest, "the request could not be read"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, text = fasthttp.StatusRequestEntityTooLarge, "the request body is too large"
	case errors.As(err, &small):
		status, text = fasthttp.StatusRequestHeaderFieldsTooLarge, "the request headers are too large (listen.max_header_size)"
	case isTimeout(err):
		status, text = fasthttp.StatusRequestTimeout, "the request did not arrive in time"
	}
	plainAnswer(ctx, status, text)
	ctx.SetConnectionClose()
}

// SplitAddr splits a listen, backend or memcached address, "host:port" or
// "unix:/path/to.sock", into a network ("tcp" or "unix") and an address for
// net.Dial or net.Listen. An empty host (":8090") means every interface.
// The error describes the address; callers add what it was for.
func SplitAddr(a string) (network, address string, err error) {
	if path, ok := strings.CutPrefix(a, "unix:"); ok {
		if !strings.HasPrefix(path, "/") {
			return "", "", fmt.Errorf("%q: a unix socket needs an absolute path, like \"unix:/run/app.sock\"", a)
		}
		return "unix", path, nil
	}
	if strings.Contains(a, "://") {
		return "", "", fmt.Errorf("%q: write host:port without a scheme, like \"127.0.0.1:8000\"", a)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", "", fmt.Errorf("%q is not host:port or unix:/path", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("%q: port %q is not a number from 1 to 65535", a, port)
	}
	if host != "" && !validHostName(host) {
		return "", "", fmt.Errorf("%q: %q is not a host name or IP address", a, host)
	}
	return "tcp", a, nil
}

// ValidHost accepts a DNS name or an IP literal ("[::1]" too), with an
// optional port: a Host header value.
func ValidHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return false
		}
		h = host
	}
	return validHostName(strings.Trim(h, "[]"))
}

// validHostName accepts an IP address or a DNS name, without a port.
func validHostName(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// Listen opens addr, as SplitAddr reads it. A unix socket left behind by a
// process that is gone is replaced; one in use is an error. The socket
// file gets mode.
func Listen(addr string, mode os.FileMode) (net.Listener, error) {
	network, path, err := SplitAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if network == "tcp" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen on %s: %s exists and is not a socket; remove it or choose another path", addr, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %s: another process is serving on that socket", addr)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen on %s: remove stale socket: %w", addr, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: set socket mode %o: %w", addr, mode, err)
	}
	return ln, nil
}
