package workflows

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// maxSyncBytes bounds the encoded commands of one SyncChunk call, well
// under Temporal's 2 MiB payload limit: a step with more goes out in
// several calls, the ledger with the last.
const maxSyncBytes = 1 << 20

// BatchChunkWorkflow erases the subjects of one chunk of a bulk erasure.
// It plans every subject against the registry and the legal holds, sends
// each batch-capable system one batch command for all its subjects and
// every other system one command per subject, follows the outcomes item by
// item (retrying what failed retryably, timing out what stays silent,
// following derived identifiers), and writes each step to the ledger in a
// few statements. Once every subject is final it reports its counts to the
// batch's workflow; with failures it then waits, until the deadline, for a
// retry order. Canceled, it marks its open subjects canceled and reports.
func BatchChunkWorkflow(ctx workflow.Context, in ChunkInput) (ChunkCounts, error) {
	if in.ChunkID == "" || in.BatchID == "" || len(in.Subjects) == 0 {
		return ChunkCounts{}, temporal.NewNonRetryableApplicationError(
			"chunk input has no chunk_id, batch_id or subjects", "InvalidInput", nil)
	}
	c := newChunk(in)
	c.confirms = workflow.GetSignalChannel(ctx, SignalConfirm)
	c.batchConfirms = workflow.GetSignalChannel(ctx, SignalBatchConfirm)
	c.retries = workflow.GetSignalChannel(ctx, SignalRetry)
	if err := workflow.SetQueryHandler(ctx, QueryCommand, func(id string) (OpenCommand, error) {
		return c.openCommand(id), nil
	}); err != nil {
		return ChunkCounts{}, fmt.Errorf("set command query handler: %w", err)
	}
	return c.run(ctx)
}

// chunk is the state of one chunk's workflow; it is touched only from the
// workflow's one coroutine.
type chunk struct {
	in     ChunkInput
	policy Policy

	subjects []*chunkSubject
	byItemID map[string]int
	targets  map[string]activities.Target
	commands []*chunkCommand
	byID     map[string]*chunkCommand
	outcomes map[outcomeKey]*chunkOutcome

	confirms      workflow.ReceiveChannel
	batchConfirms workflow.ReceiveChannel
	retries       workflow.ReceiveChannel
	orders        []RetrySignal

	drawn   int
	syncs   int
	round   int
	overdue bool

	// The step's changes, written by flush.
	outbox        []activities.ChunkOutbound
	dirtyOutcomes map[outcomeKey]bool
	dirtySubjects map[int]bool
	learned       []activities.LearnedIdentifier
	events        []lethe.AuditEvent
}

// chunkSubject is one subject: its identifiers, which were sent to which
// system, and the types learned since the last plan.
type chunkSubject struct {
	item     int
	itemID   string
	ids      []wire.Identifier
	known    map[string]bool
	sent     map[string]map[string]bool
	status   lethe.RequestStatus
	newTypes []string
}

type outcomeKey struct {
	local  int
	system string
}

// chunkOutcome is one system's progress for one subject, derived from the
// commands that carried the subject there (recompute).
type chunkOutcome struct {
	cmds []*chunkCommand
	hold *lethe.Hold
	// wait, while the subject's identifiers wait for the systems this one
	// is erased after, says for whom; stuck is set when only a retry of a
	// failed one can free them (see chunkOrder).
	wait        string
	stuck       bool
	status      lethe.SystemStatus
	attempts    int
	records     int64
	detail      string
	confirmedAt *time.Time
}

// chunkCommand is one command: a batch command to a batch-capable system
// (many items), or a single command (one item).
type chunkCommand struct {
	id        string
	system    string
	topic     string
	batch     bool
	within    time.Duration
	attempt   int
	retryFrom int
	items     []int
	idents    map[int][]wire.Identifier
	open      map[int]bool
	retry     map[int]bool
	lastFail  map[int]string
	finals    map[int]itemFinal
	issuedAt  time.Time
	confirmBy time.Time
	due       time.Time
}

// itemFinal is how a command ended for one item.
type itemFinal struct {
	status  lethe.SystemStatus
	records int64
	detail  string
	at      *time.Time
}

