package workflows

import (
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

// ExtendSignal is the payload of SignalExtend, sent by the API once the
// ledger has recorded the extension.
type ExtendSignal struct {
	Deadline time.Time `json:"deadline"`
	Target   time.Time `json:"target"`
}

// ErasureInput starts an erasure workflow. It carries the subject's identifier
// values because the commands need them; the ledger in PostgreSQL never does.
type ErasureInput struct {
	RequestID string            `json:"request_id"`
	Subject   []wire.Identifier `json:"subject"`
	DryRun    bool              `json:"dry_run"`
	CreatedAt time.Time         `json:"created_at"`
	Deadline  time.Time         `json:"deadline"`
	// Target is the internal target before the deadline; zero means none.
	Target time.Time `json:"target"`
	Policy Policy    `json:"policy"`
	// CommandSeed is a random secret, drawn when the request is accepted,
	// from which the workflow derives its command_ids. They must be
	// unguessable, and the same again when a workflow task runs a second
	// time because its worker died before Temporal recorded it: ids drawn
	// at random inside that task would differ the second time, and the
	// commands it had already published would go out again under new ids,
	// to be erased twice. Without a seed (workflows started before it
	// existed) the ids are drawn at random.
	CommandSeed string `json:"command_seed,omitempty"`
	// Revision is the behaviour the workflow was started with, so that a
	// change of the commands it issues applies only to workflows started
	// after it, and histories written before replay unchanged. The API sets
	// it to CurrentRevision; zero is the first behaviour. It replaces
	// workflow.GetVersion, which itself writes a search attribute, and so
	// costs the very visibility update revision 1 saves.
	Revision int `json:"revision,omitempty"`
	// State is set only when the workflow continues as new, carrying over
	// what the previous run had reached, or when a closed request is
	// started again from where it stood (Retry).
	State *State `json:"state,omitempty"`
	// Retry, with State, starts again a request whose workflow had closed:
	// the new run first gives the failed systems named by the order a fresh
	// attempt budget (RevisionRetry).
	Retry *RetrySignal `json:"retry,omitempty"`
}

// RetrySignal is the payload of SignalRetry, sent by the API once the
// ledger has recorded who asked for the retry, and the order that
// ErasureInput.Retry carries into a new run of a closed request.
type RetrySignal struct {
	// Actor is the principal that asked; the workflow names it on the
	// redispatched events.
	Actor string `json:"actor"`
	// Systems limits the retry to these systems; empty means every system
	// that failed.
	Systems []string `json:"systems,omitempty"`
}

// Revisions of ErasureWorkflow's behaviour; see ErasureInput.Revision.
const (
	// RevisionSettledSearch defers a request's first search-attribute
	// upsert until the request has settled (Policy.Settle), or ends, so
	// that a request confirmed within seconds updates Temporal's
	// visibility store once, when it closes, instead of twice.
	RevisionSettledSearch = 1
	// RevisionOverdueAfterHold marks a request overdue when a legal hold
	// ends after the deadline and the released systems are open: the
	// deadline passed quietly because only held systems were open then.
	RevisionOverdueAfterHold = 2
	// RevisionSettledLedger publishes a young request's commands at once
	// but writes what its steps change to the ledger only once it has
	// settled (Policy.Settle), or when it ends: a request confirmed sooner
	// writes the ledger once instead of once per step. Temporal's history
	// holds the unwritten part meanwhile.
	RevisionSettledLedger = 3
	// RevisionRegularRetries bounds the local activities to a few attempts
	// within one workflow task and retries what still fails as a regular
	// activity, so that an outage of PostgreSQL or Kafka, however long,
	// adds a handful of events to a request's history instead of six a
	// minute (see runActivity). It also lets a command whose topic is
	// missing and cannot be created go back undelivered from Sync: its
	// system shows pending with the reason and escalates (not_dispatched),
	// the other systems go on, and the command is sent again later (see
	// undeliverable).
	RevisionRegularRetries = 4
	// RevisionNothingDropped loses nothing at the ends of a run: it applies
	// every signal (not only confirmations) still queued when it continues
	// as new, waits for the escalations in flight before it finishes or
	// continues as new, records a run that stops on an error as failed in
	// the ledger, and reads signals so that one it cannot decode is dropped
	// without stalling the signals after it.
	RevisionNothingDropped = 5
	// RevisionStableNames names what a request writes by the request, not
	// by the run: command_ids derive from the CommandSeed and a counter,
	// ledger batch names from a counter and a digest of the changes (see
	// batchName), both counters carried over at continue-as-new. A reset replays the request
	// under a new run id, and ids derived from it would no longer match the
	// commands already published, so their confirmations were rejected as
	// unknown. It also bounds the continue-as-new input: a final command
	// carries the places of its identifiers in State.Subject instead of
	// their values (CommandState.Sent).
	RevisionStableNames = 6
	// RevisionWakeCarriedHolds acts at once on a hold lifted (or placed)
	// as the run before ended: the next run takes its first step without
	// waiting, instead of at its next escalation point or hold recheck,
	// which could be a day later.
	RevisionWakeCarriedHolds = 7
	// RevisionRetry takes SignalRetry: every failed command of the systems
	// it names is dispatched again under its command_id, at the next
	// attempt, with a fresh budget of Policy.MaxAttempts (CommandState.
	// RetryFrom), and a request that had failed runs again. A request whose
	// workflow had closed is started again at this revision, its input
	// carrying the order (ErasureInput.Retry).
	RevisionRetry = 8
	// RevisionOrdered honours lethe.System.After: a system's command waits
	// (CommandState.Waiting), shown pending, until every system it is
	// erased after that the request targets has reached a final outcome;
	// a failed one keeps it waiting, and the request ends failed, until a
	// retry of that system succeeds.
	RevisionOrdered = 9
	// CurrentRevision is the revision the API starts workflows with. A
	// worker refuses a workflow of a later revision (see ErasureWorkflow),
	// so workers roll out before the API that starts it.
	CurrentRevision = RevisionOrdered
)

// Policy bounds how hard a request tries. It travels in the input so that a
// change of worker configuration never alters a running workflow's decisions.
type Policy struct {
	// MaxAttempts is how many times one command is dispatched before its
	// system is marked failed. Zero means DefaultMaxAttempts.
	MaxAttempts int `json:"max_attempts"`
	// RetryDelay is how long to wait before re-dispatching after a failed,
	// retryable confirmation. Zero means DefaultRetryDelay.
	RetryDelay time.Duration `json:"retry_delay"`
	// Reminders are the shares of the window from receipt to deadline
	// (0.5 is half-way) at which the request escalates and re-dispatches
	// to the systems that have not confirmed. Nil means DefaultReminders;
	// empty means none.
	Reminders []float64 `json:"reminders"`
	// Settle is how long a new request settles before its list columns
	// (LetheStatus, LethePending, LetheSystems) are written, under
	// RevisionSettledSearch, and before its steps are written to the ledger
	// as they happen, under RevisionSettledLedger. Until then the columns
	// show what the API set at start and the ledger the request as the API
	// created it, while the status query is live; a request that ends
	// sooner writes both once. A request still open then is woken once to
	// write them. Zero means DefaultSettle; negative means no settling:
	// every step is written at once.
	Settle time.Duration `json:"settle,omitempty"`
	// Retry is the backoff between activity attempts; nil means
	// DefaultActivityRetry. Only tests set it, to cover in seconds as
	// many retries as a long outage makes.
	Retry *ActivityRetry `json:"retry,omitempty"`
}

// Defaults for Policy's zero fields.
const (
	DefaultMaxAttempts = 5
	DefaultRetryDelay  = 30 * time.Second
	DefaultSettle      = 10 * time.Second
)

// DefaultReminders remind at half and four fifths of the window.
var DefaultReminders = []float64{0.5, 0.8}

// ConfirmSignal is the payload of SignalConfirm. The relay coalesces every
// confirmation it fetched for one request into one signal.
type ConfirmSignal struct {
	Confirmations []wire.Confirmation `json:"confirmations"`
}

// State is everything a run of ErasureWorkflow has reached, carried into the
// next run when the workflow continues as new so that the request goes on
// exactly where it stood. It holds identifier values (the commands need them
// to be dispatched again) and so, like ErasureInput, lives only in Temporal.
type State struct {
	Status lethe.RequestStatus `json:"status"`
	// Subject is every identifier known for the subject: the request's own
	// and those that systems revealed since.
	Subject []wire.Identifier `json:"subject"`
	// Targets are the systems the request reaches, as last planned.
	Targets []activities.Target `json:"targets"`
	// Commands are all the commands issued, in the order they were issued.
	// Which identifiers each system was sent is read from them.
	Commands []CommandState `json:"commands"`
	// Inbox holds confirmations received but not yet processed.
	Inbox []wire.Confirmation `json:"inbox,omitempty"`
	// Fired names the escalation points already passed.
	Fired []string `json:"fired,omitempty"`
	// Overdue is set once the deadline passed with systems open.
	Overdue bool `json:"overdue,omitempty"`
	// Learned are revealed identifiers whose digests the ledger has not
	// recorded yet.
	Learned []wire.Identifier `json:"learned,omitempty"`
	// HoldsChanged is set when a lift was signalled and not yet acted on.
	HoldsChanged bool `json:"holds_changed,omitempty"`
	// Retries are retry orders received and not yet acted on
	// (RevisionRetry).
	Retries []RetrySignal `json:"retries,omitempty"`
	// Drawn and Syncs are how many command_ids the request derived and how
	// many Sync calls it made, under RevisionStableNames: the next run goes
	// on counting, so that its names never repeat an earlier run's.
	Drawn int `json:"drawn,omitempty"`
	Syncs int `json:"syncs,omitempty"`
}

// CommandState is one command of a request and where it stands. A system has
// one command per wave that reached it; its progress aggregates them.
type CommandState struct {
	ID     string `json:"id"`
	System string `json:"system"`
	// Topic, Identifiers, ConfirmWithin, IssuedAt, ConfirmBy, Due and
	// FailedAt serve dispatching the command again. Under
	// RevisionStableNames a final command is carried over at
	// continue-as-new without them (zero, and so left out of the encoded
	// input), its identifiers named by Sent: the carried input then grows
	// by what the view and the ledger need per system, and by identifier
	// values only for the commands still open.
	Topic       string            `json:"topic,omitzero"`
	Identifiers []wire.Identifier `json:"identifiers,omitempty"`
	// Sent, only in a carried State under RevisionStableNames, stands for
	// the Identifiers of a final command: their places in State.Subject. A
	// final command is never dispatched again, yet which identifiers its
	// system was sent still decides what a later wave sends it.
	Sent          []int         `json:"sent,omitempty"`
	ConfirmWithin time.Duration `json:"confirm_within,omitzero"`
	Attempt       int           `json:"attempt"`
	// RetryFrom is the attempt a retry order started the command's fresh
	// budget after: the command fails for good once Attempt-RetryFrom
	// reaches Policy.MaxAttempts (RevisionRetry; zero before any retry).
	RetryFrom int       `json:"retry_from,omitempty"`
	IssuedAt  time.Time `json:"issued_at,omitzero"`
	ConfirmBy time.Time `json:"confirm_by,omitzero"`
	// Due is when the workflow acts on the command next: its confirm_by
	// while it waits for a confirmation, or the end of the retry delay.
	Due time.Time `json:"due,omitzero"`
	// RetryPending is set after a failed, retryable confirmation: at Due
	// the command is dispatched again rather than timed out.
	RetryPending bool `json:"retry_pending,omitempty"`
	// FailedAt is when, by the system's clock, it last reported a retryable
	// failure; the same report delivered again is recognised by it.
	FailedAt time.Time `json:"failed_at,omitzero"`
	// Status is dispatched while the command is open, else its outcome.
	Status      lethe.SystemStatus `json:"status"`
	Records     int64              `json:"records"`
	Detail      string             `json:"detail,omitempty"`
	ConfirmedAt *time.Time         `json:"confirmed_at,omitempty"`
	// ChangedAt orders the details of a system's commands.
	ChangedAt time.Time `json:"changed_at"`
	// Hold, on a command with no ID, makes it the placeholder of a system
	// that a legal hold keeps: nothing is dispatched, the system shows
	// retained with the hold's basis, and the request stays open while
	// Held is set. When the hold ends the placeholder is Superseded by
	// the commands then dispatched.
	Hold *lethe.Hold `json:"hold,omitempty"`
	// Undelivered counts the times the command could not be published
	// because of its topic; while its Status is pending, it is published
	// again at Due.
	Undelivered int  `json:"undelivered,omitempty"`
	Held        bool `json:"held,omitempty"`
	Superseded  bool `json:"superseded,omitempty"`
	// Waiting, under RevisionOrdered, marks a command not dispatched yet
	// because its system is erased after others the request targets that
	// have not all reached a final outcome; its Status is pending, its
	// Detail names them, and it has no Due.
	Waiting bool `json:"waiting,omitempty"`
}

// open reports whether the request must still wait for this command.
func (c *CommandState) open() bool { return !c.Status.Final() || c.Held }
