package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

// continueAsNewAfter is the history length past which a run hands over to a
// new one even if the server has not suggested it yet. Tests lower it.
var continueAsNewAfter = 8000

// ErasureWorkflow carries one erasure request from planning to its end: it
// dispatches a command to every system that holds the subject's data, waits
// for their confirmations, dispatches again when one is late or asks for a
// retry, follows derived identifiers to further systems, and writes each step
// to the ledger. Once every command is final (the request completed or
// failed) it returns an ErasureResult; when canceled, the cancellation error.
func ErasureWorkflow(ctx workflow.Context, in ErasureInput) (ErasureResult, error) {
	refuseUnknownRevision(ctx, in)
	if err := validateInput(in); err != nil {
		return ErasureResult{}, err
	}
	w := newErasure(in)
	if err := w.setup(ctx); err != nil {
		return ErasureResult{}, err
	}
	if err := w.run(ctx, in.State == nil); err != nil {
		return ErasureResult{}, err
	}
	return w.result(), nil
}

// validateInput refuses a start that cannot lead anywhere; the message names
// fields, never values.
func validateInput(in ErasureInput) error {
	switch {
	case in.RequestID == "":
		return temporal.NewNonRetryableApplicationError("erasure input has no request_id", "InvalidInput", nil)
	case in.State == nil && len(in.Subject) == 0:
		return temporal.NewNonRetryableApplicationError("erasure input has no subject identifiers", "InvalidInput", nil)
	case in.Retry != nil && in.State == nil:
		return temporal.NewNonRetryableApplicationError("erasure input has a retry order but no state to retry", "InvalidInput", nil)
	}
	for i, id := range in.Subject {
		if !lethe.ValidIdentifierType(id.Type) || id.Value == "" {
			return temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("erasure input subject[%d] has an invalid type or an empty value", i), "InvalidInput", nil)
		}
	}
	if st := in.State; st != nil {
		for i, c := range st.Commands {
			for _, at := range c.Sent {
				if at < 0 || at >= len(st.Subject) {
					return temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("erasure input state.commands[%d] was sent an identifier outside the subject", i),
						"InvalidInput", nil)
				}
			}
		}
	}
	return nil
}

// erasure is the state of one run of the workflow. Everything here is
// touched only from workflow coroutines, which never run in parallel.
type erasure struct {
	in     ErasureInput
	policy Policy
	// features are what in.Revision turns on.
	features features

	status      lethe.RequestStatus
	completedAt *time.Time

	subject  []wire.Identifier
	known    map[string]bool
	targets  map[string]activities.Target
	commands []*CommandState
	byID     map[string]*CommandState
	bySystem map[string][]*CommandState
	sent     map[string]map[string]bool

	inbox []wire.Confirmation
	out   outbox

	// confirms, extends and holds are the signal channels, read by listen
	// and drained before the workflow continues as new.
	confirms workflow.ReceiveChannel
	extends  workflow.ReceiveChannel
	holds    workflow.ReceiveChannel
	// retries is the retry channel (RevisionRetry), nil before it; orders
	// are the retries received and not yet applied.
	retries workflow.ReceiveChannel
	orders  []RetrySignal

	// escalating counts the escalations in flight (awaitEscalations).
	escalating int

	// deadline and target move when the deadline is extended; fired names
	// the escalation points passed; overdue is set at the deadline.
	deadline time.Time
	target   time.Time
	fired    map[string]bool
	overdue  bool

	// learned are revealed identifiers not yet recorded by a plan;
	// holdsChanged asks the next step to check the holds again; woken ends
	// a wait for a signal that is not a confirmation.
	learned      []wire.Identifier
	holdsChanged bool
	woken        bool

	// syncs counts the Sync calls and drawn the command ids derived from
	// the seed: both name things that must come out the same when a
	// workflow task is run again. They count this run's, or, under
	// RevisionStableNames, the request's since its first run.
	syncs int
	drawn int

	search      searchValues
	searchKnown bool
	// searchDeferred is set while the first upsert waits for the request
	// to settle (RevisionSettledSearch), and ledgerHeld while the ledger
	// part of the outbox does (RevisionSettledLedger); nextDue wakes the
	// workflow then.
	searchDeferred bool
	ledgerHeld     bool
}

