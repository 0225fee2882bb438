package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/registry"
)

// chunksPerRun is how many chunk workflows one run of a batch's workflow
// starts before it continues as new: each start puts the chunk's subjects
// in its history twice (the signal and the child's input), so a run stops
// well before its history grows large. Tests lower it.
var chunksPerRun = 8

// cancelGrace bounds how long a canceled batch waits for its chunks to
// report that they stopped.
const cancelGrace = 5 * time.Minute

// BatchWorkflow runs a bulk erasure: it starts one BatchChunkWorkflow per
// chunk of subjects the API signals, collects the chunks' reports, and
// writes the batch's status to the ledger once every chunk is done. A batch
// with failed subjects stays open until its deadline for retry orders,
// which it passes to its chunks. Canceled, it cancels its chunks and waits
// for them to stop.
func BatchWorkflow(ctx workflow.Context, in BatchInput) (BatchResult, error) {
	if in.BatchID == "" || in.Chunks <= 0 {
		return BatchResult{}, temporal.NewNonRetryableApplicationError(
			"batch input has no batch_id or chunks", "InvalidInput", nil)
	}
	b := &batch{in: in, started: map[int]string{}, done: map[int]ChunkDone{}}
	if st := in.State; st != nil {
		for _, s := range st.Started {
			b.started[s.Chunk] = s.ChunkID
		}
		for _, d := range st.Done {
			b.done[d.Chunk] = d
		}
		b.orders = slices.Clone(st.Retries)
		b.written, b.overdue = st.Written, st.Overdue
	} else {
		err := runBatchActivity(ctx, in.Policy, (*activities.Activities).BeginBatch, activities.BeginBatchInput{
			BatchID: in.BatchID, Total: in.Total, Chunks: in.Chunks, At: workflow.Now(ctx).UTC()}, nil)
		if err != nil {
			return BatchResult{}, err
		}
		upsertStatus(ctx, lethe.RequestRunning)
	}
	b.chunks = workflow.GetSignalChannel(ctx, SignalBatchChunk)
	b.reports = workflow.GetSignalChannel(ctx, SignalChunkDone)
	b.retries = workflow.GetSignalChannel(ctx, SignalRetry)
	res, err := b.run(ctx)
	if err != nil && (temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled)) {
		return b.cancel(ctx)
	}
	return res, err
}

// batch is the state of one run of a batch's workflow.
type batch struct {
	in      BatchInput
	started map[int]string
	done    map[int]ChunkDone
	orders  []RetrySignal
	written bool
	overdue bool
	// startedNow counts the chunks this run started.
	startedNow int

	chunks  workflow.ReceiveChannel
	reports workflow.ReceiveChannel
	retries workflow.ReceiveChannel
}

func (b *batch) queued() bool {
	return b.chunks.Len() > 0 || b.reports.Len() > 0 || b.retries.Len() > 0
}

func (b *batch) run(ctx workflow.Context) (BatchResult, error) {
	for {
		if err := b.take(ctx); err != nil {
			return BatchResult{}, err
		}
		if err := b.passRetries(ctx); err != nil {
			return BatchResult{}, err
		}
		now := workflow.Now(ctx).UTC()
		if len(b.started) == b.in.Chunks && len(b.done) == b.in.Chunks {
			res := b.result()
			if !b.written {
				if err := b.write(ctx, res, now); err != nil {
					return BatchResult{}, err
				}
			}
			if res.Counts.Failed == 0 || !now.Before(b.in.Deadline) {
				return res, nil
			}
		} else if !b.overdue && !now.Before(b.in.Deadline) {
			b.overdue = true
			if err := runBatchActivity(ctx, b.in.Policy, (*activities.Activities).WriteBatchLedger, registry.BatchDelta{
				BatchID: b.in.BatchID, Name: "overdue", Overdue: true,
				Events: []lethe.AuditEvent{{Kind: lethe.AuditOverdue, At: now,
					Detail: fmt.Sprintf("%d of %d chunks open at the deadline", b.in.Chunks-len(b.done), b.in.Chunks)}},
			}, nil); err != nil {
				return BatchResult{}, err
			}
		}
		if b.startedNow >= chunksPerRun && !b.queued() {
			return BatchResult{}, workflow.NewContinueAsNewError(ctx, BatchWorkflowName, b.carry())
		}
		opts := workflow.AwaitOptions{TimerOptions: workflow.TimerOptions{Summary: "chunks, reports, retries or deadline"}}
		if d := b.in.Deadline.Sub(workflow.Now(ctx)); d > 0 {
			opts.Timeout = d
			if _, err := workflow.AwaitWithOptions(ctx, opts, b.queued); err != nil {
				return BatchResult{}, err
			}
		} else if err := workflow.Await(ctx, b.queued); err != nil {
			return BatchResult{}, err
		}
	}
}

