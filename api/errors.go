package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/lethe-dev/lethe"
)

// statusOf is the one place where an error kind becomes an HTTP status.
// KindInternal, the zero value, is the only kind that answers 500, so an
// error nobody classified is treated as our fault and never the client's.
func statusOf(k lethe.Kind) int {
	switch k {
	case lethe.KindInvalid:
		return http.StatusBadRequest
	case lethe.KindNotFound:
		return http.StatusNotFound
	case lethe.KindConflict:
		return http.StatusConflict
	case lethe.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case lethe.KindUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case lethe.KindUnavailable:
		return http.StatusServiceUnavailable
	case lethe.KindUnauthorized:
		return http.StatusUnauthorized
	case lethe.KindForbidden:
		return http.StatusForbidden
	default:
		return http.StatusInternalServerError
	}
}

// errorBody is the contract's error shape.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Lines are the 1-based lines (or entries) of a submission at fault,
	// for the errors that have them (invalid_batch).
	Lines []int `json:"lines,omitempty"`
}

// linesError is a client error about some lines of a submission: the body
// names them in "lines", so a client can fix its file without Lethe ever
// repeating what the lines hold.
type linesError struct {
	err   *lethe.Error
	lines []int
}

func (e *linesError) Error() string { return e.err.Error() }
func (e *linesError) Unwrap() error { return e.err }

// writeError answers err with its kind's status and the contract's error
// shape. Errors that are not a *lethe.Error, or are internal, are logged with
// their cause and answered with a generic message, because their text was
// not written for clients. Unavailable dependencies are logged too, since
// the client only learns which one is down.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var le *lethe.Error
	if !errors.As(err, &le) || le.Kind == lethe.KindInternal {
		s.log.LogAttrs(r.Context(), slog.LevelError, "internal error",
			slog.String("method", r.Method), slog.String("route", r.Pattern),
			slog.String("error", err.Error()))
		le = &lethe.Error{Kind: lethe.KindInternal, Code: "internal", Message: "internal error; the cause has been logged"}
	} else if le.Kind == lethe.KindUnavailable {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "dependency unavailable",
			slog.String("method", r.Method), slog.String("route", r.Pattern),
			slog.String("code", le.Code), slog.String("error", err.Error()))
	}
	detail := errorDetail{Code: le.Code, Message: le.Message}
	var lines *linesError
	if errors.As(err, &lines) && lines.err == le {
		detail.Lines = lines.lines
	}
	writeJSON(w, statusOf(le.Kind), errorBody{Error: detail})
}

// writeErrorBody writes the error shape with an explicit status. Only
// writeError and the router's 405 (a routing fact with no error kind) use it.
func writeErrorBody(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message}})
}

// writeJSON answers v as JSON. Answers are never cached: they describe
// requests about people and change as the request progresses.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types reach here, so this is a programming error;
		// answer the generic internal error rather than half a body.
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func invalid(code, format string, args ...any) error {
	return lethe.Errorf(lethe.KindInvalid, code, format, args...)
}

// joinKind classifies cause as le while keeping cause in the chain, so the
// client sees le's code and message and the log sees what really happened.
func joinKind(le *lethe.Error, cause error) error {
	return fmt.Errorf("%w: %w", le, cause)
}
