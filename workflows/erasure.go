package workflows

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

// continueAsNewAfter is the history length past which a run hands over to a
// new one even if the server has not suggested it yet. Tests lower it.
var continueAsNewAfter = 8000

// syncChunk bounds how many commands, system rows and audit events one Sync
// carries, so a large fan-out stays far below Temporal's payload limits.
const syncChunk = 500

// ErasureWorkflow carries one erasure request from planning to its end: it
// dispatches a command to every system that holds the subject's data, waits
// for their confirmations, dispatches again when one is late or asks for a
// retry, follows derived identifiers to further systems, and writes each step
// to the ledger. It returns nil once every command is final (the request
// completed or failed) and the cancellation error when canceled.
func ErasureWorkflow(ctx workflow.Context, in ErasureInput) error {
	if err := validateInput(in); err != nil {
		return err
	}
	w := newErasure(in)
	if err := w.setup(ctx); err != nil {
		return err
	}
	return w.run(ctx, in.State == nil)
}

// validateInput refuses a start that cannot lead anywhere; the message names
// fields, never values.
func validateInput(in ErasureInput) error {
	switch {
	case in.RequestID == "":
		return temporal.NewNonRetryableApplicationError("erasure input has no request_id", "InvalidInput", nil)
	case in.State == nil && len(in.Subject) == 0:
		return temporal.NewNonRetryableApplicationError("erasure input has no subject identifiers", "InvalidInput", nil)
	}
	for i, id := range in.Subject {
		if !lethe.ValidIdentifierType(id.Type) || id.Value == "" {
			return temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("erasure input subject[%d] has an invalid type or an empty value", i), "InvalidInput", nil)
		}
	}
	return nil
}

// erasure is the state of one run of the workflow. Everything here is
// touched only from workflow coroutines, which never run in parallel.
type erasure struct {
	in     ErasureInput
	policy Policy

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

	// syncs counts this run's Sync calls and drawn the command ids derived
	// from the seed: both name things that must come out the same when a
	// workflow task is run again.
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

// outbox gathers what one step changed until it is written in one Sync.
type outbox struct {
	commands    []activities.Outbound
	events      []lethe.AuditEvent
	changed     map[string]bool
	status      lethe.RequestStatus
	completedAt *time.Time
	overdue     bool
}

// empty reports whether the outbox holds nothing to write.
func (o outbox) empty() bool {
	return len(o.commands) == 0 && len(o.events) == 0 && len(o.changed) == 0 && o.status == "" && !o.overdue
}

type searchValues struct {
	status   string
	pending  int64
	systems  int64
	deadline time.Time
	overdue  bool
}

func newErasure(in ErasureInput) *erasure {
	w := &erasure{
		in:       in,
		policy:   in.Policy,
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
			w.add(&c)
		}
		w.inbox = slices.Clone(st.Inbox)
		for _, name := range st.Fired {
			w.fired[name] = true
		}
		w.overdue = st.Overdue
		w.learned = slices.Clone(st.Learned)
		w.holdsChanged = st.HoldsChanged
		// The state now lives in w; carry builds a new one when needed.
		w.in.State = nil
	}
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
	workflow.Go(ctx, w.listen)
	return nil
}

// listen moves every confirmation the relay signals into the inbox, where
// the main loop picks them up in batches, and notes the API's signals: a
// deadline extended, a hold lifted.
func (w *erasure) listen(ctx workflow.Context) {
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
		if w.allFinal() {
			// The last step's changes go out with the final status, in one Sync.
			return w.finish(ctx)
		}
		if err := w.flush(ctx, w.in.Revision >= RevisionSettledLedger); err != nil {
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

// confirm applies one confirmation and returns the identifiers it revealed
// that were not known yet.
func (w *erasure) confirm(ctx workflow.Context, now time.Time, c wire.Confirmation) []wire.Identifier {
	logger := workflow.GetLogger(ctx)
	cmd, reason := w.match(c)
	if reason != "" {
		w.reject(now, c, reason)
		logger.Warn("confirmation rejected", "request_id", w.in.RequestID, "reason", reason)
		return nil
	}
	if cmd.Status.Final() {
		logger.Debug("duplicate confirmation ignored", "request_id", w.in.RequestID, "system", cmd.System)
		return nil
	}
	if c.Outcome == wire.OutcomeFailed && c.Retryable {
		if cmd.RetryPending {
			logger.Debug("duplicate retryable failure ignored", "request_id", w.in.RequestID, "system", cmd.System)
			return nil
		}
		if !cmd.FailedAt.IsZero() && !c.ConfirmedAt.After(cmd.FailedAt) {
			// The failure that caused the current attempt, delivered again:
			// counting it would burn an attempt.
			logger.Debug("repeated retryable failure ignored", "request_id", w.in.RequestID, "system", cmd.System)
			return nil
		}
	}

	cmd.Detail = c.Detail
	cmd.ChangedAt = now
	w.touch(cmd.System)
	confirmed := lethe.AuditEvent{Kind: lethe.AuditConfirmed, System: cmd.System, Attempt: cmd.Attempt,
		Detail: outcomeDetail(c)}
	w.event(now, confirmed)

	switch {
	case c.Outcome != wire.OutcomeFailed:
		at := c.ConfirmedAt.UTC()
		cmd.Status = lethe.SystemStatus(c.Outcome)
		cmd.Records = c.Records
		cmd.ConfirmedAt = &at
		cmd.RetryPending = false
	case c.Retryable && cmd.Attempt < w.policy.MaxAttempts:
		cmd.FailedAt = c.ConfirmedAt.UTC()
		cmd.RetryPending = true
		cmd.Due = now.Add(w.policy.RetryDelay)
	default:
		at := c.ConfirmedAt.UTC()
		cmd.Status = lethe.SystemFailed
		cmd.Records = c.Records
		cmd.ConfirmedAt = &at
		cmd.RetryPending = false
		why := "the system reported a failure it cannot retry"
		if c.Retryable {
			why = fmt.Sprintf("the system still failed after %d attempts", cmd.Attempt)
		}
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditFailed, System: cmd.System, Attempt: cmd.Attempt, Detail: why})
	}
	return w.learn(now, cmd.System, c.DerivedIdentifiers)
}

