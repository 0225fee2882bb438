package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/registry"
)

// batchWorld is a batch workflow test's ledger and chunks: the chunk
// workflows are mocked, and the test reports for them by signal.
type batchWorld struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment

	mu       sync.Mutex
	begun    int
	deltas   []registry.BatchDelta
	children []ChunkInput
	retried  []string
}

func newBatchWorld(t *testing.T) *batchWorld {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	w := &batchWorld{t: t}
	w.env = suite.NewTestWorkflowEnvironment()
	w.env.SetTestTimeout(60 * time.Second)
	w.env.SetStartTime(testStart)
	w.env.RegisterWorkflowWithOptions(BatchWorkflow, workflow.RegisterOptions{Name: BatchWorkflowName})
	w.env.RegisterActivity(&activities.Activities{})
	var a *activities.Activities
	w.env.OnActivity(a.BeginBatch, mock.Anything, mock.Anything).Return(func(context.Context, activities.BeginBatchInput) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.begun++
		return nil
	})
	w.env.OnActivity(a.WriteBatchLedger, mock.Anything, mock.Anything).Return(func(_ context.Context, d registry.BatchDelta) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.deltas = append(w.deltas, d)
		return nil
	})
	w.env.RegisterWorkflowWithOptions(
		// A chunk runs until it is told to retry, is canceled, or three
		// hours have passed.
		func(ctx workflow.Context, in ChunkInput) (ChunkCounts, error) {
			w.mu.Lock()
			w.children = append(w.children, in)
			w.mu.Unlock()
			retries := workflow.GetSignalChannel(ctx, SignalRetry)
			ok, err := workflow.AwaitWithTimeout(ctx, 3*time.Hour, func() bool { return retries.Len() > 0 })
			w.mu.Lock()
			defer w.mu.Unlock()
			if !ok && err == nil {
				return ChunkCounts{}, nil
			}
			if err != nil {
				return ChunkCounts{}, ctx.Err()
			}
			w.retried = append(w.retried, ErasureWorkflowID(in.ChunkID))
			return ChunkCounts{}, nil
		}, workflow.RegisterOptions{Name: ChunkWorkflowName})
	w.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: BatchWorkflowID(testBatchID)})
	return w
}

func batchInput(chunks int) BatchInput {
	return BatchInput{BatchID: testBatchID, Chunks: chunks, Total: chunks * 2, CreatedAt: testStart,
		Deadline: testStart.Add(30 * 24 * time.Hour), CommandSeed: "seed"}
}

func testChunk(n int) BatchChunk {
	return BatchChunk{Chunk: n, ChunkID: fmt.Sprintf("c4c40000-0000-4000-8000-%012d", n),
		Subjects: chunkSubjects[:2]}
}

func (w *batchWorld) statuses() []lethe.RequestStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []lethe.RequestStatus
	for _, d := range w.deltas {
		if d.Status != "" {
			out = append(out, d.Status)
		}
	}
	return out
}

