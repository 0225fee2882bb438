package connectors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lethe-dev/lethe/wire"
)

// Defaults of the Config fields that govern deferred commands.
const (
	// DefaultDeferredCheck is how often Run looks for deferred commands
	// that are due.
	DefaultDeferredCheck = time.Second
	// DefaultDeferredLease is how long a replica holds a deferred command
	// it is resuming before another replica may take it over.
	DefaultDeferredLease = 2 * time.Minute
)

// detailDeferredTimeout answers a deferred command whose handler still
// asked for more time when its confirm_by had passed.
const detailDeferredTimeout = "the handler's deferred work gave no final answer before confirm_by"

// Resumer is a Handler whose work may outlive its Erase call: a vendor that
// accepts an erasure and finishes it days later. Such a handler's Erase
// returns Later when CanDefer says it may; Run then records the command as
// deferred, commits its offset and goes on with the next commands, so one
// slow call no longer holds every other command of the partition. When the
// command is due, Run calls Resume, on whichever replica sharing the store
// claims it first, until Resume returns a final result, which Run confirms
// (signed, as any confirmation) before it forgets the deferred command.
type Resumer interface {
	Handler
	// Resume continues d's work: it returns the final result, or Later
	// to be called again. An error is transient: Run calls Resume again
	// after a retry delay, and an error wrapped by Permanent confirms a
	// definitive failure. Once d.ConfirmBy has passed, Resume should
	// return a final result (a retryable failure when there is nothing
	// better), since Run confirms that itself otherwise.
	Resume(ctx context.Context, d Deferred) (Result, error)
}

// Finisher is a Resumer that can also learn a deferred command's final
// result outside Run's calls of Resume, such as from a vendor's callback.
// Run calls AttachFinish once, before it takes any command, with the
// function that confirms such a result.
type Finisher interface {
	Resumer
	AttachFinish(finish FinishFunc)
}

// FinishFunc confirms res for the deferred command commandID, as if Resume
// had returned it, and forgets the command once the confirmation is written.
// It returns nil for a command already confirmed (a repeated callback),
// ErrNotDeferred when no such command is deferred and ErrDeferredBusy when
// Resume is running for it right now, so that the caller tries again.
type FinishFunc func(ctx context.Context, commandID string, res Result) error

// Errors of a FinishFunc.
var (
	ErrNotDeferred  = errors.New("connectors: no deferred command of this id")
	ErrDeferredBusy = errors.New("connectors: the deferred command is being resumed; try again shortly")
)

// Deferred is a command whose handler returned Later: what Run keeps of it
// in its store, and passes to Resume. It holds no identifier value.
type Deferred struct {
	CommandID string    `json:"command_id"`
	RequestID string    `json:"request_id"`
	System    string    `json:"system"`
	Attempt   int       `json:"attempt"`
	ConfirmBy time.Time `json:"confirm_by"`
	// Due is when Run next calls Resume.
	Due time.Time `json:"due"`
	// State is the handler's own JSON document, as it gave Later; like a
	// confirmation's detail it must never hold identifier values.
	State json.RawMessage `json:"state"`
}

// later is what Later puts in a Result.
type later struct {
	state json.RawMessage
	due   time.Time
}

// Later is the Result of a handler that has not finished: Run keeps state
// (JSON, without identifier values) and calls the handler's Resume with it
// at due, or at the command's confirm_by when that comes first. Only a
// Resumer may return it, and from Erase only when CanDefer(ctx) holds.
func Later(state []byte, due time.Time) Result {
	return Result{later: &later{state: json.RawMessage(state), due: due}}
}

// Pending reports whether r is a Later, with its state and due time: for a
// handler's tests, which cannot otherwise see them.
func (r Result) Pending() (state []byte, due time.Time, ok bool) {
	if r.later == nil {
		return nil, time.Time{}, false
	}
	return r.later.state, r.later.due, true
}

type canDeferKey struct{}

// CanDefer reports whether the Erase call of ctx may return Later: the
// handler is a Resumer and Run's store can keep deferred commands. It does
// not for the items of a batch command, nor for a store of the service's
// own, nor outside Run; the handler then finishes within Erase.
func CanDefer(ctx context.Context) bool {
	ok, _ := ctx.Value(canDeferKey{}).(bool)
	return ok
}