// match finds the command a confirmation answers, or says why it counts for
// nothing. The reasons name what was wrong, never a value.
func (w *erasure) match(c wire.Confirmation) (*CommandState, string) {
	if err := c.Validate(); err != nil {
		return nil, "malformed confirmation"
	}
	cmd, ok := w.byID[c.CommandID]
	switch {
	case !ok:
		return nil, "unknown command_id"
	case c.RequestID != w.in.RequestID:
		return nil, "request_id does not match the command"
	case c.System != cmd.System:
		return nil, "command_id was not issued to this system"
	}
	return cmd, ""
}

func (w *erasure) reject(now time.Time, c wire.Confirmation, reason string) {
	ev := lethe.AuditEvent{Kind: lethe.AuditConfirmationRejected, Detail: reason}
	if lethe.ValidSystemName(c.System) {
		ev.System = c.System
	}
	w.event(now, ev)
}

// learn adds the derived identifiers not yet known to the subject and
// records which types arrived.
func (w *erasure) learn(now time.Time, system string, ids []wire.Identifier) []wire.Identifier {
	var fresh []wire.Identifier
	for _, id := range ids {
		if w.learnIdentifier(id) {
			fresh = append(fresh, id)
		}
	}
	w.learned = append(w.learned, fresh...)
	if len(fresh) > 0 {
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditDerived, System: system,
			Detail: "new identifier types: " + strings.Join(identifierTypes(fresh), ", ")})
	}
	return fresh
}

// learnIdentifier adds id to the subject; false when it was known or is
// unusable.
func (w *erasure) learnIdentifier(id wire.Identifier) bool {
	k := idKey(id)
	if w.known[k] || !lethe.ValidIdentifierType(id.Type) || id.Value == "" {
		return false
	}
	w.known[k] = true
	w.subject = append(w.subject, id)
	return true
}

// expand dispatches derived identifiers: to systems not targeted yet, and to
// targeted systems only the identifiers of their types they were never sent.
func (w *erasure) expand(ctx workflow.Context, derived []wire.Identifier) error {
	types := identifierTypes(derived)
	targets, err := w.planTargets(ctx, types)
	if err != nil {
		return err
	}
	w.event(workflow.Now(ctx).UTC(), lethe.AuditEvent{Kind: lethe.AuditPlanned, Detail: planDetail(targets, types)})
	return w.dispatchNew(ctx, targets)
}

// dispatchNew issues a wave of new commands: for each target, the subject's
// identifiers of the target's types that it was never sent (data
// minimisation), in commands of at most wire.MaxIdentifiers identifiers.
func (w *erasure) dispatchNew(ctx workflow.Context, targets []activities.Target) error {
	type pending struct {
		target activities.Target
		ids    []wire.Identifier
	}
	var wave []pending
	now := workflow.Now(ctx).UTC()
	for _, t := range targets {
		w.targets[t.System] = t
		if t.Hold != nil {
			w.hold(now, t)
			continue
		}
		w.release(now, t.System)
		ids := w.unsent(t)
		for len(ids) > 0 {
			n := min(len(ids), wire.MaxIdentifiers)
			wave = append(wave, pending{target: t, ids: ids[:n]})
			ids = ids[n:]
		}
	}
	if len(wave) == 0 {
		return nil
	}
	commandIDs, err := w.newCommandIDs(ctx, len(wave))
	if err != nil {
		return err
	}
	for i, p := range wave {
		within := p.target.ConfirmWithin
		if within <= 0 {
			within = lethe.DefaultConfirmWithin
		}
		topic := p.target.Topic
		if topic == "" {
			topic = wire.DefaultTopic(p.target.System)
		}
		cmd := &CommandState{
			ID:            commandIDs[i],
			System:        p.target.System,
			Topic:         topic,
			Identifiers:   p.ids,
			ConfirmWithin: within,
			Attempt:       1,
			IssuedAt:      now,
			ConfirmBy:     now.Add(within),
			Due:           now.Add(within),
			Status:        lethe.SystemDispatched,
			ChangedAt:     now,
		}
		w.add(cmd)
		w.publish(cmd)
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditDispatched, System: cmd.System, Attempt: 1,
			Detail: "identifier types: " + strings.Join(identifierTypes(cmd.Identifiers), ", ")})
	}
	return nil
}

