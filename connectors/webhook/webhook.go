package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// Delivery is the JSON body the connector POSTs for a command. Go services
// decode it with this type; others follow the package documentation.
type Delivery struct {
	// DeliveryID is random for every HTTP attempt, so that no two deliveries
	// carry the same signature and a receiver can treat a repeated one as a
	// replay.
	DeliveryID string `json:"delivery_id"`
	// CommandID identifies the command across deliveries and re-dispatches:
	// the endpoint's idempotency key.
	CommandID string `json:"command_id"`
	// RequestID is the erasure request the command belongs to, the id to
	// log when following one erasure across systems.
	RequestID string `json:"request_id"`
	// System is the name the command is addressed to.
	System string `json:"system"`
	// Attempt is Lethe's dispatch attempt of the command.
	Attempt int `json:"attempt"`
	// Identifiers carry only the types the system declared. They are
	// personal data: never log them.
	Identifiers []wire.Identifier `json:"identifiers"`
	// DryRun asks the endpoint to change nothing and report what it would
	// erase.
	DryRun bool `json:"dry_run"`
	// IssuedAt is when Lethe issued the command.
	IssuedAt time.Time `json:"issued_at"`
	// ConfirmBy is when Lethe stops waiting and dispatches again.
	ConfirmBy time.Time `json:"confirm_by"`
}

// Answer is the JSON body the endpoint answers with status 200 (or 404 with
// outcome not_found). It mirrors connectors.Result, field for field.
type Answer struct {
	// Outcome is erased, not_found, retained or failed.
	Outcome wire.Outcome `json:"outcome"`
	// Records counts what was erased, or with a dry run what would be.
	Records int64 `json:"records"`
	// Detail explains the outcome for people; retained must name its legal
	// basis. It reaches Lethe's API: never put identifier values in it.
	Detail string `json:"detail"`
	// Retryable, only with failed, asks Lethe to dispatch again later.
	Retryable bool `json:"retryable"`
	// DerivedIdentifiers are further identifiers of the subject the
	// service found, which Lethe sends on to the systems that erase by them.
	DerivedIdentifiers []wire.Identifier `json:"derived_identifiers,omitempty"`
}

// ErrUnavailable is wrapped by the error Erase returns when every attempt
// met a transient failure; the SDK then confirms failed and retryable.
var ErrUnavailable = errors.New("endpoint unavailable")

// Connector forwards commands to the endpoint: the connectors.Handler that
// Main runs under the SDK.
type Connector struct {
	cfg    Config
	secret []byte
	client *http.Client
	log    *slog.Logger
	// store keeps the polls of status URLs in progress (cfg.Store).
	store connectors.PendingStore
	// endpointHost is the configured url's host, the one status URLs may
	// name without poll.allow_hosts.
	endpointHost string
	// callbackSecret signs the endpoint's callbacks; nil without a
	// callback.
	callbackSecret []byte
	// finish confirms a deferred command, once connectors.Run attached it.
	finish atomic.Pointer[connectors.FinishFunc]
}

var _ connectors.Handler = (*Connector)(nil)

