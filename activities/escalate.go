package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/activity"

	"github.com/lethe-dev/lethe"
)

// Notifier delivers an escalation to people: escalation.Webhook posts it.
type Notifier interface {
	Notify(ctx context.Context, e lethe.Escalation) error
}

// EscalationCounter counts escalations for metrics: internal/metrics.Metrics.
type EscalationCounter interface {
	Count(k lethe.EscalationKind)
}

// Escalate is the outside-world half of an escalation; the workflow has
// already audited it. It logs it, counts it and posts it to the webhook.
// The log line and the count happen on the first attempt only, so a
// webhook that fails and is retried does not inflate them.
func (a *Activities) Escalate(ctx context.Context, e lethe.Escalation) error {
	e.Schema = lethe.SchemaEscalation
	if activity.GetInfo(ctx).Attempt <= 1 {
		activity.GetLogger(ctx).Warn("erasure escalated", "request_id", e.RequestID, "kind", string(e.Kind),
			"point", e.Point, "deadline", e.Deadline, "open_systems", e.Open, "redispatched", e.Redispatched)
		if a.Metrics != nil {
			a.Metrics.Count(e.Kind)
		}
	}
	if a.Escalations == nil {
		return nil
	}
	if err := a.Escalations.Notify(ctx, e); err != nil {
		return fmt.Errorf("notify escalation: %w", err)
	}
	return nil
}
