package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

type searchValues struct {
	status   string
	pending  int64
	systems  int64
	deadline time.Time
	overdue  bool
}

// upsertSearch keeps the UI's list columns current, writing only on change.
// Under RevisionSettledSearch a young request's first write waits until it
// has settled (Policy.Settle): most requests end before that, and their closing
// task writes the columns once, in the record Temporal keeps of the closed
// workflow, rather than in an extra visibility update.
func (w *erasure) upsertSearch(ctx workflow.Context) {
	v := searchValues{status: string(w.status), systems: int64(len(w.bySystem)), deadline: w.deadline,
		overdue: w.overdue}
	for _, name := range workflow.DeterministicKeys(w.bySystem) {
		if w.progress(name).Status == lethe.SystemDispatched {
			v.pending++
		}
	}
	if w.searchKnown && v == w.search {
		return
	}
	w.searchDeferred = !w.searchKnown && w.features.settledSearch && w.settling(ctx)
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
	for _, name := range workflow.DeterministicKeys(w.bySystem) {
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
	waiting := false
	for _, cmd := range w.bySystem[system] {
		if cmd.Superseded {
			continue
		}
		seen[cmd.Status] = true
		waiting = waiting || cmd.Waiting
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
	if waiting {
		// Under RevisionOrdered: what it still waits for matters more
		// than what earlier commands of it reached.
		return p
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

func summary(systems []lethe.SystemProgress) string {
	counts := map[lethe.SystemStatus]int{}
	for _, p := range systems {
		counts[p.Status]++
	}
	parts := []string{fmt.Sprintf("%d systems", len(systems))}
	for _, s := range workflow.DeterministicKeys(counts) {
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
