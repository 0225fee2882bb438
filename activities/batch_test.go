package activities

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// onceLedger is a batch ledger that writes each delta name once, as
// registry.Store does.
type onceLedger struct{ written map[string]bool }

func (l *onceLedger) BatchRecorded(context.Context, string) (bool, error) { return true, nil }

func (l *onceLedger) MatchBatch(context.Context, []string, []lethe.SubjectDigest, time.Time) ([]lethe.System, []registry.BatchHold, error) {
	return nil, nil, nil
}

func (l *onceLedger) ApplyBatchLedger(_ context.Context, d registry.BatchDelta) (bool, error) {
	if l.written[d.Name] {
		return false, nil
	}
	l.written[d.Name] = true
	return true, nil
}

// TestWriteBatchLedgerCountsOutcomesOnce counts each subject's final
// outcome as one command of its system, not those still in flight, and
// nothing for a delta written again.
func TestWriteBatchLedgerCountsOutcomesOnce(t *testing.T) {
	rec := &outcomeRecorder{}
	a := &Activities{Batches: &onceLedger{written: map[string]bool{}}, Outcomes: rec}
	d := registry.BatchDelta{BatchID: "b", Name: "c0.2", Outcomes: []registry.OutcomeGroup{
		{System: "crm", Status: lethe.SystemErased, Items: []int{0, 1, 2}},
		{System: "crm", Status: lethe.SystemFailed, Items: []int{3}},
		{System: "billing", Status: lethe.SystemDispatched, Items: []int{0, 1}},
	}}
	for range 2 {
		if err := a.WriteBatchLedger(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	want := []finished{
		{"crm", lethe.SystemErased, false, 0}, {"crm", lethe.SystemErased, false, 0}, {"crm", lethe.SystemErased, false, 0},
		{"crm", lethe.SystemFailed, false, 0},
	}
	if !slices.Equal(rec.got, want) {
		t.Errorf("counted %+v, want %+v", rec.got, want)
	}
}
