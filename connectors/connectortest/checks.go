package connectortest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// The checks. Each returns what the service must fix, worded for the
// service's team: what the kit saw, then what the handler has to do.

func checkEraseLeavesNothing(ctx context.Context, k *checker) error {
	c, err := k.t.open(ctx, false)
	if err != nil {
		return err
	}
	defer c.close()
	s, cmd, _, err := k.seeded(ctx, false)
	if err != nil {
		return err
	}
	conf, err := confirm(ctx, c, cmd, 1)
	if err != nil {
		return err
	}
	if err := wantErased(c, conf, "a seeded subject"); err != nil {
		return err
	}
	return k.wantNothingLeft(ctx, c, s)
}

// confirm sends cmd and returns its n-th confirmation (n counts from 1).
func confirm(ctx context.Context, c session, cmd wire.Command, n int) (wire.Confirmation, error) {
	if err := c.send(ctx, cmd, signAsLethe); err != nil {
		return wire.Confirmation{}, err
	}
	return c.await(ctx, cmd.CommandID, n)
}

// fixRepeat is what a service whose handler runs a command twice must do.
const fixRepeat = "A repeated command_id is the same command, and it reaches the handler " +
	"whenever the SDK's de-duplication store cannot answer it: after a crash between erasing and " +
	"confirming, after a restart with the in-memory store, on a replica that does not share the store. " +
	"Remember each command_id Erase carried out, with its outcome and records, in the same transaction " +
	"as the erasure, and answer a repeat with them"

func checkRepeatedCommand(ctx context.Context, k *checker) error {
	// Over the wire, as Lethe's re-dispatch reaches the service.
	c, err := k.t.open(ctx, false)
	if err != nil {
		return err
	}
	defer c.close()
	s, cmd, _, err := k.seeded(ctx, false)
	if err != nil {
		return err
	}
	first, err := confirm(ctx, c, cmd, 1)
	if err != nil {
		return err
	}
	if err := wantErased(c, first, "a seeded subject"); err != nil {
		return err
	}
	again := cmd
	again.Attempt = 2
	second, err := confirm(ctx, c, again, 2)
	if err != nil {
		return err
	}
	if second.Outcome != first.Outcome || second.Records != first.Records {
		calls := ""
		if n, ok := c.calls(cmd.CommandID); ok {
			calls = fmt.Sprintf(" (Erase was called %d times for it)", n)
		}
		return fmt.Errorf("the command delivered again (same command_id, attempt 2) was confirmed %s with %d records after %s with %d%s. %s",
			second.Outcome, second.Records, first.Outcome, first.Records, calls, fixRepeat)
	}
	if err := k.wantNothingLeft(ctx, c, s); err != nil {
		return err
	}

	// Past the SDK, as the handler meets a repeat the store did not answer.
	d, ok := k.t.(directEraser)
	if !ok {
		return nil
	}
	s, cmd, _, err = k.seeded(ctx, false)
	if err != nil {
		return err
	}
	req := request(cmd)
	r1, err := d.erase(ctx, req)
	if err != nil {
		return fmt.Errorf("called directly, Erase of a seeded subject failed: %w", err)
	}
	if r1.Outcome != wire.OutcomeErased || r1.Records < 1 {
		return fmt.Errorf("called directly, Erase answered a seeded subject %s with %d records (detail %q): it must erase it and report outcome erased with the number of records removed",
			r1.Outcome, r1.Records, r1.Detail)
	}
	req.Attempt = 2
	r2, err := d.erase(ctx, req)
	if err != nil {
		return fmt.Errorf("called again with the same command_id (attempt 2), Erase failed: %w. %s", err, fixRepeat)
	}
	if r2.Outcome != r1.Outcome || r2.Records != r1.Records {
		return fmt.Errorf("called again with the same command_id (attempt 2), Erase answered %s with %d records after %s with %d: it ran the command again instead of recognising it. %s",
			r2.Outcome, r2.Records, r1.Outcome, r1.Records, fixRepeat)
	}
	return k.wantNothingLeft(ctx, c, s)
}

func checkUnknownSubject(ctx context.Context, k *checker) error {
	c, err := k.t.open(ctx, false)
	if err != nil {
		return err
	}
	defer c.close()
	bystander, _, before, err := k.seeded(ctx, false)
	if err != nil {
		return err
	}
	_, cmd, err := k.subject(false)
	if err != nil {
		return err
	}
	conf, err := confirm(ctx, c, cmd, 1)
	if err != nil {
		return err
	}
	if conf.Outcome != wire.OutcomeNotFound || conf.Records != 0 {
		return fmt.Errorf("a subject the service never held was confirmed %s with %d records (detail %q)%s: when nothing matches the command's identifiers, Erase must report outcome not_found with 0 records",
			conf.Outcome, conf.Records, conf.Detail, c.cause(cmd.CommandID))
	}
	after, intact, err := k.held(ctx, c, bystander, before)
	if err != nil {
		return err
	}
	if !intact {
		return fmt.Errorf("erasing a subject the service never held changed another subject's data (%s): Erase must touch only what matches the command's identifiers",
			change(before, after))
	}
	return nil
}

