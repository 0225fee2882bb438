package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"regexp"
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
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
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
		return invalid("invalid_json", "the request body must hold exactly one JSON value")
	}
}

func checkContentType(ct string) error {
	if ct == "" {
		return lethe.Errorf(lethe.KindUnsupportedMedia, "unsupported_media_type",
			"Content-Type is missing; send application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return lethe.Errorf(lethe.KindUnsupportedMedia, "unsupported_media_type",
			"Content-Type must be application/json")
	}
	for k, val := range params {
		if k != "charset" || !strings.EqualFold(val, "utf-8") {
			return lethe.Errorf(lethe.KindUnsupportedMedia, "unsupported_media_type",
				"Content-Type must be application/json, optionally with charset=utf-8")
		}
	}
	return nil
}

func tooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// jsonError turns a decoding error into a client error without quoting the
// input: encoding/json's own messages can contain fragments of it.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case tooLarge(err):
		return lethe.Errorf(lethe.KindTooLarge, "body_too_large",
			"the request body is larger than %d bytes", MaxBodyBytes)
	case errors.Is(err, io.EOF):
		return invalid("invalid_json", "the request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("invalid_json", "the request body ends in the middle of a JSON value")
	case errors.As(err, &syn):
		return invalid("invalid_json", "the request body is not valid JSON (syntax error at byte %d)", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "subject" || strings.HasPrefix(typ.Field, "subject.") {
			return invalid("invalid_subject", "subject must be an object whose values are strings")
		}
		if typ.Field == "" {
			return invalid("invalid_json", "the request body must be a JSON object")
		}
		// Value is the JSON kind ("string", "number"), though for some
		// numbers encoding/json appends the literal: keep only the kind.
		kind, _, _ := strings.Cut(typ.Value, " ")
		return invalid("invalid_json", "field %s must not be a JSON %s", typ.Field, kind)
	}
	// encoding/json reports unknown fields with an untyped error whose text
	// is its only distinguishing mark.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		if fieldNameRe.MatchString(name) {
			return invalid("unknown_field", "unknown field %q", name)
		}
		return invalid("unknown_field", "the request body has an unknown field")
	}
	return invalid("invalid_json", "the request body cannot be decoded")
}
