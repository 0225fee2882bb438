package activities

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
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
		targets = append(targets, targetOf(m.System, m.Hold))
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
//
// Commands of pull-mode systems are queued for their connectors to lease
// (see divert) rather than published; they count as published.
func (a *Activities) Sync(ctx context.Context, in SyncInput) (SyncResult, error) {
	all := make([]kafka.Message, 0, len(in.Commands))
	singles := make([]*wire.Command, len(in.Commands))
	for i, o := range in.Commands {
		msg, err := commandMessage(in.RequestID, o)
		if err != nil {
			return SyncResult{}, classify(fmt.Sprintf("command %d", i), err)
		}
		all = append(all, msg)
		singles[i] = &in.Commands[i].Command
	}
	queued, err := a.divert(ctx, singles)
	if err != nil {
		return SyncResult{}, classify("queue pull commands", err)
	}
	// at maps each message left to publish to its command in in.Commands.
	msgs := make([]kafka.Message, 0, len(all))
	systems := make([]string, 0, len(all))
	at := make([]int, 0, len(all))
	for i, msg := range all {
		if !queued[i] {
			msgs = append(msgs, msg)
			systems = append(systems, in.Commands[i].Command.System)
			at = append(at, i)
		}
	}
	if err := a.sign(ctx, msgs, systems); err != nil {
		return SyncResult{}, classify("sign commands", err)
	}
	logger := activity.GetLogger(ctx)
	// Every failed attempt says why: the workflow retries it, and an
	// operator must be able to tell an outage from a missing topic.
	failed := func(err error) (SyncResult, error) {
		logger.Warn("sync failed; it will be retried", "request_id", in.RequestID,
			"attempt", activity.GetInfo(ctx).Attempt, "error", err)
		return SyncResult{}, err
	}
	var undelivered []Undelivered
	if len(msgs) > 0 {
		stuck, cause, err := a.publish(ctx, in.RequestID, msgs)
		switch {
		case err != nil:
			return failed(classify("publish commands", err))
		case len(stuck) > 0 && !in.Partial:
			return failed(classify("publish commands", cause))
		}
		for _, i := range stuck {
			c := in.Commands[at[i]]
			undelivered = append(undelivered, Undelivered{CommandID: c.Command.CommandID, System: c.Command.System,
				Reason: cause.Error()})
		}
	}
	if len(undelivered) > 0 {
		// The ledger would claim a dispatch that did not happen: the
		// workflow corrects its delta and writes it in its next Sync.
		logger.Warn("commands not dispatched; the workflow will try again", "request_id", in.RequestID,
			"commands", len(undelivered), "systems", len(undeliveredSystems(undelivered)), "error", undelivered[0].Reason)
		return SyncResult{Published: len(in.Commands) - len(undelivered), Undelivered: undelivered}, nil
	}
	if !in.Ledger.Empty() {
		if err := a.applyLedger(ctx, in.RequestID, in.Ledger); err != nil {
			return failed(classify("apply ledger", err))
		}
	}
	activity.GetLogger(ctx).Info("synced erasure",
		"request_id", in.RequestID, "published", len(msgs), "queued", len(queued),
		"systems", len(in.Ledger.Systems), "events", len(in.Ledger.Events))
	return SyncResult{Published: len(in.Commands)}, nil
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

// publish writes msgs. A topic the broker does not know is created (see
// Activities.Topics) and the messages bound for it written again. It returns
// the indexes of the messages that still could not be written because of
// their topic (missing and not created, or not ours to write), with the
// cause; any other failure is the error.
func (a *Activities) publish(ctx context.Context, requestID string, msgs []kafka.Message) (stuck []int, cause, err error) {
	err = a.Publisher.WriteMessages(ctx, msgs...)
	if err == nil {
		return nil, nil, nil
	}
	stuck, ok := topicFailures(msgs, err)
	if !ok {
		return nil, nil, err
	}
	if len(topicsOf(msgs, stuck)) > 1 {
		// The writer refuses a whole write when it cannot find one of its
		// topics, naming no message: each topic is written on its own, so
		// that a missing one holds back its own messages only.
		if stuck, err = a.publishByTopic(ctx, msgs, stuck); err != nil || len(stuck) == 0 {
			return nil, nil, err
		}
	}
	missing := topicsOf(msgs, stuck)
	if a.Topics == nil {
		return stuck, fmt.Errorf("topics %s: %w", strings.Join(missing, ", "), err), nil
	}
	logger := activity.GetLogger(ctx)
	logger.Warn("command topics missing; creating them", "request_id", requestID, "topics", missing,
		"error", err)
	if cerr := a.Topics.EnsureTopics(ctx, missing...); cerr != nil {
		return stuck, fmt.Errorf("topics %s do not exist and could not be created: %w",
			strings.Join(missing, ", "), cerr), nil
	}
	logger.Info("command topics created", "request_id", requestID, "topics", missing)
	retry := make([]kafka.Message, len(stuck))
	for i, j := range stuck {
		retry[i] = msgs[j]
	}
	err = a.Publisher.WriteMessages(ctx, retry...)
	if err == nil {
		return nil, nil, nil
	}
	again, ok := topicFailures(retry, err)
	if !ok {
		return nil, nil, err
	}
	out := make([]int, len(again))
	for i, j := range again {
		out[i] = stuck[j]
	}
	return out, fmt.Errorf("topics %s: %w", strings.Join(topicsOf(msgs, out), ", "), err), nil
}

// publishByTopic writes the messages at idx topic by topic and returns the
// indexes of those still refused for their topic; any other failure is the
// error.
func (a *Activities) publishByTopic(ctx context.Context, msgs []kafka.Message, idx []int) ([]int, error) {
	var stuck []int
	for _, topic := range topicsOf(msgs, idx) {
		var at []int
		var group []kafka.Message
		for _, i := range idx {
			if msgs[i].Topic == topic {
				at = append(at, i)
				group = append(group, msgs[i])
			}
		}
		err := a.Publisher.WriteMessages(ctx, group...)
		if err == nil {
			continue
		}
		failed, ok := topicFailures(group, err)
		if !ok {
			return nil, err
		}
		for _, j := range failed {
			stuck = append(stuck, at[j])
		}
	}
	return stuck, nil
}

// topicFailures tells whether a failed write failed only because of the
// topics of some messages (unknown to the broker, or not authorized), and
// which; false when any message failed for another reason.
func topicFailures(msgs []kafka.Message, err error) ([]int, bool) {
	topical := func(e error) bool {
		return errors.Is(e, kafka.UnknownTopicOrPartition) || errors.Is(e, kafka.TopicAuthorizationFailed)
	}
	var writeErrs kafka.WriteErrors
	if errors.As(err, &writeErrs) && len(writeErrs) == len(msgs) {
		var stuck []int
		for i, e := range writeErrs {
			switch {
			case e == nil:
			case topical(e):
				stuck = append(stuck, i)
			default:
				return nil, false
			}
		}
		return stuck, len(stuck) > 0
	}
	if !topical(err) {
		return nil, false
	}
	all := make([]int, len(msgs))
	for i := range all {
		all[i] = i
	}
	return all, true
}

// topicsOf names the topics of the messages at idx, sorted.
func topicsOf(msgs []kafka.Message, idx []int) []string {
	var topics []string
	for _, i := range idx {
		if !slices.Contains(topics, msgs[i].Topic) {
			topics = append(topics, msgs[i].Topic)
		}
	}
	slices.Sort(topics)
	return topics
}

// undeliveredSystems names the systems of undelivered commands.
func undeliveredSystems(us []Undelivered) []string {
	var out []string
	for _, u := range us {
		if !slices.Contains(out, u.System) {
			out = append(out, u.System)
		}
	}
	return out
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
