package activities

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// outcomeLedger reports the outcomes it is given for each delta, as
// registry.Store does for the systems a delta finished.
type outcomeLedger struct {
	fakeLedger
	outcomes []registry.Outcome
}

func (l *outcomeLedger) ApplyLedgerOutcomes(ctx context.Context, requestID string, d lethe.LedgerDelta) ([]registry.Outcome, error) {
	if err := l.ApplyLedger(ctx, requestID, d); err != nil {
		return nil, err
	}
	return l.outcomes, nil
}

type finished struct {
	system    string
	status    lethe.SystemStatus
	confirmed bool
	took      time.Duration
}

type outcomeRecorder struct{ got []finished }

func (r *outcomeRecorder) CommandFinished(system string, status lethe.SystemStatus, confirmed bool, took time.Duration) {
	r.got = append(r.got, finished{system, status, confirmed, took})
}

// Sync counts the outcomes the ledger reports for the delta it wrote, with
// the time from first dispatch to confirmation, and none for a system that
// failed without a confirmation.
func TestSyncCountsOutcomesTheLedgerWrote(t *testing.T) {
	j := &journal{}
	dispatched := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	confirmed := dispatched.Add(90 * time.Second)
	ledger := &outcomeLedger{fakeLedger: fakeLedger{j: j}, outcomes: []registry.Outcome{
		{System: "billing", Status: lethe.SystemErased, Dispatched: dispatched, ConfirmedAt: &confirmed},
		{System: "crm", Status: lethe.SystemFailed, Dispatched: dispatched},
	}}
	rec := &outcomeRecorder{}
	env := newEnv()
	a := &Activities{Publisher: &fakePublisher{j: j}, Ledger: ledger, Outcomes: rec}
	env.RegisterActivity(a)
	in := SyncInput{RequestID: testRequestID, Ledger: lethe.LedgerDelta{Batch: "r/1",
		Systems: []lethe.SystemProgress{{Name: "billing", Status: lethe.SystemErased, ConfirmedAt: &confirmed},
			{Name: "crm", Status: lethe.SystemFailed}}}}
	if _, err := env.ExecuteActivity(a.Sync, in); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	want := []finished{
		{"billing", lethe.SystemErased, true, 90 * time.Second},
		{"crm", lethe.SystemFailed, false, 0},
	}
	if !slices.Equal(rec.got, want) {
		t.Errorf("counted %+v, want %+v", rec.got, want)
	}
	if len(ledger.deltas) != 1 {
		t.Errorf("the ledger was written %d times, want once", len(ledger.deltas))
	}
}