func newChunk(in ChunkInput) *chunk {
	c := &chunk{
		in:            in,
		policy:        in.Policy,
		byItemID:      map[string]int{},
		targets:       map[string]activities.Target{},
		byID:          map[string]*chunkCommand{},
		outcomes:      map[outcomeKey]*chunkOutcome{},
		dirtyOutcomes: map[outcomeKey]bool{},
		dirtySubjects: map[int]bool{},
	}
	if c.policy.MaxAttempts <= 0 {
		c.policy.MaxAttempts = DefaultMaxAttempts
	}
	if c.policy.RetryDelay <= 0 {
		c.policy.RetryDelay = DefaultRetryDelay
	}
	for i, s := range in.Subjects {
		cs := &chunkSubject{item: s.Item, itemID: s.ItemID, known: map[string]bool{},
			sent: map[string]map[string]bool{}, status: lethe.RequestPending}
		for _, id := range s.Identifiers {
			if !cs.known[idKey(id)] {
				cs.known[idKey(id)] = true
				cs.ids = append(cs.ids, id)
			}
		}
		c.subjects = append(c.subjects, cs)
		c.byItemID[s.ItemID] = i
	}
	return c
}

func (c *chunk) run(ctx workflow.Context) (ChunkCounts, error) {
	all := make([]int, len(c.subjects))
	for i := range all {
		all[i] = i
	}
	if err := c.plan(ctx, all, nil); err != nil {
		return c.stop(ctx, err)
	}
	upsertStatus(ctx, lethe.RequestRunning)
	for {
		if err := c.flush(ctx); err != nil {
			return c.stop(ctx, err)
		}
		if c.allFinal() {
			counts, err := c.report(ctx)
			if err != nil {
				return c.stop(ctx, err)
			}
			if counts.Failed == 0 {
				return counts, nil
			}
			// Failed subjects wait for a retry order until the deadline.
			more, err := c.awaitRetry(ctx)
			if err != nil {
				return c.stop(ctx, err)
			}
			if !more {
				return counts, nil
			}
			continue
		}
		if err := c.wait(ctx); err != nil {
			return c.stop(ctx, err)
		}
		if err := c.step(ctx); err != nil {
			return c.stop(ctx, err)
		}
	}
}

// plan dispatches a wave: to every system that erases by the types of the
// wave (all of a subject's types the first time, then those systems
// revealed), the identifiers of its types that it was never sent.
func (c *chunk) plan(ctx workflow.Context, locals []int, types map[int][]string) error {
	in := activities.PlanChunkInput{BatchID: c.in.BatchID, ChunkID: c.in.ChunkID, At: workflow.Now(ctx).UTC()}
	for _, l := range locals {
		s := c.subjects[l]
		t := types[l]
		if t == nil {
			t = identifierTypes(s.ids)
		}
		in.Subjects = append(in.Subjects, activities.PlanSubject{Local: l, Types: t, Known: s.ids})
	}
	var res activities.PlanChunkResult
	if err := c.execute(ctx, (*activities.Activities).PlanChunk, in, &res); err != nil {
		return err
	}
	now := workflow.Now(ctx).UTC()
	held := map[outcomeKey]*lethe.Hold{}
	for _, h := range res.Held {
		hold := h.Hold
		if h.System != "" {
			if _, taken := held[outcomeKey{h.Local, h.System}]; !taken {
				held[outcomeKey{h.Local, h.System}] = &hold
			}
			continue
		}
		for _, t := range res.Targets {
			if _, taken := held[outcomeKey{h.Local, t.System}]; !taken {
				held[outcomeKey{h.Local, t.System}] = &hold
			}
		}
	}
	tally := map[string]int{}
	heldTally := map[string]int{}
	type wave struct {
		t     activities.Target
		items []int
	}
	var waves []wave
	planned := map[outcomeKey]bool{}
	for _, t := range res.Targets {
		c.targets[t.System] = t
		var items []int
		for _, p := range in.Subjects {
			if !overlaps(t.Types, p.Types) {
				continue
			}
			k := outcomeKey{p.Local, t.System}
			if h := held[k]; h != nil {
				o := c.outcome(k)
				if o.hold == nil {
					o.hold = h
					c.recompute(k)
					heldTally[t.System]++
				}
				continue
			}
			if len(c.unsent(p.Local, t)) > 0 {
				items = append(items, p.Local)
			}
		}
		if len(items) == 0 {
			continue
		}
		for _, l := range items {
			planned[outcomeKey{l, t.System}] = true
		}
		waves = append(waves, wave{t, items})
	}
	// Decided once the whole wave is known: a system may wait for one
	// that sorts after it.
	for _, w := range waves {
		items := c.holdBack(now, w.t, w.items, planned)
		if len(items) == 0 {
			continue
		}
		if err := c.dispatch(now, w.t, items); err != nil {
			return err
		}
		tally[w.t.System] += len(items)
	}
	for _, l := range locals {
		c.subjects[l].newTypes = nil
		c.touchSubject(l)
	}
	for _, name := range sortedKeys(heldTally) {
		c.event(now, lethe.AuditEvent{Kind: lethe.AuditHeld, System: name,
			Detail: fmt.Sprintf("chunk %d: %d subjects under a legal hold, retained", c.in.Chunk, heldTally[name])})
	}
	for _, name := range sortedKeys(tally) {
		c.event(now, lethe.AuditEvent{Kind: lethe.AuditDispatched, System: name, Attempt: 1,
			Detail: fmt.Sprintf("chunk %d: %d subjects", c.in.Chunk, tally[name])})
	}
	if len(locals) == len(c.subjects) {
		c.event(now, lethe.AuditEvent{Kind: lethe.AuditPlanned,
			Detail: fmt.Sprintf("chunk %d: %d subjects, %d systems", c.in.Chunk, len(locals), len(res.Targets))})
	}
	return nil
}

