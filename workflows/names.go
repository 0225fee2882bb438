// Package workflows holds Lethe's Temporal workflow code: deterministic, no
// I/O, no clocks, no randomness outside the SDK's. Everything that touches the
// outside world happens in package activities.
package workflows

import (
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe/wire"
)

// Names shared by the workflow, the worker that hosts it, the API that starts
// it and the relay that signals it. They are part of Lethe's history format:
// renaming one strands running workflows.
const (
	// TaskQueue is the queue the worker polls for erasure workflows and activities.
	TaskQueue = "lethe-erasure"
	// ErasureWorkflowName is the registered name of ErasureWorkflow.
	ErasureWorkflowName = "ErasureWorkflow"
	// SignalConfirm carries a ConfirmSignal: confirmations the relay read for one request.
	SignalConfirm = "confirm"
	// QueryStatus answers the live lethe.Erasure of a running request.
	QueryStatus = "status"
)

// ErasureWorkflowID is the workflow ID of a request. Every caller derives it
// here, so the API, the relay and the Temporal UI agree on it.
func ErasureWorkflowID(requestID string) string { return "erasure-" + requestID }

// RequestIDFromWorkflowID is the inverse of ErasureWorkflowID; ok is false for
// an ID that is not an erasure workflow's.
func RequestIDFromWorkflowID(workflowID string) (requestID string, ok bool) {
	const prefix = "erasure-"
	if len(workflowID) <= len(prefix) || workflowID[:len(prefix)] != prefix {
		return "", false
	}
	return workflowID[len(prefix):], true
}

// ErasureInput starts an erasure workflow. It carries the subject's identifier
// values because the commands need them; the ledger in PostgreSQL never does.
type ErasureInput struct {
	RequestID string            `json:"request_id"`
	Subject   []wire.Identifier `json:"subject"`
	DryRun    bool              `json:"dry_run"`
	CreatedAt time.Time         `json:"created_at"`
	Deadline  time.Time         `json:"deadline"`
	Policy    Policy            `json:"policy"`
	// State is set only when the workflow continues as new, carrying over
	// what the previous run had reached.
	State *State `json:"state,omitempty"`
}

// Policy bounds how hard a request tries. It travels in the input so that a
// change of worker configuration never alters a running workflow's decisions.
type Policy struct {
	// MaxAttempts is how many times one command is dispatched before its
	// system is marked failed. Zero means DefaultMaxAttempts.
	MaxAttempts int `json:"max_attempts"`
	// RetryDelay is how long to wait before re-dispatching after a failed,
	// retryable confirmation. Zero means DefaultRetryDelay.
	RetryDelay time.Duration `json:"retry_delay"`
}

// Defaults for Policy's zero fields.
const (
	DefaultMaxAttempts = 5
	DefaultRetryDelay  = 30 * time.Second
)

// ConfirmSignal is the payload of SignalConfirm. The relay coalesces every
// confirmation it fetched for one request into one signal.
type ConfirmSignal struct {
	Confirmations []wire.Confirmation `json:"confirmations"`
}

// Search attributes the workflow keeps current so the Temporal UI's list
// shows each request's progress at a glance. They never carry identifier values.
var (
	SearchStatus  = temporal.NewSearchAttributeKeyKeyword("LetheStatus")
	SearchPending = temporal.NewSearchAttributeKeyInt64("LethePending")
	SearchSystems = temporal.NewSearchAttributeKeyInt64("LetheSystems")
)

// SearchAttributeTypes lists the custom search attributes to register in a
// namespace before any workflow upserts them.
var SearchAttributeTypes = map[string]enums.IndexedValueType{
	SearchStatus.GetName():  enums.INDEXED_VALUE_TYPE_KEYWORD,
	SearchPending.GetName(): enums.INDEXED_VALUE_TYPE_INT,
	SearchSystems.GetName(): enums.INDEXED_VALUE_TYPE_INT,
}