// deferStore is a store that keeps deferred commands, with claims so that
// replicas sharing it do not resume one command at once. Both stores of the
// SDK implement it.
type deferStore interface {
	getDeferred(ctx context.Context, commandID string) (Deferred, bool, error)
	// putDeferred records d, replacing an earlier record and its claim.
	putDeferred(ctx context.Context, d Deferred) error
	// claimDue claims up to limit unclaimed commands due at now, until
	// now+lease.
	claimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Deferred, error)
	// claimDeferred claims commandID until now+lease; found says it is
	// deferred, claimed that nobody else holds it.
	claimDeferred(ctx context.Context, commandID string, now time.Time, lease time.Duration) (d Deferred, found, claimed bool, err error)
	deleteDeferred(ctx context.Context, commandID string) error
}

// deferrer returns the store of deferred commands when Run can defer h's
// work.
func deferrer(cfg Config, h Handler) deferStore {
	if _, ok := h.(Resumer); !ok {
		return nil
	}
	s, _ := cfg.Dedup.(deferStore)
	return s
}

// deferCommand records cmd as deferred with l, retrying the store until it
// takes it or ctx ends: ok false leaves the command uncommitted, for the
// handler to be called again when it is delivered again.
func (c *consumer) deferCommand(ctx context.Context, cmd wire.Command, l *later) bool {
	d := Deferred{CommandID: cmd.CommandID, RequestID: cmd.RequestID, System: cmd.System, Attempt: cmd.Attempt,
		ConfirmBy: cmd.ConfirmBy, Due: c.dueAt(l.due, cmd.ConfirmBy), State: l.state}
	if err := Retry(ctx, c.log, "record deferred command", func(ctx context.Context) error {
		return c.ds.putDeferred(ctx, d)
	}); err != nil {
		return false
	}
	c.log.Info("command deferred; its offset is committed and it is resumed later", "request_id", cmd.RequestID, "attempt", cmd.Attempt)
	return true
}

// dueAt is when a deferred command is resumed: at due, but no later than
// its confirm_by.
func (c *consumer) dueAt(due, confirmBy time.Time) time.Time {
	if !confirmBy.IsZero() && confirmBy.Before(due) {
		return confirmBy
	}
	return due
}

// isDeferred reports whether cmd is deferred already, in which case a
// repeated delivery is only committed: the deferred command's resumption
// will confirm it. A store error counts as not deferred, which costs one
// more idempotent call of the handler.
func (c *consumer) isDeferred(ctx context.Context, cmd wire.Command) bool {
	d, found, err := c.ds.getDeferred(ctx, cmd.CommandID)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("look up deferred command", "request_id", cmd.RequestID, "error_type", errorType(err))
		}
		return false
	}
	return found && d.RequestID == cmd.RequestID && d.System == cmd.System
}

// resumeLoop resumes the deferred commands as they fall due, until ctx
// ends. Those deferred before a restart are in the store, so they are
// resumed alike.
func (c *consumer) resumeLoop(ctx context.Context) {
	tick := time.NewTicker(c.cfg.DeferredCheck)
	defer tick.Stop()
	for {
		due, err := c.ds.claimDue(ctx, c.cfg.Now(), c.cfg.DeferredLease, c.cfg.Concurrency)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("look up due deferred commands", "error_type", errorType(err))
		}
		var wg sync.WaitGroup
		for _, d := range due {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.resume(ctx, d)
			}()
		}
		wg.Wait()
		if len(due) == c.cfg.Concurrency && ctx.Err() == nil {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// resume calls the handler's Resume for d, which this replica has claimed,
// and confirms, reschedules or releases d according to its answer.
func (c *consumer) resume(ctx context.Context, d Deferred) {
	log := c.log.With("request_id", d.RequestID, "attempt", d.Attempt)
	// Resume must end well within the lease, or another replica could
	// claim d meanwhile.
	rctx, cancel := context.WithTimeout(ctx, c.cfg.DeferredLease/2)
	res, err := callResume(rctx, c.h.(Resumer), d)
	cancel()
	// Recording and confirming outlive ctx a little, as in run.
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), finalCommitTimeout)
	defer dcancel()
	if ctx.Err() != nil {
		// Shutting down: let another replica, or the next start, resume d
		// at once rather than after the lease.
		if err := c.ds.putDeferred(dctx, d); err != nil {
			log.Warn("release deferred command", "error_type", errorType(err))
		}
		return
	}
	now := c.cfg.Now()
	switch {
	case err != nil && isPermanent(err):
		log.Error("resuming the deferred command failed permanently", "error_type", errorType(err))
		res = Result{Outcome: wire.OutcomeFailed, Detail: detailHandlerFailedPermanently}
	case err != nil:
		d.Due = c.dueAt(now.Add(c.cfg.Retry.Max), d.ConfirmBy)
		log.Warn("resuming the deferred command failed; trying again later", "error_type", errorType(err), "due", d.Due)
		if err := c.ds.putDeferred(dctx, d); err != nil {
			log.Warn("record deferred command", "error_type", errorType(err))
		}
		return
	case res.later != nil && !d.ConfirmBy.IsZero() && !now.Before(d.ConfirmBy):
		log.Warn("confirm_by passed while the command was deferred")
		res = Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: detailDeferredTimeout}
	case res.later != nil:
		d.State, d.Due = res.later.state, c.dueAt(res.later.due, d.ConfirmBy)
		if err := c.ds.putDeferred(dctx, d); err != nil {
			// The claim expires and d is resumed with its former state,
			// which the handler must take as it took it before.
			log.Warn("record deferred command", "error_type", errorType(err))
		}
		return
	}
	if err := c.finishDeferred(dctx, d, res); err != nil {
		log.Warn("confirm deferred command; it is resumed again once its claim expires", "error_type", errorType(err))
	}
}