func checkDryRun(ctx context.Context, k *checker) error {
	c, err := k.t.open(ctx, false)
	if err != nil {
		return err
	}
	defer c.close()
	s, dry, before, err := k.seeded(ctx, true)
	if err != nil {
		return err
	}
	planned, err := confirm(ctx, c, dry, 1)
	if err != nil {
		return err
	}
	const fixDry = "when the command's dry_run is set, Erase must change nothing and only report what it would erase"
	if before != uncounted {
		after, _, err := k.t.count(ctx, s)
		if err != nil {
			return err
		}
		if after != before {
			return fmt.Errorf("a dry run changed the service's data (%s): %s", change(before, after), fixDry)
		}
	}
	if planned.Outcome != wire.OutcomeErased || planned.Records < 1 {
		return fmt.Errorf("a dry run of a seeded subject was confirmed %s with %d records (detail %q)%s: with dry_run, Erase must report outcome erased and the number of records it would erase",
			planned.Outcome, planned.Records, planned.Detail, c.cause(dry.CommandID))
	}
	cmd, err := k.command(s, false)
	if err != nil {
		return err
	}
	done, err := confirm(ctx, c, cmd, 1)
	if err != nil {
		return err
	}
	if before == uncounted && done.Outcome == wire.OutcomeNotFound {
		return fmt.Errorf("a dry run changed the service's data (%s): %s", change(before, done.Records), fixDry)
	}
	if err := wantErased(c, done, "a subject after its dry run"); err != nil {
		return err
	}
	if done.Records != planned.Records {
		return fmt.Errorf("the dry run reported %d records but the erasure that followed removed %d: a dry run must report exactly what the erasure would remove",
			planned.Records, done.Records)
	}
	return k.wantNothingLeft(ctx, c, s)
}

// unknownType is an identifier type no system declares.
const unknownType = "lethe_conformance_unknown"

func checkUnknownType(ctx context.Context, k *checker) error {
	c, err := k.t.open(ctx, false)
	if err != nil {
		return err
	}
	defer c.close()
	cmd, err := k.command(Subject{Identifiers: []wire.Identifier{{Type: unknownType, Value: "x-" + uuid.NewString()}}}, false)
	if err != nil {
		return err
	}
	conf, err := confirm(ctx, c, cmd, 1)
	if err != nil {
		return err
	}
	switch {
	case conf.Outcome == wire.OutcomeNotFound && conf.Records == 0:
	case conf.Outcome == wire.OutcomeFailed && !conf.Retryable:
	default:
		return fmt.Errorf("a command whose only identifier is of a type the service does not know (%s) was confirmed %s with %d records (retryable %t)%s: answer it not_found with 0 records (nothing is held under a type you do not erase by), or failed and not retryable, naming the type in detail",
			unknownType, conf.Outcome, conf.Records, conf.Retryable, c.cause(cmd.CommandID))
	}
	return nil
}

// malformedCommand is a command's message cut short: not JSON.
const malformedCommand = `{"schema":"erasure.command.v1","command_id":`

func checkMalformed(ctx context.Context, k *checker) error {
	c, err := k.t.open(ctx, false)
	if err != nil {
		return err
	}
	defer c.close()
	key := uuid.NewString()
	if err := c.sendRaw(ctx, key, []byte(malformedCommand)); err != nil {
		return err
	}
	dl, err := c.deadLetter(ctx, key)
	if err != nil {
		return fmt.Errorf("a message on the command topic that is not JSON did not reach the dead-letter topic (<topic>%s) within the check's time: put what you cannot decode there, with its key, value and headers and a %s header saying why, then commit it",
			wire.DLQSuffix, wire.HeaderDLQReason)
	}
	if dl.reason == "" {
		return fmt.Errorf("the dead letter of a message that is not JSON has no %s header: add one saying why, never quoting the value", wire.HeaderDLQReason)
	}
	if string(dl.value) != malformedCommand {
		return errors.New("the dead letter of a message that is not JSON does not keep the original value: keep the key, value and headers as they were")
	}
	// The connector must go on after it.
	_, cmd, err := k.subject(false)
	if err != nil {
		return err
	}
	if _, err := confirm(ctx, c, cmd, 1); err != nil {
		return fmt.Errorf("after dead-lettering a malformed message, the connector did not answer the next command: %w", err)
	}
	return nil
}

