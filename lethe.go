// Package lethe holds the domain of the erasure orchestrator: the registry's
// systems, erasure requests and their per-system progress, the audit events
// that record what happened, and the coded errors that every layer returns.
// It depends on the standard library only, so that every other package (API,
// workflows, activities, registry, relay) can speak the same types without
// importing each other.
package lethe

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// RequestStatus is where an erasure request stands as a whole.
type RequestStatus string

// The request statuses of the public contract. A request moves from pending to
// running and ends in exactly one of completed, failed or canceled.
const (
	RequestPending   RequestStatus = "pending"
	RequestRunning   RequestStatus = "running"
	RequestCompleted RequestStatus = "completed"
	RequestFailed    RequestStatus = "failed"
	RequestCanceled  RequestStatus = "canceled"
)

// Valid reports whether s is one of the contract's request statuses; the API
// uses it to reject unknown status filters.
func (s RequestStatus) Valid() bool {
	switch s {
	case RequestPending, RequestRunning, RequestCompleted, RequestFailed, RequestCanceled:
		return true
	}
	return false
}

// Final reports whether no further change can happen to a request in status s.
func (s RequestStatus) Final() bool {
	return s == RequestCompleted || s == RequestFailed || s == RequestCanceled
}

// SystemStatus is where one targeted system stands within a request.
type SystemStatus string

// The per-system statuses of the public contract. Erased, not_found and
// retained count as done; failed makes the whole request fail.
const (
	SystemPending    SystemStatus = "pending"
	SystemDispatched SystemStatus = "dispatched"
	SystemErased     SystemStatus = "erased"
	SystemNotFound   SystemStatus = "not_found"
	SystemRetained   SystemStatus = "retained"
	SystemFailed     SystemStatus = "failed"
)

// Final reports whether a system in status s needs nothing more.
func (s SystemStatus) Final() bool {
	switch s {
	case SystemErased, SystemNotFound, SystemRetained, SystemFailed:
		return true
	}
	return false
}

// DefaultConfirmWithin is how long Lethe waits for a system's confirmation
// before re-dispatching, when the system does not say.
const DefaultConfirmWithin = 72 * time.Hour

// DefaultDeadline is the legal window a request gets when nothing else is
// said: GDPR Art. 12(3) allows one month, counted here as 30 days.
const DefaultDeadline = 30 * 24 * time.Hour

// DefaultTargetBefore is how long before its deadline a request's internal
// target falls: 28 days into the default 30, leaving two days to chase.
const DefaultTargetBefore = 48 * time.Hour

// MaxExtension bounds the one extension of a deadline: GDPR Art. 12(3)
// allows "two further months", counted on the calendar from the deadline.
func MaxExtension(deadline time.Time) time.Time { return deadline.AddDate(0, 2, 0) }