// hold keeps a target's system out of the wave: its placeholder shows it
// retained with the hold's basis and keeps the request open until the hold
// ends. A system already held just follows the hold found now.
func (w *erasure) hold(now time.Time, t activities.Target) {
	h := *t.Hold
	due := now.Add(holdRecheck)
	if h.ExpiresAt != nil && h.ExpiresAt.Before(due) {
		due = *h.ExpiresAt
	}
	detail := "legal hold " + h.ID + ": " + h.Basis
	for _, cmd := range w.bySystem[t.System] {
		if cmd.Held {
			cmd.Hold, cmd.Due = &h, due
			if cmd.Detail != detail {
				cmd.Detail, cmd.ChangedAt = detail, now
				w.touch(t.System)
			}
			return
		}
	}
	w.add(&CommandState{System: t.System, Topic: t.Topic, Hold: &h, Held: true, Status: lethe.SystemRetained,
		Detail: detail, Due: due, IssuedAt: now, ChangedAt: now})
	w.touch(t.System)
	until := "until lifted"
	if h.ExpiresAt != nil {
		until = "until " + h.ExpiresAt.UTC().Format(time.RFC3339)
	}
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditHeld, System: t.System, Hold: h.ID,
		Detail: fmt.Sprintf("not dispatched, %s: %s", until, h.Basis)})
}

// release ends a system's hold placeholder once its hold no longer holds;
// the commands dispatched next supersede it.
func (w *erasure) release(now time.Time, system string) {
	for _, cmd := range w.bySystem[system] {
		if !cmd.Held {
			continue
		}
		cmd.Held, cmd.Superseded, cmd.ChangedAt = false, true, now
		w.touch(system)
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditPlanned, System: system, Hold: cmd.Hold.ID,
			Detail: "legal hold " + cmd.Hold.ID + " no longer holds: erasing"})
	}
}

// holdsDue reports whether the holds must be checked: a lift was
// signalled, or a held system's hold expires or is due its periodic check.
func (w *erasure) holdsDue(now time.Time) bool {
	if w.holdsChanged {
		return true
	}
	for _, cmd := range w.commands {
		if cmd.Held && !cmd.Due.After(now) {
			return true
		}
	}
	return false
}

// recheckHolds plans the held systems again: those whose hold ended are
// dispatched, the others follow the hold found now. A held system that left
// the registry meanwhile stays retained, and the request no longer waits
// for it.
func (w *erasure) recheckHolds(ctx workflow.Context) error {
	w.holdsChanged = false
	var held []string
	var types []string
	for _, name := range sortedKeys(w.bySystem) {
		for _, cmd := range w.bySystem[name] {
			if cmd.Held {
				held = append(held, name)
				types = append(types, w.targets[name].Types...)
				break
			}
		}
	}
	if len(held) == 0 {
		return nil
	}
	slices.Sort(types)
	targets, err := w.planTargets(ctx, slices.Compact(types))
	if err != nil {
		return err
	}
	byName := map[string]activities.Target{}
	for _, t := range targets {
		byName[t.System] = t
	}
	now := workflow.Now(ctx).UTC()
	var again []activities.Target
	for _, name := range held {
		t, ok := byName[name]
		if ok {
			again = append(again, t)
			continue
		}
		for _, cmd := range w.bySystem[name] {
			if cmd.Held {
				cmd.Held, cmd.ChangedAt = false, now
				cmd.Detail += " (the system was retired while held)"
				w.touch(name)
			}
		}
	}
	return w.dispatchNew(ctx, again)
}

// newCommandIDs returns the unguessable command_ids of one wave: derived
// from the request's seed when it has one, else drawn at random in a single
// side effect, so that replays see the same ones.
func (w *erasure) newCommandIDs(ctx workflow.Context, n int) ([]string, error) {
	if w.in.CommandSeed != "" {
		ids := seededCommandIDs(w.in.CommandSeed, workflow.GetInfo(ctx).WorkflowExecution.RunID, w.drawn, n)
		w.drawn += n
		return ids, nil
	}
	var ids []string
	err := workflow.SideEffect(ctx, func(workflow.Context) any {
		out := make([]string, n)
		for i := range out {
			out[i] = uuid.NewString()
		}
		return out
	}).Get(&ids)
	if err != nil {
		return nil, fmt.Errorf("draw command ids: %w", err)
	}
	if len(ids) != n {
		return nil, fmt.Errorf("draw command ids: got %d, want %d", len(ids), n)
	}
	return ids, nil
}

