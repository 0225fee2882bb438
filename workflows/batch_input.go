package workflows

import (
	"time"

	"github.com/lethe-dev/lethe/wire"
)

// Names of the bulk erasure's workflows and signals. A batch runs as one
// BatchWorkflow, which starts one BatchChunkWorkflow per chunk of at most
// ChunkSize subjects, so that no history grows with the batch.
const (
	// BatchWorkflowName and ChunkWorkflowName are the registered names of
	// BatchWorkflow and BatchChunkWorkflow.
	BatchWorkflowName = "BatchWorkflow"
	ChunkWorkflowName = "BatchChunkWorkflow"
	// SignalBatchChunk carries one chunk of a batch's subjects
	// (BatchChunk) from the API to the batch's workflow, which starts the
	// chunk's workflow with it. Subjects reach Temporal this way, a chunk
	// per signal, because a whole batch is larger than one payload may be.
	SignalBatchChunk = "batch_chunk"
	// SignalChunkDone carries a chunk's counts (ChunkDone) from its
	// workflow to the batch's, each time every subject of the chunk has
	// reached a final status.
	SignalChunkDone = "chunk_done"
	// SignalBatchConfirm carries batch confirmations (BatchConfirmSignal)
	// from the relay to the chunk workflow their batch_id names.
	SignalBatchConfirm = "batch_confirm"
)

// ChunkSize is how many subjects one chunk workflow carries: its history
// then holds at most this many subjects' commands and outcomes, and one
// batch command per batch-capable system holds them all
// (wire.MaxBatchItems).
const ChunkSize = 1000

// BatchWorkflowID is the workflow id of a batch. Its chunks' workflows are
// ErasureWorkflowID(chunk id), so that the relay routes their subjects'
// confirmations as it routes a request's.
func BatchWorkflowID(batchID string) string { return "erasure-batch-" + batchID }

// BatchInput starts a batch's workflow. It carries no subject: the API
// sends them after the start, a chunk per SignalBatchChunk.
type BatchInput struct {
	BatchID string `json:"batch_id"`
	// Chunks is how many chunks the API sends; the batch ends once each
	// has arrived and ended.
	Chunks    int       `json:"chunks"`
	Total     int       `json:"total"`
	DryRun    bool      `json:"dry_run"`
	CreatedAt time.Time `json:"created_at"`
	Deadline  time.Time `json:"deadline"`
	Policy    Policy    `json:"policy"`
	// CommandSeed derives the command_ids of every chunk, as
	// ErasureInput.CommandSeed does a request's.
	CommandSeed string `json:"command_seed"`
	// State is set when the workflow continues as new.
	State *BatchState `json:"state,omitempty"`
}

// BatchSubject is one subject of a batch as the workflows carry it: its
// position among the batch's distinct subjects, its item_id on the wire
// and its identifier values, which live only in Temporal.
type BatchSubject struct {
	Item        int               `json:"item"`
	ItemID      string            `json:"item_id"`
	Identifiers []wire.Identifier `json:"identifiers"`
}

// BatchChunk is the payload of SignalBatchChunk: one chunk's id (its
// workflow's, and its commands' request_id or batch_id) and subjects.
type BatchChunk struct {
	Chunk    int            `json:"chunk"`
	ChunkID  string         `json:"chunk_id"`
	Subjects []BatchSubject `json:"subjects"`
}

// ChunkInput starts a chunk's workflow.
type ChunkInput struct {
	BatchID string `json:"batch_id"`
	// ParentID is the batch's workflow id, which the chunk signals when it
	// is done.
	ParentID    string         `json:"parent_id"`
	Chunk       int            `json:"chunk"`
	ChunkID     string         `json:"chunk_id"`
	Subjects    []BatchSubject `json:"subjects"`
	DryRun      bool           `json:"dry_run"`
	CreatedAt   time.Time      `json:"created_at"`
	Deadline    time.Time      `json:"deadline"`
	Policy      Policy         `json:"policy"`
	CommandSeed string         `json:"command_seed"`
}

// ChunkCounts counts a chunk's subjects by final status.
type ChunkCounts struct {
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Canceled  int `json:"canceled"`
}

// ChunkDone is the payload of SignalChunkDone. A chunk retried after it was
// done reports again with a higher Round; the batch keeps the latest.
type ChunkDone struct {
	Chunk  int         `json:"chunk"`
	Round  int         `json:"round"`
	Counts ChunkCounts `json:"counts"`
}

// BatchConfirmSignal is the payload of SignalBatchConfirm: the batch
// confirmations the relay fetched for one chunk, in the order read.
type BatchConfirmSignal struct {
	Confirmations []wire.BatchConfirmation `json:"confirmations"`
}

// BatchState is what a batch's workflow carries into its next run when it
// continues as new: which chunks it started and how each last reported.
type BatchState struct {
	Started []StartedChunk `json:"started"`
	Done    []ChunkDone    `json:"done"`
	// Written is set once the batch's final status for the latest reports
	// is in the ledger.
	Written bool `json:"written,omitempty"`
	// Retries are retry orders received and not yet passed to the chunks.
	Retries []RetrySignal `json:"retries,omitempty"`
	Overdue bool          `json:"overdue,omitempty"`
}

// StartedChunk is a chunk whose workflow the batch's workflow started.
type StartedChunk struct {
	Chunk   int    `json:"chunk"`
	ChunkID string `json:"chunk_id"`
}

// BatchResult is what a batch's workflow returns.
type BatchResult struct {
	Status string      `json:"status"`
	Counts ChunkCounts `json:"counts"`
}