var (
	systemNameRe     = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	identifierTypeRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

// ValidSystemName reports whether name may name a system in the registry.
func ValidSystemName(name string) bool { return systemNameRe.MatchString(name) }

// ValidIdentifierType reports whether t may name an identifier type.
func ValidIdentifierType(t string) bool { return identifierTypeRe.MatchString(t) }

// System is one entry of the registry: a service that holds personal data
// keyed by some identifier types and erases it when told on its topic.
type System struct {
	Name          string   `json:"name"`
	Identifiers   []string `json:"identifiers"`
	Produces      []string `json:"produces"`
	Topic         string   `json:"topic"`
	Owner         string   `json:"owner"`
	Description   string   `json:"description"`
	ConfirmWithin Duration `json:"confirm_within"`
	// Batch says the system takes batch commands (many subjects in one
	// message, wire.SchemaBatchCommand) for the subjects of a bulk
	// erasure; without it each subject gets a command of its own.
	Batch bool `json:"batch"`
	// After names the systems this one is erased after: Lethe dispatches
	// to it only once each of them that the request targets has reached a
	// final outcome, so that, say, an index is erased after the store it
	// indexes. Sorted, without duplicates; never nil in an answer.
	After []string `json:"after"`
	// Mode says how the system receives its commands: ModeKafka on its
	// topic, or ModePull by leasing them over HTTP, for a service that
	// cannot reach Kafka.
	Mode      Mode      `json:"mode"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Mode is how a system receives its commands.
type Mode string

// The modes of a system. A pull-mode system's commands are never produced
// to Kafka: its connector leases them from GET /v1/systems/{name}/commands
// and answers on POST /v1/systems/{name}/confirmations.
const (
	ModeKafka Mode = "kafka"
	ModePull  Mode = "pull"
)

// Valid reports whether m is one of the modes.
func (m Mode) Valid() bool { return m == ModeKafka || m == ModePull }

// SystemStats is a system's recent health, from the ledger: what an
// operator asks before chasing a service's team (GET
// /v1/systems/{name}/stats, `lethe systems get`). It holds counts and
// times only.
type SystemStats struct {
	System string `json:"system"`
	// OpenCommands counts the system's pending or dispatched commands of
	// requests still running.
	OpenCommands int64 `json:"open_commands"`
	// FailedLast24h counts the system's commands that ended failed in the
	// last 24 hours.
	FailedLast24h int64 `json:"failed_last_24h"`
	// Confirmations counts the confirmations of the last StatsWindow that
	// the percentiles are taken over.
	Confirmations int64 `json:"confirmations"`
	// ConfirmationP50Seconds and ConfirmationP95Seconds are percentiles of
	// the time from a command's first dispatch to its confirmation, over
	// the last StatsWindow; nil without confirmations.
	ConfirmationP50Seconds *float64 `json:"confirmation_p50_seconds"`
	ConfirmationP95Seconds *float64 `json:"confirmation_p95_seconds"`
	// LastConfirmationAt is the system's latest confirmation still in the
	// ledger; nil when there is none.
	LastConfirmationAt *time.Time `json:"last_confirmation_at"`
	// Window is the span the percentiles cover, StatsWindow.
	Window Duration `json:"window"`
}

// StatsWindow is the span of SystemStats' confirmation percentiles: long
// enough to hold a weekly batch job's confirmations, short enough to show
// a service that became slow this week.
const StatsWindow = 7 * 24 * time.Hour

// Erasure is the public view of one erasure request: what the API answers and
// what the workflow's status query returns. It never holds identifier values,
// only their types.
type Erasure struct {
	ID           string        `json:"id"`
	Status       RequestStatus `json:"status"`
	Overdue      bool          `json:"overdue"`
	SubjectTypes []string      `json:"subject_types"`
	Reason       string        `json:"reason"`
	RequestedBy  string        `json:"requested_by"`
	// CreatedBy is the authenticated principal that created the request
	// (auth.Principal.Subject), where RequestedBy is the caller's own free
	// text; empty for requests created before authentication existed.
	CreatedBy string    `json:"created_by"`
	DryRun    bool      `json:"dry_run"`
	CreatedAt time.Time `json:"created_at"`
	Deadline  time.Time `json:"deadline"`
	// Target is the internal date, before the deadline, by which Lethe aims
	// to be done; passing it escalates.
	Target time.Time `json:"target"`
	// ExtendedAt and ExtensionReason record the one extension of the
	// deadline that GDPR Art. 12(3) allows, when it was granted.
	ExtendedAt      *time.Time       `json:"extended_at,omitempty"`
	ExtensionReason string           `json:"extension_reason,omitempty"`
	CompletedAt     *time.Time       `json:"completed_at"`
	WorkflowID      string           `json:"workflow_id"`
	Systems         []SystemProgress `json:"systems"`
	// PrunedAt is when retention removed the request's per-system rows
	// (LETHE_RETENTION); its certificate of erasure and its audit remain.
	PrunedAt *time.Time `json:"pruned_at,omitempty"`
}

// SystemProgress is one targeted system's state within a request.
type SystemProgress struct {
	Name        string       `json:"name"`
	Status      SystemStatus `json:"status"`
	Attempts    int          `json:"attempts"`
	Records     int64        `json:"records"`
	ConfirmedAt *time.Time   `json:"confirmed_at"`
	Detail      string       `json:"detail"`
}

// AuditKind names what an audit event records.
type AuditKind string

// The audit event kinds. Each is appended, never updated, so the audit tells
// the story of a request long after Temporal has forgotten its workflow.
const (
	AuditReceived             AuditKind = "received"
	AuditPlanned              AuditKind = "planned"
	AuditDispatched           AuditKind = "dispatched"
	AuditRedispatched         AuditKind = "redispatched"
	AuditConfirmed            AuditKind = "confirmed"
	AuditDerived              AuditKind = "derived"
	AuditConfirmationRejected AuditKind = "confirmation_rejected"
	AuditConfirmationLate     AuditKind = "confirmation_late"
	AuditCanceled             AuditKind = "canceled"
	AuditCompleted            AuditKind = "completed"
	AuditFailed               AuditKind = "failed"
	AuditHeld                 AuditKind = "held"
	AuditExtended             AuditKind = "extended"
	AuditEscalated            AuditKind = "escalated"
	AuditOverdue              AuditKind = "overdue"
	AuditHoldPlaced           AuditKind = "hold_placed"
	AuditHoldLifted           AuditKind = "hold_lifted"
	AuditPruned               AuditKind = "pruned"
	// AuditCredentialIssued records a new signing credential of a system;
	// its detail names the key id, never the secret.
	AuditCredentialIssued AuditKind = "credential_issued"
	// AuditBadSignature records a confirmation the relay refused because
	// its signature did not hold; its detail says which check failed.
	AuditBadSignature AuditKind = "bad_signature"
	// AuditCancelRequested records who asked to cancel a request, before
	// the workflow is told; AuditCanceled follows when it has stopped.
	AuditCancelRequested AuditKind = "cancel_requested"
	// AuditRetryRequested records who asked to retry a request's failed
	// systems, and which; the workflow's redispatched events follow,
	// naming the same actor.
	AuditRetryRequested AuditKind = "retry_requested"
	// AuditReconciled records what the worker's reconciler did to a
	// request whose workflow was gone or closed while the ledger had it
	// open: started it again, or failed it, and why.
	AuditReconciled AuditKind = "reconciled"
)

// The audit kinds of changes to the systems registry. They belong to no
// request: their System names the system and their Detail is JSON of the
// system definition, which holds no personal data. A created event holds
// the stored system; replaced and topic_changed events hold
// {"before": ..., "after": ...}; a retired event holds the system as it was.
const (
	AuditSystemCreated      AuditKind = "system_created"
	AuditSystemReplaced     AuditKind = "system_replaced"
	AuditSystemTopicChanged AuditKind = "system_topic_changed"
	AuditSystemRetired      AuditKind = "system_retired"
	// AuditTokenCreated and AuditTokenRevoked record the life of a Lethe
	// token (lethe token create|revoke): its name, scopes and expiry as
	// JSON, never the token.
	AuditTokenCreated AuditKind = "token_created"
	AuditTokenRevoked AuditKind = "token_revoked"
)

// AuditEvent is one line of a request's history. Detail is free text for
// people and must never contain an identifier value. Events about a legal
// hold rather than a request have an empty RequestID.
type AuditEvent struct {
	RequestID string `json:"request_id"`
	System    string `json:"system,omitempty"`
	// Hold is the legal hold an event is about, empty for most events.
	Hold    string    `json:"hold,omitempty"`
	Kind    AuditKind `json:"kind"`
	Attempt int       `json:"attempt,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
	// Actor is the authenticated principal whose call caused the event;
	// empty for Lethe's own steps. The audit chain's hash covers it.
	Actor string `json:"actor,omitempty"`
}

// LedgerDelta is what changed in a request since the ledger was last written.
// The workflow gathers changes per wave or per batch of confirmations and the
// activities write one delta in one transaction, so that PostgreSQL sees a
// round trip per batch rather than per event.
type LedgerDelta struct {
	// Status, when not empty, is the request's new status.
	Status RequestStatus `json:"status,omitempty"`
	// CompletedAt is set when Status is final.
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	// Systems are the targeted systems whose progress changed, whole.
	Systems []SystemProgress `json:"systems,omitempty"`
	// Events are appended to the audit in order.
	Events []AuditEvent `json:"events,omitempty"`
	// Overdue, when true, records that the request passed its deadline
	// with systems still open.
	Overdue bool `json:"overdue,omitempty"`
	// Batch, when set, names the delta uniquely within its request, so that
	// the ledger applies it once: a delta written again (an activity retried
	// after its commit, or run again by a worker that took over the task of
	// one that died before Temporal recorded the result) changes nothing.
	Batch string `json:"batch,omitempty"`
}

// Empty reports whether the delta has nothing to write.
func (d LedgerDelta) Empty() bool {
	return d.Status == "" && !d.Overdue && len(d.Systems) == 0 && len(d.Events) == 0
}

// SubjectDigest is the keyed digest of one identifier of a subject. Lethe
// keeps these instead of values so a request can later be matched to a
// subject (holds, suppression lists) without holding the subject's data.
type SubjectDigest struct {
	Type   string `json:"type"`
	Digest string `json:"digest"`
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("72h", "90m") in JSON, the form the contract uses for confirm_within.
type Duration time.Duration

// String writes d compactly: 72h rather than 72h0m0s.
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "72h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"72h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Hold is a legal hold: an exemption under GDPR Art. 17(3) (legal claims,
// legal obligations, public interest...) that stops Lethe from erasing a
// subject's data in one system, or in all, until it is lifted or expires.
// Systems it covers end a request "retained" with the basis in their
// detail and are erased once it ends. The subject is kept as keyed digests
// only, so the hold says which identifier types it matches, never values.
type Hold struct {
	ID           string   `json:"id"`
	SubjectTypes []string `json:"subject_types"`
	// System is the one system held; empty holds every system.
	System string `json:"system,omitempty"`
	// Basis names the legal ground, e.g. "Art. 17(3)(e): pending litigation".
	Basis string `json:"basis"`
	// ExpiresAt ends the hold on its own; nil holds until it is lifted.
	ExpiresAt *time.Time `json:"expires_at"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	// PlacedBy is the principal that placed (or last replaced) the hold.
	PlacedBy string `json:"placed_by"`
	// LiftedAt is when DELETE /v1/holds/{id} lifted the hold, LiftedBy the
	// principal that lifted it.
	LiftedAt *time.Time `json:"lifted_at"`
	LiftedBy string     `json:"lifted_by,omitempty"`
	// Active is whether the hold holds at the time it was read.
	Active bool `json:"active"`
}

var holdIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

// ValidHoldID reports whether id may name a legal hold: the caller chooses
// it (a case number, a ticket), so that placing a hold twice is one hold.
func ValidHoldID(id string) bool { return holdIDRe.MatchString(id) }

// EscalationKind says which point of a request's window an escalation marks.
type EscalationKind string

// The escalation kinds: a reminder at a configured share of the window, the
// internal target passed, the legal deadline passed, and systems whose
// command could not be dispatched (their topic is missing and could not be
// created, or Lethe may not write to it).
const (
	EscalationReminder      EscalationKind = "reminder"
	EscalationTarget        EscalationKind = "target"
	EscalationOverdue       EscalationKind = "overdue"
	EscalationNotDispatched EscalationKind = "not_dispatched"
)

// Escalation is what Lethe tells people when a request falls behind: the
// body of the escalation webhook. It names systems, never subjects.
type Escalation struct {
	Schema    string         `json:"schema"`
	RequestID string         `json:"request_id"`
	Kind      EscalationKind `json:"kind"`
	// Point names the reminder ("50%") or repeats the kind.
	Point    string    `json:"point"`
	At       time.Time `json:"at"`
	Deadline time.Time `json:"deadline"`
	Target   time.Time `json:"target"`
	// Open are the systems that have not confirmed yet, held ones excepted.
	Open []string `json:"open_systems"`
	// Redispatched counts the commands a reminder sent again.
	Redispatched int `json:"redispatched"`
}

// SchemaEscalation is the schema value of an Escalation.
const SchemaEscalation = "erasure.escalation.v1"
