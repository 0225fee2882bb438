package bench

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

	"github.com/lethe-dev/lethe"
)

// apiClient speaks Lethe's public HTTP API, as any client would: the
// benchmark measures what clients get, not what the server's internals do.
type apiClient struct {
	base  string
	token string
	http  *http.Client
	// upload sends a bulk erasure's subjects, which with the API
	// recording them before it answers takes longer than http allows.
	upload *http.Client
}

// uploadTimeout bounds one bulk submission: streaming up to
// lethe.MaxBatchSubjects subjects and the API recording them.
const uploadTimeout = 10 * time.Minute

// newAPIClient returns a client for the API at base whose connection pool
// holds enough idle connections for inFlight callers; with the default of
// two, most calls under load would open a new connection.
func newAPIClient(base, token string, inFlight int) *apiClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = inFlight + 16
	tr.MaxIdleConnsPerHost = inFlight + 16
	return &apiClient{base: strings.TrimRight(base, "/"), token: token,
		http: &http.Client{Transport: tr, Timeout: time.Minute}, upload: &http.Client{Transport: tr, Timeout: uploadTimeout}}
}

func (c *apiClient) close() { c.http.CloseIdleConnections() }

// statusError is an answer outside 2xx.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// transientHTTP reports whether a call may succeed if made again: the
// server said it is unavailable or overloaded, or the connection failed
// before an answer came. An answer of 500 is not retried: it is a bug.
func transientHTTP(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.status == http.StatusServiceUnavailable || se.status == http.StatusTooManyRequests
	}
	return err != nil
}

// do sends one request and decodes a 2xx answer into out (when not nil).
// header holds pairs of names and values.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any, header ...string) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(c.http, req, out, header)
}

// send sends req with hc, with the credential and the header pairs, and
// decodes a 2xx answer into out (when not nil).
func (c *apiClient) send(hc *http.Client, req *http.Request, out any, header []string) error {
	method, path := req.Method, strings.TrimPrefix(req.URL.String(), c.base)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return &statusError{status: resp.StatusCode,
			msg: fmt.Sprintf("%s %s answered %s: %s", method, path, resp.Status, strings.TrimSpace(string(b[:min(len(b), 512)])))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// putSystem registers (or replaces) a system erasing by identifier type
// idType; batch declares that it takes the batch commands of a bulk
// erasure, and is sent only when set.
func (c *apiClient) putSystem(ctx context.Context, name, idType string, batch bool) error {
	body := map[string]any{
		"identifiers": []string{idType},
		"owner":       "lethe-bench",
		"description": "synthetic system of lethe bench; confirms every command at once",
	}
	if batch {
		body["batch"] = true
	}
	return c.do(ctx, http.MethodPut, "/v1/systems/"+name, body, nil)
}

func (c *apiClient) retireSystem(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/systems/"+name, nil, nil)
}

func (c *apiClient) listSystems(ctx context.Context) ([]lethe.System, error) {
	var page struct {
		Items []lethe.System `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/systems", nil, &page)
	return page.Items, err
}

// submit posts an erasure of subject and returns the accepted request. An
// overloaded API (503) or a broken connection is answered by posting again
// under the same Idempotency-Key, as a careful client would, so that a
// retry never creates a second request.
func (c *apiClient) submit(ctx context.Context, key string, subject map[string]string) (lethe.Erasure, error) {
	body := map[string]any{"subject": subject, "reason": "gdpr_art17", "requested_by": "lethe-bench"}
	var e lethe.Erasure
	err := retry(ctx, transientHTTP, func(ctx context.Context) error {
		return c.do(ctx, http.MethodPost, "/v1/erasures", body, &e, "Idempotency-Key", key)
	})
	return e, err
}

func (c *apiClient) erasure(ctx context.Context, id string) (lethe.Erasure, error) {
	var e lethe.Erasure
	err := retry(ctx, transientHTTP, func(ctx context.Context) error {
		return c.do(ctx, http.MethodGet, "/v1/erasures/"+id, nil, &e)
	})
	return e, err
}

// submitBatch posts a bulk erasure whose NDJSON body write produces as it
// is sent, through a pipe: the benchmark never holds the subjects in
// memory, as a client submitting 100,000 of them should not. A transient
// refusal is answered as submit answers it, by sending the same subjects
// again, written anew, under the same Idempotency-Key.
func (c *apiClient) submitBatch(ctx context.Context, key string, write func(io.Writer) error) (lethe.Batch, error) {
	q := url.Values{"reason": {"gdpr_art17"}, "requested_by": {"lethe-bench"}}
	var b lethe.Batch
	err := retry(ctx, transientHTTP, func(ctx context.Context) error {
		pr, pw := io.Pipe()
		written := make(chan struct{})
		go func() {
			defer close(written)
			pw.CloseWithError(write(pw))
		}()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/erasure-batches?"+q.Encode(), pr)
		if err == nil {
			req.ContentLength = -1
			req.Header.Set("Content-Type", "application/x-ndjson")
			req.Header.Set("Expect", "100-continue")
			err = c.send(c.upload, req, &b, []string{"Idempotency-Key", key})
		}
		// A call that ended before the body did stops the writer.
		pr.CloseWithError(errors.New("the call ended"))
		<-written
		return err
	})
	return b, err
}

func (c *apiClient) batch(ctx context.Context, id string) (lethe.Batch, error) {
	var b lethe.Batch
	err := retry(ctx, transientHTTP, func(ctx context.Context) error {
		return c.do(ctx, http.MethodGet, "/v1/erasure-batches/"+id, nil, &b)
	})
	return b, err
}
