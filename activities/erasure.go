package activities

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// Error types of the non-retryable application errors the activities
// return. Temporal stops retrying on them, and a workflow or an operator
// reading the failure can tell a bad request from a missing record.
const (
	ErrTypeInvalid  = "lethe.invalid"
	ErrTypeNotFound = "lethe.not_found"
)

// Plan asks the registry which active systems erase by any of the given
// identifier types and describes each as a target, with the defaults of the
// contract filled in, so the workflow never has to know them. It first makes
// sure the ledger recorded the request (see RequestChecker): a request whose
// recording failed gets a non-retryable erasure_not_recorded error, and its
// workflow ends before dispatching anything.
func (a *Activities) Plan(ctx context.Context, in PlanInput) (PlanResult, error) {
	if c, ok := a.Ledger.(RequestChecker); ok {
		recorded, err := c.ErasureRecorded(ctx, in.RequestID)
		if err != nil {
			return PlanResult{}, classify("check request", err)
		}
		if !recorded {
			return PlanResult{}, classify("check request", lethe.Errorf(lethe.KindNotFound, "erasure_not_recorded",
				"the ledger never recorded this request: its creation failed after its workflow started"))
		}
	}
	matches, err := a.Registry.MatchTargets(ctx, registry.MatchQuery{
		RequestID: in.RequestID,
		Types:     in.Types,
		Subject:   a.digests(in.Subject),
		Record:    a.digests(in.Learned),
		At:        in.At,
	})
	if err != nil {
		return PlanResult{}, classify("match systems", err)
	}
	targets := make([]Target, 0, len(matches))
	held := 0
	for _, m := range matches {
		s := m.System
		within := time.Duration(s.ConfirmWithin)
		if within <= 0 {
			within = lethe.DefaultConfirmWithin
		}
		topic := s.Topic
		if topic == "" {
			topic = wire.DefaultTopic(s.Name)
		}
		targets = append(targets, Target{
			System:        s.Name,
			Topic:         topic,
			Types:         slices.Clone(s.Identifiers),
			Produces:      slices.Clone(s.Produces),
			ConfirmWithin: within,
			Hold:          m.Hold,
		})
		if m.Hold != nil {
			held++
		}
	}
	slices.SortFunc(targets, func(x, y Target) int { return cmp.Compare(x.System, y.System) })
	activity.GetLogger(ctx).Info("planned erasure",
		"request_id", in.RequestID, "types", len(in.Types), "systems", len(targets), "held", held)
	return PlanResult{Targets: targets}, nil
}

// digests turns identifiers into their keyed digests; none without a
// Digester.
func (a *Activities) digests(ids []wire.Identifier) []lethe.SubjectDigest {
	if a.Digester == nil || len(ids) == 0 {
		return nil
	}
	out := make([]lethe.SubjectDigest, len(ids))
	for i, id := range ids {
		out[i] = lethe.SubjectDigest{Type: id.Type, Digest: a.Digester.Sum(id.Type, id.Value)}
	}
	return out
}

// Sync publishes a wave of commands and then records the wave in the ledger.
// The order matters: the ledger must never claim a dispatch that Kafka has not
// acknowledged, while a retry after a ledger failure only publishes the same
// command_ids again, which connectors treat as the same commands.
func (a *Activities) Sync(ctx context.Context, in SyncInput) (SyncResult, error) {
	msgs := make([]kafka.Message, 0, len(in.Commands))
	systems := make([]string, 0, len(in.Commands))
	for i, o := range in.Commands {
		msg, err := commandMessage(in.RequestID, o)
		if err != nil {
			return SyncResult{}, classify(fmt.Sprintf("command %d", i), err)
		}
		msgs = append(msgs, msg)
		systems = append(systems, o.Command.System)
	}
	if err := a.sign(ctx, msgs, systems); err != nil {
		return SyncResult{}, classify("sign commands", err)
	}
	if len(msgs) > 0 {
		if err := a.Publisher.WriteMessages(ctx, msgs...); err != nil {
			return SyncResult{}, classify("publish commands", err)
		}
	}
	if !in.Ledger.Empty() {
		if err := a.applyLedger(ctx, in.RequestID, in.Ledger); err != nil {
			return SyncResult{}, classify("apply ledger", err)
		}
	}
	activity.GetLogger(ctx).Info("synced erasure",
		"request_id", in.RequestID, "published", len(msgs),
		"systems", len(in.Ledger.Systems), "events", len(in.Ledger.Events))
	return SyncResult{Published: len(msgs)}, nil
}

// applyLedger writes d and, with an Outcomes observer and a ledger that
// reports them, counts the outcomes d wrote: once, since a delta written
// again reports none.
func (a *Activities) applyLedger(ctx context.Context, requestID string, d lethe.LedgerDelta) error {
	ol, ok := a.Ledger.(OutcomeLedger)
	if a.Outcomes == nil || !ok {
		return a.Ledger.ApplyLedger(ctx, requestID, d)
	}
	outcomes, err := ol.ApplyLedgerOutcomes(ctx, requestID, d)
	if err != nil {
		return err
	}
	for _, o := range outcomes {
		var took time.Duration
		if o.ConfirmedAt != nil {
			took = o.ConfirmedAt.Sub(o.Dispatched)
		}
		a.Outcomes.CommandFinished(o.System, o.Status, o.ConfirmedAt != nil, took)
	}
	return nil
}

// commandMessage encodes one command as the contract puts it on Kafka. A
// command that breaks the contract would be dead-lettered by its connector and
// never confirmed, so it is refused here, where the bug can be seen.
func commandMessage(requestID string, o Outbound) (kafka.Message, error) {
	if o.Topic == "" {
		return kafka.Message{}, lethe.Errorf(lethe.KindInvalid, "invalid_command", "the command has no topic")
	}
	if err := o.Command.Validate(); err != nil {
		return kafka.Message{}, lethe.Errorf(lethe.KindInvalid, "invalid_command", "%v", err)
	}
	if o.Command.RequestID != requestID {
		return kafka.Message{}, lethe.Errorf(lethe.KindInvalid, "invalid_command", "the command belongs to another request")
	}
	value, err := json.Marshal(o.Command)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode command: %w", err)
	}
	return kafka.Message{
		Topic:   o.Topic,
		Key:     []byte(requestID),
		Value:   value,
		Headers: []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(wire.SchemaCommand)}},
	}, nil
}

// classify turns errors that no retry can cure into non-retryable application
// errors and leaves every other one to the retry policy, so that an outage of
// Kafka or PostgreSQL delays a request but never loses it.
func classify(op string, err error) error {
	switch lethe.ErrorKind(err) {
	case lethe.KindInvalid:
		return temporal.NewNonRetryableApplicationError(op+": "+err.Error(), ErrTypeInvalid, err)
	case lethe.KindNotFound:
		return temporal.NewNonRetryableApplicationError(op+": "+err.Error(), ErrTypeNotFound, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