// take starts a chunk workflow for every chunk signaled and not yet
// started, and keeps each chunk's latest report.
func (b *batch) take(ctx workflow.Context) error {
	for {
		var c BatchChunk
		if !b.chunks.ReceiveAsync(&c) {
			break
		}
		if _, dup := b.started[c.Chunk]; dup || c.Chunk < 0 || c.Chunk >= b.in.Chunks {
			continue
		}
		if err := b.startChunk(ctx, c); err != nil {
			return err
		}
	}
	for {
		var d ChunkDone
		if !b.reports.ReceiveAsync(&d) {
			break
		}
		if prev, ok := b.done[d.Chunk]; !ok || d.Round >= prev.Round {
			b.done[d.Chunk] = d
			b.written = false
		}
	}
	for {
		var o RetrySignal
		if !b.retries.ReceiveAsync(&o) {
			break
		}
		b.orders = append(b.orders, o)
	}
	return nil
}

// startChunk starts the chunk's workflow and waits until Temporal has
// started it. The chunk outlives this run (the batch's workflow continues
// as new) and reports by signal.
func (b *batch) startChunk(ctx workflow.Context, c BatchChunk) error {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        ErasureWorkflowID(c.ChunkID),
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})
	f := workflow.ExecuteChildWorkflow(cctx, ChunkWorkflowName, ChunkInput{
		BatchID: b.in.BatchID, ParentID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		Chunk: c.Chunk, ChunkID: c.ChunkID, Subjects: c.Subjects, DryRun: b.in.DryRun,
		CreatedAt: b.in.CreatedAt, Deadline: b.in.Deadline, Policy: b.in.Policy, CommandSeed: b.in.CommandSeed,
	})
	err := f.GetChildWorkflowExecution().Get(ctx, nil)
	if err != nil && !temporal.IsWorkflowExecutionAlreadyStartedError(err) {
		return err
	}
	b.started[c.Chunk] = c.ChunkID
	b.startedNow++
	return nil
}

// passRetries passes the retry orders to every chunk that may hold failed
// subjects: those not done, and those done with failures, whose reports
// are then awaited again.
func (b *batch) passRetries(ctx workflow.Context) error {
	if len(b.orders) == 0 {
		return nil
	}
	orders := b.orders
	b.orders = nil
	for _, chunk := range sortedInts(b.started) {
		d, reported := b.done[chunk]
		if reported && d.Counts.Failed == 0 {
			continue
		}
		for _, o := range orders {
			err := workflow.SignalExternalWorkflow(ctx, ErasureWorkflowID(b.started[chunk]), "", SignalRetry, o).Get(ctx, nil)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				workflow.GetLogger(ctx).Warn("a chunk did not take a retry order", "batch_id", b.in.BatchID,
					"chunk", chunk, "error", err)
				continue
			}
			if reported {
				delete(b.done, chunk)
				b.written = false
			}
		}
	}
	return nil
}

// result sums the chunks' latest reports.
func (b *batch) result() BatchResult {
	var n ChunkCounts
	for _, d := range b.done {
		n.Completed += d.Counts.Completed
		n.Failed += d.Counts.Failed
		n.Canceled += d.Counts.Canceled
	}
	return BatchResult{Status: string(n.status()), Counts: n}
}

// status is what counts of final subjects make of a chunk or a batch:
// canceled if any subject was, else failed if any failed, else completed.
func (n ChunkCounts) status() lethe.RequestStatus {
	switch {
	case n.Canceled > 0:
		return lethe.RequestCanceled
	case n.Failed > 0:
		return lethe.RequestFailed
	}
	return lethe.RequestCompleted
}

