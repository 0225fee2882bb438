package activities

import (
	"context"

	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// PullQueue is the queue of the commands of pull-mode systems, which are
// never produced to Kafka: their connectors lease them over HTTP.
// registry.Store implements it.
type PullQueue interface {
	// PullModes names, of systems, those in pull mode.
	PullModes(ctx context.Context, systems []string) (map[string]bool, error)
	// EnqueuePull queues commands, by id, request, system, attempt and
	// times only: their identifiers stay in the workflow.
	EnqueuePull(ctx context.Context, cmds []registry.PullCommand) error
}

// divert queues, among cmds (the single commands of a step, in order),
// those bound for pull-mode systems, and reports which it queued so that
// they are not produced to Kafka. The queue holds no identifier value; the
// API reads each command's body from its workflow when it is leased. A
// queue write repeated by a retried activity changes nothing.
func (a *Activities) divert(ctx context.Context, cmds []*wire.Command) (map[int]bool, error) {
	if a.Pull == nil || len(cmds) == 0 {
		return nil, nil
	}
	systems := make([]string, 0, len(cmds))
	for _, c := range cmds {
		if c != nil {
			systems = append(systems, c.System)
		}
	}
	pull, err := a.Pull.PullModes(ctx, uniq(systems))
	if err != nil || len(pull) == 0 {
		return nil, err
	}
	queued := map[int]bool{}
	var rows []registry.PullCommand
	for i, c := range cmds {
		if c == nil || !pull[c.System] {
			continue
		}
		queued[i] = true
		rows = append(rows, registry.PullCommand{CommandID: c.CommandID, RequestID: c.RequestID, System: c.System,
			Attempt: c.Attempt, IssuedAt: c.IssuedAt, ConfirmBy: c.ConfirmBy})
	}
	if err := a.Pull.EnqueuePull(ctx, rows); err != nil {
		return nil, err
	}
	return queued, nil
}