func checkDerived(ctx context.Context, k *checker) error {
	c, err := k.t.open(ctx, false)
	if err != nil {
		return err
	}
	defer c.close()
	s, cmd, _, err := k.seeded(ctx, false)
	if err != nil {
		return err
	}
	if len(s.Derived) == 0 {
		return errors.New("RevealsDerived is set but NewSubject returned a subject without Derived identifiers: give each subject the identifiers the handler should reveal, or unset RevealsDerived")
	}
	conf, err := confirm(ctx, c, cmd, 1)
	if err != nil {
		return err
	}
	if err := wantErased(c, conf, "a seeded subject"); err != nil {
		return err
	}
	var missing []string
	for _, d := range s.Derived {
		if !slices.Contains(conf.DerivedIdentifiers, d) {
			missing = append(missing, d.Type)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the confirmation of a seeded subject lacks its derived identifier(s) of type %s (it carried %d derived identifier(s)%s): put in Result.Derived the further identifiers of the same subject that the service holds, so that Lethe reaches the systems that erase by them",
			strings.Join(missing, ", "), len(conf.DerivedIdentifiers), typesOf(conf.DerivedIdentifiers))
	}
	return nil
}

// cancelSoon is how long after its start the kit cancels a running Erase.
// Whether Erase has done much by then does not matter: only that it returns.
const cancelSoon = 10 * time.Millisecond

func checkCancellation(ctx context.Context, k *checker) error {
	e := k.t.(*env)
	// A context canceled before the call: nothing may happen.
	s, cmd, before, err := k.seeded(ctx, false)
	if err != nil {
		return err
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	grace := e.graceLeft(ctx)
	out, returned := waitFor(ctx, e.eraseAsync(canceled, request(cmd)), grace)
	if !returned {
		return notReturned(grace)
	}
	if out.err == nil && out.res.Outcome == wire.OutcomeErased {
		return errors.New("Erase went ahead with a context that was already canceled (it reported erased): it must stop work when its context is canceled, checking ctx before it starts and passing it to every blocking call")
	}
	after, err := e.remaining(ctx, s)
	if err != nil {
		return err
	}
	if after != before {
		return fmt.Errorf("Erase changed data although its context was already canceled (Remaining went from %d to %d): it must stop work when its context is canceled",
			before, after)
	}

	// A context canceled while Erase runs: it must return.
	_, cmd, _, err = k.seeded(ctx, false)
	if err != nil {
		return err
	}
	running, cancel := context.WithCancel(ctx)
	defer cancel()
	done := e.eraseAsync(running, request(cmd))
	t := time.NewTimer(cancelSoon)
	select {
	case <-done:
		t.Stop()
		return nil // finished before the cancel: nothing left to stop
	case <-t.C:
	}
	cancel()
	grace = e.graceLeft(ctx)
	if _, returned := waitFor(ctx, done, grace); !returned {
		return notReturned(grace)
	}
	return nil
}

// returned is what a direct call of Erase gave back.
type returned struct {
	res connectors.Result
	err error
}

// eraseAsync calls Erase with hctx and delivers its result on the channel.
func (e *env) eraseAsync(hctx context.Context, req connectors.Request) <-chan returned {
	done := make(chan returned, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- returned{err: fmt.Errorf("Erase panicked: %v", p)}
			}
		}()
		res, err := e.cfg.Handler.Erase(hctx, req)
		done <- returned{res, err}
	}()
	return done
}

// graceLeft is cancelGrace, or less when the check's time runs out sooner.
func (e *env) graceLeft(ctx context.Context) time.Duration {
	grace := cancelGrace
	if d, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(d))
	}
	return max(grace, 0)
}

func waitFor(ctx context.Context, done <-chan returned, grace time.Duration) (returned, bool) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case out := <-done:
		return out, true
	case <-t.C:
	case <-ctx.Done():
	}
	return returned{}, false
}

func notReturned(grace time.Duration) error {
	return fmt.Errorf("Erase did not return within %s of its context being canceled: Erase must return when its context is canceled (pass ctx to every blocking call, and stop waiting once ctx.Done() is closed)",
		grace.Round(time.Millisecond))
}

// typesOf lists the identifier types in ids, for messages that must not
// quote values.
func typesOf(ids []wire.Identifier) string {
	var types []string
	for _, id := range ids {
		if !slices.Contains(types, id.Type) {
			types = append(types, id.Type)
		}
	}
	if len(types) == 0 {
		return ""
	}
	return " of type " + strings.Join(types, ", ")
}