func newErasure(in ErasureInput) *erasure {
	w := &erasure{
		in:       in,
		policy:   in.Policy,
		features: featuresOf(in.Revision),
		status:   lethe.RequestPending,
		known:    map[string]bool{},
		targets:  map[string]activities.Target{},
		byID:     map[string]*CommandState{},
		bySystem: map[string][]*CommandState{},
		sent:     map[string]map[string]bool{},
		deadline: in.Deadline,
		target:   in.Target,
		fired:    map[string]bool{},
		search:   searchValues{deadline: in.Deadline},
	}
	if st := in.State; st != nil {
		w.search.overdue = st.Overdue
	}
	if w.policy.MaxAttempts <= 0 {
		w.policy.MaxAttempts = DefaultMaxAttempts
	}
	if w.policy.RetryDelay <= 0 {
		w.policy.RetryDelay = DefaultRetryDelay
	}
	if w.policy.Settle == 0 {
		w.policy.Settle = DefaultSettle
	}
	subject := in.Subject
	if st := in.State; st != nil {
		subject = st.Subject
		if st.Status != "" {
			w.status = st.Status
		}
		for _, t := range st.Targets {
			w.targets[t.System] = t
		}
		for i := range st.Commands {
			c := st.Commands[i]
			for _, at := range c.Sent {
				c.Identifiers = append(c.Identifiers, st.Subject[at])
			}
			c.Sent = nil
			w.add(&c)
		}
		w.inbox = slices.Clone(st.Inbox)
		for _, name := range st.Fired {
			w.fired[name] = true
		}
		w.overdue = st.Overdue
		w.learned = slices.Clone(st.Learned)
		w.holdsChanged = st.HoldsChanged
		// A hold lifted as the last run ended is acted on at once.
		w.woken = w.features.wakeCarriedHolds && st.HoldsChanged
		if w.features.retry {
			w.orders = slices.Clone(st.Retries)
		}
		if w.features.stableNames {
			w.drawn, w.syncs = st.Drawn, st.Syncs
		}
		// The state now lives in w; carry builds a new one when needed.
		w.in.State = nil
	}
	if in.Retry != nil && w.features.retry {
		w.orders = append(w.orders, *in.Retry)
	}
	w.in.Retry = nil
	for _, id := range subject {
		w.learnIdentifier(id)
	}
	return w
}

// setup installs the query handler and the signal listener; nothing in it
// blocks, so no signal or query can find the workflow unprepared.
func (w *erasure) setup(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (lethe.Erasure, error) {
		return w.view(ctx), nil
	}); err != nil {
		return fmt.Errorf("set status query handler: %w", err)
	}
	// Answering a query writes nothing to the history, so every revision
	// answers this one, also long after its workflow closed.
	if err := workflow.SetQueryHandler(ctx, QueryCarry, func() (ErasureInput, error) {
		return w.carry(), nil
	}); err != nil {
		return fmt.Errorf("set carry query handler: %w", err)
	}
	if err := workflow.SetQueryHandler(ctx, QueryCommand, func(id string) (OpenCommand, error) {
		return w.openCommand(id), nil
	}); err != nil {
		return fmt.Errorf("set command query handler: %w", err)
	}
	w.confirms = workflow.GetSignalChannel(ctx, SignalConfirm)
	w.extends = workflow.GetSignalChannel(ctx, SignalExtend)
	w.holds = workflow.GetSignalChannel(ctx, SignalHolds)
	if w.features.retry {
		// Before RevisionRetry the channel is never read: a retry signal
		// sent to such a run stays queued and changes nothing.
		w.retries = workflow.GetSignalChannel(ctx, SignalRetry)
	}
	workflow.Go(ctx, w.listen)
	return nil
}