// TestBatchRunsItsChunksAndPassesRetries starts a chunk workflow per chunk
// signaled (once, whatever the repeats), writes the batch failed when a
// chunk reports a failure, passes a retry order to that chunk only, and
// completes once it reports again.
func TestBatchRunsItsChunksAndPassesRetries(t *testing.T) {
	w := newBatchWorld(t)
	w.env.RegisterDelayedCallback(func() {
		w.env.SignalWorkflow(SignalBatchChunk, testChunk(0))
		w.env.SignalWorkflow(SignalBatchChunk, testChunk(1))
		w.env.SignalWorkflow(SignalBatchChunk, testChunk(1))
	}, time.Second)
	w.env.RegisterDelayedCallback(func() {
		w.env.SignalWorkflow(SignalChunkDone, ChunkDone{Chunk: 0, Counts: ChunkCounts{Completed: 2}})
		w.env.SignalWorkflow(SignalChunkDone, ChunkDone{Chunk: 1, Counts: ChunkCounts{Completed: 1, Failed: 1}})
	}, time.Minute)
	w.env.RegisterDelayedCallback(func() {
		w.env.SignalWorkflow(SignalRetry, RetrySignal{Actor: "token:ops"})
	}, time.Hour)
	w.env.RegisterDelayedCallback(func() {
		w.env.SignalWorkflow(SignalChunkDone, ChunkDone{Chunk: 1, Round: 1, Counts: ChunkCounts{Completed: 2}})
	}, 2*time.Hour)
	w.env.ExecuteWorkflow(BatchWorkflow, batchInput(2))
	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res BatchResult
	if err := w.env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Status != string(lethe.RequestCompleted) || res.Counts != (ChunkCounts{Completed: 4}) {
		t.Errorf("result = %+v, want completed with 4", res)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.begun != 1 || len(w.children) != 2 || w.children[1].ParentID != BatchWorkflowID(testBatchID) {
		t.Errorf("begun %d, children %+v: want one begin and two chunks that know their parent", w.begun, w.children)
	}
	if !slices.Equal(w.retried, []string{ErasureWorkflowID(testChunk(1).ChunkID)}) {
		t.Errorf("retry passed to %v, want chunk 1 only", w.retried)
	}
	var got []lethe.RequestStatus
	for _, d := range w.deltas {
		got = append(got, d.Status)
	}
	if !slices.Equal(got, []lethe.RequestStatus{lethe.RequestFailed, lethe.RequestCompleted}) {
		t.Errorf("statuses written = %v, want failed then completed", got)
	}
}

// TestBatchContinuesAsNewAfterItsChunks keeps its history bounded: a run
// that started chunksPerRun chunks hands over, carrying which it started.
func TestBatchContinuesAsNewAfterItsChunks(t *testing.T) {
	defer func(n int) { chunksPerRun = n }(chunksPerRun)
	chunksPerRun = 2
	w := newBatchWorld(t)
	w.env.RegisterDelayedCallback(func() {
		for n := range 3 {
			w.env.SignalWorkflow(SignalBatchChunk, testChunk(n))
		}
	}, time.Second)
	w.env.ExecuteWorkflow(BatchWorkflow, batchInput(4))
	err := w.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	var next BatchInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.State == nil || len(next.State.Started) != 3 {
		t.Fatalf("carried state = %+v, want the three chunks started", next.State)
	}
}

// TestBatchCanceled waits for the reports of the chunks still running and
// writes the batch canceled with them. (That it cancels those chunks, the
// test environment does not show faithfully: internal/e2e covers it.)
func TestBatchCanceled(t *testing.T) {
	w := newBatchWorld(t)
	w.env.RegisterDelayedCallback(func() {
		w.env.SignalWorkflow(SignalBatchChunk, testChunk(0))
		w.env.SignalWorkflow(SignalBatchChunk, testChunk(1))
	}, time.Second)
	w.env.RegisterDelayedCallback(func() {
		w.env.SignalWorkflow(SignalChunkDone, ChunkDone{Chunk: 0, Counts: ChunkCounts{Completed: 2}})
	}, time.Minute)
	w.env.RegisterDelayedCallback(w.env.CancelWorkflow, time.Hour)
	w.env.RegisterDelayedCallback(func() {
		w.env.SignalWorkflow(SignalChunkDone, ChunkDone{Chunk: 1, Counts: ChunkCounts{Completed: 1, Canceled: 1}})
	}, time.Hour+time.Minute)
	w.env.ExecuteWorkflow(BatchWorkflow, batchInput(2))
	if err := w.env.GetWorkflowError(); err == nil {
		t.Fatal("the batch ended without an error, want canceled")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	last := w.deltas[len(w.deltas)-1]
	if last.Status != lethe.RequestCanceled || last.Events[0].Detail != "3 completed, 0 failed, 1 canceled" {
		t.Errorf("last delta = %+v, want canceled with chunk 1's report", last)
	}
}
