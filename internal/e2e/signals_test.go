package e2e_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// TestUndecodableSignalDropped: with payload encryption on, someone who
// can reach Temporal but not the relay signals a running request a
// plaintext confirmation. The worker cannot decode it and drops it; the
// request must go on taking the signals after it, here the extension the
// API sends, which the workflow writes to its LetheDeadline column.
func TestUndecodableSignalDropped(t *testing.T) {
	keys := newKeyring(t)
	s := newStack(t, stackOptions{Codec: keys, Policy: workflows.Policy{Settle: -1}})
	gate := make(chan struct{})
	s.recordSystem("archive", []string{"email"})
	s.runConnector("archive", gated(gate))
	e := s.submit(map[string]string{"email": "signals@example.test"})
	workflowID := workflows.ErasureWorkflowID(e.ID)
	waitForEvent(t, s, workflowID, "the command's Sync", func(n int) bool { return n >= 1 })

	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	forged := workflows.ConfirmSignal{Confirmations: []wire.Confirmation{{Schema: wire.SchemaConfirmation,
		RequestID: e.ID, System: "archive", Outcome: wire.OutcomeErased, ConfirmedAt: time.Now().UTC()}}}
	if err := s.Temporal.SignalWorkflow(ctx, workflowID, "", workflows.SignalConfirm, forged); err != nil {
		t.Fatalf("plaintext signal: %v", err)
	}
	r := s.do(http.MethodPost, "/v1/erasures/"+e.ID+"/extend", map[string]string{"by": "720h", "reason": "records in archives"})
	var extended lethe.Erasure
	r.Decode(t, &extended)
	if r.Status != http.StatusOK {
		t.Fatalf("extend = %d %s", r.Status, r.Body)
	}
	waitForEvent(t, s, workflowID, "the extension in LetheDeadline", func(int) bool {
		return upsertedDeadline(t, s, workflowID).Equal(extended.Deadline)
	})
	close(gate)
	if done := s.await(e.ID, time.Minute); done.Status != lethe.RequestCompleted {
		t.Fatalf("request ended %s, want completed: %s", done.Status, describe(done))
	}
}

// waitForEvent polls the workflow's history until ok accepts it; n is the
// number of local activity markers so far.
func waitForEvent(t *testing.T, s *stack, workflowID, what string, ok func(n int) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		n := 0
		for _, ev := range history(t, s, workflowID) {
			if ev.GetEventType() == enumspb.EVENT_TYPE_MARKER_RECORDED {
				n++
			}
		}
		if ok(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workflow %s never showed %s", workflowID, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// upsertedDeadline is the last LetheDeadline the workflow upserted; zero
// if it never did. Search attributes are not encrypted.
func upsertedDeadline(t *testing.T, s *stack, workflowID string) time.Time {
	t.Helper()
	var at time.Time
	for _, ev := range history(t, s, workflowID) {
		p := ev.GetUpsertWorkflowSearchAttributesEventAttributes().GetSearchAttributes().GetIndexedFields()[workflows.SearchDeadline.GetName()]
		if p == nil {
			continue
		}
		var v time.Time
		if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err != nil {
			t.Fatalf("decode %s: %v", workflows.SearchDeadline.GetName(), err)
		}
		at = v
	}
	return at
}