// unsent lists the identifiers of t's types that t's system was never sent
// for the subject.
func (c *chunk) unsent(local int, t activities.Target) []wire.Identifier {
	s := c.subjects[local]
	var out []wire.Identifier
	for _, id := range s.ids {
		if slices.Contains(t.Types, id.Type) && !s.sent[t.System][idKey(id)] {
			out = append(out, id)
		}
	}
	return out
}

// dispatch issues the commands that carry items to t's system: batch
// commands, packed under the wire's limits, or one command per subject.
func (c *chunk) dispatch(now time.Time, t activities.Target, items []int) error {
	var cmds []*chunkCommand
	newCmd := func(id string, locals []int) *chunkCommand {
		cmd := &chunkCommand{id: id, system: t.System, topic: t.Topic, batch: t.Batch, within: t.ConfirmWithin,
			attempt: 1, items: locals, idents: map[int][]wire.Identifier{}, open: map[int]bool{},
			retry: map[int]bool{}, lastFail: map[int]string{}, finals: map[int]itemFinal{},
			issuedAt: now, confirmBy: now.Add(t.ConfirmWithin)}
		cmd.due = cmd.confirmBy
		for _, l := range locals {
			ids := c.unsent(l, t)
			cmd.idents[l] = ids
			cmd.open[l] = true
		}
		return cmd
	}
	if t.Batch {
		batchItems := make([]wire.BatchItem, len(items))
		for i, l := range items {
			batchItems[i] = wire.BatchItem{ItemID: c.subjects[l].itemID, Identifiers: c.unsent(l, t)}
		}
		tmpl := wire.BatchCommand{Schema: wire.SchemaBatchCommand, BatchID: c.in.ChunkID, System: t.System,
			Attempt: 1, IssuedAt: now, ConfirmBy: now.Add(t.ConfirmWithin), DryRun: c.in.DryRun}
		packed, err := wire.PackBatchCommands(tmpl, batchItems, c.newCommandID)
		if err != nil {
			return temporal.NewNonRetryableApplicationError("pack batch commands: "+err.Error(), "InvalidInput", nil)
		}
		at := 0
		for _, p := range packed {
			cmds = append(cmds, newCmd(p.CommandID, items[at:at+len(p.Items)]))
			at += len(p.Items)
		}
	} else {
		for _, l := range items {
			cmds = append(cmds, newCmd(c.newCommandID(), []int{l}))
		}
	}
	for _, cmd := range cmds {
		for _, l := range cmd.items {
			s := c.subjects[l]
			if s.sent[t.System] == nil {
				s.sent[t.System] = map[string]bool{}
			}
			for _, id := range cmd.idents[l] {
				s.sent[t.System][idKey(id)] = true
			}
			k := outcomeKey{l, t.System}
			o := c.outcome(k)
			o.cmds = append(o.cmds, cmd)
			c.recompute(k)
		}
		c.commands = append(c.commands, cmd)
		c.byID[cmd.id] = cmd
		c.send(cmd, cmd.items)
	}
	return nil
}

// send puts the command on the outbox for the given items, at its current
// attempt.
func (c *chunk) send(cmd *chunkCommand, items []int) {
	if cmd.batch {
		bc := &wire.BatchCommand{Schema: wire.SchemaBatchCommand, CommandID: cmd.id, BatchID: c.in.ChunkID,
			System: cmd.system, Attempt: cmd.attempt, IssuedAt: cmd.issuedAt, ConfirmBy: cmd.confirmBy,
			DryRun: c.in.DryRun}
		for _, l := range items {
			bc.Items = append(bc.Items, wire.BatchItem{ItemID: c.subjects[l].itemID, Identifiers: cmd.idents[l]})
		}
		c.outbox = append(c.outbox, activities.ChunkOutbound{Topic: cmd.topic, Batch: bc})
		return
	}
	c.outbox = append(c.outbox, activities.ChunkOutbound{Topic: cmd.topic, Single: c.single(cmd, items[0])})
}

