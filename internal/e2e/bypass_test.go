package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// TestPlaintextStartIsRefused: with payload encryption on, someone who can
// reach Temporal but not the API starts an erasure workflow of their own,
// with a well-formed plaintext input. The worker fails it for its
// unencrypted input before it plans anything: no ledger row, no command,
// the connector never called. A request through the API still runs.
func TestPlaintextStartIsRefused(t *testing.T) {
	keys := newKeyring(t)
	s := newStack(t, stackOptions{Codec: keys})
	s.putSystem(lethe.System{Name: "orders", Identifiers: []string{"user_id"}})
	var calls atomic.Int32
	s.runConnector("orders", connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		calls.Add(1)
		return connectors.Result{Outcome: wire.OutcomeErased}, nil
	}))

	now := time.Now().UTC()
	in := workflows.ErasureInput{
		RequestID: "forged-1",
		Subject:   []wire.Identifier{{Type: "user_id", Value: "u-forged"}},
		CreatedAt: now, Deadline: now.Add(30 * 24 * time.Hour),
		CommandSeed: "0123456789abcdef0123456789abcdef",
		Revision:    workflows.CurrentRevision,
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	run, err := s.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.ErasureWorkflowID(in.RequestID), TaskQueue: workflows.TaskQueue,
	}, workflows.ErasureWorkflowName, in)
	if err != nil {
		t.Fatalf("start the workflow around the API: %v", err)
	}
	// The failure's message is encrypted; its type is not.
	if err := run.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "PlaintextError") {
		t.Fatalf("the plaintext workflow ended with %v, want it failed with a PlaintextError", err)
	}
	for _, ev := range history(t, s, run.GetID()) {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, enumspb.EVENT_TYPE_MARKER_RECORDED:
			t.Errorf("the refused workflow ran an activity (%s)", ev.GetEventType())
		}
	}
	if res := s.do(http.MethodGet, "/v1/erasures/"+in.RequestID, nil); res.Status != http.StatusNotFound {
		t.Errorf("GET the forged request = %d %s, want 404: it must leave no ledger row", res.Status, res.Body)
	}

	e := s.submit(map[string]string{"user_id": "u-1"})
	if done := s.await(e.ID, time.Minute); done.Status != lethe.RequestCompleted {
		t.Fatalf("a request through the API ended %s: %s", done.Status, describe(done))
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the connector was called %d times, want once: for the request through the API only", n)
	}
}
