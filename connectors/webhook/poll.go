package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// Details of the confirmations the connector writes when polling ends
// without the endpoint's answer. Fixed texts: a status URL may carry a token.
const (
	detailPollTimeout = "the endpoint accepted the command (HTTP 202) but its status url gave no final answer before confirm_by"
	// detailCallbackTimeout is the same for an endpoint that was to call
	// back rather than be polled.
	detailCallbackTimeout = "the endpoint accepted the command (HTTP 202) but sent no callback before confirm_by"
	// detailNoWaiting answers a 202 without a status url for a command
	// that cannot wait for a callback: an item of a batch command.
	detailNoWaiting = "the endpoint accepted the command (HTTP 202) without a status url, and an item of a batch command cannot wait for a callback"
)

// acceptedBody is the body of a 202 answer that names its status URL there
// rather than in Location. Other fields are the vendor's and are ignored.
type acceptedBody struct {
	StatusURL string `json:"status_url"`
}

// pendingPoll is what the connector records in its store while it polls a
// status URL, so that a restart resumes the poll rather than call the
// endpoint again. It holds no identifier: only where and when to ask.
type pendingPoll struct {
	StatusURL string    `json:"status_url"`
	Attempt   int       `json:"attempt"`
	NextPoll  time.Time `json:"next_poll"`
}

// accepted reads the status URL of a 202 answer to a request of base: the
// Location header, else the body's status_url. Without a usable one the
// answer is a failure, since nothing would ever confirm the command.
//
// With a callback configured, a 202 without a status URL, or any 202 when
// poll.enabled is off, waits for the callback alone.
func (c *Connector) accepted(base *url.URL, h http.Header, body []byte) delivery {
	raw := statusURLOf(h, body)
	if c.cfg.Callback != nil && (raw == "" || !c.cfg.Poll.Enabled) {
		return delivery{accepted: true, status: http.StatusAccepted}
	}
	if raw == "" {
		return rejected(http.StatusAccepted, "endpoint answered HTTP 202 without a status url (Location or status_url)")
	}
	u, problem := c.statusURL(base, raw)
	if problem != "" {
		return rejected(http.StatusAccepted, "endpoint answered HTTP 202 with a status url that "+problem)
	}
	return delivery{accepted: true, status: http.StatusAccepted, statusURL: u, retryAfter: retryAfter(h, c.cfg.Now())}
}

// statusURLOf is the status URL a 202 answer names, "" when none.
func statusURLOf(h http.Header, body []byte) string {
	if raw := strings.TrimSpace(h.Get("Location")); raw != "" {
		return raw
	}
	var b acceptedBody
	if len(body) <= MaxBodyBytes && json.Unmarshal(body, &b) == nil {
		return strings.TrimSpace(b.StatusURL)
	}
	return ""
}

// statusURL resolves raw against base and checks it; problem, when not
// empty, says what is wrong without quoting the URL.
func (c *Connector) statusURL(base *url.URL, raw string) (resolved, problem string) {
	ref, err := url.Parse(raw)
	if err != nil {
		return "", "cannot be parsed"
	}
	u := base.ResolveReference(ref)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", "is not http or https"
	case u.User != nil:
		return "", "carries user:password"
	case !c.allowedHost(u.Host):
		return "", "is on another host than the configured url; allow it in poll.allow_hosts"
	}
	u.Fragment = ""
	return u.String(), ""
}

