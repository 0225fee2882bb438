package connectortest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// target is what the checks run against: a connector and the service
// behind it. The kit (env, a handler run in process through the SDK) and
// the black-box run (blackBox, a connector of any language already
// running) implement it, so that both run the same checks, which send the
// same commands, expect the same answers and word their failures alike.
type target interface {
	// system is the system name the commands carry.
	system() string
	// newSubject returns a subject that exists nowhere yet.
	newSubject() Subject
	// seed stores data for s in the service.
	seed(ctx context.Context, s Subject) error
	// count says how many records the service holds for s. counted is
	// false when the target cannot look into the service (a black box):
	// the checks then ask the connector itself (see checker.held).
	count(ctx context.Context, s Subject) (n int64, counted bool, err error)
	// open connects to the connector for one check; signed asks for a
	// connector that holds a signing credential.
	open(ctx context.Context, signed bool) (session, error)
}

// session is one check's line to the connector: send a command, receive its
// confirmation, find a dead letter. Kafka is the transport today
// (kafkaSession); another, such as HTTP pull mode, plugs in here.
type session interface {
	// send delivers cmd, signed as how says.
	send(ctx context.Context, cmd wire.Command, how signing) error
	// sendRaw delivers value as a command's message under key, signed.
	sendRaw(ctx context.Context, key string, value []byte) error
	// await returns the n-th confirmation of commandID (n counts from 1),
	// or an error that says where the command got stuck.
	await(ctx context.Context, commandID string, n int) (wire.Confirmation, error)
	// confirmed counts the confirmations of commandID received so far.
	confirmed(commandID string) int
	// deadLetter waits for the dead letter of the message sent under key.
	deadLetter(ctx context.Context, key string) (deadLetter, error)
	// calls says how often the handler was called for commandID, when the
	// session can see it (only in process).
	calls(commandID string) (n int, known bool)
	// cause quotes the error the handler returned for commandID, when the
	// session can see it; "" otherwise.
	cause(commandID string) string
	close()
}

// directEraser is a target whose handler the checks can call themselves,
// past the transport: only in process.
type directEraser interface {
	erase(ctx context.Context, req connectors.Request) (connectors.Result, error)
}

// checker runs checks against a target; the checks are its methods' users.
type checker struct {
	t target
	// timeout bounds each check.
	timeout time.Duration
}

// check is one named check; run returns what the service must fix, or nil.
type check struct {
	name string
	run  func(ctx context.Context, k *checker) error
}

// Result is the outcome of one check: Problem is empty when it passed, and
// otherwise says what the service must fix.
type Result struct {
	Check   string `json:"check"`
	Problem string `json:"problem,omitempty"`
}

// Passed reports whether the check passed.
func (r Result) Passed() bool { return r.Problem == "" }

// runAll runs every check in order, each within the timeout.
func (k *checker) runAll(ctx context.Context, checks []check) []Result {
	out := make([]Result, 0, len(checks))
	for _, c := range checks {
		out = append(out, k.run(ctx, c))
	}
	return out
}

// run runs c within the timeout. The checks wait on nothing but their
// context, so they end soon after it; should one still hang, it is
// abandoned rather than allowed to hang the run.
func (k *checker) run(ctx context.Context, c check) Result {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("the check panicked: %v", p)
			}
		}()
		done <- c.run(ctx, k)
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		t := time.NewTimer(abandonGrace)
		defer t.Stop()
		select {
		case err = <-done:
		case <-t.C:
			err = fmt.Errorf("the check did not finish within %s: Erase, Seed or Remaining does not return when its context is canceled", k.timeout)
		}
	}
	if err == nil {
		return Result{Check: c.name}
	}
	return Result{Check: c.name, Problem: err.Error()}
}

// subject returns a fresh subject and a command for it, checking that the
// subject can travel on the wire.
func (k *checker) subject(dryRun bool) (Subject, wire.Command, error) {
	s := k.t.newSubject()
	cmd, err := k.command(s, dryRun)
	return s, cmd, err
}

