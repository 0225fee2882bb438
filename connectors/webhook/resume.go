package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

var _ connectors.Finisher = (*Connector)(nil)

// deferPoll is Erase's answer to a 202 under Run: the command is deferred
// and its offset committed, and Resume polls p's status URL in the
// background, or waits for the callback when there is none.
func (c *Connector) deferPoll(req connectors.Request, log *slog.Logger, p pendingPoll, retryAfter time.Duration) (connectors.Result, error) {
	due := req.ConfirmBy
	if p.StatusURL != "" {
		p.NextPoll = c.cfg.Now().Add(c.pollDelay(p.Attempt+1, retryAfter))
		due = p.NextPoll
		log.Info("endpoint accepted the command; polling its status url in the background")
	} else {
		log.Info("endpoint accepted the command; waiting for its callback")
	}
	if due.IsZero() {
		due = c.cfg.Now().Add(c.cfg.Poll.Max)
	}
	state, err := json.Marshal(p)
	if err != nil {
		return connectors.Result{}, fmt.Errorf("webhook: encode the poll: %w", err)
	}
	return connectors.Later(state, due), nil
}

// Resume polls the status URL of a deferred command once, and returns the
// endpoint's final answer or Later with the next poll's time (see follow for
// the backoff and how answers map). A command waiting for a callback alone
// is only looked at again at its confirm_by. Once confirm_by has passed, the
// result is failed and retryable with a fixed detail, so that Lethe
// dispatches the command again and the endpoint is called afresh (with the
// same Idempotency-Key).
func (c *Connector) Resume(ctx context.Context, d connectors.Deferred) (connectors.Result, error) {
	log := c.log.With("request_id", d.RequestID, "attempt", d.Attempt)
	var p pendingPoll
	if err := json.Unmarshal(d.State, &p); err != nil {
		return connectors.Result{}, connectors.Permanent(fmt.Errorf("webhook: decode the deferred poll: %w", err))
	}
	if !d.ConfirmBy.IsZero() && !c.cfg.Now().Before(d.ConfirmBy) {
		detail := detailPollTimeout
		if p.StatusURL == "" {
			detail = detailCallbackTimeout
		}
		log.Warn("confirm_by passed before the endpoint's final answer", "polls", p.Attempt)
		return connectors.Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: detail}, nil
	}
	if p.StatusURL == "" {
		due := d.ConfirmBy
		if due.IsZero() {
			due = c.cfg.Now().Add(c.cfg.Poll.Max)
		}
		return connectors.Later(d.State, due), nil
	}
	req := connectors.Request{CommandID: d.CommandID, RequestID: d.RequestID, System: d.System, Attempt: d.Attempt, ConfirmBy: d.ConfirmBy}
	res, final, p := c.pollOnce(ctx, req, log, p)
	if err := ctx.Err(); err != nil {
		return connectors.Result{}, fmt.Errorf("webhook: %w", err)
	}
	if final {
		return res, nil
	}
	state, err := json.Marshal(p)
	if err != nil {
		return connectors.Result{}, fmt.Errorf("webhook: encode the poll: %w", err)
	}
	return connectors.Later(state, p.NextPoll), nil
}

// pollOnce polls p's status URL once for req: res is the endpoint's final
// answer when final, else p is moved on to its next poll.
func (c *Connector) pollOnce(ctx context.Context, req connectors.Request, log *slog.Logger, p pendingPoll) (res connectors.Result, final bool, next pendingPoll) {
	p.Attempt++
	out := c.poll(ctx, req, p.StatusURL)
	if out.final {
		c.logFinal(log, out)
		return out.result, true, p
	}
	if out.accepted {
		p.StatusURL = out.statusURL
		log.Debug("endpoint still working", "polls", p.Attempt)
	} else {
		log.Warn("polling the status url failed; polling again", "polls", p.Attempt, "reason", out.reason)
	}
	p.NextPoll = c.cfg.Now().Add(c.pollDelay(p.Attempt+1, out.retryAfter))
	return connectors.Result{}, false, p
}
