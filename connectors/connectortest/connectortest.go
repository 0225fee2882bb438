// Package connectortest is the conformance kit for connectors: a service team
// calls Run from its own tests with its handler and two callbacks (seed a
// subject, count what remains of one), and the kit checks, against a real
// Kafka-protocol broker and through the same SDK the service runs in
// production, that the handler keeps the contract Lethe relies on. Each
// failing check says what the service must fix.
//
// The checks:
//
//   - erase_leaves_nothing: a seeded subject is confirmed erased with at
//     least one record, and Remaining finds nothing afterwards.
//   - repeated_command_id: the same command delivered twice (attempt 1, then
//     attempt 2) is confirmed twice with the same outcome and records, and
//     the handler answers a repeat it is called with as it answered the
//     first delivery. The contract says a repeated command_id is the same
//     command. On the wire the SDK's de-duplication store answers most
//     repeats without calling the handler, which would hide a handler that
//     runs a command again; but the store records a command only once its
//     confirmation is sent, so a crash between erasing and confirming, a
//     restart with the in-memory store or a replica that does not share the
//     store hands the repeat to the handler itself. So the check also calls
//     the handler directly, twice with the same request, and requires the
//     same outcome and records both times (derived identifiers may be left
//     out of the repeat): a handler must remember the command ids it carried
//     out, for example in a table written in the same transaction as the
//     erasure, rather than run a command again and report not_found. The
//     SDK's store is not enough, and neither is a handler that is merely
//     idempotent.
//   - unknown_subject: a subject the service never held is answered
//     not_found with no records, and another seeded subject keeps all its data.
//   - dry_run: a dry run of a seeded subject changes nothing yet reports
//     erased with the number of records the real erasure then removes.
//   - unknown_identifier_type: a command whose only identifier is of a type
//     no system declares is answered not_found with no records, or failed
//     and not retryable.
//   - malformed_command: a message on the command topic that is not JSON
//     goes to the dead-letter topic, keeping its value, with a reason; the
//     connector then answers the next command.
//   - cancellation: Erase, called directly with a canceled context, returns
//     promptly without erasing; called with a context canceled just after it
//     starts, it returns promptly.
//   - signed_messages: a connector given a signing credential never calls
//     the handler for an unsigned command or one signed with another
//     secret (the SDK dead-letters them), and signs the confirmation of a
//     correctly signed command with its key id over the value bytes.
//   - batch_partial_failure (this and the next two only with Config.Batch):
//     a batch command of three seeded subjects in
//     which the kit fails the second item itself (the handler never sees
//     it) is answered in one batch confirmation: the other two erased, the
//     second failed with its data intact; a new attempt of the same
//     command then erases the second.
//   - batch_repeated_command_id: a batch command delivered twice gets the
//     same outcome and records per item; with a BatchHandler, EraseBatch
//     called directly twice with the same request answers alike too.
//   - batch_dry_run: a dry-run batch changes nothing and reports per item
//     the records the real batch then removes (not_found for a subject never
//     held).
//   - derived_identifier (only with Config.RevealsDerived): the confirmation
//     of a seeded subject carries the subject's derived identifiers.
//
// The same checks, but for cancellation and the batch and derived ones,
// drive a connector of any language already running, over the wire alone:
// see CheckWire, which `lethe conformance` runs.
//
// Every check that goes through the SDK runs its own connector
// (connectors.Run with the handler, on a command topic and consumer group of
// its own), so a handler that hangs in one check cannot hold up the next. A check that does not finish within
// Config.Timeout fails with a message instead of hanging the test; the
// goroutine of a handler that never returns cannot be stopped and is left
// behind.
package connectortest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// DefaultTimeout bounds each check when Config.Timeout is zero: generous for
// a handler on a test database, short enough that a hung one fails soon.
const DefaultTimeout = 20 * time.Second

// The names of the checks, as Failure.Check and Run's subtests carry them,
// so that a test can tell which check failed.
const (
	CheckEraseLeavesNothing = "erase_leaves_nothing"
	CheckRepeatedCommand    = "repeated_command_id"
	CheckUnknownSubject     = "unknown_subject"
	CheckDryRun             = "dry_run"
	CheckUnknownType        = "unknown_identifier_type"
	CheckMalformed          = "malformed_command"
	CheckCancellation       = "cancellation"
	CheckSignedMessages     = "signed_messages"
	CheckDerived            = "derived_identifier"
	CheckBatchPartial       = "batch_partial_failure"
	CheckBatchRepeated      = "batch_repeated_command_id"
	CheckBatchDryRun        = "batch_dry_run"
	// CheckConfig names the failure of a Config the kit cannot run with.
	CheckConfig = "config"
	// CheckSetup names the failure to start the broker or the topics.
	CheckSetup = "setup"
)

