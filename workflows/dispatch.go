package workflows

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

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
	var created []*CommandState
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
		if w.features.ordered {
			// Decided once the whole wave is known: a system may wait for
			// one that sorts after it.
			created = append(created, cmd)
			continue
		}
		w.publish(cmd)
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditDispatched, System: cmd.System, Attempt: 1,
			Detail: "identifier types: " + strings.Join(identifierTypes(cmd.Identifiers), ", ")})
	}
	for _, cmd := range created {
		w.dispatchOrWait(now, cmd)
	}
	return nil
}

// newCommandIDs returns the unguessable command_ids of one wave: derived
// from the request's seed when it has one, else drawn at random in a single
// side effect, so that replays see the same ones.
func (w *erasure) newCommandIDs(ctx workflow.Context, n int) ([]string, error) {
	if w.in.CommandSeed != "" {
		// Under RevisionStableNames the ids are the request's, numbered
		// across its runs: a reset, which replays the request under a new
		// run id, derives the ids of the commands already published again.
		scope := workflow.GetInfo(ctx).WorkflowExecution.RunID
		if w.features.stableNames {
			scope = w.in.RequestID
		}
		ids := seededCommandIDs(w.in.CommandSeed, scope, w.drawn, n)
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

// seededCommandIDs derives n command ids, numbered from onwards within
// scope (the request, or before RevisionStableNames the run), from seed: an
// HMAC of the scope and the number, shaped as a random (version 4) UUID.
// Only who knows the seed can tell them; a workflow task run again derives
// the very same ones.
func seededCommandIDs(seed, scope string, from, n int) []string {
	mac := hmac.New(sha256.New, []byte(seed))
	ids := make([]string, n)
	for i := range ids {
		mac.Reset()
		fmt.Fprintf(mac, "%s/%d", scope, from+i)
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
		if cmd.Status.Final() || cmd.Held || cmd.Waiting || cmd.Due.After(now) {
			continue
		}
		switch {
		case cmd.Undelivered > 0 && cmd.Status == lethe.SystemPending:
			w.deliver(now, cmd)
		case cmd.RetryPending:
			w.redispatch(now, cmd, "the system asked for a retry")
		case w.attemptsLeft(cmd):
			w.redispatch(now, cmd, fmt.Sprintf("no confirmation within %s", lethe.Duration(cmd.ConfirmWithin)))
		default:
			cmd.Status = lethe.SystemFailed
			cmd.Detail = fmt.Sprintf("no confirmation after %d attempts", cmd.Attempt-cmd.RetryFrom)
			cmd.ChangedAt = now
			w.touch(cmd.System)
			w.event(now, lethe.AuditEvent{Kind: lethe.AuditFailed, System: cmd.System, Attempt: cmd.Attempt,
				Detail: cmd.Detail})
		}
	}
}

// redispatch sends a command again under the same command_id, which is how
// a system knows it is the same command.
func (w *erasure) redispatch(now time.Time, cmd *CommandState, why string) {
	w.resend(now, cmd)
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditRedispatched, System: cmd.System, Attempt: cmd.Attempt, Detail: why})
}

// resend publishes cmd again at its next attempt, with a new confirm_by.
func (w *erasure) resend(now time.Time, cmd *CommandState) {
	cmd.Attempt++
	cmd.IssuedAt = now
	cmd.ConfirmBy = now.Add(cmd.ConfirmWithin)
	cmd.Due = cmd.ConfirmBy
	cmd.RetryPending = false
	cmd.ChangedAt = now
	w.publish(cmd)
}

// attemptsLeft reports whether cmd may be dispatched again within its
// budget: Policy.MaxAttempts since it was first sent, or since the retry
// order that renewed it (RetryFrom).
func (w *erasure) attemptsLeft(cmd *CommandState) bool {
	return cmd.Attempt-cmd.RetryFrom < w.policy.MaxAttempts
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
	w.out.commands = append(w.out.commands, activities.Outbound{Topic: cmd.Topic, Command: w.wireCommand(cmd)})
	w.touch(cmd.System)
}

// wireCommand is cmd as the contract sends it, at its current attempt.
func (w *erasure) wireCommand(cmd *CommandState) wire.Command {
	return wire.Command{
		Schema:      wire.SchemaCommand,
		CommandID:   cmd.ID,
		RequestID:   w.in.RequestID,
		System:      cmd.System,
		Attempt:     cmd.Attempt,
		Identifiers: slices.Clone(cmd.Identifiers),
		IssuedAt:    cmd.IssuedAt,
		ConfirmBy:   cmd.ConfirmBy,
		DryRun:      w.in.DryRun,
	}
}

