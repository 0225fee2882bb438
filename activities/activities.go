// Package activities holds the Temporal activities of an erasure: the only
// code on the workflow's path that talks to PostgreSQL and Kafka. Activities
// are methods on one struct of dependencies, called from workflows through a
// typed nil pointer.
package activities

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// SystemMatcher finds the active systems that erase by any of some
// identifier types, each with the legal hold that keeps the subject's data
// there, if any. registry.Store implements it with one indexed query.
type SystemMatcher interface {
	MatchTargets(ctx context.Context, q registry.MatchQuery) ([]registry.Match, error)
}

// LedgerWriter writes one batch of a request's changes in one transaction.
// registry.Store implements it.
type LedgerWriter interface {
	ApplyLedger(ctx context.Context, requestID string, d lethe.LedgerDelta) error
}

// OutcomeLedger is a LedgerWriter that also reports the systems each delta
// moved into a final status, once each (registry.Store implements it). Sync
// uses it when Outcomes is set, so that the outcomes are counted where they
// are written, and a delta written again counts nothing.
type OutcomeLedger interface {
	ApplyLedgerOutcomes(ctx context.Context, requestID string, d lethe.LedgerDelta) ([]registry.Outcome, error)
}

// OutcomeObserver counts systems' final outcomes and observes how long each
// confirmed one took from its first dispatch: internal/metrics.Metrics.
type OutcomeObserver interface {
	CommandFinished(system string, status lethe.SystemStatus, confirmed bool, took time.Duration)
}

// RequestChecker tells whether a request is in the ledger, waiting for the
// transaction that creates it to end. Plan asks it when the Ledger
// implements it (registry.Store does): the API starts a request's workflow
// before it commits the request, so a workflow may run for a request whose
// recording then failed, and it must not dispatch anything for it.
type RequestChecker interface {
	ErasureRecorded(ctx context.Context, requestID string) (bool, error)
}

// Publisher writes Kafka messages and returns once every one is acknowledged
// by all in-sync replicas. *kafka.Writer with RequiredAcks RequireAll and no
// Topic set (each message names its own) implements it.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// TopicEnsurer creates the Kafka topics that do not exist yet. Sync asks it
// for a command topic the broker does not know (deleted by an operator, or
// a fresh cluster behind a registry that remembers the systems), as the
// API's PUT /v1/systems does when a system is registered. roles.Topics
// implements it.
type TopicEnsurer interface {
	EnsureTopics(ctx context.Context, names ...string) error
}

// Activities is the set of erasure activities and what they depend on.
type Activities struct {
	Registry  SystemMatcher
	Ledger    LedgerWriter
	Publisher Publisher
	// Digester turns the subject's identifiers into the keyed digests that
	// legal holds are matched by. Nil matches no hold (tests only).
	Digester *digest.Digester
	// Escalations receives every escalation of a late request (the
	// configured webhook); nil only logs and counts them.
	Escalations Notifier
	// Credentials tells which systems' commands are signed and with which
	// keys; nil signs nothing (tests, or a deployment without credentials).
	Credentials CredentialSource
	// SystemKey derives the secrets commands are signed with
	// (LETHE_SYSTEM_KEY); needed once a system has credentials.
	SystemKey *credential.Master
	// Metrics counts escalations; nil counts nothing.
	Metrics EscalationCounter
	// Outcomes counts the final outcomes Sync writes, when the Ledger is
	// an OutcomeLedger; nil counts nothing.
	Outcomes OutcomeObserver
	// Topics re-creates a command topic found missing; nil creates none,
	// and the publish is retried until an operator creates it.
	Topics TopicEnsurer
	// Pull queues the commands of pull-mode systems instead of producing
	// them (registry.Store); nil produces every command to Kafka.
	Pull PullQueue
	// Batches is the ledger of bulk erasures (registry.Store); the batch
	// activities need it.
	Batches BatchLedger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// PlanInput asks which systems a request must target.
type PlanInput struct {
	RequestID string `json:"request_id"`
	// Types are the identifier types of the wave to plan.
	Types []string `json:"types"`
	// Subject is every identifier known for the subject, digested here to
	// find the legal holds on it. It travels only inside Temporal.
	Subject []wire.Identifier `json:"subject,omitempty"`
	// Learned are the identifiers systems revealed since the last plan,
	// whose digests the ledger records against the request.
	Learned []wire.Identifier `json:"learned,omitempty"`
	// At is the workflow's clock, at which holds are judged.
	At time.Time `json:"at"`
}

// Target is one system a request must reach, as the registry described it
// when the request planned it.
type Target struct {
	System string `json:"system"`
	Topic  string `json:"topic"`
	// Types are the identifier types the system erases by.
	Types []string `json:"types"`
	// Produces are the identifier types the system may reveal.
	Produces      []string      `json:"produces,omitempty"`
	ConfirmWithin time.Duration `json:"confirm_within"`
	// Hold, when set, is the legal hold that keeps the subject's data in
	// this system: nothing is dispatched to it while the hold lasts.
	Hold *lethe.Hold `json:"hold,omitempty"`
	// Batch says the system takes batch commands (lethe.System.Batch);
	// only the chunks of a bulk erasure read it.
	Batch bool `json:"batch,omitempty"`
	// After are the systems this one is erased after (lethe.System.After);
	// workflows from RevisionOrdered on wait for those they target.
	After []string `json:"after,omitempty"`
}

// PlanResult lists the targets, ordered by system name.
type PlanResult struct {
	Targets []Target `json:"targets"`
}

// Outbound is one command and the topic it goes to.
type Outbound struct {
	Topic   string       `json:"topic"`
	Command wire.Command `json:"command"`
}

// SyncInput is one wave of a request: commands to publish, then the ledger
// changes to write. The workflow builds both so the activity stays a dumb,
// retry-safe pipe: publishing again repeats the same command_id, which every
// connector treats as the same command.
type SyncInput struct {
	RequestID string            `json:"request_id"`
	Commands  []Outbound        `json:"commands,omitempty"`
	Ledger    lethe.LedgerDelta `json:"ledger"`
	// Partial, set by workflows of revision 4 on, lets the commands whose
	// topic is missing and cannot be created, or may not be written to, come
	// back in SyncResult.Undelivered rather than fail the whole Sync, so that
	// one such system holds up no other. The ledger is then not written: the
	// workflow corrects it and writes it in its next Sync.
	Partial bool `json:"partial,omitempty"`
}

// SyncResult reports what one wave did.
type SyncResult struct {
	Published int `json:"published"`
	// Undelivered are the commands that Partial let through unwritten.
	Undelivered []Undelivered `json:"undelivered,omitempty"`
}

// Undelivered is a command that could not be published, and why. The reason
// names the topic and the broker's or the creation's error, never a value.
type Undelivered struct {
	CommandID string `json:"command_id"`
	System    string `json:"system"`
	Reason    string `json:"reason"`
}