// listen moves every confirmation the relay signals into the inbox, where
// the main loop picks them up in batches, and notes the API's signals: a
// deadline extended, a hold lifted.
func (w *erasure) listen(ctx workflow.Context) {
	if w.features.receiveAsync {
		// A cancellation ends the run, not the listening: the canceled
		// run still takes the signals sent while it writes its end.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		for {
			_ = workflow.Await(dctx, w.signalsQueued)
			w.drain(dctx)
		}
	}
	confirms := workflow.GetSignalChannel(ctx, SignalConfirm)
	extends := workflow.GetSignalChannel(ctx, SignalExtend)
	holds := workflow.GetSignalChannel(ctx, SignalHolds)
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(confirms, func(c workflow.ReceiveChannel, _ bool) {
		var sig ConfirmSignal
		c.Receive(ctx, &sig)
		w.inbox = append(w.inbox, sig.Confirmations...)
	})
	sel.AddReceive(extends, func(c workflow.ReceiveChannel, _ bool) {
		var sig ExtendSignal
		c.Receive(ctx, &sig)
		w.extend(ctx, sig)
	})
	sel.AddReceive(holds, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		w.holdsChanged = true
		w.woken = true
	})
	for {
		sel.Select(ctx)
	}
}

// signalsQueued reports whether a signal waits in one of the workflow's
// channels.
func (w *erasure) signalsQueued() bool {
	return w.confirms.Len() > 0 || w.extends.Len() > 0 || w.holds.Len() > 0 ||
		(w.retries != nil && w.retries.Len() > 0)
}

// drain applies every signal queued, each as listen does, and returns
// without blocking. A signal that cannot be decoded (the codec refuses an
// unencrypted one, or its shape is wrong) is dropped by ReceiveAsync, which
// goes on to the next: it never blocks the listener the way Receive inside
// a Selector's callback did, stalling the signals after it. Reading the
// channels only here, rather than through a Selector that takes a value
// before its callback runs, leaves every signal not yet applied in its
// channel, where continueAsNew drains it before it hands over.
func (w *erasure) drain(ctx workflow.Context) {
	for {
		var confirm ConfirmSignal
		var extend ExtendSignal
		var retry RetrySignal
		switch {
		case w.confirms.ReceiveAsync(&confirm):
			w.inbox = append(w.inbox, confirm.Confirmations...)
		case w.extends.ReceiveAsync(&extend):
			w.extend(ctx, extend)
		case w.holds.ReceiveAsync(nil):
			w.holdsChanged = true
			w.woken = true
		case w.retries != nil && w.retries.ReceiveAsync(&retry):
			w.orders = append(w.orders, retry)
			w.woken = true
		default:
			return
		}
	}
}

// extend takes the dates the ledger recorded for an extension. The API
// audited it; the workflow moves its escalation points accordingly.
func (w *erasure) extend(ctx workflow.Context, sig ExtendSignal) {
	if sig.Deadline.IsZero() {
		workflow.GetLogger(ctx).Warn("extension without a deadline ignored", "request_id", w.in.RequestID)
		return
	}
	w.deadline = sig.Deadline.UTC()
	if !sig.Target.IsZero() {
		w.target = sig.Target.UTC()
	}
	w.woken = true
	workflow.GetLogger(ctx).Info("erasure deadline extended", "request_id", w.in.RequestID, "deadline", w.deadline)
}

