package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"
)

// features are the behaviours a run's revision turns on, resolved once from
// ErasureInput.Revision so that the code asks what to do rather than which
// revision it runs. A new revision adds a field here and a line to
// featuresOf.
type features struct {
	// settledSearch defers the first search-attribute upsert until the
	// request has settled (RevisionSettledSearch).
	settledSearch bool
	// overdueAfterHold marks a request overdue when a hold ends after a
	// deadline that passed quietly (RevisionOverdueAfterHold).
	overdueAfterHold bool
	// settledLedger writes a young request's steps to the ledger only once
	// it has settled (RevisionSettledLedger).
	settledLedger bool
	// regularRetries retries a failing activity as a regular activity
	// after a few fast local attempts (RevisionRegularRetries).
	regularRetries bool
	// partialDispatch lets a system whose topic fails go undelivered
	// without holding up the others (RevisionRegularRetries).
	partialDispatch bool
	// drainAll applies every queued signal before continuing as new,
	// awaitEscalations waits for the escalations in flight before a run
	// ends, failedLedger writes a stopped run's failure to the ledger, and
	// receiveAsync keeps an undecodable signal from stalling the listener
	// (all RevisionNothingDropped).
	drainAll         bool
	awaitEscalations bool
	failedLedger     bool
	receiveAsync     bool
	// stableNames derives command_ids and ledger batch names from the
	// request rather than the run, and carries a final command's
	// identifiers as places in the subject (RevisionStableNames).
	stableNames bool
	// wakeCarriedHolds takes the next run's first step at once when the
	// run before it ended with holds changed (RevisionWakeCarriedHolds).
	wakeCarriedHolds bool
	// retry takes SignalRetry and ErasureInput.Retry (RevisionRetry).
	retry bool
	// ordered holds a system's commands until the systems it is erased
	// after are final (RevisionOrdered).
	ordered bool
}

// featuresOf resolves a revision into the behaviours it turns on: each
// revision keeps those of the revisions before it.
func featuresOf(revision int) features {
	return features{
		settledSearch:    revision >= RevisionSettledSearch,
		overdueAfterHold: revision >= RevisionOverdueAfterHold,
		settledLedger:    revision >= RevisionSettledLedger,
		regularRetries:   revision >= RevisionRegularRetries,
		partialDispatch:  revision >= RevisionRegularRetries,
		drainAll:         revision >= RevisionNothingDropped,
		awaitEscalations: revision >= RevisionNothingDropped,
		failedLedger:     revision >= RevisionNothingDropped,
		receiveAsync:     revision >= RevisionNothingDropped,
		stableNames:      revision >= RevisionStableNames,
		wakeCarriedHolds: revision >= RevisionWakeCarriedHolds,
		retry:            revision >= RevisionRetry,
		ordered:          revision >= RevisionOrdered,
	}
}

// refuseUnknownRevision fails the workflow task of a request started at a
// revision later than this worker's: running it with this worker's code
// would take paths the revision changed, and write a history that the
// workers that know it could not replay. The panic fails the task, not the
// workflow (the worker's WorkflowPanicPolicy is BlockWorkflow), so Temporal
// retries it until a worker that knows the revision takes it. It happens
// when the API rolls out before the workers; docs/operating.md gives the
// order.
func refuseUnknownRevision(ctx workflow.Context, in ErasureInput) {
	if in.Revision <= CurrentRevision {
		return
	}
	workflow.GetLogger(ctx).Error("erasure workflow of a revision this worker does not know: the task is retried "+
		"until an upgraded worker takes it; upgrade the workers before the API",
		"request_id", in.RequestID, "revision", in.Revision, "worker_revision", CurrentRevision)
	panic(fmt.Sprintf("erasure workflow revision %d is newer than this worker's revision %d: upgrade the worker",
		in.Revision, CurrentRevision))
}
