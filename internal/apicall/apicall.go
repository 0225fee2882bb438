// Package apicall sends requests to Lethe's HTTP API and reads the answers
// whole: the small client that the end-to-end and fault-injection suites
// share, so that both speak to the API the same way.
package apicall

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// Timeout bounds one request, so that a hung API fails a test instead of
// stalling it.
const Timeout = 30 * time.Second

// Response is one HTTP answer, read whole.
type Response struct {
	Status int
	Body   []byte
	// Header is the answer's header, for the checks that read one (the
	// signature of a pull-mode lease).
	Header http.Header
}

// Decode unmarshals the body into v and fails t when it does not fit.
func (r Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// ErrorCode returns the code of an error answer, empty when there is none.
func (r Response) ErrorCode() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// JSON encodes body for Do: nil sends no body and no content type.
func JSON(body any) (io.Reader, string, error) {
	if body == nil {
		return nil, "", nil
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, "", fmt.Errorf("encode request body: %w", err)
	}
	return bytes.NewReader(b), "application/json", nil
}

// NoHeader as a header's value in Do's pairs sends no such header, so that
// a test can take back one its helper adds.
const NoHeader = "\x00none"

// Do sends method path to the API at base with body (nil for none) of
// contentType and the header name/value pairs (later pairs win), within Timeout of ctx. A
// transport failure is an error, for callers that expect the API to
// struggle; any HTTP answer is a Response.
func Do(ctx context.Context, base, method, path string, body io.Reader, contentType string, header ...string) (Response, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return Response{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == NoHeader {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, err
	}
	return Response{Status: resp.StatusCode, Body: b, Header: resp.Header}, nil
}
