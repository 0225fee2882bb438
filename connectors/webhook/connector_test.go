package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/webhook"
	"github.com/lethe-dev/lethe/wire"
)

// personal stands for an identifier value: it must never show up in a log
// line or in a detail the connector writes.
const personal = "ada@example.com"

// leak is a text the endpoint answers in bodies: bodies are never logged.
const leak = "body-text-that-must-not-be-logged"

// testTimeout bounds each test that talks over HTTP or Kafka.
const testTimeout = 60 * time.Second

func newRequest() connectors.Request {
	now := time.Now().UTC().Truncate(time.Second)
	return connectors.Request{
		CommandID:   uuid.NewString(),
		RequestID:   uuid.NewString(),
		System:      "crm",
		Attempt:     2,
		Identifiers: []wire.Identifier{{Type: "email", Value: personal}, {Type: "user_id", Value: "u-1"}},
		DryRun:      true,
		IssuedAt:    now,
		ConfirmBy:   now.Add(72 * time.Hour),
	}
}

// syncBuffer collects logs written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// endpoint is a scripted endpoint: answer decides each call's response from
// its number (1 for the first). It verifies every request like a real
// service would and records what it received.
type endpoint struct {
	srv    *httptest.Server
	calls  atomic.Int32
	mu     sync.Mutex
	bodies []webhook.Delivery
	errs   []string
}

func newEndpoint(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, call int)) *endpoint {
	t.Helper()
	e := &endpoint{}
	v := &webhook.Verifier{Secret: testSecret}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(e.calls.Add(1))
		body, err := v.Verify(r)
		var d webhook.Delivery
		if err == nil {
			err = json.Unmarshal(body, &d)
		}
		e.mu.Lock()
		if err != nil {
			e.errs = append(e.errs, err.Error())
		}
		e.bodies = append(e.bodies, d)
		e.mu.Unlock()
		answer(w, r, n)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) deliveries() []webhook.Delivery {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]webhook.Delivery(nil), e.bodies...)
}

func (e *endpoint) verifyErrors() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.errs...)
}