// seededCommandIDs derives n command ids, numbered from onwards within the
// run, from seed: an HMAC of the run and the number, shaped as a random
// (version 4) UUID. Only who knows the seed can tell them; a workflow task
// run again derives the very same ones.
func seededCommandIDs(seed, runID string, from, n int) []string {
	mac := hmac.New(sha256.New, []byte(seed))
	ids := make([]string, n)
	for i := range ids {
		mac.Reset()
		fmt.Fprintf(mac, "%s/%d", runID, from+i)
		var u uuid.UUID
		copy(u[:], mac.Sum(nil))
		u[6] = u[6]&0x0f | 0x40 // version 4
		u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
		ids[i] = u.String()
	}
	return ids
}

// unsent lists the subject's identifiers of t's types that t's system was
// never sent, in the order they became known.
func (w *erasure) unsent(t activities.Target) []wire.Identifier {
	var ids []wire.Identifier
	sent := w.sent[t.System]
	for _, id := range w.subject {
		if slices.Contains(t.Types, id.Type) && !sent[idKey(id)] {
			ids = append(ids, id)
		}
	}
	return ids
}

// fireDue acts on every open command whose time has come: dispatch it again,
// or give up on it after the last attempt.
func (w *erasure) fireDue(now time.Time) {
	for _, cmd := range w.commands {
		if cmd.Status.Final() || cmd.Held || cmd.Due.After(now) {
			continue
		}
		switch {
		case cmd.RetryPending:
			w.redispatch(now, cmd, "the system asked for a retry")
		case cmd.Attempt < w.policy.MaxAttempts:
			w.redispatch(now, cmd, fmt.Sprintf("no confirmation within %s", lethe.Duration(cmd.ConfirmWithin)))
		default:
			cmd.Status = lethe.SystemFailed
			cmd.Detail = fmt.Sprintf("no confirmation after %d attempts", cmd.Attempt)
			cmd.ChangedAt = now
			w.touch(cmd.System)
			w.event(now, lethe.AuditEvent{Kind: lethe.AuditFailed, System: cmd.System, Attempt: cmd.Attempt,
				Detail: cmd.Detail})
		}
	}
}

// point is a moment of the request's window at which it escalates if
// systems are still open.
type point struct {
	name  string
	label string
	kind  lethe.EscalationKind
	at    time.Time
}

// points lists the escalation points in time order: the reminders, the
// internal target, the deadline. A request without a deadline has none.
func (w *erasure) points() []point {
	if w.deadline.IsZero() {
		return nil
	}
	window := w.deadline.Sub(w.in.CreatedAt)
	reminders := w.policy.Reminders
	if reminders == nil {
		reminders = DefaultReminders
	}
	var out []point
	for _, f := range reminders {
		if f <= 0 || f >= 1 {
			continue
		}
		label := strconv.FormatFloat(math.Round(f*10000)/100, 'f', -1, 64) + "%"
		out = append(out, point{name: "reminder:" + label, label: label, kind: lethe.EscalationReminder,
			at: w.in.CreatedAt.Add(time.Duration(f * float64(window)))})
	}
	if !w.target.IsZero() && w.target.Before(w.deadline) {
		out = append(out, point{name: "target", label: "target", kind: lethe.EscalationTarget, at: w.target})
	}
	out = append(out, w.deadlinePoint())
	slices.SortStableFunc(out, func(a, b point) int { return a.at.Compare(b.at) })
	return slices.DeleteFunc(out, func(p point) bool { return w.fired[p.name] })
}

// firePoints escalates at every point passed: a reminder sends the silent
// systems their command again, the deadline marks the request overdue, and
// each is audited and handed to the Escalate activity (log, metric,
// webhook). A point passed with no system open (confirmed or held) passes
// quietly.
func (w *erasure) firePoints(ctx workflow.Context, now time.Time) {
	for _, p := range w.points() {
		if p.at.After(now) {
			return
		}
		w.fired[p.name] = true
		open := w.openSystems()
		if len(open) == 0 {
			continue
		}
		resent := 0
		if p.kind == lethe.EscalationReminder {
			for _, cmd := range w.commands {
				if cmd.Status == lethe.SystemDispatched && !cmd.RetryPending && cmd.IssuedAt.Before(now) &&
					cmd.Attempt < w.policy.MaxAttempts {
					w.redispatch(now, cmd, fmt.Sprintf("reminder at %s of the window to the deadline", p.label))
					resent++
				}
			}
		}
		w.escalatePoint(ctx, now, p, open, resent)
	}
}

