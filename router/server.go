package router

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// ServerOptions configures the main HTTP server.
type ServerOptions struct {
	ReadTimeout        time.Duration // one whole request, body included
	WriteTimeout       time.Duration // one whole response; 0 = none
	IdleTimeout        time.Duration // between requests on a keep-alive connection
	MaxHeaderSize      int
	MaxRequestBodySize int
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
		MaxRequestBodySize:           o.MaxRequestBodySize,
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

// Listen opens "host:port" or "unix:/path". A unix socket left behind by a
// process that is gone is replaced; one in use is an error. The socket
// file gets mode.
func Listen(addr string, mode os.FileMode) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
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
