package workflows

import (
	"testing"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
)

func TestChunkSync(t *testing.T) {
	cmds := make([]activities.Outbound, 1001)
	delta := lethe.LedgerDelta{Status: lethe.RequestRunning, Events: make([]lethe.AuditEvent, 1200),
		Systems: make([]lethe.SystemProgress, 10)}
	for i := range delta.Events {
		delta.Events[i].Attempt = i
	}
	calls := chunkSync(testRequestID, cmds, delta)
	if len(calls) != 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	var events []lethe.AuditEvent
	for i, c := range calls {
		if len(c.Commands) > syncChunk || len(c.Ledger.Events) > syncChunk {
			t.Errorf("call %d too large: %d commands, %d events", i, len(c.Commands), len(c.Ledger.Events))
		}
		if (c.Ledger.Status != "") != (i == len(calls)-1) {
			t.Errorf("call %d status %q, want the status on the last call only", i, c.Ledger.Status)
		}
		events = append(events, c.Ledger.Events...)
	}
	for i, e := range events {
		if e.Attempt != i {
			t.Fatalf("event %d out of order", i)
		}
	}
	if got := chunkSync(testRequestID, nil, lethe.LedgerDelta{}); len(got) != 0 {
		t.Errorf("nothing to write gave %d calls, want 0", len(got))
	}
}