// escalatePoint audits point p, passed with the systems open still to
// confirm (resent of them sent their command again), marks the request
// overdue at the deadline, and hands the escalation to Escalate.
func (w *erasure) escalatePoint(ctx workflow.Context, now time.Time, p point, open []string, resent int) {
	ev := lethe.AuditEvent{Kind: lethe.AuditEscalated}
	switch p.kind {
	case lethe.EscalationReminder:
		ev.Detail = fmt.Sprintf("reminder at %s of the window: %s open, %d re-dispatched", p.label, names(open), resent)
	case lethe.EscalationTarget:
		ev.Detail = fmt.Sprintf("internal target %s passed: %s open", w.target.Format(time.RFC3339), names(open))
	case lethe.EscalationOverdue:
		w.overdue = true
		w.out.overdue = true
		ev.Kind = lethe.AuditOverdue
		ev.Detail = fmt.Sprintf("deadline %s passed: %s open", w.deadline.Format(time.RFC3339), names(open))
	}
	w.event(now, ev)
	w.escalate(ctx, lethe.Escalation{RequestID: w.in.RequestID, Kind: p.kind, Point: p.label, At: now,
		Deadline: w.deadline, Target: w.target, Open: open, Redispatched: resent})
}

// overdueAfterHolds marks the request overdue, under
// RevisionOverdueAfterHold, when systems are open past a deadline that
// passed quietly: only held systems were open then, and a hold has ended
// since. The erasure it suspended is now late.
func (w *erasure) overdueAfterHolds(ctx workflow.Context, now time.Time) {
	if w.in.Revision < RevisionOverdueAfterHold || w.overdue || !w.fired[w.deadlinePoint().name] || now.Before(w.deadline) {
		return
	}
	if open := w.openSystems(); len(open) > 0 {
		w.escalatePoint(ctx, now, w.deadlinePoint(), open, 0)
	}
}

// deadlinePoint is the last escalation point: the deadline, which marks
// the request overdue.
func (w *erasure) deadlinePoint() point {
	return point{name: "deadline", label: "deadline", kind: lethe.EscalationOverdue, at: w.deadline}
}

// openSystems names the systems still to confirm, held ones excepted.
func (w *erasure) openSystems() []string {
	var out []string
	for _, name := range sortedKeys(w.bySystem) {
		for _, cmd := range w.bySystem[name] {
			if !cmd.Status.Final() {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// names lists systems for an audit line, the first ten by name.
func names(systems []string) string {
	const shown = 10
	s := fmt.Sprintf("%d systems (%s", len(systems), strings.Join(systems[:min(len(systems), shown)], ", "))
	if len(systems) > shown {
		s += fmt.Sprintf(" and %d more", len(systems)-shown)
	}
	return s + ")"
}

// escalate runs the Escalate activity beside the main loop, so that a
// webhook that is down delays nobody; after an hour of retries it gives up,
// the escalation staying in the audit and the logs.
func (w *erasure) escalate(ctx workflow.Context, e lethe.Escalation) {
	workflow.Go(ctx, func(ctx workflow.Context) {
		ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout:    activityStartToClose,
			ScheduleToCloseTimeout: escalateWithin,
			RetryPolicy:            activityRetry,
		})
		var a *activities.Activities
		if err := workflow.ExecuteLocalActivity(ctx, a.Escalate, e).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("escalation not delivered", "request_id", w.in.RequestID,
				"kind", string(e.Kind), "error", err)
		}
	})
}

// redispatch sends a command again under the same command_id, which is how
// a system knows it is the same command.
func (w *erasure) redispatch(now time.Time, cmd *CommandState, why string) {
	cmd.Attempt++
	cmd.IssuedAt = now
	cmd.ConfirmBy = now.Add(cmd.ConfirmWithin)
	cmd.Due = cmd.ConfirmBy
	cmd.RetryPending = false
	cmd.ChangedAt = now
	w.publish(cmd)
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditRedispatched, System: cmd.System, Attempt: cmd.Attempt, Detail: why})
}

func (w *erasure) add(cmd *CommandState) {
	w.commands = append(w.commands, cmd)
	if cmd.ID != "" {
		w.byID[cmd.ID] = cmd
	}
	w.bySystem[cmd.System] = append(w.bySystem[cmd.System], cmd)
	sent := w.sent[cmd.System]
	if sent == nil {
		sent = map[string]bool{}
		w.sent[cmd.System] = sent
	}
	for _, id := range cmd.Identifiers {
		sent[idKey(id)] = true
	}
}

func (w *erasure) publish(cmd *CommandState) {
	w.out.commands = append(w.out.commands, activities.Outbound{
		Topic: cmd.Topic,
		Command: wire.Command{
			Schema:      wire.SchemaCommand,
			CommandID:   cmd.ID,
			RequestID:   w.in.RequestID,
			System:      cmd.System,
			Attempt:     cmd.Attempt,
			Identifiers: slices.Clone(cmd.Identifiers),
			IssuedAt:    cmd.IssuedAt,
			ConfirmBy:   cmd.ConfirmBy,
			DryRun:      w.in.DryRun,
		},
	})
	w.touch(cmd.System)
}

func (w *erasure) touch(system string) {
	if w.out.changed == nil {
		w.out.changed = map[string]bool{}
	}
	w.out.changed[system] = true
}