// allowedHost reports whether a status URL may be on host: the configured
// url's host, or one of poll.allow_hosts. Hosts compare with their ports.
func (c *Connector) allowedHost(host string) bool {
	if strings.EqualFold(host, c.endpointHost) {
		return true
	}
	for _, h := range c.cfg.Poll.AllowHosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

// follow polls p's status URL for req's answer within Erase, for a command
// that cannot be deferred (an item of a batch command, or Erase called
// outside connectors.Run), until the endpoint gives a final answer or
// req.ConfirmBy passes; then it forgets the poll and returns the result.
// The poll is recorded in the store before the first wait and after each
// poll, so a connector stopped in between (ctx ends: follow returns ctx's
// error and the command stays uncommitted) resumes it when the command is
// delivered again, with no second call of the endpoint.
//
// Polls wait a capped exponential backoff with jitter (poll.initial doubling
// up to poll.max); a Retry-After of the endpoint is honoured within that
// cap, and a 202 with a new Location (or status_url) moves the poll there.
// A transient failure of the status URL (5xx, 429, a timeout) counts as
// "still working": only confirm_by ends the poll. When confirm_by passes the
// result is failed and retryable, and the record is dropped, so that Lethe's
// next dispatch of the command calls the endpoint afresh (with the same
// Idempotency-Key) rather than poll a status URL the endpoint may have
// forgotten.
func (c *Connector) follow(ctx context.Context, req connectors.Request, log *slog.Logger, p pendingPoll, retryAfter time.Duration) (connectors.Result, error) {
	if p.NextPoll.IsZero() {
		p.NextPoll = c.cfg.Now().Add(c.pollDelay(p.Attempt+1, retryAfter))
		if err := c.savePoll(ctx, req.CommandID, p); err != nil {
			return connectors.Result{}, fmt.Errorf("webhook: %w", err)
		}
		log.Info("endpoint accepted the command; polling its status url")
	}
	for {
		wait := p.NextPoll.Sub(c.cfg.Now())
		if !req.ConfirmBy.IsZero() {
			wait = min(wait, req.ConfirmBy.Sub(c.cfg.Now()))
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return connectors.Result{}, fmt.Errorf("webhook: %w", ctx.Err())
			case <-t.C:
			}
		}
		if !req.ConfirmBy.IsZero() && !c.cfg.Now().Before(req.ConfirmBy) {
			log.Warn("confirm_by passed while polling the endpoint's status url", "polls", p.Attempt)
			if err := c.dropPoll(ctx, req.CommandID); err != nil {
				return connectors.Result{}, fmt.Errorf("webhook: %w", err)
			}
			return connectors.Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: detailPollTimeout}, nil
		}
		res, final, next := c.pollOnce(ctx, req, log, p)
		if err := ctx.Err(); err != nil {
			return connectors.Result{}, fmt.Errorf("webhook: %w", err)
		}
		if final {
			if err := c.dropPoll(ctx, req.CommandID); err != nil {
				return connectors.Result{}, fmt.Errorf("webhook: %w", err)
			}
			return res, nil
		}
		p = next
		if err := c.savePoll(ctx, req.CommandID, p); err != nil {
			return connectors.Result{}, fmt.Errorf("webhook: %w", err)
		}
	}
}

// poll asks the status URL once. The GET carries the configured headers and
// Lethe-Command-Id but no Lethe-Signature: with no body, its signature would
// repeat within a second and trip the endpoint's replay guard. An endpoint
// that answers derived identifiers there authenticates the poll by an
// unguessable status URL or by a gateway credential in headers.
func (c *Connector) poll(ctx context.Context, req connectors.Request, statusURL string) delivery {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, statusURL, nil)
	if err != nil {
		return rejected(0, "the status url cannot be requested")
	}
	for k, v := range c.cfg.Headers {
		hreq.Header.Set(k, v)
	}
	hreq.Header.Set("User-Agent", "lethe-webhook-connector")
	hreq.Header.Set(HeaderCommandID, req.CommandID)
	resp, answer, failed := c.exchange(hreq)
	if failed != nil {
		return *failed
	}
	if resp.StatusCode == http.StatusAccepted && statusURLOf(resp.Header, answer) == "" {
		// Still working, and the status URL stays where it is.
		return delivery{accepted: true, status: resp.StatusCode, statusURL: statusURL, retryAfter: retryAfter(resp.Header, c.cfg.Now())}
	}
	return c.interpret(hreq.URL, resp.StatusCode, resp.Header, answer)
}

// pollDelay is the wait before poll n: poll.initial doubling up to
// poll.max, with equal jitter; a longer Retry-After wins, still capped.
func (c *Connector) pollDelay(n int, retryAfter time.Duration) time.Duration {
	p := c.cfg.Poll
	d := p.Max
	if n-1 < 62 && p.Initial<<(n-1) > 0 && p.Initial<<(n-1) < p.Max {
		d = p.Initial << (n - 1)
	}
	d = d/2 + rand.N(d/2+1)
	return max(d, min(retryAfter, p.Max))
}

func (c *Connector) loadPoll(ctx context.Context, commandID string) (pendingPoll, bool, error) {
	raw, found, err := c.store.GetPending(ctx, commandID)
	if err != nil || !found {
		return pendingPoll{}, false, err
	}
	var p pendingPoll
	if err := json.Unmarshal(raw, &p); err != nil {
		return pendingPoll{}, false, fmt.Errorf("decode the recorded poll: %w", err)
	}
	return p, true, nil
}

func (c *Connector) savePoll(ctx context.Context, commandID string, p pendingPoll) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return c.store.PutPending(ctx, commandID, b)
}

func (c *Connector) dropPoll(ctx context.Context, commandID string) error {
	return c.store.DeletePending(ctx, commandID)
}