// single is a single command for item l as the contract sends it.
func (c *chunk) single(cmd *chunkCommand, l int) *wire.Command {
	return &wire.Command{
		Schema: wire.SchemaCommand, CommandID: cmd.id, RequestID: c.in.ChunkID, System: cmd.system,
		Attempt: cmd.attempt, Identifiers: cmd.idents[l], IssuedAt: cmd.issuedAt, ConfirmBy: cmd.confirmBy,
		DryRun: c.in.DryRun}
}

// openCommand answers QueryCommand: the single command with this id while
// its one item waits for a confirmation. Batch commands are never leased.
func (c *chunk) openCommand(id string) OpenCommand {
	cmd := c.byID[id]
	if cmd == nil || cmd.batch || len(cmd.items) != 1 || !cmd.open[cmd.items[0]] {
		return OpenCommand{}
	}
	return OpenCommand{Command: c.single(cmd, cmd.items[0])}
}

// newCommandID derives the chunk's next command id from the batch's seed:
// the same again when a workflow task runs a second time.
func (c *chunk) newCommandID() string {
	id := seededCommandIDs(c.in.CommandSeed, c.in.ChunkID, c.drawn, 1)[0]
	c.drawn++
	return id
}

func (c *chunk) outcome(k outcomeKey) *chunkOutcome {
	o := c.outcomes[k]
	if o == nil {
		o = &chunkOutcome{}
		c.outcomes[k] = o
	}
	return o
}

// recompute derives a subject's progress in a system from its commands: in
// flight while any is open, else the gravest of their ends (failed, then
// retained, erased, not_found), with their records summed.
func (c *chunk) recompute(k outcomeKey) {
	o := c.outcomes[k]
	open := false
	var final lethe.SystemStatus
	o.records, o.attempts, o.detail, o.confirmedAt = 0, 0, "", nil
	if o.hold != nil {
		final = lethe.SystemRetained
		o.detail = holdDetail(o.hold)
	}
	for _, cmd := range o.cmds {
		o.attempts = max(o.attempts, cmd.attempt)
		if cmd.open[k.local] {
			open = true
			continue
		}
		f, ok := cmd.finals[k.local]
		if !ok {
			continue
		}
		if gravity(f.status) >= gravity(final) {
			final = f.status
			if f.detail != "" {
				o.detail = f.detail
			}
		}
		o.records += f.records
		o.confirmedAt = f.at
	}
	switch {
	case open:
		o.status = lethe.SystemDispatched
	case final != "":
		o.status = final
	default:
		o.status = lethe.SystemPending
		o.detail = o.wait
	}
	c.dirtyOutcomes[k] = true
	c.touchSubject(k.local)
}

// gravity orders the ends of a subject's commands in one system.
func gravity(s lethe.SystemStatus) int {
	switch s {
	case lethe.SystemFailed:
		return 4
	case lethe.SystemRetained:
		return 3
	case lethe.SystemErased:
		return 2
	case lethe.SystemNotFound:
		return 1
	}
	return 0
}

func holdDetail(h *lethe.Hold) string {
	return fmt.Sprintf("legal hold %s: %s", h.ID, h.Basis)
}

// touchSubject recomputes a subject's status from its outcomes.
func (c *chunk) touchSubject(local int) {
	s := c.subjects[local]
	if s.status == lethe.RequestCanceled {
		return
	}
	status := lethe.RequestCompleted
	for _, name := range c.systemNames() {
		o := c.outcomes[outcomeKey{local, name}]
		if o == nil {
			continue
		}
		switch {
		case o.status == lethe.SystemPending && o.stuck:
			// Only a retry of what it waits for frees it.
		case o.status == lethe.SystemDispatched, o.status == lethe.SystemPending:
			status = lethe.RequestRunning
		case o.status == lethe.SystemFailed:
			if status != lethe.RequestRunning {
				status = lethe.RequestFailed
			}
		}
	}
	if len(s.newTypes) > 0 {
		status = lethe.RequestRunning
	}
	if status != s.status {
		s.status = status
		c.dirtySubjects[local] = true
	}
}

// systemNames lists the targets planned, sorted.
func (c *chunk) systemNames() []string { return sortedKeys(c.targets) }

func (c *chunk) allFinal() bool {
	for _, s := range c.subjects {
		if !s.status.Final() {
			return false
		}
	}
	return true
}

// wait blocks until a signal arrives or the earliest command or the
// deadline falls due.
func (c *chunk) wait(ctx workflow.Context) error {
	if c.signalsQueued() || len(c.orders) > 0 {
		return nil
	}
	d := c.nextDue().Sub(workflow.Now(ctx))
	if d <= 0 {
		return nil
	}
	_, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout:      d,
		TimerOptions: workflow.TimerOptions{Summary: "next confirm_by, retry or deadline"},
	}, c.signalsQueued)
	return err
}