// run plans a fresh request, then loops: write what the last step changed in
// one Sync, wait for confirmations or the next due command, process
// everything pending.
func (w *erasure) run(ctx workflow.Context, fresh bool) error {
	if fresh {
		if err := w.plan(ctx); err != nil {
			return w.stop(ctx, err)
		}
	}
	for {
		w.applyRetries(ctx)
		if w.features.ordered {
			w.releaseWaiting(workflow.Now(ctx).UTC())
		}
		if w.allFinal() {
			// The last step's changes go out with the final status, in one Sync.
			if err := w.finish(ctx); err != nil {
				return err
			}
			if len(w.orders) > 0 {
				// A retry came as the request ended: it goes on.
				continue
			}
			return nil
		}
		if err := w.flush(ctx, w.features.settledLedger); err != nil {
			return w.stop(ctx, err)
		}
		if w.shouldContinueAsNew(ctx) {
			// The next run starts with an empty outbox.
			if err := w.flush(ctx, false); err != nil {
				return w.stop(ctx, err)
			}
			return w.continueAsNew(ctx)
		}
		if err := w.wait(ctx); err != nil {
			return w.stop(ctx, err)
		}
		if err := w.step(ctx); err != nil {
			return w.stop(ctx, err)
		}
	}
}

// plan is the first wave: one command per system that erases by any of the
// subject's identifier types.
func (w *erasure) plan(ctx workflow.Context) error {
	types := identifierTypes(w.subject)
	targets, err := w.planTargets(ctx, types)
	if err != nil {
		return err
	}
	now := workflow.Now(ctx).UTC()
	w.status = lethe.RequestRunning
	w.out.status = lethe.RequestRunning
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditPlanned, Detail: planDetail(targets, types)})
	workflow.GetLogger(ctx).Info("erasure planned", "request_id", w.in.RequestID, "systems", len(targets))
	// With no target the loop finds nothing open and completes the request
	// in one Sync; otherwise its first Sync writes this wave.
	return w.dispatchNew(ctx, targets)
}

// wait blocks until a signal arrives or the earliest command, hold check
// or escalation point falls due.
func (w *erasure) wait(ctx workflow.Context) error {
	ready := func() bool { return len(w.inbox) > 0 || w.woken }
	defer func() { w.woken = false }()
	if ready() {
		return nil
	}
	d := w.nextDue().Sub(workflow.Now(ctx))
	if d <= 0 {
		return nil
	}
	_, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout:      d,
		TimerOptions: workflow.TimerOptions{Summary: "next confirm_by, retry, hold check or escalation"},
	}, ready)
	return err
}

// step processes everything pending since the last wake; the loop writes
// the result.
func (w *erasure) step(ctx workflow.Context) error {
	now := workflow.Now(ctx).UTC()
	batch := w.inbox
	w.inbox = nil
	var derived []wire.Identifier
	for _, c := range batch {
		derived = append(derived, w.confirm(ctx, now, c)...)
	}
	if len(derived) > 0 {
		if err := w.expand(ctx, derived); err != nil {
			return err
		}
	}
	if w.holdsDue(workflow.Now(ctx)) {
		if err := w.recheckHolds(ctx); err != nil {
			return err
		}
		w.overdueAfterHolds(ctx, workflow.Now(ctx).UTC())
	}
	now = workflow.Now(ctx).UTC()
	w.fireDue(now)
	w.firePoints(ctx, now)
	return nil
}

func (w *erasure) allFinal() bool {
	for _, cmd := range w.commands {
		if cmd.open() && !w.stuck(cmd) {
			return false
		}
	}
	return true
}

// nextDue is the earliest time the workflow must act on its own: a command
// or hold check due, or an escalation point.
func (w *erasure) nextDue() time.Time {
	var next time.Time
	for _, cmd := range w.commands {
		if cmd.open() && !cmd.Waiting && (next.IsZero() || cmd.Due.Before(next)) {
			next = cmd.Due
		}
	}
	for _, p := range w.points() {
		if !w.fired[p.name] && (next.IsZero() || p.at.Before(next)) {
			next = p.at
		}
		break // points are in time order; only the first unfired one matters
	}
	if w.searchDeferred || w.ledgerHeld {
		if at := w.settled(); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

func idKey(id wire.Identifier) string { return id.Type + "\x00" + id.Value }
