package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
	"go.temporal.io/sdk/activity"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// BatchLedger is what the activities of a bulk erasure need from the
// registry and its ledger. registry.Store implements it.
type BatchLedger interface {
	// BatchRecorded tells whether a batch is in the ledger, waiting for
	// the transaction that creates it to end (as RequestChecker does).
	BatchRecorded(ctx context.Context, id string) (bool, error)
	MatchBatch(ctx context.Context, types []string, digests []lethe.SubjectDigest, at time.Time) ([]lethe.System, []registry.BatchHold, error)
	// ApplyBatchLedger writes one delta once, reporting whether this call
	// wrote it.
	ApplyBatchLedger(ctx context.Context, d registry.BatchDelta) (bool, error)
}

// BeginBatchInput opens a batch's run.
type BeginBatchInput struct {
	BatchID string    `json:"batch_id"`
	Total   int       `json:"total"`
	Chunks  int       `json:"chunks"`
	At      time.Time `json:"at"`
}

// BeginBatch waits for the API's transaction that records the batch, then
// marks the batch running. A batch whose recording failed gets a
// non-retryable batch_not_recorded error, and its workflow ends before it
// starts any chunk.
func (a *Activities) BeginBatch(ctx context.Context, in BeginBatchInput) error {
	recorded, err := a.Batches.BatchRecorded(ctx, in.BatchID)
	if err != nil {
		return classify("check batch", err)
	}
	if !recorded {
		return classify("check batch", lethe.Errorf(lethe.KindNotFound, "batch_not_recorded",
			"the ledger never recorded this batch: its creation failed after its workflow started"))
	}
	return a.WriteBatchLedger(ctx, registry.BatchDelta{
		BatchID: in.BatchID,
		Name:    "begin",
		Status:  lethe.RequestRunning,
		Events: []lethe.AuditEvent{{Kind: lethe.AuditPlanned, At: in.At,
			Detail: fmt.Sprintf("batch of %d subjects in %d chunks", in.Total, in.Chunks)}},
	})
}

// WriteBatchLedger writes one delta of a batch in one transaction and,
// with an Outcomes observer, counts the final outcomes it wrote, once: a
// delta written again counts nothing. A subject's outcome counts as one
// command of its system; the confirmation-time histogram is left to
// single commands, whose dispatch time the delta does not carry.
func (a *Activities) WriteBatchLedger(ctx context.Context, d registry.BatchDelta) error {
	applied, err := a.Batches.ApplyBatchLedger(ctx, d)
	if err != nil {
		return classify("apply batch ledger", err)
	}
	if applied && a.Outcomes != nil {
		for _, g := range d.Outcomes {
			if g.Status.Final() {
				for range g.Items {
					a.Outcomes.CommandFinished(g.System, g.Status, false, 0)
				}
			}
		}
	}
	return nil
}

// PlanChunkInput asks which systems the subjects of one chunk reach, for
// the identifier types of a wave.
type PlanChunkInput struct {
	BatchID  string        `json:"batch_id"`
	ChunkID  string        `json:"chunk_id"`
	Subjects []PlanSubject `json:"subjects"`
	// At is the workflow's clock, at which holds are judged.
	At time.Time `json:"at"`
}

// PlanSubject is one subject of a wave: its place in the chunk, the types
// the wave dispatches, and every identifier known for it, digested here to
// find the legal holds on it. Values travel only inside Temporal.
type PlanSubject struct {
	Local int               `json:"local"`
	Types []string          `json:"types"`
	Known []wire.Identifier `json:"known"`
}

// PlanChunkResult lists the systems any subject of the wave reaches, with
// the contract's defaults filled in, and the subjects a legal hold keeps
// in some of them. Which targets reach a subject the workflow tells from
// their Types and the subject's, so that the result stays small.
type PlanChunkResult struct {
	Targets []Target     `json:"targets"`
	Held    []HeldTarget `json:"held,omitempty"`
}

// HeldTarget is a subject that a legal hold keeps in one system, or in
// every system when System is empty.
type HeldTarget struct {
	Local  int        `json:"local"`
	System string     `json:"system,omitempty"`
	Hold   lethe.Hold `json:"hold"`
}

