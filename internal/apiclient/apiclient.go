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
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultURL is the API `lethe dev` serves.
const DefaultURL = "http://127.0.0.1:8080"

// Timeout bounds one call, so that a hung API fails a command instead of
// stalling it.
const Timeout = 30 * time.Second

// UploadTimeout bounds one streamed call (Stream): sending a bulk
// erasure of up to 64 MiB over a slow link, and the API recording its
// 100,000 subjects before it answers, take longer than Timeout allows.
const UploadTimeout = 10 * time.Minute

// maxAnswer bounds an answer read whole: a list page is far smaller.
const maxAnswer = 16 << 20

// Client calls one API with one credential.
type Client struct {
	base  string
	token string
	http  *http.Client
	// upload sends streamed bodies, under UploadTimeout.
	upload *http.Client
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
	return &Client{base: strings.TrimRight(base, "/"), token: token,
		http: &http.Client{Timeout: Timeout}, upload: &http.Client{Timeout: UploadTimeout},
		shown: strings.TrimRight(u.Redacted(), "/")}, nil
}

// Error is the API's refusal of a call: its status and the code and
// message of the contract's error body.
type Error struct {
	Status  int
	Code    string
	Message string
	// Lines are the lines (from 1) of a submitted file that the API
	// refused (invalid_batch): the first ones it found, so that whoever
	// prepared the file can find them without the API repeating their
	// contents, which name people.
	Lines []int
}

// Error reads as the API said it: "404 erasure_not_found: no erasure
// request has this id", followed by the lines it refused, if any:
// "400 invalid_batch: …; lines 3, 17".
func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%d %s", e.Status, strings.ToLower(http.StatusText(e.Status)))
	}
	s := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	if len(e.Lines) > 0 {
		nums := make([]string, len(e.Lines))
		for i, n := range e.Lines {
			nums[i] = strconv.Itoa(n)
		}
		s += "; lines " + strings.Join(nums, ", ")
	}
	return s
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
	return c.send(ctx, c.http, req, header)
}

// Stream sends method path with a body of type contentType read from body
// while it is sent, in chunks of unknown length: a file of any size goes
// out in the memory of a buffer, never whole. body is read once, so a
// failed call is not sent again, and not at all when the API refuses the
// call before reading it; the answer is read as Do reads it.
//
// A body that cannot be read (a file on a failing disk, a pipe whose
// writer died) is reported as such, not as an API out of reach.
func (c *Client) Stream(ctx context.Context, method, path, contentType string, body io.Reader, header ...string) ([]byte, error) {
	src := &sourceReader{r: body}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, src)
	if err != nil {
		return nil, err
	}
	// Unknown: the body goes out chunked, as it is read.
	req.ContentLength = -1
	req.Header.Set("Content-Type", contentType)
	// The body waits for the API's go-ahead: a call it refuses at once
	// (no credential, a wrong route) is answered as such, not cut short
	// while a large file is still being sent.
	req.Header.Set("Expect", "100-continue")
	b, err := c.send(ctx, c.upload, req, header)
	if rerr := src.failure(); rerr != nil && err != nil {
		return nil, fmt.Errorf("read the body to send: %w", rerr)
	}
	return b, err
}

// sourceReader remembers the first error, other than the end, of the
// reader it wraps: the transport reads it in a goroutine of its own and
// reports the failure as the call's.
type sourceReader struct {
	r   io.Reader
	mu  sync.Mutex
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
	return n, err
}

func (s *sourceReader) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// send adds the credential, Accept and the header pairs to req, sends it
// with hc and reads the answer.
func (c *Client) send(ctx context.Context, hc *http.Client, req *http.Request, header []string) ([]byte, error) {
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hc.Do(req)
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
			Lines   []int  `json:"lines"`
			// Details is where an API that nests an error's particulars
			// would put the lines.
			Details struct {
				Lines []int `json:"lines"`
			} `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	lines := e.Error.Lines
	if len(lines) == 0 {
		lines = e.Error.Details.Lines
	}
	return &Error{Status: status, Code: e.Error.Code, Message: e.Error.Message, Lines: lines}
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