// write records the batch's final status for the latest reports.
func (b *batch) write(ctx workflow.Context, res BatchResult, now time.Time) error {
	kind := lethe.AuditCompleted
	switch lethe.RequestStatus(res.Status) {
	case lethe.RequestFailed:
		kind = lethe.AuditFailed
	case lethe.RequestCanceled:
		kind = lethe.AuditCanceled
	}
	reports := 0
	for _, d := range b.done {
		reports += d.Round + 1
	}
	err := runBatchActivity(ctx, b.in.Policy, (*activities.Activities).WriteBatchLedger, registry.BatchDelta{
		BatchID:     b.in.BatchID,
		Name:        fmt.Sprintf("end.%d", reports),
		Status:      lethe.RequestStatus(res.Status),
		CompletedAt: &now,
		Events: []lethe.AuditEvent{{Kind: kind, At: now, Detail: fmt.Sprintf("%d completed, %d failed, %d canceled",
			res.Counts.Completed, res.Counts.Failed, res.Counts.Canceled)}},
	}, nil)
	if err != nil {
		return err
	}
	b.written = true
	upsertStatus(ctx, lethe.RequestStatus(res.Status))
	return nil
}

// upsertStatus shows a batch's or a chunk's status in the Temporal UI's
// list (LetheStatus), as a request's workflow does; a failure to write it
// changes nothing else.
func upsertStatus(ctx workflow.Context, status lethe.RequestStatus) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, SearchStatus.ValueSet(string(status))); err != nil {
		workflow.GetLogger(ctx).Warn("search attribute not written", "error", err)
	}
}

// cancel asks every chunk still running to stop, waits a while for their
// reports, and writes the batch canceled.
func (b *batch) cancel(ctx workflow.Context) (BatchResult, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	waiting := 0
	for _, chunk := range sortedInts(b.started) {
		if d, ok := b.done[chunk]; ok && d.Counts.Failed == 0 {
			continue
		}
		delete(b.done, chunk)
		waiting++
		err := workflow.RequestCancelExternalWorkflow(dctx, ErasureWorkflowID(b.started[chunk]), "").Get(dctx, nil)
		if err != nil {
			workflow.GetLogger(dctx).Warn("a chunk could not be canceled", "batch_id", b.in.BatchID,
				"chunk", chunk, "error", err)
		}
	}
	if waiting > 0 {
		allIn := func() bool {
			if b.reports.Len() > 0 {
				var d ChunkDone
				for b.reports.ReceiveAsync(&d) {
					b.done[d.Chunk] = d
				}
			}
			return len(b.done) == len(b.started)
		}
		_, _ = workflow.AwaitWithTimeout(dctx, cancelGrace, allIn)
	}
	res := b.result()
	res.Status = string(lethe.RequestCanceled)
	res.Counts.Canceled += b.in.Total - res.Counts.Completed - res.Counts.Failed - res.Counts.Canceled
	now := workflow.Now(dctx).UTC()
	err := runBatchActivity(dctx, b.in.Policy, (*activities.Activities).WriteBatchLedger, registry.BatchDelta{
		BatchID: b.in.BatchID, Name: "cancel", Status: lethe.RequestCanceled, CompletedAt: &now,
		Events: []lethe.AuditEvent{{Kind: lethe.AuditCanceled, At: now, Detail: fmt.Sprintf(
			"%d completed, %d failed, %d canceled", res.Counts.Completed, res.Counts.Failed, res.Counts.Canceled)}},
	}, nil)
	if err != nil {
		return res, err
	}
	return res, temporal.NewCanceledError()
}

// carry is the input of the next run.
func (b *batch) carry() BatchInput {
	in := b.in
	st := &BatchState{Retries: b.orders, Written: b.written, Overdue: b.overdue}
	for _, chunk := range sortedInts(b.started) {
		st.Started = append(st.Started, StartedChunk{Chunk: chunk, ChunkID: b.started[chunk]})
	}
	for _, chunk := range sortedInts(b.done) {
		st.Done = append(st.Done, b.done[chunk])
	}
	in.State = st
	return in
}

// sortedInts lists a map's int keys in order.
func sortedInts[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