func (c *chunk) signalsQueued() bool {
	return c.confirms.Len() > 0 || c.batchConfirms.Len() > 0 || c.retries.Len() > 0
}

func (c *chunk) nextDue() time.Time {
	var next time.Time
	for _, cmd := range c.commands {
		if (len(cmd.open) > 0) && (next.IsZero() || cmd.due.Before(next)) {
			next = cmd.due
		}
	}
	if !c.overdue && !c.in.Deadline.IsZero() && (next.IsZero() || c.in.Deadline.Before(next)) {
		next = c.in.Deadline
	}
	return next
}

// step applies every signal queued, then what fell due.
func (c *chunk) step(ctx workflow.Context) error {
	now := workflow.Now(ctx).UTC()
	tally := map[string]map[string]int{}
	count := func(system, what string) {
		if tally[system] == nil {
			tally[system] = map[string]int{}
		}
		tally[system][what]++
	}
	for {
		var single ConfirmSignal
		var batch BatchConfirmSignal
		var order RetrySignal
		switch {
		case c.batchConfirms.ReceiveAsync(&batch):
			for _, bc := range batch.Confirmations {
				c.confirmBatch(now, bc, count)
			}
		case c.confirms.ReceiveAsync(&single):
			for _, conf := range single.Confirmations {
				c.confirmSingle(now, conf, count)
			}
		case c.retries.ReceiveAsync(&order):
			c.orders = append(c.orders, order)
		default:
			goto applied
		}
	}
applied:
	for _, name := range sortedKeys(tally) {
		if n := tally[name]["rejected"]; n > 0 {
			delete(tally[name], "rejected")
			c.event(now, lethe.AuditEvent{Kind: lethe.AuditConfirmationRejected, System: name,
				Detail: fmt.Sprintf("chunk %d: %d confirmations of no command this chunk issued to the system", c.in.Chunk, n)})
		}
		if len(tally[name]) > 0 {
			c.event(now, lethe.AuditEvent{Kind: lethe.AuditConfirmed, System: name,
				Detail: fmt.Sprintf("chunk %d: %s", c.in.Chunk, tallyText(tally[name]))})
		}
	}
	c.applyRetries(now)
	if err := c.expand(ctx); err != nil {
		return err
	}
	c.fireDue(workflow.Now(ctx).UTC())
	return c.release(workflow.Now(ctx).UTC())
}

// tallyText writes counts as "erased 990, not_found 10", sorted by name.
func tallyText(t map[string]int) string {
	parts := make([]string, 0, len(t))
	for _, k := range sortedKeys(t) {
		parts = append(parts, fmt.Sprintf("%s %d", k, t[k]))
	}
	return strings.Join(parts, ", ")
}

// confirmBatch applies one batch confirmation, item by item. An answer for
// an item the command does not carry, or already answered for good, is
// ignored; a confirmation of no command of this chunk is rejected.
func (c *chunk) confirmBatch(now time.Time, bc wire.BatchConfirmation, count func(system, what string)) {
	cmd := c.byID[bc.CommandID]
	if cmd == nil || !cmd.batch || cmd.system != bc.System {
		count(bc.System, "rejected")
		return
	}
	at := bc.ConfirmedAt.UTC()
	for _, it := range bc.Items {
		local, ok := c.byItemID[it.ItemID]
		if !ok || !cmd.open[local] {
			count(cmd.system, "ignored")
			continue
		}
		c.answer(now, cmd, local, it.Outcome, it.Records, it.Detail, it.Retryable, it.DerivedIdentifiers, at)
		count(cmd.system, string(it.Outcome))
	}
}

// confirmSingle applies a confirmation of a single command.
func (c *chunk) confirmSingle(now time.Time, conf wire.Confirmation, count func(system, what string)) {
	cmd := c.byID[conf.CommandID]
	if cmd == nil || cmd.batch || cmd.system != conf.System {
		count(conf.System, "rejected")
		return
	}
	local := cmd.items[0]
	if !cmd.open[local] {
		count(cmd.system, "ignored")
		return
	}
	c.answer(now, cmd, local, conf.Outcome, conf.Records, conf.Detail, conf.Retryable, conf.DerivedIdentifiers,
		conf.ConfirmedAt.UTC())
	count(cmd.system, string(conf.Outcome))
}