// finishDeferred confirms res for d as the normal path confirms a handler's
// result (recorded, signed, acknowledged by Kafka), then forgets d. A
// failure leaves d in the store, claimed until its lease ends, so it is
// confirmed later: a confirmation is never lost.
func (c *consumer) finishDeferred(ctx context.Context, d Deferred, res Result) error {
	cmd := wire.Command{Schema: wire.SchemaCommand, CommandID: d.CommandID, RequestID: d.RequestID,
		System: d.System, Attempt: d.Attempt, ConfirmBy: d.ConfirmBy}
	conf := NewConfirmation(cmd, res, c.cfg.Now())
	if conf.Detail == detailInvalidOutcome || strings.HasPrefix(conf.Detail, detailInvalidResult) {
		c.log.Error("handler returned an invalid result", "request_id", d.RequestID, "detail", conf.Detail)
	}
	if replayable(conf) {
		conf = c.record(ctx, cmd, conf)
	}
	msg, err := EncodeConfirmation(conf)
	if err != nil {
		return err
	}
	if c.sg != nil {
		msg = c.sg.sign(msg)
	}
	if err := WriteAll(ctx, c.w, c.log, msg); err != nil {
		return err
	}
	if err := Retry(ctx, c.log, "forget deferred command", func(ctx context.Context) error {
		return c.ds.deleteDeferred(ctx, d.CommandID)
	}); err != nil {
		// Confirmed but not forgotten: it is resumed and confirmed again
		// once its claim ends, a duplicate Lethe ignores.
		return err
	}
	c.cfg.Observer.CommandHandled(c.cfg.System, conf.Outcome, 1, 0)
	c.log.Info("deferred command confirmed", "request_id", d.RequestID, "attempt", d.Attempt, "outcome", string(conf.Outcome))
	return nil
}

// finish is the FinishFunc Run gives a Finisher.
func (c *consumer) finish(ctx context.Context, commandID string, res Result) error {
	d, found, claimed, err := c.ds.claimDeferred(ctx, commandID, c.cfg.Now(), c.cfg.DeferredLease)
	switch {
	case err != nil:
		return fmt.Errorf("connectors: claim deferred command: %w", err)
	case !found:
		// Confirmed already (a repeat) or never deferred here.
		if conf, ok, err := c.cfg.Dedup.Get(ctx, commandID); err != nil {
			return fmt.Errorf("connectors: look up confirmation: %w", err)
		} else if ok && conf.CommandID == commandID {
			return nil
		}
		return ErrNotDeferred
	case !claimed:
		return ErrDeferredBusy
	}
	// The caller's end (a callback's client gone) must not cut the write
	// short, and a failure releases the claim at once, so that the caller
	// can try again.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalCommitTimeout)
	defer cancel()
	if err := c.finishDeferred(wctx, d, res); err != nil {
		if rerr := c.ds.putDeferred(wctx, d); rerr != nil {
			c.log.Warn("release deferred command", "request_id", d.RequestID, "error_type", errorType(rerr))
		}
		return fmt.Errorf("connectors: confirm deferred command: %w", err)
	}
	return nil
}

// callResume runs Resume, turning a panic into an error as call does.
func callResume(ctx context.Context, h Resumer, d Deferred) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{kind: fmt.Sprintf("%T", p)}
		}
	}()
	return h.Resume(ctx, d)
}
