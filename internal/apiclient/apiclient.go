// Package apiclient is the small client of Lethe's HTTP API that the
// `lethe` command line speaks through: it sends one call with a bearer
// credential and hands back the API's JSON as received, or an error that
// says whether the API refused the call or could not be reached, so that
// the command's exit status can tell a script which.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultURL is the API `lethe dev` serves.
const DefaultURL = "http://127.0.0.1:8080"

// Timeout bounds one call, so that a hung API fails a command instead of
// stalling it.
const Timeout = 30 * time.Second

// maxAnswer bounds an answer read whole: a list page is far smaller.
const maxAnswer = 16 << 20

// Client calls one API with one credential.
type Client struct {
	base  string
	token string
	http  *http.Client
	// shown is base as errors name it, without a password it may hold.
	shown string
}

// New returns a client of the API at base (an http or https URL), sending
// token as a bearer credential when it is not empty.
func New(base, token string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API URL %q is not an http or https URL", base)
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Timeout: Timeout},
		shown: strings.TrimRight(u.Redacted(), "/")}, nil
}

// Error is the API's refusal of a call: its status and the code and
// message of the contract's error body.
type Error struct {
	Status  int
	Code    string
	Message string
}

// Error reads as the API said it: "404 erasure_not_found: no erasure
// request has this id".
func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%d %s", e.Status, strings.ToLower(http.StatusText(e.Status)))
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Unavailable reports whether the API could not serve the call (5xx), as
// opposed to refusing it (4xx).
func (e *Error) Unavailable() bool { return e.Status >= 500 }

// UnreachableError is a call that got no answer: the API is down, the URL
// is wrong, or the network failed.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the API at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Do sends method path with body encoded as JSON (nil for none) and the
// header name/value pairs, and returns the answer's body when its status is
// 2xx. Any other answer is an *Error; no answer is an *UnreachableError.
func (c *Client) Do(ctx context.Context, method, path string, body any, header ...string) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request body: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnreachableError{URL: c.shown, Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, &UnreachableError{URL: c.shown, Err: fmt.Errorf("read answer: %w", err)}
	}
	if resp.StatusCode/100 != 2 {
		return nil, answerError(resp.StatusCode, b)
	}
	return b, nil
}

// answerError reads the contract's error body; an answer without one (a
// proxy's page) keeps its status alone, since its text could be anything.
func answerError(status int, body []byte) *Error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return &Error{Status: status, Code: e.Error.Code, Message: e.Error.Message}
}

// unwrapURLError drops the *url.Error layer, whose text repeats the method
// and the whole URL the message already names.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
