package lethe

import (
	"errors"
	"fmt"
)

// Kind is the category of an Error. Each kind maps to exactly one HTTP status
// in the API, and nowhere else, so packages below the API speak in kinds and
// never in status codes.
type Kind int

// The error kinds. Internal is the zero value on purpose: an error nobody
// classified is a bug on our side, never the client's.
const (
	KindInternal Kind = iota
	KindInvalid
	KindNotFound
	KindConflict
	KindTooLarge
	KindUnsupportedMedia
	KindUnavailable
	KindUnauthorized
	KindForbidden
)

// Error is an error that the client may see: a kind for the status, a
// snake_case code for programs and a message for people. Messages never carry
// identifier values.
type Error struct {
	Kind    Kind
	Code    string
	Message string
}

// Error returns the message prefixed by the code.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an Error with a formatted message.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorKind returns the kind of the first Error in err's chain, KindInternal
// when there is none.
func ErrorKind(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// ErrorCode returns the code of the first Error in err's chain, "internal"
// when there is none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return "internal"
}