func (w *erasure) event(now time.Time, ev lethe.AuditEvent) {
	ev.RequestID = w.in.RequestID
	ev.At = now
	w.out.events = append(w.out.events, ev)
}

func (w *erasure) allFinal() bool {
	for _, cmd := range w.commands {
		if cmd.open() {
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
		if cmd.open() && (next.IsZero() || cmd.Due.Before(next)) {
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

// flush writes the outbox: commands first, then the ledger, in Sync calls of
// at most syncChunk items each. On failure it keeps the ledger part not yet
// written, so that a final Sync (after a cancellation) still records it; the
// commands are dropped, since nothing is dispatched after a failure.
//
// With settle, a request still settling (Policy.Settle) and not final has
// only its commands published; the ledger part stays in the outbox, for the
// flush after the next step or the one when it has settled (see
// RevisionSettledLedger).
func (w *erasure) flush(ctx workflow.Context, settle bool) error {
	delta := lethe.LedgerDelta{Status: w.out.status, CompletedAt: w.out.completedAt, Overdue: w.out.overdue,
		Events: w.out.events}
	for _, name := range sortedKeys(w.out.changed) {
		delta.Systems = append(delta.Systems, w.progress(name))
	}
	hold := settle && w.settling(ctx)
	if hold {
		delta = lethe.LedgerDelta{}
	}
	calls := chunkSync(w.in.RequestID, w.out.commands, delta)
	run := workflow.GetInfo(ctx).WorkflowExecution.RunID
	for i, in := range calls {
		// Named by the run and its place in the run, a delta written again
		// when this task is run again is recognised by the ledger.
		w.syncs++
		if !in.Ledger.Empty() {
			in.Ledger.Batch = fmt.Sprintf("%s/%d", run, w.syncs)
		}
		var a *activities.Activities
		var res activities.SyncResult
		if err := execute(ctx, a.Sync, in, &res); err != nil {
			if hold {
				w.out.commands = nil
			} else {
				w.out = remainder(calls[i:])
			}
			return err
		}
	}
	if hold {
		w.out.commands = nil
		w.ledgerHeld = !w.out.empty()
	} else {
		w.out = outbox{}
		w.ledgerHeld = false
	}
	w.upsertSearch(ctx)
	return nil
}

// chunkSync splits one step's writes into Sync calls. Call i carries the i-th
// slice of commands, of system rows and of events, so the order of events is
// kept; the request status goes last, once everything before it is written.
func chunkSync(requestID string, cmds []activities.Outbound, delta lethe.LedgerDelta) []activities.SyncInput {
	n := max(chunks(len(cmds)), chunks(len(delta.Systems)), chunks(len(delta.Events)))
	if n == 0 && (delta.Status != "" || delta.Overdue) {
		n = 1
	}
	calls := make([]activities.SyncInput, n)
	for i := range calls {
		calls[i] = activities.SyncInput{
			RequestID: requestID,
			Commands:  part(cmds, i),
			Ledger:    lethe.LedgerDelta{Systems: part(delta.Systems, i), Events: part(delta.Events, i)},
		}
	}
	if n > 0 {
		calls[n-1].Ledger.Status = delta.Status
		calls[n-1].Ledger.CompletedAt = delta.CompletedAt
		calls[n-1].Ledger.Overdue = delta.Overdue
	}
	return calls
}

func chunks(n int) int { return (n + syncChunk - 1) / syncChunk }

func part[T any](s []T, i int) []T {
	lo := i * syncChunk
	if lo >= len(s) {
		return nil
	}
	return s[lo:min(lo+syncChunk, len(s))]
}

func remainder(calls []activities.SyncInput) outbox {
	var out outbox
	for _, c := range calls {
		out.events = append(out.events, c.Ledger.Events...)
		for _, s := range c.Ledger.Systems {
			if out.changed == nil {
				out.changed = map[string]bool{}
			}
			out.changed[s.Name] = true
		}
		if c.Ledger.Status != "" {
			out.status = c.Ledger.Status
			out.completedAt = c.Ledger.CompletedAt
		}
		out.overdue = out.overdue || c.Ledger.Overdue
	}
	return out
}

// settled is when the request has settled; see Policy.Settle.
func (w *erasure) settled() time.Time { return w.in.CreatedAt.Add(w.policy.Settle) }

// settling reports whether the request, not final, is still settling.
func (w *erasure) settling(ctx workflow.Context) bool {
	return w.policy.Settle > 0 && !w.status.Final() && workflow.Now(ctx).Before(w.settled())
}

// upsertSearch keeps the UI's list columns current, writing only on change.
// Under RevisionSettledSearch a young request's first write waits until it
// has settled (Policy.Settle): most requests end before that, and their closing
// task writes the columns once, in the record Temporal keeps of the closed
// workflow, rather than in an extra visibility update.
func (w *erasure) upsertSearch(ctx workflow.Context) {
	v := searchValues{status: string(w.status), systems: int64(len(w.bySystem)), deadline: w.deadline,
		overdue: w.overdue}
	for _, name := range sortedKeys(w.bySystem) {
		if w.progress(name).Status == lethe.SystemDispatched {
			v.pending++
		}
	}
	if w.searchKnown && v == w.search {
		return
	}
	w.searchDeferred = !w.searchKnown && w.in.Revision >= RevisionSettledSearch && w.settling(ctx)
	if w.searchDeferred {
		return
	}
	updates := []temporal.SearchAttributeUpdate{
		SearchStatus.ValueSet(v.status),
		SearchPending.ValueSet(v.pending),
		SearchSystems.ValueSet(v.systems),
	}
	// The deadline was set when the workflow started (w.search starts
	// with it); only an extension writes it again. Overdue is written once,
	// when it becomes true.
	if !v.deadline.Equal(w.search.deadline) {
		updates = append(updates, SearchDeadline.ValueSet(v.deadline))
	}
	if v.overdue && !w.search.overdue {
		updates = append(updates, SearchOverdue.ValueSet(true))
	}
	err := workflow.UpsertTypedSearchAttributes(ctx, updates...)
	if err != nil {
		workflow.GetLogger(ctx).Warn("search attributes not updated", "request_id", w.in.RequestID, "error", err)
		return
	}
	w.search = v
	w.searchKnown = true
}

// finish ends a request whose commands are all final.
func (w *erasure) finish(ctx workflow.Context) error {
	now := workflow.Now(ctx).UTC()
	status, kind := lethe.RequestCompleted, lethe.AuditCompleted
	systems := w.progressAll()
	for _, p := range systems {
		if p.Status == lethe.SystemFailed {
			status, kind = lethe.RequestFailed, lethe.AuditFailed
		}
	}
	w.status = status
	w.completedAt = &now
	w.out.status = status
	w.out.completedAt = &now
	w.event(now, lethe.AuditEvent{Kind: kind, Detail: summary(systems)})
	// Every command is final: a cancellation arriving now changes nothing,
	// so the outcome is written on a context it cannot interrupt.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if err := w.flush(dctx, false); err != nil {
		workflow.GetLogger(ctx).Error("erasure outcome not written", "request_id", w.in.RequestID, "error", err)
		return err
	}
	workflow.GetLogger(ctx).Info("erasure finished", "request_id", w.in.RequestID, "status", string(status))
	_ = workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) })
	if len(w.inbox) > 0 {
		workflow.GetLogger(ctx).Info("confirmations after the end ignored", "request_id", w.in.RequestID, "count", len(w.inbox))
	}
	return nil
}