func testConfig(url string, log io.Writer) webhook.Config {
	return webhook.Config{
		System:    "crm",
		URL:       url,
		SecretEnv: "LETHE_WEBHOOK_SECRET",
		Timeout:   5 * time.Second,
		Retries:   webhook.RetryConfig{MaxAttempts: 3, Initial: time.Millisecond, Max: 4 * time.Millisecond},
		Headers:   map[string]string{"X-Team": "crm"},
		Logger:    slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func newConnector(t *testing.T, cfg webhook.Config) *webhook.Connector {
	t.Helper()
	c, err := webhook.New(cfg, testSecret, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func answerJSON(status int, body string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// thenOK answers status with a leaky body for the first n calls, then erased.
func thenOK(n int, status int) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, r *http.Request, call int) {
		if call <= n {
			w.WriteHeader(status)
			io.WriteString(w, leak)
			return
		}
		answerJSON(200, `{"outcome":"erased","records":3}`)(w, r, call)
	}
}

func TestEraseMapsAnswers(t *testing.T) {
	derived := `[{"type":"stripe_customer_id","value":"cus_123"}]`
	cases := []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request, int)
		want   connectors.Result
		calls  int
	}{
		{"200 erased", answerJSON(200, `{"outcome":"erased","records":3,"detail":"3 rows","derived_identifiers":`+derived+`}`),
			connectors.Result{Outcome: wire.OutcomeErased, Records: 3, Detail: "3 rows", Derived: []wire.Identifier{{Type: "stripe_customer_id", Value: "cus_123"}}}, 1},
		{"200 not_found", answerJSON(200, `{"outcome":"not_found"}`), connectors.Result{Outcome: wire.OutcomeNotFound}, 1},
		{"200 retained", answerJSON(200, `{"outcome":"retained","records":1,"detail":"HGB §257"}`),
			connectors.Result{Outcome: wire.OutcomeRetained, Records: 1, Detail: "HGB §257"}, 1},
		{"200 failed", answerJSON(200, `{"outcome":"failed","detail":"disk full"}`), connectors.Result{Outcome: wire.OutcomeFailed, Detail: "disk full"}, 1},
		{"200 failed retryable", answerJSON(200, `{"outcome":"failed","retryable":true}`), connectors.Result{Outcome: wire.OutcomeFailed, Retryable: true}, 1},
		{"200 unknown outcome", answerJSON(200, `{"outcome":"deleted","records":3}`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered an unknown outcome"}, 1},
		{"200 no outcome", answerJSON(200, `{"records":3}`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered an unknown outcome"}, 1},
		{"200 retained without basis", answerJSON(200, `{"outcome":"retained"}`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered an invalid result: a retained outcome must name its legal basis in detail"}, 1},
		{"200 retryable erased", answerJSON(200, `{"outcome":"erased","retryable":true}`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered an invalid result: retryable is only meaningful with outcome failed"}, 1},
		{"200 negative records", answerJSON(200, `{"outcome":"erased","records":-1}`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered an invalid result: records is negative"}, 1},
		{"200 bad derived", answerJSON(200, `{"outcome":"erased","derived_identifiers":[{"type":"Bad Type","value":"`+personal+`"}]}`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered an invalid result: derived_identifiers[0].type is not a valid identifier type"}, 1},
		{"200 unknown field", answerJSON(200, `{"outcome":"erased","count":3}`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: `endpoint answered an invalid body: unknown field "count"`}, 1},
		{"200 not JSON", answerJSON(200, `<html>`+personal+`</html>`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered an invalid body: not JSON (syntax error at byte 1)"}, 1},
		{"200 empty", answerJSON(200, ``),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered an invalid body: empty body"}, 1},
		{"200 over 1 MiB", answerJSON(200, `{"outcome":"erased","detail":"`+strings.Repeat("x", webhook.MaxBodyBytes)+`"}`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered more than 1048576 bytes"}, 1},
		{"404 with not_found", answerJSON(404, `{"outcome":"not_found","detail":"no such customer"}`),
			connectors.Result{Outcome: wire.OutcomeNotFound, Detail: "no such customer"}, 1},
		{"404 bare", answerJSON(404, `404 page not found`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint rejected the command (HTTP 404) without a not_found outcome; check the url"}, 1},
		{"404 erased", answerJSON(404, `{"outcome":"erased"}`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint rejected the command (HTTP 404) without a not_found outcome; check the url"}, 1},
		{"204", answerJSON(204, ``),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered HTTP 204; the protocol needs 200 with an outcome"}, 1},
		{"302 not followed", func(w http.ResponseWriter, r *http.Request, _ int) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		},
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint answered a redirect (HTTP 302), which is not followed; configure the final url"}, 1},
		{"400", answerJSON(400, leak), connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint rejected the command (HTTP 400)"}, 1},
		{"410", answerJSON(410, leak), connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint rejected the command (HTTP 410)"}, 1},
		{"422", answerJSON(422, leak), connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint rejected the command (HTTP 422)"}, 1},
		{"401", answerJSON(401, `{"error":{"code":"invalid_signature","message":"x"}}`),
			connectors.Result{Outcome: wire.OutcomeFailed, Detail: "endpoint rejected the command (HTTP 401); check that both sides share the secret and that their clocks agree"}, 1},
		{"401 replayed then 200", func(w http.ResponseWriter, r *http.Request, call int) {
			if call == 1 {
				answerJSON(401, `{"error":{"code":"replayed_signature","message":"seen"}}`)(w, r, call)
				return
			}
			answerJSON(200, `{"outcome":"erased","records":3}`)(w, r, call)
		}, connectors.Result{Outcome: wire.OutcomeErased, Records: 3}, 2},
		{"500 then 200", thenOK(1, 500), connectors.Result{Outcome: wire.OutcomeErased, Records: 3}, 2},
		{"503 twice then 200", thenOK(2, 503), connectors.Result{Outcome: wire.OutcomeErased, Records: 3}, 3},
		{"429 then 200", thenOK(1, 429), connectors.Result{Outcome: wire.OutcomeErased, Records: 3}, 2},
		{"409 then 200", thenOK(1, 409), connectors.Result{Outcome: wire.OutcomeErased, Records: 3}, 2},
		{"408 then 200", thenOK(1, 408), connectors.Result{Outcome: wire.OutcomeErased, Records: 3}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			e := newEndpoint(t, tc.answer)
			var logs syncBuffer
			c := newConnector(t, testConfig(e.srv.URL, &logs))
			got, err := c.Erase(ctx, newRequest())
			if err != nil {
				t.Fatalf("Erase: %v", err)
			}
			if !equalResult(got, tc.want) {
				t.Errorf("Erase = %+v,\nwant      %+v", got, tc.want)
			}
			if n := int(e.calls.Load()); n != tc.calls {
				t.Errorf("endpoint called %d times, want %d", n, tc.calls)
			}
			if errs := e.verifyErrors(); len(errs) > 0 {
				t.Errorf("the endpoint could not verify the connector's requests: %v", errs)
			}
			assertNoLeak(t, logs.String())
		})
	}
}

func equalResult(a, b connectors.Result) bool {
	if a.Outcome != b.Outcome || a.Records != b.Records || a.Detail != b.Detail || a.Retryable != b.Retryable || len(a.Derived) != len(b.Derived) {
		return false
	}
	for i := range a.Derived {
		if a.Derived[i] != b.Derived[i] {
			return false
		}
	}
	return true
}

func assertNoLeak(t *testing.T, logs string) {
	t.Helper()
	for _, s := range []string{personal, leak} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %q:\n%s", s, logs)
		}
	}
}

// TestEraseSendsTheProtocol checks one request field by field.
func TestEraseSendsTheProtocol(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var header http.Header
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, call int) {
		header = r.Header.Clone()
		answerJSON(200, `{"outcome":"not_found"}`)(w, r, call)
	})
	var logs syncBuffer
	c := newConnector(t, testConfig(e.srv.URL, &logs))
	req := newRequest()
	if _, err := c.Erase(ctx, req); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	for name, want := range map[string]string{
		"Content-Type":            "application/json",
		webhook.HeaderCommandID:   req.CommandID,
		webhook.HeaderIdempotency: req.CommandID,
		"X-Team":                  "crm",
	} {
		if got := header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if !strings.HasPrefix(header.Get(webhook.HeaderSignature), "t=") {
		t.Errorf("signature header = %q, want t=…,v1=…", header.Get(webhook.HeaderSignature))
	}
	d := e.deliveries()[0]
	if _, err := uuid.Parse(d.DeliveryID); err != nil {
		t.Errorf("delivery_id %q is not a UUID", d.DeliveryID)
	}
	if d.CommandID != req.CommandID || d.RequestID != req.RequestID || d.System != req.System || d.Attempt != req.Attempt ||
		!d.DryRun || !d.IssuedAt.Equal(req.IssuedAt) || !d.ConfirmBy.Equal(req.ConfirmBy) ||
		len(d.Identifiers) != 2 || d.Identifiers[0] != req.Identifiers[0] || d.Identifiers[1] != req.Identifiers[1] {
		t.Errorf("delivery = %+v,\ndoes not carry request %+v", d, req)
	}
	if errs := e.verifyErrors(); len(errs) > 0 {
		t.Errorf("verify: %v", errs)
	}
}

// TestRetriesPassAReplayGuard checks that retries within one second pass a
// Verifier: each delivery is new, so none looks like a replay.
func TestRetriesPassAReplayGuard(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	now := time.Unix(1_800_000_000, 0)
	v := &webhook.Verifier{Secret: testSecret, Now: func() time.Time { return now }}
	var calls atomic.Int32
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		answerJSON(200, `{"outcome":"erased","records":1}`)(w, r, 0)
	})))
	defer srv.Close()
	cfg := testConfig(srv.URL, io.Discard)
	cfg.Now = func() time.Time { return now } // every signature in the same second
	got, err := newConnector(t, cfg).Erase(ctx, newRequest())
	if err != nil || got.Outcome != wire.OutcomeErased {
		t.Fatalf("Erase = %+v, %v; want erased after two retries", got, err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("endpoint reached %d times, want 3", n)
	}
}

func TestEraseRetriesAreBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	e := newEndpoint(t, answerJSON(500, leak))
	var logs syncBuffer
	cfg := testConfig(e.srv.URL, &logs)
	cfg.Retries.MaxAttempts = 4
	_, err := newConnector(t, cfg).Erase(ctx, newRequest())
	if !errors.Is(err, webhook.ErrUnavailable) {
		t.Fatalf("Erase error = %v, want ErrUnavailable", err)
	}
	if n := e.calls.Load(); n != 4 {
		t.Errorf("endpoint called %d times, want exactly max_attempts = 4", n)
	}
	if strings.Contains(err.Error(), leak) || strings.Contains(err.Error(), personal) {
		t.Errorf("error %q quotes the body or an identifier", err)
	}
	assertNoLeak(t, logs.String())

}

func TestEraseRetriesTimeouts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	release := make(chan struct{})
	defer close(release)
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, call int) {
		if call == 1 {
			// Hang until the connector gives up on this attempt.
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		answerJSON(200, `{"outcome":"erased","records":2}`)(w, r, call)
	})
	var logs syncBuffer
	cfg := testConfig(e.srv.URL, &logs)
	// Generous, so that on a loaded machine only the hanging call times out.
	cfg.Timeout = time.Second
	cfg.Retries.MaxAttempts = 5
	got, err := newConnector(t, cfg).Erase(ctx, newRequest())
	if err != nil || got.Outcome != wire.OutcomeErased || got.Records != 2 {
		t.Fatalf("Erase = %+v, %v; want erased 2 after a timeout", got, err)
	}
	if n := e.calls.Load(); n < 2 {
		t.Errorf("endpoint called %d times, want a retry after the timeout", n)
	}
	if !strings.Contains(logs.String(), "timeout") {
		t.Errorf("logs do not name the timeout:\n%s", logs.String())
	}
}

func TestEraseRetriesConnectionErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	_, err := newConnector(t, testConfig(url, io.Discard)).Erase(ctx, newRequest())
	if !errors.Is(err, webhook.ErrUnavailable) || !strings.Contains(err.Error(), "connection error") {
		t.Errorf("Erase error = %v, want ErrUnavailable naming a connection error", err)
	}
}

// TestEraseStopsWhenCanceled cancels during the backoff after a failure:
// Erase returns at once with ctx's error and tries no more.
func TestEraseStopsWhenCanceled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ctx, stop := context.WithCancel(ctx)
	failed := make(chan struct{}, 10)
	e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.WriteHeader(http.StatusServiceUnavailable)
		failed <- struct{}{}
	})
	cfg := testConfig(e.srv.URL, io.Discard)
	cfg.Retries = webhook.RetryConfig{MaxAttempts: 10, Initial: time.Hour, Max: time.Hour}
	done := make(chan error, 1)
	go func() {
		_, err := newConnector(t, cfg).Erase(ctx, newRequest())
		done <- err
	}()
	<-failed
	stop()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Erase error = %v, want context.Canceled", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Erase did not return after cancel")
	}
	if n := e.calls.Load(); n != 1 {
		t.Errorf("endpoint called %d times, want 1", n)
	}
}

// TestEraseStopsAnInFlightRequest cancels while the endpoint is answering.
func TestEraseStopsAnInFlightRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ctx, stop := context.WithCancel(ctx)
	arrived := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		close(arrived)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := newConnector(t, testConfig(e.srv.URL, io.Discard)).Erase(ctx, newRequest())
		done <- err
	}()
	<-arrived
	stop()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Erase error = %v, want context.Canceled", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Erase did not return after cancel")
	}
	if n := e.calls.Load(); n != 1 {
		t.Errorf("endpoint called %d times, want 1", n)
	}
}

// delayHandler reports the delay of every "retrying" log record.
type delayHandler struct {
	slog.Handler
	delays chan time.Duration
}

func (h delayHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "retrying") {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "delay" {
				h.delays <- a.Value.Duration()
			}
			return true
		})
	}
	return nil
}

func (h delayHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h delayHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }

func TestRetryAfterIsHonoured(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	cfg := testConfig(e.srv.URL, io.Discard)
	delays := make(chan time.Duration, 10)
	cfg.Logger = slog.New(delayHandler{Handler: slog.DiscardHandler, delays: delays})
	cfg.Retries = webhook.RetryConfig{MaxAttempts: 2, Initial: time.Millisecond, Max: time.Minute}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := newConnector(t, cfg).Erase(ctx, newRequest())
		done <- err
	}()
	select {
	case d := <-delays:
		if d != 3*time.Second {
			t.Errorf("the retry waits %s, want the 3s Retry-After asked for", d)
		}
	case <-ctx.Done():
		t.Fatal("no retry was announced")
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Erase error = %v, want context.Canceled", err)
	}
}

func TestNewRejects(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1/erase", io.Discard)
	if _, err := webhook.New(cfg, []byte("short"), nil); err == nil {
		t.Error("New accepted a 5-byte secret")
	}
	cfg.URL = "ftp://example.com"
	if _, err := webhook.New(cfg, testSecret, nil); err == nil {
		t.Error("New accepted an ftp url")
	}
}
