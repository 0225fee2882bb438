package workflows

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
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

// Under RevisionStableNames the names are the request's: a reset, which
// replays the request under a new run id, and the next run after
// continue-as-new derive the same ids and go on counting where the last
// run stopped. internal/e2e's TestResetAfterDispatch resets a real request.
func TestStableNamesAcrossRuns(t *testing.T) {
	prev := continueAsNewAfter
	continueAsNewAfter = 50
	t.Cleanup(func() { continueAsNewAfter = prev })
	systems := []activities.Target{target("crm", day, "email"), target("orders", day, "email"), target("billing", day, "user_id")}
	w := newWorld(t, systems...)
	w.confirmAt(time.Minute, func() []wire.Confirmation { return []wire.Confirmation{w.answer("crm", wire.OutcomeErased, 1)} })
	w.continueAsNewAt(2*time.Minute, func() wire.Confirmation { return w.answer("crm", wire.OutcomeErased, 1) })
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	in.CommandSeed = "a secret seed"
	in.Policy.Settle = noSettling
	next, _ := continuedAs(t, w.run(in))
	want := seededCommandIDs(in.CommandSeed, testRequestID, 0, 2)
	if got := []string{w.latest("crm").CommandID, w.latest("orders").CommandID}; !slices.Equal(got, want) {
		t.Errorf("command ids %v, want %v derived from the seed and the request", got, want)
	}
	first := batchNumbers(t, w.syncCalls())
	if next.State.Drawn != 2 || next.State.Syncs != len(w.syncCalls()) {
		t.Errorf("carried drawn %d, syncs %d; want 2 and %d", next.State.Drawn, next.State.Syncs, len(w.syncCalls()))
	}

	w2 := newWorld(t, systems...)
	w2.env.SetStartTime(testStart.Add(2 * time.Minute))
	var orders CommandState
	for _, c := range next.State.Commands {
		if c.System == "orders" {
			orders = c
		}
	}
	w2.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w2.confirmCommand(orders, wire.OutcomeErased, id("user_id", "u-1"))}
	})
	w2.confirmAt(2*time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w2.answer("billing", wire.OutcomeErased, 1)}
	})
	if err := w2.run(next); err != nil {
		t.Fatalf("continued run: %v", err)
	}
	if got, want := w2.latest("billing").CommandID, seededCommandIDs(in.CommandSeed, testRequestID, 2, 1)[0]; got != want {
		t.Errorf("continued run's command id %s, want the request's third, %s", got, want)
	}
	second := batchNumbers(t, w2.syncCalls())
	if len(first) == 0 || len(second) == 0 || second[0] <= first[len(first)-1] {
		t.Errorf("ledger batches numbered %v then %v, want the next run to go on counting", first, second)
	}
	if st, _ := w2.finalStatus(); st != lethe.RequestCompleted {
		t.Errorf("continued run ended %s, want completed", st)
	}
}

// batchNumbers reads the numbers of the named ledger batches, which must
// be <number>/<digest of the delta>.
func batchNumbers(t *testing.T, syncs []activities.SyncInput) []int {
	t.Helper()
	var out []int
	for i, s := range syncs {
		if s.Ledger.Empty() {
			continue
		}
		num, _, _ := strings.Cut(s.Ledger.Batch, "/")
		n, err := strconv.Atoi(num)
		if err != nil || s.Ledger.Batch != batchName(n, s.Ledger) {
			t.Errorf("sync %d: ledger batch %q, want its number and the digest of its delta", i, s.Ledger.Batch)
			continue
		}
		out = append(out, n)
	}
	return out
}

func TestBatchNameRecognisesOnlyTheSameDelta(t *testing.T) {
	at := testStart
	dispatched := lethe.LedgerDelta{Events: []lethe.AuditEvent{{Kind: lethe.AuditDispatched, System: "crm", At: at}}}
	again := lethe.LedgerDelta{Events: []lethe.AuditEvent{{Kind: lethe.AuditDispatched, System: "crm", At: at}}, Batch: "old"}
	confirmed := lethe.LedgerDelta{Events: []lethe.AuditEvent{{Kind: lethe.AuditConfirmed, System: "crm", At: at}}}
	if a, b := batchName(3, dispatched), batchName(3, again); a != b {
		t.Errorf("the same delta written again is named %q then %q, want one name", a, b)
	}
	// A workflow task run again writes the same changes at its own time.
	later := lethe.LedgerDelta{Events: []lethe.AuditEvent{{Kind: lethe.AuditDispatched, System: "crm", At: at.Add(time.Minute)}}}
	if a, b := batchName(3, dispatched), batchName(3, later); a != b {
		t.Errorf("the same changes written again later are named %q then %q, want one name", a, b)
	}
	if dispatched.Events[0].At != at {
		t.Error("batchName changed the delta's events")
	}
	if a, b := batchName(3, dispatched), batchName(3, confirmed); a == b {
		t.Errorf("different deltas at the same number share the name %q: the ledger would swallow the second", a)
	}
	if a, b := batchName(3, dispatched), batchName(4, dispatched); a == b {
		t.Errorf("the same delta at two numbers shares the name %q", a)
	}
}
