// Package workflows holds Lethe's Temporal workflow code: deterministic, no
// I/O, no clocks, no randomness outside the SDK's. Everything that touches the
// outside world happens in package activities.
package workflows

import (
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
	// SignalExtend carries an ExtendSignal: the deadline moved.
	SignalExtend = "extend"
	// SignalHolds tells the workflow that a legal hold keeping some of its
	// systems was lifted, so it checks its holds again now rather than at
	// the next periodic check.
	SignalHolds = "holds"
	// SignalRetry carries a RetrySignal: an operator asked that the
	// request's failed systems be tried again (RevisionRetry).
	SignalRetry = "retry"
	// QueryCarry answers the ErasureInput that would carry the request on
	// from where it stands. The API and the worker's reconciler read it from
	// a closed workflow, whose history Temporal still keeps, to start the
	// request again in a new run; it holds identifier values, and so never
	// leaves Lethe's processes.
	QueryCarry = "carry"
	// QueryCommand answers an OpenCommand: the open single command with
	// the command_id given, identifiers included, of a request's or a
	// chunk's workflow. The API asks it when a pull-mode connector leases
	// the command, so that identifier values stay in Temporal and never
	// in PostgreSQL. Like every query it writes nothing to the history.
	QueryCommand = "command"
)

// OpenCommand is the answer to QueryCommand: the command, or nil when the
// workflow has no such command waiting for a confirmation (confirmed,
// failed, held, never issued, or its workflow ended).
type OpenCommand struct {
	Command *wire.Command `json:"command,omitempty"`
}

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

// Search attributes the workflow keeps current so the Temporal UI's list
// shows each request's progress at a glance. They never carry identifier values.
var (
	SearchStatus   = temporal.NewSearchAttributeKeyKeyword("LetheStatus")
	SearchPending  = temporal.NewSearchAttributeKeyInt64("LethePending")
	SearchSystems  = temporal.NewSearchAttributeKeyInt64("LetheSystems")
	SearchDeadline = temporal.NewSearchAttributeKeyTime("LetheDeadline")
	SearchOverdue  = temporal.NewSearchAttributeKeyBool("LetheOverdue")
)

// SearchAttributeTypes lists the custom search attributes to register in a
// namespace before any workflow upserts them.
var SearchAttributeTypes = map[string]enums.IndexedValueType{
	SearchStatus.GetName():   enums.INDEXED_VALUE_TYPE_KEYWORD,
	SearchPending.GetName():  enums.INDEXED_VALUE_TYPE_INT,
	SearchSystems.GetName():  enums.INDEXED_VALUE_TYPE_INT,
	SearchDeadline.GetName(): enums.INDEXED_VALUE_TYPE_DATETIME,
	SearchOverdue.GetName():  enums.INDEXED_VALUE_TYPE_BOOL,
}
