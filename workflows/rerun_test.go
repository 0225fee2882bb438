package workflows

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

// A workflow task run again after its worker died must publish the same
// command_ids and name its ledger writes the same way, since its commands and
// ledger writes may already have happened. internal/faults kills real
// workers to check the whole; these tests pin the workflow's part.

func TestSeededCommandIDs(t *testing.T) {
	a := seededCommandIDs("seed-1", "run-1", 0, 3)
	if again := seededCommandIDs("seed-1", "run-1", 0, 3); !slices.Equal(a, again) {
		t.Fatalf("the same seed, run and numbers gave %v then %v", a, again)
	}
	if tail := seededCommandIDs("seed-1", "run-1", 1, 2); !slices.Equal(a[1:], tail) {
		t.Errorf("ids numbered from 1 = %v, want %v", tail, a[1:])
	}
	seen := map[string]bool{}
	for _, ids := range [][]string{a, seededCommandIDs("seed-2", "run-1", 0, 3), seededCommandIDs("seed-1", "run-2", 0, 3)} {
		for _, id := range ids {
			if !wire.ValidID(id) || id[14] != '4' {
				t.Errorf("command id %q is not a lower-case version 4 UUID", id)
			}
			if seen[id] {
				t.Errorf("command id %q derived twice from different seeds, runs or numbers", id)
			}
			seen[id] = true
		}
	}
}

func TestSeedDerivesCommandIDsAndSyncsAreNamed(t *testing.T) {
	w := newWorld(t, target("crm", 72*time.Hour, "email"), target("orders", 72*time.Hour, "user_id"))
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("crm", wire.OutcomeErased, 1), w.answer("orders", wire.OutcomeErased, 2)}
	})
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.CommandSeed = "a secret seed"
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if st, _ := w.finalStatus(); st != lethe.RequestCompleted {
		t.Fatalf("status %s, want completed", st)
	}
	// The test environment's run id, read off the first ledger batch.
	run, _, _ := strings.Cut(w.syncCalls()[0].Ledger.Batch, "/")
	if run == "" {
		t.Fatalf("the first sync's ledger batch is unnamed")
	}
	want := seededCommandIDs(in.CommandSeed, run, 0, 2)
	got := []string{w.latest("crm").CommandID, w.latest("orders").CommandID}
	if !slices.Equal(got, want) {
		t.Errorf("command ids %v, want %v derived from the seed", got, want)
	}
	names := map[string]bool{}
	for i, s := range w.syncCalls() {
		b := s.Ledger.Batch
		switch {
		case s.Ledger.Empty():
		case !strings.HasPrefix(b, run+"/"):
			t.Errorf("sync %d: ledger batch %q, want a name within run %s", i, b, run)
		case names[b]:
			t.Errorf("sync %d: ledger batch %q used twice", i, b)
		}
		names[b] = true
	}
	if len(names) < 2 {
		t.Errorf("%d named ledger batches, want one per ledger write", len(names))
	}
}