// New builds a connector from a validated configuration and the shared
// secret. client may be nil for a default one; New uses a copy of it that
// never follows redirects, since following one would turn the POST into a
// GET or carry the signed identifiers to another host. Timeouts come from
// cfg.Timeout per attempt, not from client. With a callback, New reads its
// secret file.
func New(cfg Config, secret []byte, client *http.Client) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("webhook: the secret has %d bytes; it needs at least %d", len(secret), MinSecretBytes)
	}
	cfg = cfg.withDefaults()
	var c http.Client
	if client != nil {
		c = *client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u, _ := url.Parse(cfg.URL)
	conn := &Connector{
		cfg:          cfg,
		secret:       bytes.Clone(secret),
		client:       &c,
		log:          cfg.Logger.With("system", cfg.System),
		store:        cfg.Store,
		endpointHost: u.Host,
	}
	if cfg.Callback != nil {
		cs, err := readCallbackSecret(cfg.Callback.SecretFile)
		if err != nil {
			return nil, err
		}
		conn.callbackSecret = cs
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		conn.log.Warn("the endpoint is plain http: identifiers cross the network unencrypted; use https")
	}
	return conn, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Erase delivers req to the endpoint and maps the answer to a result (see
// the package documentation). Transient failures are retried with a capped,
// jittered exponential backoff, at most Retries.MaxAttempts times in all;
// after the last one Erase returns an error wrapping ErrUnavailable. When ctx
// ends it stops at once and returns ctx's error.
//
// An endpoint that answers 202 Accepted is answered later: under Run, the
// command is deferred (see Resume) and its offset committed at once;
// elsewhere (the items of a batch command) its status URL is polled within
// Erase (see follow), and a command delivered again while its poll is
// recorded resumes the poll without calling the endpoint again.
func (c *Connector) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	log := c.log.With("request_id", req.RequestID, "attempt", req.Attempt)
	if p, found, err := c.loadPoll(ctx, req.CommandID); err != nil {
		return connectors.Result{}, fmt.Errorf("webhook: %w", err)
	} else if found {
		log.Info("resuming the poll of the endpoint's status url", "polls", p.Attempt)
		return c.follow(ctx, req, log, p, 0)
	}
	var last string
	for try := 1; ; try++ {
		out := c.deliver(ctx, req)
		if err := ctx.Err(); err != nil {
			return connectors.Result{}, fmt.Errorf("webhook: %w", err)
		}
		if out.final {
			c.logFinal(log, out)
			return out.result, nil
		}
		if out.accepted && connectors.CanDefer(ctx) {
			return c.deferPoll(req, log, pendingPoll{StatusURL: out.statusURL}, out.retryAfter)
		}
		if out.accepted {
			if out.statusURL == "" {
				return connectors.Result{Outcome: wire.OutcomeFailed, Detail: detailNoWaiting}, nil
			}
			return c.follow(ctx, req, log, pendingPoll{StatusURL: out.statusURL}, out.retryAfter)
		}
		last = out.reason
		if try >= c.cfg.Retries.MaxAttempts {
			log.Error("endpoint unavailable; giving up on this command for now", "tries", try, "reason", last)
			return connectors.Result{}, fmt.Errorf("webhook: %w after %d attempts, the last: %s", ErrUnavailable, try, last)
		}
		delay := c.backoff(try, out.retryAfter)
		log.Warn("endpoint attempt failed; retrying", "try", try, "reason", out.reason, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return connectors.Result{}, fmt.Errorf("webhook: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Connector) logFinal(log *slog.Logger, out delivery) {
	switch {
	case out.mapped:
		// The connector, not the endpoint, decided the failure: the
		// endpoint or the configuration needs fixing.
		log.Error("endpoint answer mapped to failed", "status", out.status, "detail", out.result.Detail)
	case out.result.Outcome == wire.OutcomeFailed:
		log.Warn("endpoint reported failed", "status", out.status, "retryable", out.result.Retryable)
	default:
		log.Debug("endpoint answered", "status", out.status, "outcome", out.result.Outcome, "records", out.result.Records)
	}
}

// backoff is the wait after failed try n: Initial doubling up to Max, with
// equal jitter so that many commands failing together spread their retries
// without any of them retrying at once; a longer Retry-After wins, still
// capped by Max.
func (c *Connector) backoff(n int, retryAfter time.Duration) time.Duration {
	r := c.cfg.Retries
	d := r.Max
	if n-1 < 62 && r.Initial<<(n-1) > 0 && r.Initial<<(n-1) < r.Max {
		d = r.Initial << (n - 1)
	}
	d = d/2 + rand.N(d/2+1)
	return max(d, min(retryAfter, r.Max))
}

// delivery is what one HTTP attempt came to: a final result, or a transient
// failure to retry.
type delivery struct {
	final  bool
	result connectors.Result
	// mapped says the connector made result a failure because of how the
	// endpoint answered, rather than the endpoint reporting it.
	mapped     bool
	status     int
	reason     string // of a transient failure; never quotes a body
	retryAfter time.Duration
	// accepted says the endpoint answered 202 with statusURL, resolved
	// and checked: the answer comes later, from polling it.
	accepted  bool
	statusURL string
}

func (c *Connector) deliver(ctx context.Context, req connectors.Request) delivery {
	body, err := json.Marshal(Delivery{
		DeliveryID:  uuid.NewString(),
		CommandID:   req.CommandID,
		RequestID:   req.RequestID,
		System:      req.System,
		Attempt:     req.Attempt,
		Identifiers: req.Identifiers,
		DryRun:      req.DryRun,
		IssuedAt:    req.IssuedAt,
		ConfirmBy:   req.ConfirmBy,
	})
	if err != nil {
		return rejected(0, "the command cannot be encoded as JSON")
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return rejected(0, "the configured url cannot be requested")
	}
	for k, v := range c.cfg.Headers {
		hreq.Header.Set(k, v)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", "lethe-webhook-connector")
	hreq.Header.Set(HeaderCommandID, req.CommandID)
	hreq.Header.Set(HeaderIdempotency, req.CommandID)
	hreq.Header.Set(HeaderSignature, Sign(c.secret, c.cfg.Now(), body))

	resp, answer, failed := c.exchange(hreq)
	if failed != nil {
		return *failed
	}
	return c.interpret(hreq.URL, resp.StatusCode, resp.Header, answer)
}

// exchange sends hreq and reads its answer, at most MaxBodyBytes+1 of it;
// when either fails, failed is the transient delivery to report.
func (c *Connector) exchange(hreq *http.Request) (resp *http.Response, answer []byte, failed *delivery) {
	resp, err := c.client.Do(hreq)
	if err != nil {
		d := transient(0, transportProblem(err), 0)
		return nil, nil, &d
	}
	defer resp.Body.Close()
	answer, err = io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		d := transient(resp.StatusCode, "reading the answer: "+transportProblem(err), 0)
		return nil, nil, &d
	}
	return resp, answer, nil
}

// interpret maps one HTTP answer to a request of base to a delivery; the
// table is in the package documentation.
func (c *Connector) interpret(base *url.URL, status int, h http.Header, body []byte) delivery {
	switch {
	case status == http.StatusAccepted && (c.cfg.Poll.Enabled || c.cfg.Callback != nil):
		return c.accepted(base, h, body)
	case status == http.StatusAccepted:
		return rejected(status, "endpoint answered HTTP 202; set poll.enabled or callback to wait for its answer")
	case status == http.StatusOK:
		res, problem := decodeAnswer(body)
		if problem != "" {
			return rejected(status, problem)
		}
		return delivery{final: true, result: res, status: status}
	case status == http.StatusNotFound:
		if res, problem := decodeAnswer(body); problem == "" && res.Outcome == wire.OutcomeNotFound {
			return delivery{final: true, result: res, status: status}
		}
		return rejected(status, "endpoint rejected the command (HTTP 404) without a not_found outcome; check the url")
	case status >= 200 && status < 300:
		return rejected(status, fmt.Sprintf("endpoint answered HTTP %d; the protocol needs 200 with an outcome", status))
	case status >= 300 && status < 400:
		return rejected(status, fmt.Sprintf("endpoint answered a redirect (HTTP %d), which is not followed; configure the final url", status))
	case status == http.StatusUnauthorized && errorCode(body) == CodeReplayed:
		// The connector never resends a signature: something between it and
		// the endpoint did, and a fresh delivery is safe by idempotency.
		return transient(status, "HTTP 401 replayed_signature", 0)
	case retryableStatus(status):
		return transient(status, fmt.Sprintf("HTTP %d", status), retryAfter(h, c.cfg.Now()))
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return rejected(status, fmt.Sprintf("endpoint rejected the command (HTTP %d); check that both sides share the secret and that their clocks agree", status))
	case status >= 400 && status < 500:
		return rejected(status, fmt.Sprintf("endpoint rejected the command (HTTP %d)", status))
	default:
		return rejected(status, fmt.Sprintf("endpoint answered HTTP %d, which the protocol does not define", status))
	}
}

func retryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return status >= 500 && status < 600
}

func transient(status int, reason string, retryAfter time.Duration) delivery {
	return delivery{status: status, reason: reason, retryAfter: retryAfter}
}

func rejected(status int, detail string) delivery {
	return delivery{
		final:  true,
		mapped: true,
		status: status,
		result: connectors.Result{Outcome: wire.OutcomeFailed, Detail: detail},
	}
}

// transportProblem describes a failed HTTP exchange without the URL, which
// may carry a token in its query.
func transportProblem(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	return "connection error: " + err.Error()
}

// retryAfter reads a Retry-After header, in seconds or as a date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > int64(24*time.Hour/time.Second) {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// errorCode reads the code of a body in Lethe's error shape, "" otherwise.
func errorCode(body []byte) string {
	var e errorBody
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// probeID stands for the command's ids when Validate checks an answer, so
// that a problem found is always the endpoint's.
const probeID = "00000000-0000-0000-0000-000000000000"

// decodeAnswer parses and validates an Answer; problem is empty when it is
// good, or the failure's detail. Problems name fields, never values.
func decodeAnswer(body []byte) (res connectors.Result, problem string) {
	if len(body) > MaxBodyBytes {
		return connectors.Result{}, fmt.Sprintf("endpoint answered more than %d bytes", MaxBodyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var a Answer
	if err := dec.Decode(&a); err != nil {
		return connectors.Result{}, "endpoint answered an invalid body: " + jsonProblem(err)
	}
	if dec.More() {
		return connectors.Result{}, "endpoint answered an invalid body: trailing data after the JSON object"
	}
	if !a.Outcome.Valid() {
		return connectors.Result{}, "endpoint answered an unknown outcome"
	}
	probe := wire.Confirmation{
		Schema:             wire.SchemaConfirmation,
		CommandID:          probeID,
		RequestID:          probeID,
		System:             "webhook",
		Outcome:            a.Outcome,
		Records:            a.Records,
		Detail:             a.Detail,
		Retryable:          a.Retryable,
		DerivedIdentifiers: a.DerivedIdentifiers,
		ConfirmedAt:        time.Unix(1, 0),
	}
	if err := probe.Validate(); err != nil {
		return connectors.Result{}, "endpoint answered an invalid result: " +
			strings.TrimPrefix(err.Error(), wire.ErrMalformed.Error()+": ")
	}
	return connectors.Result{
		Outcome:   a.Outcome,
		Records:   a.Records,
		Detail:    a.Detail,
		Retryable: a.Retryable,
		Derived:   a.DerivedIdentifiers,
	}, ""
}

// jsonProblem describes a decoding error without quoting the body, which may
// hold identifier values. Field names come from the endpoint's code.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.As(err, &syn):
		return fmt.Sprintf("not JSON (syntax error at byte %d)", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q has the wrong type", truncate(typ.Field, 64))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return fmt.Sprintf("unknown field %q", truncate(field, 64))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	default:
		return "cannot decode"
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