// answer applies one system's answer for one subject of a command.
func (c *chunk) answer(now time.Time, cmd *chunkCommand, local int, outcome wire.Outcome, records int64,
	detail string, retryable bool, derived []wire.Identifier, at time.Time) {
	s := c.subjects[local]
	for _, id := range derived {
		if !lethe.ValidIdentifierType(id.Type) || id.Value == "" || s.known[idKey(id)] {
			continue
		}
		s.known[idKey(id)] = true
		s.ids = append(s.ids, id)
		c.learned = append(c.learned, activities.LearnedIdentifier{Item: s.item, Identifier: id})
		if !slices.Contains(s.newTypes, id.Type) {
			s.newTypes = append(s.newTypes, id.Type)
		}
	}
	if outcome == wire.OutcomeFailed {
		cmd.lastFail[local] = detail
		if retryable && cmd.attempt-cmd.retryFrom < c.policy.MaxAttempts {
			cmd.retry[local] = true
			if due := now.Add(c.policy.RetryDelay); due.Before(cmd.due) {
				cmd.due = due
			}
			return
		}
	}
	delete(cmd.open, local)
	delete(cmd.retry, local)
	cmd.finals[local] = itemFinal{status: lethe.SystemStatus(outcome), records: records, detail: detail, at: &at}
	c.recompute(outcomeKey{local, cmd.system})
}

// expand plans the identifiers systems revealed, for the subjects that
// learned any.
func (c *chunk) expand(ctx workflow.Context) error {
	var locals []int
	types := map[int][]string{}
	for l, s := range c.subjects {
		if len(s.newTypes) > 0 && s.status != lethe.RequestCanceled {
			locals = append(locals, l)
			types[l] = slices.Clone(s.newTypes)
		}
	}
	if len(locals) == 0 {
		return nil
	}
	c.event(workflow.Now(ctx).UTC(), lethe.AuditEvent{Kind: lethe.AuditDerived,
		Detail: fmt.Sprintf("chunk %d: %d subjects revealed identifiers", c.in.Chunk, len(locals))})
	return c.plan(ctx, locals, types)
}

// fireDue dispatches again, at the next attempt, the items of each command
// that fell due: those that failed retryably, and, once the command's
// confirm_by passed, those never answered. A command out of attempts fails
// them for good.
func (c *chunk) fireDue(now time.Time) {
	if !c.overdue && !c.in.Deadline.IsZero() && !now.Before(c.in.Deadline) {
		open := 0
		for _, s := range c.subjects {
			if !s.status.Final() {
				open++
			}
		}
		if open > 0 {
			c.overdue = true
			c.event(now, lethe.AuditEvent{Kind: lethe.AuditOverdue,
				Detail: fmt.Sprintf("chunk %d: %d subjects open at the deadline", c.in.Chunk, open)})
		}
	}
	redispatched := map[string]int{}
	failed := map[string]int{}
	for _, cmd := range c.commands {
		if len(cmd.open) == 0 || now.Before(cmd.due) {
			continue
		}
		timedOut := !now.Before(cmd.confirmBy)
		var again []int
		for _, l := range cmd.items {
			if cmd.retry[l] || (timedOut && cmd.open[l]) {
				again = append(again, l)
			}
		}
		if len(again) == 0 {
			cmd.due = cmd.confirmBy
			continue
		}
		if cmd.attempt-cmd.retryFrom >= c.policy.MaxAttempts {
			for _, l := range again {
				detail := cmd.lastFail[l]
				if detail == "" {
					detail = fmt.Sprintf("no confirmation after %d attempts", cmd.attempt)
				}
				delete(cmd.open, l)
				delete(cmd.retry, l)
				cmd.finals[l] = itemFinal{status: lethe.SystemFailed, detail: detail}
				c.recompute(outcomeKey{l, cmd.system})
			}
			failed[cmd.system] += len(again)
			continue
		}
		c.redispatch(now, cmd, again)
		redispatched[cmd.system] += len(again)
	}
	for _, name := range sortedKeys(redispatched) {
		c.event(now, lethe.AuditEvent{Kind: lethe.AuditRedispatched, System: name,
			Detail: fmt.Sprintf("chunk %d: %d subjects", c.in.Chunk, redispatched[name])})
	}
	for _, name := range sortedKeys(failed) {
		c.event(now, lethe.AuditEvent{Kind: lethe.AuditFailed, System: name,
			Detail: fmt.Sprintf("chunk %d: %d subjects out of attempts", c.in.Chunk, failed[name])})
	}
}

// redispatch sends a command again, under its id, at the next attempt, for
// the given items only.
func (c *chunk) redispatch(now time.Time, cmd *chunkCommand, items []int) {
	cmd.attempt++
	cmd.issuedAt = now
	cmd.confirmBy = now.Add(cmd.within)
	cmd.due = cmd.confirmBy
	for _, l := range items {
		delete(cmd.retry, l)
		cmd.open[l] = true
		c.recompute(outcomeKey{l, cmd.system})
	}
	c.send(cmd, items)
}