// stop ends the run on an error: a cancellation is recorded as such, any
// other error (one the activities marked non-retryable) fails the workflow.
func (w *erasure) stop(ctx workflow.Context, err error) error {
	if ctx.Err() != nil {
		return w.cancel(ctx)
	}
	workflow.GetLogger(ctx).Error("erasure stopped", "request_id", w.in.RequestID, "error", err)
	if w.ledgerHeld {
		// What the ledger was still to learn goes in before the run ends.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		if ferr := w.flush(dctx, false); ferr != nil {
			workflow.GetLogger(ctx).Error("held ledger changes not written", "request_id", w.in.RequestID, "error", ferr)
		}
	}
	return err
}

// cancel records a cancellation: no further dispatch or waiting, a final
// Sync with status canceled, and the cancellation error so that Temporal
// shows the run as canceled. What was erased stays erased.
func (w *erasure) cancel(ctx workflow.Context) error {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	now := workflow.Now(dctx).UTC()
	open := 0
	for _, p := range w.progressAll() {
		if !p.Status.Final() {
			open++
		}
	}
	w.status = lethe.RequestCanceled
	w.completedAt = &now
	w.out.commands = nil
	w.out.status = lethe.RequestCanceled
	w.out.completedAt = &now
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditCanceled,
		Detail: fmt.Sprintf("canceled with %d of %d systems still open", open, len(w.bySystem))})
	logger := workflow.GetLogger(dctx)
	if err := w.flush(dctx, false); err != nil {
		logger.Error("canceled status not written", "request_id", w.in.RequestID, "error", err)
	}
	_ = workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) })
	logger.Info("erasure canceled", "request_id", w.in.RequestID)
	return ctx.Err()
}

func (w *erasure) shouldContinueAsNew(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > continueAsNewAfter
}

// continueAsNew hands the request over to a fresh run with a short history,
// carrying everything reached, including confirmations not yet processed.
func (w *erasure) continueAsNew(ctx workflow.Context) error {
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return w.stop(ctx, err)
	}
	ch := workflow.GetSignalChannel(ctx, SignalConfirm)
	for {
		var sig ConfirmSignal
		if !ch.ReceiveAsync(&sig) {
			break
		}
		w.inbox = append(w.inbox, sig.Confirmations...)
	}
	workflow.GetLogger(ctx).Info("erasure continues as new", "request_id", w.in.RequestID,
		"commands", len(w.commands), "inbox", len(w.inbox))
	return workflow.NewContinueAsNewError(ctx, ErasureWorkflowName, w.carry())
}

