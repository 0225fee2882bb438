package api

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/lethe-dev/lethe/internal/httpx"
)

// serveHTTP routes one request and logs it. The log line names the route
// pattern, never the path or the query, which may carry anything a client
// typed, and never the body.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := httpx.NewStatusWriter(w)
	_, pattern := s.mux.Handler(r)
	var principal string
	func() {
		defer s.recoverPanic(sw, r)
		switch {
		case !s.hostAllowed(r):
			writeErrorBody(sw, http.StatusMisdirectedRequest, "host_not_allowed",
				"this API does not answer to that Host name")
		case pattern == "":
			s.unrouted(sw, r)
		default:
			var guarded *http.Request
			guarded, principal = s.guard(sw, r, s.table[pattern])
			if guarded != nil {
				s.mux.ServeHTTP(sw, guarded)
			}
		}
	}()
	route := pattern
	if route == "" {
		route = "unmatched"
	}
	took := time.Since(start)
	if s.requests != nil {
		code := sw.Status()
		if code == 0 {
			code = http.StatusOK // what net/http sends for a handler that wrote nothing
		}
		s.requests.ObserveRequest(route, code, took)
	}
	level := slog.LevelInfo
	if sw.Status() >= 500 {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", sw.Status()),
		slog.Duration("duration", took),
	}
	if principal != "" {
		attrs = append(attrs, slog.String("principal", principal))
	}
	s.log.LogAttrs(r.Context(), level, "http request", attrs...)
}

// recoverPanic turns a handler's panic into a logged internal error, so one
// bad request does not drop the connection without an answer. The panic
// value is not logged: it could hold anything the handler was holding.
func (s *Server) recoverPanic(w *httpx.StatusWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.log.LogAttrs(r.Context(), slog.LevelError, "handler panicked",
		slog.String("method", r.Method), slog.String("route", r.Pattern),
		slog.String("panic_type", fmt.Sprintf("%T", v)))
	if w.Status() == 0 {
		writeErrorBody(w, http.StatusInternalServerError, "internal", "internal error; the cause has been logged")
	}
}

// unrouted answers a request no pattern matched. The ServeMux knows whether
// the path exists under another method (405, with Allow) or not at all (404)
// but answers in plain text; this keeps its decision and its headers and
// rewrites the body into the contract's error shape. Anything else the mux
// answers (a redirect to a cleaned path) passes through unchanged.
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request) {
	c := &captureWriter{header: http.Header{}}
	s.mux.ServeHTTP(c, r)
	switch c.status {
	case http.StatusNotFound:
		writeErrorBody(w, http.StatusNotFound, "route_not_found", "no such route")
	case http.StatusMethodNotAllowed:
		if allow := c.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		writeErrorBody(w, http.StatusMethodNotAllowed, "method_not_allowed",
			fmt.Sprintf("method %s is not allowed on this route", r.Method))
	default:
		for k, v := range c.header {
			w.Header()[k] = v
		}
		w.WriteHeader(c.status)
		_, _ = w.Write(c.body.Bytes())
	}
}

// captureWriter holds an answer instead of sending it.
type captureWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captureWriter) Header() http.Header { return c.header }

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(b)
}
