package workflows

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
)

// syncChunk bounds how many commands, system rows and audit events one Sync
// carries, so a large fan-out stays far below Temporal's payload limits.
const syncChunk = 500

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
	for _, name := range workflow.DeterministicKeys(w.out.changed) {
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
		// when this task is run again is recognised by the ledger; see
		// batchName for the names under RevisionStableNames.
		w.syncs++
		switch {
		case in.Ledger.Empty():
		case w.features.stableNames:
			in.Ledger.Batch = batchName(w.syncs, in.Ledger)
		default:
			in.Ledger.Batch = fmt.Sprintf("%s/%d", run, w.syncs)
		}
		in.Partial = w.features.partialDispatch && len(in.Commands) > 0
		var a *activities.Activities
		var res activities.SyncResult
		if err := w.execute(ctx, a.Sync, in, &res); err != nil {
			if hold {
				w.out.commands = nil
			} else {
				w.out = remainder(calls[i:])
			}
			return err
		}
		if len(res.Undelivered) > 0 {
			// This call's ledger part was not written, and would claim
			// dispatches that did not happen: it is corrected, and written
			// with what is left, by flushing again.
			var later []activities.Outbound
			for _, c := range calls[i+1:] {
				later = append(later, c.Commands...)
			}
			if !hold {
				w.out = remainder(calls[i:])
			}
			w.out.commands = later
			w.undeliverable(ctx, res.Undelivered)
			return w.flush(ctx, settle)
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

// batchName names the n-th Sync of a request (the ledger keeps names per
// request) by its number and a digest of what it writes, leaving out when
// (the events' times and the completion time, which are the workflow
// task's, and differ when the task runs again). A Sync written again with
// the same changes is recognised and applied once: its activity retried,
// its workflow task run again after its worker died, or run again after a
// reset to before it. A reset can also make the request write other
// changes at the same number, such as confirmations that arrived after the
// reset point, batched otherwise: the digest keeps the ledger from taking
// them for the ones written before, and swallowing them. So may a task run
// again that took in a signal its first attempt had not seen: the ledger
// then takes from its events only those the first attempt, under the same
// number, did not write (registry's ApplyLedger). The delta holds no
// identifier value, and the digest is
// cut to 16 bytes: a name, not a secret.
func batchName(n int, d lethe.LedgerDelta) string {
	d.Batch, d.CompletedAt = "", nil
	d.Events = slices.Clone(d.Events)
	for i := range d.Events {
		d.Events[i].At = time.Time{}
	}
	b, err := json.Marshal(d)
	if err != nil {
		// A LedgerDelta always encodes; were it not to, the number alone
		// still names the batch within the request.
		return strconv.Itoa(n)
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d/%x", n, sum[:16])
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