// PlanChunk matches a wave of a chunk against the registry and the legal
// holds in two queries, whatever the number of subjects.
func (a *Activities) PlanChunk(ctx context.Context, in PlanChunkInput) (PlanChunkResult, error) {
	var types []string
	var digests []lethe.SubjectDigest
	byDigest := map[lethe.SubjectDigest][]int{}
	for _, s := range in.Subjects {
		for _, t := range s.Types {
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
		for _, d := range a.digests(s.Known) {
			if _, seen := byDigest[d]; !seen {
				digests = append(digests, d)
			}
			byDigest[d] = append(byDigest[d], s.Local)
		}
	}
	slices.Sort(types)
	systems, holds, err := a.Batches.MatchBatch(ctx, types, digests, in.At)
	if err != nil {
		return PlanChunkResult{}, classify("match batch", err)
	}
	out := PlanChunkResult{Targets: make([]Target, 0, len(systems))}
	for _, s := range systems {
		out.Targets = append(out.Targets, targetOf(s, nil))
	}
	// Holds come in the order MatchTargets prefers them: the first that
	// covers a subject in a system is the one it reports.
	taken := map[string]bool{}
	for _, h := range holds {
		for _, local := range byDigest[h.Digest] {
			key := fmt.Sprintf("%d\x00%s", local, h.System)
			if taken[key] {
				continue
			}
			taken[key] = true
			out.Held = append(out.Held, HeldTarget{Local: local, System: h.System, Hold: h.Hold})
		}
	}
	activity.GetLogger(ctx).Info("planned chunk", "batch_id", in.BatchID, "chunk_id", in.ChunkID,
		"subjects", len(in.Subjects), "systems", len(out.Targets), "held", len(out.Held))
	return out, nil
}

// targetOf describes a registered system as a target, with the contract's
// defaults filled in.
func targetOf(s lethe.System, hold *lethe.Hold) Target {
	within := time.Duration(s.ConfirmWithin)
	if within <= 0 {
		within = lethe.DefaultConfirmWithin
	}
	topic := s.Topic
	if topic == "" {
		topic = wire.DefaultTopic(s.Name)
	}
	return Target{
		System:        s.Name,
		Topic:         topic,
		Types:         slices.Clone(s.Identifiers),
		Produces:      slices.Clone(s.Produces),
		ConfirmWithin: within,
		Hold:          hold,
		Batch:         s.Batch,
		After:         slices.Clone(s.After),
	}
}

// ChunkOutbound is one message of a chunk to publish: a batch command to a
// batch-capable system, or a single command to another.
type ChunkOutbound struct {
	Topic  string             `json:"topic"`
	Batch  *wire.BatchCommand `json:"batch,omitempty"`
	Single *wire.Command      `json:"single,omitempty"`
}

// LearnedIdentifier is an identifier a system revealed for one subject of
// a batch; SyncChunk records its digest.
type LearnedIdentifier struct {
	Item       int             `json:"item"`
	Identifier wire.Identifier `json:"identifier"`
}

// SyncChunkInput is one step of a chunk: messages to publish, then the
// ledger changes to write.
type SyncChunkInput struct {
	ChunkID  string              `json:"chunk_id"`
	Commands []ChunkOutbound     `json:"commands,omitempty"`
	Learned  []LearnedIdentifier `json:"learned,omitempty"`
	Ledger   registry.BatchDelta `json:"ledger"`
}

// SyncChunk publishes a step's commands, signed for the systems with
// credentials, and then writes the step to the ledger: the ledger never
// claims a dispatch Kafka has not acknowledged, and a retry publishes the
// same command_ids again, which connectors treat as the same commands. A
// topic missing and not created fails the step, to be retried.
//
// Single commands to pull-mode systems are queued for their connectors to
// lease (see divert) rather than published.
func (a *Activities) SyncChunk(ctx context.Context, in SyncChunkInput) error {
	all := make([]kafka.Message, 0, len(in.Commands))
	names := make([]string, 0, len(in.Commands))
	singles := make([]*wire.Command, len(in.Commands))
	for i, o := range in.Commands {
		msg, system, err := chunkMessage(in.ChunkID, o)
		if err != nil {
			return classify(fmt.Sprintf("command %d", i), err)
		}
		all = append(all, msg)
		names = append(names, system)
		singles[i] = o.Single
	}
	queued, err := a.divert(ctx, singles)
	if err != nil {
		return classify("queue pull commands", err)
	}
	msgs := make([]kafka.Message, 0, len(all))
	systems := make([]string, 0, len(all))
	for i, msg := range all {
		if !queued[i] {
			msgs = append(msgs, msg)
			systems = append(systems, names[i])
		}
	}
	if err := a.sign(ctx, msgs, systems); err != nil {
		return classify("sign commands", err)
	}
	if len(msgs) > 0 {
		stuck, cause, err := a.publish(ctx, in.ChunkID, msgs)
		switch {
		case err != nil:
			return classify("publish commands", err)
		case len(stuck) > 0:
			return classify("publish commands", cause)
		}
	}
	d := in.Ledger
	for _, l := range in.Learned {
		for _, sd := range a.digests([]wire.Identifier{l.Identifier}) {
			d.Learned = append(d.Learned, registry.BatchDigest{Item: l.Item, Type: sd.Type, Digest: sd.Digest})
		}
	}
	if err := a.WriteBatchLedger(ctx, d); err != nil {
		return err
	}
	activity.GetLogger(ctx).Info("synced chunk", "batch_id", d.BatchID, "chunk_id", in.ChunkID,
		"published", len(msgs), "queued", len(queued), "events", len(d.Events))
	return nil
}

// chunkMessage encodes one message of a chunk as the contract puts it on
// Kafka, keyed by the chunk's id, and names its system. A message that
// breaks the contract is refused here, where the bug can be seen.
func chunkMessage(chunkID string, o ChunkOutbound) (kafka.Message, string, error) {
	invalid := func(format string, args ...any) (kafka.Message, string, error) {
		return kafka.Message{}, "", lethe.Errorf(lethe.KindInvalid, "invalid_command", format, args...)
	}
	if o.Topic == "" {
		return invalid("the command has no topic")
	}
	var (
		value  []byte
		schema string
		system string
		err    error
	)
	switch {
	case o.Batch != nil && o.Single == nil:
		if err := o.Batch.Validate(); err != nil {
			return invalid("%v", err)
		}
		if o.Batch.BatchID != chunkID {
			return invalid("the command belongs to another chunk")
		}
		value, err = json.Marshal(o.Batch)
		schema, system = wire.SchemaBatchCommand, o.Batch.System
	case o.Single != nil && o.Batch == nil:
		msg, err := commandMessage(chunkID, Outbound{Topic: o.Topic, Command: *o.Single})
		return msg, o.Single.System, err
	default:
		return invalid("the message must be one batch or one single command")
	}
	if err != nil {
		return kafka.Message{}, "", fmt.Errorf("encode batch command: %w", err)
	}
	if len(value) > wire.MaxBatchBytes {
		return invalid("the batch command is %d bytes, over %d", len(value), wire.MaxBatchBytes)
	}
	return kafka.Message{
		Topic:   o.Topic,
		Key:     []byte(chunkID),
		Value:   value,
		Headers: []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(schema)}},
	}, system, nil
}