// Subject is one test subject: its identifiers as the system receives them in
// a command, and the further identifiers the system knows for it.
type Subject struct {
	// Identifiers go into the commands; use only the types the system
	// declares in Lethe's registry, as Lethe sends no others.
	Identifiers []wire.Identifier
	// Derived are the identifiers the handler should report for this
	// subject once seeded (checked only with Config.RevealsDerived).
	Derived []wire.Identifier
}

// Config is what the kit needs to run the checks against one handler.
type Config struct {
	// System is the system name the connector runs as.
	System string
	// Handler is the service's handler, the code under test.
	Handler connectors.Handler
	// Brokers are a real Kafka cluster's addresses. When empty, the kit
	// starts an in-process Kafka-protocol broker and stops it afterwards.
	// On a real cluster the kit creates topics of its own, named
	// lethe.conformance.<system>.<run>.<n>, and deletes them afterwards.
	Brokers []string
	// NewSubject returns a fresh subject that exists nowhere yet: each call
	// must return identifiers no other call returned.
	NewSubject func() Subject
	// Seed stores data for s in the service, as the service's users would.
	// It must store at least one record that Remaining counts.
	Seed func(ctx context.Context, s Subject) error
	// Remaining counts what the service still holds for s: what an erasure
	// must bring to zero.
	Remaining func(ctx context.Context, s Subject) (int64, error)
	// RevealsDerived says the handler reports Subject.Derived after erasing
	// a seeded subject.
	RevealsDerived bool
	// Batch says the system declares "batch": true in Lethe's registry, so
	// that it receives batch commands: the batch checks run too.
	Batch bool
	// Timeout bounds each check; default DefaultTimeout.
	Timeout time.Duration
}

func (c Config) validate() error {
	switch {
	case !wire.ValidSystemName(c.System):
		return fmt.Errorf("System %q is not a valid system name", c.System)
	case c.Handler == nil:
		return errors.New("Handler is nil")
	case c.NewSubject == nil:
		return errors.New("NewSubject is nil")
	case c.Seed == nil:
		return errors.New("Seed is nil")
	case c.Remaining == nil:
		return errors.New("Remaining is nil")
	case c.Timeout < 0:
		return errors.New("Timeout is negative")
	}
	for _, b := range c.Brokers {
		if b == "" {
			return errors.New("Brokers holds an empty address")
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Failure is one failed check: which one, and what the service must fix.
type Failure struct {
	Check   string
	Problem string
}

// Error makes a Failure usable where an error is expected.
func (f Failure) Error() string { return f.Check + ": " + f.Problem }

// String is how a Failure reads in a test's log.
func (f Failure) String() string { return f.Error() }

// Check runs every check against cfg's handler and returns the failures,
// in the order the package documentation lists the checks; it returns none
// when the handler is conformant. It is for tests that want to look at the
// failures themselves; Run reports them to a *testing.T.
func Check(ctx context.Context, cfg Config) []Failure {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return []Failure{{Check: CheckConfig, Problem: err.Error()}}
	}
	e, err := start(ctx, cfg)
	if err != nil {
		return []Failure{{Check: CheckSetup, Problem: err.Error()}}
	}
	defer e.close()
	var failures []Failure
	for _, r := range e.checker().runAll(ctx, e.checks()) {
		if !r.Passed() {
			failures = append(failures, Failure{Check: r.Check, Problem: r.Problem})
		}
	}
	return failures
}

// Run is what a service team calls from its own tests: one subtest per
// check, failing with what the service must fix.
func Run(t *testing.T, cfg Config) {
	t.Helper()
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatalf("connectortest: config: %v", err)
	}
	e, err := start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("connectortest: %v", err)
	}
	defer e.close()
	k := e.checker()
	for _, c := range e.checks() {
		t.Run(c.name, func(t *testing.T) {
			if r := k.run(t.Context(), c); !r.Passed() {
				t.Error(r.Problem)
			}
		})
	}
}
