package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/lethe-dev/lethe"
)

// MaxBodyBytes bounds a request body; the contract answers 413 above it.
const MaxBodyBytes = 1 << 20

// fieldNameRe is what an unknown field's name must look like to be quoted
// back in an error message; anything else may be a value typed in the wrong
// place and is not repeated.
var fieldNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// decodeJSON reads r's body into v strictly: JSON content type, at most
// MaxBodyBytes, no unknown fields, exactly one value. Its errors are
// *lethe.Error whose messages describe the problem by position or field
// name and never repeat what the client sent, which may be personal data.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	return decodeOne(http.MaxBytesReader(w, r.Body, MaxBodyBytes), v, "the request body")
}

// decodeOne reads exactly one JSON value from rd into v, with no unknown
// fields; decodeJSON reads a body with it, and a bulk erasure each line of
// its NDJSON. Its errors are decodeJSON's, naming what was read as what
// ("the request body", "line 7").
func decodeOne(rd io.Reader, v any, what string) error {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonErrorOf(err, what)
	}
	// A second value, or anything but whitespace after the first, is not
	// one JSON document.
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
		return nil
	case tooLarge(err):
		return jsonError(err)
	default:
		return invalid("invalid_json", "%s must hold exactly one JSON value", what)
	}
}

func checkContentType(ct string) error {
	_, err := mediaType(ct, "application/json")
	return err
}

// mediaType returns which of the accepted media types ct names, allowing
// no parameter but charset=utf-8; anything else is a 415.
func mediaType(ct string, accepted ...string) (string, error) {
	want := strings.Join(accepted, " or ")
	if ct == "" {
		return "", lethe.Errorf(lethe.KindUnsupportedMedia, "unsupported_media_type",
			"Content-Type is missing; send %s", want)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !slices.Contains(accepted, mt) {
		return "", lethe.Errorf(lethe.KindUnsupportedMedia, "unsupported_media_type",
			"Content-Type must be %s", want)
	}
	for k, val := range params {
		if k != "charset" || !strings.EqualFold(val, "utf-8") {
			return "", lethe.Errorf(lethe.KindUnsupportedMedia, "unsupported_media_type",
				"Content-Type must be %s, optionally with charset=utf-8", want)
		}
	}
	return mt, nil
}

func tooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// bodyTooLarge answers a body cut by http.MaxBytesReader, naming the limit
// of the route it was sent to.
func bodyTooLarge(err error) error {
	limit := int64(MaxBodyBytes)
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		limit = mb.Limit
	}
	return lethe.Errorf(lethe.KindTooLarge, "body_too_large", "the request body is larger than %d bytes", limit)
}

// jsonError turns a decoding error into a client error without quoting the
// input: encoding/json's own messages can contain fragments of it.
func jsonError(err error) error { return jsonErrorOf(err, "the request body") }

// jsonErrorOf is jsonError for a part of a body, named by what.
func jsonErrorOf(err error, what string) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case tooLarge(err):
		return bodyTooLarge(err)
	case errors.Is(err, io.EOF):
		return invalid("invalid_json", "%s is empty", what)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("invalid_json", "%s ends in the middle of a JSON value", what)
	case errors.As(err, &syn):
		return invalid("invalid_json", "%s is not valid JSON (syntax error at byte %d)", what, syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "subject" || strings.HasPrefix(typ.Field, "subject.") {
			return within(what, invalid("invalid_subject", "subject must be an object whose values are strings"))
		}
		if typ.Field == "" {
			return invalid("invalid_json", "%s must be a JSON object", what)
		}
		// Value is the JSON kind ("string", "number"), though for some
		// numbers encoding/json appends the literal: keep only the kind.
		kind, _, _ := strings.Cut(typ.Value, " ")
		return within(what, invalid("invalid_json", "field %s must not be a JSON %s", typ.Field, kind))
	}
	// encoding/json reports unknown fields with an untyped error whose text
	// is its only distinguishing mark.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		if fieldNameRe.MatchString(name) {
			return within(what, invalid("unknown_field", "unknown field %q", name))
		}
		return invalid("unknown_field", "%s has an unknown field", what)
	}
	return invalid("invalid_json", "%s cannot be decoded", what)
}

// within names the part of a body an error is about, for the messages
// that do not start with it.
func within(what string, err error) error {
	var le *lethe.Error
	if what == "the request body" || !errors.As(err, &le) {
		return err
	}
	return lethe.Errorf(le.Kind, le.Code, "%s: %s", what, le.Message)
}