// applyRetries gives the failed items of the systems each order names (all
// when it names none) a fresh budget and dispatches them again.
func (c *chunk) applyRetries(now time.Time) {
	if len(c.orders) == 0 {
		return
	}
	orders := c.orders
	c.orders = nil
	for _, order := range orders {
		n := map[string]int{}
		for _, cmd := range c.commands {
			if len(order.Systems) > 0 && !slices.Contains(order.Systems, cmd.system) {
				continue
			}
			var again []int
			for _, l := range cmd.items {
				if f, ok := cmd.finals[l]; ok && f.status == lethe.SystemFailed && c.subjects[l].status != lethe.RequestCanceled {
					delete(cmd.finals, l)
					again = append(again, l)
				}
			}
			if len(again) == 0 {
				continue
			}
			cmd.retryFrom = cmd.attempt
			c.redispatch(now, cmd, again)
			n[cmd.system] += len(again)
		}
		for _, name := range sortedKeys(n) {
			c.event(now, lethe.AuditEvent{Kind: lethe.AuditRedispatched, System: name, Actor: order.Actor,
				Detail: fmt.Sprintf("chunk %d: %d failed subjects retried", c.in.Chunk, n[name])})
		}
	}
	// A chunk that was done reports again, whatever the order reopened.
	c.round++
}

// awaitRetry waits, once the chunk is done with failures, for a retry order
// until the deadline, and reports whether one came: the chunk then goes on,
// and reports again once done, even if the order reopened nothing.
func (c *chunk) awaitRetry(ctx workflow.Context) (bool, error) {
	for {
		d := c.in.Deadline.Sub(workflow.Now(ctx))
		if d <= 0 {
			return false, nil
		}
		ok, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
			Timeout:      d,
			TimerOptions: workflow.TimerOptions{Summary: "retry order or deadline"},
		}, c.signalsQueued)
		if err != nil || !ok {
			return false, err
		}
		round := c.round
		if err := c.step(ctx); err != nil {
			return false, err
		}
		if c.round != round {
			return true, nil
		}
		// Late confirmations only: their events are written, and the
		// chunk waits on.
		if err := c.flush(ctx); err != nil {
			return false, err
		}
	}
}

func (c *chunk) dirty() bool {
	return len(c.outbox) > 0 || len(c.dirtyOutcomes) > 0 || len(c.dirtySubjects) > 0 || len(c.events) > 0
}

// counts tallies the subjects' final statuses.
func (c *chunk) counts() ChunkCounts {
	var n ChunkCounts
	for _, s := range c.subjects {
		switch s.status {
		case lethe.RequestCompleted:
			n.Completed++
		case lethe.RequestFailed:
			n.Failed++
		case lethe.RequestCanceled:
			n.Canceled++
		}
	}
	return n
}

// report tells the batch's workflow the chunk's counts. A batch workflow no
// longer running misses nothing: the ledger has every subject.
func (c *chunk) report(ctx workflow.Context) (ChunkCounts, error) {
	n := c.counts()
	upsertStatus(ctx, n.status())
	err := workflow.SignalExternalWorkflow(ctx, c.in.ParentID, "", SignalChunkDone,
		ChunkDone{Chunk: c.in.Chunk, Round: c.round, Counts: n}).Get(ctx, nil)
	if err != nil && ctx.Err() == nil {
		workflow.GetLogger(ctx).Warn("the batch's workflow did not take the chunk's report",
			"batch_id", c.in.BatchID, "chunk", c.in.Chunk, "error", err)
	}
	return n, ctx.Err()
}

func (c *chunk) event(at time.Time, e lethe.AuditEvent) {
	e.At = at
	c.events = append(c.events, e)
}

// flush writes the step: its commands, then its ledger delta, in as few
// SyncChunk calls as the payload limit allows.
func (c *chunk) flush(ctx workflow.Context) error {
	if !c.dirty() && len(c.learned) == 0 {
		return nil
	}
	var parts [][]activities.ChunkOutbound
	size := 0
	for _, o := range c.outbox {
		b, err := json.Marshal(o)
		if err != nil {
			return temporal.NewNonRetryableApplicationError("encode command: "+err.Error(), "InvalidInput", nil)
		}
		if len(parts) == 0 || size+len(b) > maxSyncBytes {
			parts = append(parts, nil)
			size = 0
		}
		parts[len(parts)-1] = append(parts[len(parts)-1], o)
		size += len(b)
	}
	if len(parts) == 0 {
		parts = append(parts, nil)
	}
	c.syncs++
	delta := c.delta()
	for i, p := range parts {
		in := activities.SyncChunkInput{ChunkID: c.in.ChunkID, Commands: p}
		if i == len(parts)-1 {
			in.Ledger, in.Learned = delta, c.learned
		}
		if err := c.execute(ctx, (*activities.Activities).SyncChunk, in, nil); err != nil {
			return err
		}
	}
	c.outbox, c.learned, c.events = nil, nil, nil
	c.dirtyOutcomes, c.dirtySubjects = map[outcomeKey]bool{}, map[int]bool{}
	return nil
}