// command builds a command for s as Lethe's dispatch would: new random ids,
// attempt 1, a deadline three days out.
func (k *checker) command(s Subject, dryRun bool) (wire.Command, error) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	cmd := wire.Command{
		Schema:      wire.SchemaCommand,
		CommandID:   uuid.NewString(),
		RequestID:   uuid.NewString(),
		System:      k.t.system(),
		Attempt:     1,
		Identifiers: slices.Clone(s.Identifiers),
		IssuedAt:    now,
		ConfirmBy:   now.Add(72 * time.Hour),
		DryRun:      dryRun,
	}
	if err := cmd.Validate(); err != nil {
		return wire.Command{}, fmt.Errorf("NewSubject returned a subject no command can carry (%w): give it at least one identifier of a valid type with a non-empty value", err)
	}
	return cmd, nil
}

// uncounted stands for the records of a subject the target cannot count.
const uncounted = -1

// seeded returns a fresh subject with data in the service, a command to
// erase it, and how many records the service holds for it (uncounted when
// the target cannot count them).
func (k *checker) seeded(ctx context.Context, dryRun bool) (Subject, wire.Command, int64, error) {
	s, cmd, err := k.subject(dryRun)
	if err != nil {
		return Subject{}, wire.Command{}, 0, err
	}
	if err := k.t.seed(ctx, s); err != nil {
		return Subject{}, wire.Command{}, 0, fmt.Errorf("seed a subject: %w", err)
	}
	n, counted, err := k.t.count(ctx, s)
	if err != nil {
		return Subject{}, wire.Command{}, 0, err
	}
	if !counted {
		return s, cmd, uncounted, nil
	}
	if n < 1 {
		return Subject{}, wire.Command{}, 0, errors.New("Remaining counts nothing for a subject Seed has just stored: Seed must store data under the subject's identifiers, and Remaining count it")
	}
	return s, cmd, n, nil
}

// wantErased reports a confirmation that does not say a seeded subject was
// erased.
func wantErased(sess session, conf wire.Confirmation, what string) error {
	if conf.Outcome == wire.OutcomeErased && conf.Records > 0 {
		return nil
	}
	return fmt.Errorf("%s was confirmed %s with %d records (detail %q)%s: Erase must remove what the service holds under the command's identifiers and report outcome erased with the number of records removed",
		what, conf.Outcome, conf.Records, conf.Detail, sess.cause(conf.CommandID))
}

// wantNothingLeft reports what remains of s after it was confirmed erased.
// A target that cannot count asks the connector: a fresh command for s must
// be answered not_found.
func (k *checker) wantNothingLeft(ctx context.Context, sess session, s Subject) error {
	left, counted, err := k.t.count(ctx, s)
	if err != nil {
		return err
	}
	if counted {
		if left != 0 {
			return fmt.Errorf("%d record(s) remain after the subject was confirmed erased: Erase must remove everything the service holds under the command's identifiers (what Remaining counts) before it reports erased", left)
		}
		return nil
	}
	probe, err := k.command(s, false)
	if err != nil {
		return err
	}
	if err := sess.send(ctx, probe, signAsLethe); err != nil {
		return err
	}
	conf, err := sess.await(ctx, probe.CommandID, 1)
	if err != nil {
		return err
	}
	if conf.Outcome != wire.OutcomeNotFound || conf.Records != 0 {
		return fmt.Errorf("a fresh command for a subject already confirmed erased was answered %s with %d records: Erase must remove everything the service holds under the command's identifiers before it reports erased, and then find nothing",
			conf.Outcome, conf.Records)
	}
	return nil
}

// held says what the service still holds for s, seeded with before records,
// and whether that is all of it. A target that cannot count erases s to
// find out (records, from the confirmation); s is then gone.
func (k *checker) held(ctx context.Context, sess session, s Subject, before int64) (after int64, intact bool, err error) {
	after, counted, err := k.t.count(ctx, s)
	if err != nil {
		return 0, false, err
	}
	if counted {
		return after, after == before, nil
	}
	cmd, err := k.command(s, false)
	if err != nil {
		return 0, false, err
	}
	if err := sess.send(ctx, cmd, signAsLethe); err != nil {
		return 0, false, err
	}
	conf, err := sess.await(ctx, cmd.CommandID, 1)
	if err != nil {
		return 0, false, err
	}
	return conf.Records, conf.Outcome == wire.OutcomeErased && conf.Records > 0, nil
}

// change words what held found, for a failure's message.
func change(before, after int64) string {
	if before == uncounted {
		return fmt.Sprintf("a later erasure of it found %d records", after)
	}
	return fmt.Sprintf("Remaining went from %d to %d", before, after)
}