// openCommand answers QueryCommand: the command with this id while it
// waits for its system's confirmation.
func (w *erasure) openCommand(id string) OpenCommand {
	cmd := w.byID[id]
	if cmd == nil || cmd.Status != lethe.SystemDispatched || cmd.Held {
		return OpenCommand{}
	}
	c := w.wireCommand(cmd)
	return OpenCommand{Command: &c}
}

func (w *erasure) planTargets(ctx workflow.Context, types []string) ([]activities.Target, error) {
	var a *activities.Activities
	var res activities.PlanResult
	in := activities.PlanInput{RequestID: w.in.RequestID, Types: types, Subject: w.subject, Learned: w.learned,
		At: workflow.Now(ctx).UTC()}
	if err := w.execute(ctx, a.Plan, in, &res); err != nil {
		return nil, err
	}
	w.learned = nil
	targets := slices.Clone(res.Targets)
	slices.SortFunc(targets, func(x, y activities.Target) int { return cmp.Compare(x.System, y.System) })
	return targets, nil
}

func planDetail(targets []activities.Target, types []string) string {
	return fmt.Sprintf("%d systems match identifier types %s", len(targets), strings.Join(types, ", "))
}

// undeliverable takes back commands that Sync could not publish because of
// their topic: each system shows pending with the reason instead of
// dispatched, its dispatch is audited as escalated rather than done, the
// first failure escalates (not_dispatched), and the command is published
// again after a delay that doubles up to an hour. The other systems are not
// held up.
func (w *erasure) undeliverable(ctx workflow.Context, us []activities.Undelivered) {
	now := workflow.Now(ctx).UTC()
	var first []string
	for _, u := range us {
		cmd := w.byID[u.CommandID]
		if cmd == nil || cmd.Status != lethe.SystemDispatched {
			continue
		}
		w.out.events = slices.DeleteFunc(w.out.events, func(ev lethe.AuditEvent) bool {
			return (ev.Kind == lethe.AuditDispatched || ev.Kind == lethe.AuditRedispatched) &&
				ev.System == cmd.System && ev.Attempt == cmd.Attempt
		})
		cmd.Undelivered++
		cmd.Status = lethe.SystemPending
		cmd.Detail = "not dispatched: " + u.Reason
		cmd.ChangedAt = now
		cmd.Due = now.Add(undeliveredDelay(w.policy.RetryDelay, cmd.Undelivered))
		w.touch(cmd.System)
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditEscalated, System: cmd.System, Attempt: cmd.Attempt,
			Detail: cmd.Detail})
		if cmd.Undelivered == 1 && !slices.Contains(first, cmd.System) {
			first = append(first, cmd.System)
		}
	}
	workflow.GetLogger(ctx).Warn("commands not dispatched; trying again later", "request_id", w.in.RequestID,
		"commands", len(us), "reason", us[0].Reason)
	if len(first) > 0 {
		slices.Sort(first)
		w.escalate(ctx, lethe.Escalation{RequestID: w.in.RequestID, Kind: lethe.EscalationNotDispatched,
			Point: "dispatch:" + strings.Join(first, ","), At: now, Deadline: w.deadline, Target: w.target, Open: first})
	}
}

// undeliveredDelay is the wait before publishing the n-th time a command
// whose topic failed: the retry delay, doubled each time, at most an hour.
func undeliveredDelay(retry time.Duration, n int) time.Duration {
	d := retry
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}

// deliver publishes again a command whose topic failed before, under the
// same command_id and attempt: the system never received it.
func (w *erasure) deliver(now time.Time, cmd *CommandState) {
	w.publishAt(now, cmd)
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditDispatched, System: cmd.System, Attempt: cmd.Attempt,
		Detail: fmt.Sprintf("dispatched after %d failed tries to publish", cmd.Undelivered)})
}

// publishAt publishes a command that was held back (undelivered, or
// waiting for other systems) at its current attempt, as dispatched now.
func (w *erasure) publishAt(now time.Time, cmd *CommandState) {
	cmd.Status = lethe.SystemDispatched
	cmd.Detail = ""
	cmd.IssuedAt = now
	cmd.ConfirmBy = now.Add(cmd.ConfirmWithin)
	cmd.Due = cmd.ConfirmBy
	cmd.ChangedAt = now
	w.publish(cmd)
}
