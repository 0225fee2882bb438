package registry

import (
	"time"

	"github.com/lethe-dev/lethe"
)

// NewBatch is what CreateBatch records for a new bulk erasure: its chunks,
// its distinct subjects as keyed digests, and the batch's own fields.
type NewBatch struct {
	ID                             string
	Chunks                         []BatchChunkRef
	Subjects                       []NewBatchSubject
	Duplicates                     int
	SubjectTypes                   []string
	Reason, RequestedBy, CreatedBy string
	DryRun                         bool
	IdempotencyKey                 string
	RequestHash                    string
	CreatedAt, Deadline            time.Time
	WorkflowID                     string
}

// BatchChunkRef names one chunk of a batch: its number and its uuid.
type BatchChunkRef struct {
	Chunk int
	ID    string
}

// NewBatchSubject is one distinct subject of a new batch.
type NewBatchSubject struct {
	Item    int
	ItemID  string
	Chunk   int
	Digests []lethe.SubjectDigest
}

// BatchFilter selects a page of ListBatches.
type BatchFilter struct {
	Status lethe.RequestStatus
	Limit  int
	Cursor string
}

// BatchSubjectFilter selects a page of ListBatchSubjects.
type BatchSubjectFilter struct {
	BatchID string
	Status  lethe.RequestStatus
	Limit   int
	Cursor  string
}