// carry is the input of the next run.
func (w *erasure) carry() ErasureInput {
	in := w.in
	in.Policy = w.policy
	in.Deadline, in.Target = w.deadline, w.target
	st := &State{
		Status:       w.status,
		Subject:      slices.Clone(w.subject),
		Inbox:        slices.Clone(w.inbox),
		Fired:        sortedKeys(w.fired),
		Overdue:      w.overdue,
		Learned:      slices.Clone(w.learned),
		HoldsChanged: w.holdsChanged,
	}
	for _, name := range sortedKeys(w.targets) {
		st.Targets = append(st.Targets, w.targets[name])
	}
	for _, cmd := range w.commands {
		st.Commands = append(st.Commands, *cmd)
	}
	in.State = st
	return in
}

func (w *erasure) planTargets(ctx workflow.Context, types []string) ([]activities.Target, error) {
	var a *activities.Activities
	var res activities.PlanResult
	in := activities.PlanInput{RequestID: w.in.RequestID, Types: types, Subject: w.subject, Learned: w.learned,
		At: workflow.Now(ctx).UTC()}
	if err := execute(ctx, a.Plan, in, &res); err != nil {
		return nil, err
	}
	w.learned = nil
	targets := slices.Clone(res.Targets)
	slices.SortFunc(targets, func(x, y activities.Target) int { return cmp.Compare(x.System, y.System) })
	return targets, nil
}

// view is the live public picture of the request, without identifier values.
func (w *erasure) view(ctx workflow.Context) lethe.Erasure {
	e := lethe.Erasure{
		ID:           w.in.RequestID,
		Status:       w.status,
		Overdue:      w.overdue,
		SubjectTypes: identifierTypes(w.subject),
		DryRun:       w.in.DryRun,
		CreatedAt:    w.in.CreatedAt,
		Deadline:     w.deadline,
		Target:       w.target,
		WorkflowID:   ErasureWorkflowID(w.in.RequestID),
		Systems:      w.progressAll(),
	}
	if w.completedAt != nil {
		at := *w.completedAt
		e.CompletedAt = &at
	}
	return e
}

func (w *erasure) progressAll() []lethe.SystemProgress {
	out := make([]lethe.SystemProgress, 0, len(w.bySystem))
	for _, name := range sortedKeys(w.bySystem) {
		out = append(out, w.progress(name))
	}
	return out
}

// progress aggregates a system's commands: dispatched while any is open,
// else the worst outcome (failed, then erased, retained, not_found).
func (w *erasure) progress(system string) lethe.SystemProgress {
	p := lethe.SystemProgress{Name: system, Status: lethe.SystemPending}
	seen := map[lethe.SystemStatus]bool{}
	var detailAt time.Time
	for _, cmd := range w.bySystem[system] {
		if cmd.Superseded {
			continue
		}
		seen[cmd.Status] = true
		p.Records += cmd.Records
		p.Attempts = max(p.Attempts, cmd.Attempt)
		if cmd.ConfirmedAt != nil && (p.ConfirmedAt == nil || cmd.ConfirmedAt.After(*p.ConfirmedAt)) {
			at := *cmd.ConfirmedAt
			p.ConfirmedAt = &at
		}
		if cmd.Detail != "" && !cmd.ChangedAt.Before(detailAt) {
			p.Detail = cmd.Detail
			detailAt = cmd.ChangedAt
		}
	}
	for _, s := range []lethe.SystemStatus{lethe.SystemDispatched, lethe.SystemFailed, lethe.SystemErased,
		lethe.SystemRetained, lethe.SystemNotFound} {
		if seen[s] {
			p.Status = s
			break
		}
	}
	return p
}

func planDetail(targets []activities.Target, types []string) string {
	return fmt.Sprintf("%d systems match identifier types %s", len(targets), strings.Join(types, ", "))
}

func outcomeDetail(c wire.Confirmation) string {
	switch {
	case c.Outcome == wire.OutcomeFailed && c.Retryable:
		return "failed, retryable"
	case c.Outcome == wire.OutcomeFailed:
		return "failed"
	}
	return fmt.Sprintf("%s, %d records", c.Outcome, c.Records)
}

func summary(systems []lethe.SystemProgress) string {
	counts := map[lethe.SystemStatus]int{}
	for _, p := range systems {
		counts[p.Status]++
	}
	parts := []string{fmt.Sprintf("%d systems", len(systems))}
	for _, s := range sortedKeys(counts) {
		parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
	}
	return strings.Join(parts, ", ")
}

// identifierTypes lists the distinct types of ids, sorted.
func identifierTypes(ids []wire.Identifier) []string {
	types := make([]string, 0, len(ids))
	for _, id := range ids {
		types = append(types, id.Type)
	}
	slices.Sort(types)
	return slices.Compact(types)
}

func idKey(id wire.Identifier) string { return id.Type + "\x00" + id.Value }

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