// delta gathers the step's ledger changes, outcomes grouped by what they
// share so that the delta stays small.
func (c *chunk) delta() registry.BatchDelta {
	d := registry.BatchDelta{BatchID: c.in.BatchID, Name: fmt.Sprintf("c%d.%d", c.in.Chunk, c.syncs),
		Events: c.events, Overdue: c.overdue}
	keys := make([]outcomeKey, 0, len(c.dirtyOutcomes))
	for k := range c.dirtyOutcomes {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b outcomeKey) int {
		return cmp.Or(cmp.Compare(a.system, b.system), cmp.Compare(a.local, b.local))
	})
	groups := map[string]int{}
	for _, k := range keys {
		o := c.outcomes[k]
		var at string
		if o.confirmedAt != nil {
			at = o.confirmedAt.Format(time.RFC3339Nano)
		}
		gk := fmt.Sprintf("%s\x00%s\x00%d\x00%d\x00%s\x00%s", k.system, o.status, o.attempts, o.records, o.detail, at)
		i, ok := groups[gk]
		if !ok {
			i = len(d.Outcomes)
			groups[gk] = i
			d.Outcomes = append(d.Outcomes, registry.OutcomeGroup{System: k.system, Status: o.status,
				Attempts: o.attempts, Records: o.records, Detail: o.detail, ConfirmedAt: o.confirmedAt})
		}
		d.Outcomes[i].Items = append(d.Outcomes[i].Items, c.subjects[k.local].item)
	}
	locals := make([]int, 0, len(c.dirtySubjects))
	for l := range c.dirtySubjects {
		locals = append(locals, l)
	}
	slices.Sort(locals)
	byStatus := map[lethe.RequestStatus]int{}
	for _, l := range locals {
		s := c.subjects[l]
		i, ok := byStatus[s.status]
		if !ok {
			i = len(d.Subjects)
			byStatus[s.status] = i
			d.Subjects = append(d.Subjects, registry.SubjectGroup{Status: s.status})
		}
		d.Subjects[i].Items = append(d.Subjects[i].Items, s.item)
	}
	return d
}

// stop ends the chunk on an error: its open subjects are marked canceled
// when the batch was canceled, else failed with the error, and the chunk
// writes that and reports its counts before it returns, so that the batch
// never waits for a chunk that has ended.
func (c *chunk) stop(ctx workflow.Context, err error) (ChunkCounts, error) {
	canceled := temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled)
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	now := workflow.Now(dctx).UTC()
	status, kind, what := lethe.RequestFailed, lethe.AuditFailed, "failed: "+err.Error()
	if canceled {
		status, kind, what = lethe.RequestCanceled, lethe.AuditCanceled, "canceled"
	}
	n := 0
	for l, s := range c.subjects {
		if !s.status.Final() {
			s.status = status
			c.dirtySubjects[l] = true
			n++
		}
	}
	c.outbox = nil
	c.event(now, lethe.AuditEvent{Kind: kind,
		Detail: fmt.Sprintf("chunk %d: %d open subjects %s", c.in.Chunk, n, what)})
	if ferr := c.flush(dctx); ferr != nil {
		return c.counts(), ferr
	}
	counts, _ := c.report(dctx)
	if canceled {
		return counts, temporal.NewCanceledError()
	}
	return counts, err
}

// execute runs one activity of a chunk or a batch as a regular activity,
// retried with the policy's backoff until it succeeds or fails for good.
func (c *chunk) execute(ctx workflow.Context, activity, in, out any) error {
	return runBatchActivity(ctx, c.policy, activity, in, out)
}

func runBatchActivity(ctx workflow.Context, p Policy, activity, in, out any) error {
	retry := DefaultActivityRetry
	if r := p.Retry; r != nil && r.Initial > 0 && r.Maximum >= r.Initial {
		retry = *r
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    activityStartToClose,
		ScheduleToCloseTimeout: activityScheduleToClose,
		RetryPolicy:            retry.retryPolicy(),
	})
	return workflow.ExecuteActivity(ctx, activity, in).Get(ctx, out)
}

// overlaps reports whether two lists of types share one.
func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// sortedKeys lists a map's keys in order, so that what the workflow does
// with them never depends on Go's random map order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
