package lethe

import "time"

// MaxBatchSubjects is the most subjects one bulk erasure takes
// (POST /v1/erasure-batches).
const MaxBatchSubjects = 100_000

// Batch is the public view of a bulk erasure: many subjects erased under
// one request, one workflow and one certificate. It holds counts, never
// identifier values.
type Batch struct {
	ID     string        `json:"id"`
	Status RequestStatus `json:"status"`
	// Overdue is set once the deadline passed with subjects still open.
	Overdue bool `json:"overdue"`
	// Total is the number of distinct subjects; Duplicates the entries of
	// the submission that named a subject already named and were merged
	// into it (a subject shares an identifier with another: same person).
	Total        int      `json:"total"`
	Duplicates   int      `json:"duplicates"`
	SubjectTypes []string `json:"subject_types"`
	Reason       string   `json:"reason"`
	RequestedBy  string   `json:"requested_by"`
	// CreatedBy is the authenticated principal that submitted the batch.
	CreatedBy string `json:"created_by"`
	DryRun    bool   `json:"dry_run"`
	// Counts are the subjects in each status.
	Counts BatchCounts `json:"counts"`
	// Systems are, per targeted system, its subjects in each status.
	Systems     []BatchSystemCounts `json:"systems"`
	CreatedAt   time.Time           `json:"created_at"`
	Deadline    time.Time           `json:"deadline"`
	CompletedAt *time.Time          `json:"completed_at"`
	WorkflowID  string              `json:"workflow_id"`
}

// BatchCounts counts a batch's subjects by status.
type BatchCounts struct {
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Canceled  int `json:"canceled"`
}

// Done is how many subjects reached a final status.
func (c BatchCounts) Done() int { return c.Completed + c.Failed + c.Canceled }

// BatchSystemCounts counts one system's subjects in a batch by status.
type BatchSystemCounts struct {
	Name       string `json:"name"`
	Pending    int    `json:"pending"`
	Dispatched int    `json:"dispatched"`
	Erased     int    `json:"erased"`
	NotFound   int    `json:"not_found"`
	Retained   int    `json:"retained"`
	Failed     int    `json:"failed"`
	Records    int64  `json:"records"`
}

// BatchSubject is one subject of a batch as the API lists it: its
// position, its identifiers as types and keyed digests, and each targeted
// system's progress.
type BatchSubject struct {
	// Item is the subject's position among the batch's distinct subjects,
	// from 0, in the order of the submission.
	Item        int              `json:"item"`
	Status      RequestStatus    `json:"status"`
	Identifiers []SubjectDigest  `json:"identifiers"`
	Systems     []SystemProgress `json:"systems"`
}
