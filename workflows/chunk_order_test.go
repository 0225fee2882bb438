package workflows

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

// TestChunkOrderPerSubject: "second" is erased after "first", per
// subject. Each subject reaches second only once first confirmed it; the
// subject first failed waits there, stuck, the chunk reports it failed,
// and a retry of first lets it through.
func TestChunkOrderPerSubject(t *testing.T) {
	first := activities.Target{System: "first", Topic: wire.DefaultTopic("first"), Types: []string{"email"},
		ConfirmWithin: time.Hour, Batch: true}
	second := after(target("second", time.Hour, "email"), "first")
	w := newChunkWorld(t, second, first)
	s0, s1, s2 := chunkSubjects[0].ItemID, chunkSubjects[1].ItemID, chunkSubjects[2].ItemID

	w.env.RegisterDelayedCallback(func() {
		if n := len(w.singleCommands("second")); n != 0 {
			t.Errorf("second got %d commands before first confirmed anything", n)
		}
		w.signalBatch(w.batchCommands("first")[0],
			wire.ItemOutcome{ItemID: s0, Outcome: wire.OutcomeErased, Records: 1},
			wire.ItemOutcome{ItemID: s1, Outcome: wire.OutcomeFailed, Detail: "locked"},
			wire.ItemOutcome{ItemID: s2, Outcome: wire.OutcomeNotFound})
	}, time.Minute)
	w.env.RegisterDelayedCallback(func() {
		for _, c := range w.singleCommands("second") {
			w.signalSingle(c, wire.OutcomeErased, "", false)
		}
	}, 2*time.Minute)
	w.env.RegisterDelayedCallback(func() {
		w.env.SignalWorkflow(SignalRetry, RetrySignal{Actor: "token:ops", Systems: []string{"first"}})
	}, time.Hour)
	w.env.RegisterDelayedCallback(func() {
		cmds := w.batchCommands("first")
		w.signalBatch(cmds[len(cmds)-1], wire.ItemOutcome{ItemID: s1, Outcome: wire.OutcomeErased, Records: 1})
	}, time.Hour+time.Minute)
	w.env.RegisterDelayedCallback(func() {
		cmds := w.singleCommands("second")
		w.signalSingle(cmds[len(cmds)-1], wire.OutcomeErased, "", false)
	}, time.Hour+2*time.Minute)

	w.env.ExecuteWorkflow(BatchChunkWorkflow, chunkInput())
	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var counts ChunkCounts
	if err := w.env.GetWorkflowResult(&counts); err != nil {
		t.Fatal(err)
	}
	if counts != (ChunkCounts{Completed: 3}) {
		t.Errorf("counts = %+v, want 3 completed after the retry", counts)
	}
	cmds := w.singleCommands("second")
	if len(cmds) != 3 {
		t.Fatalf("second got %d commands, want one per subject", len(cmds))
	}
	got := map[string]time.Duration{}
	for _, c := range cmds {
		got[c.Identifiers[0].Value] = c.IssuedAt.Sub(testStart)
	}
	want := map[string]time.Duration{"zero@canary.test": time.Minute, "two@canary.test": time.Minute,
		"one@canary.test": time.Hour + time.Minute}
	for v, at := range want {
		if got[v] != at {
			t.Errorf("second was sent a subject at +%s, want +%s (after first confirmed it)", got[v], at)
		}
	}
	if len(w.reports) < 2 || w.reports[0].Counts != (ChunkCounts{Completed: 2, Failed: 1}) {
		t.Errorf("reports %+v, want the first with 2 completed and 1 failed (stuck behind first)", w.reports)
	}
	stuck := false
	for _, s := range w.syncs {
		for _, g := range s.Ledger.Outcomes {
			if g.System == "second" && slices.Contains(g.Items, 1) && g.Status == lethe.SystemPending &&
				strings.Contains(g.Detail, "held up until a retry: first failed") {
				stuck = true
			}
		}
	}
	if !stuck {
		t.Error("the ledger never showed subject 1 pending in second, held up until a retry of first")
	}
}

// TestChunkWithoutAfterDispatchesAtOnce keeps the path recorded histories
// took: no After, no wait.
func TestChunkWithoutAfterDispatchesAtOnce(t *testing.T) {
	w := newChunkWorld(t, target("a", time.Hour, "email"), target("b", time.Hour, "email"))
	w.env.RegisterDelayedCallback(func() {
		for _, s := range []string{"a", "b"} {
			for _, c := range w.singleCommands(s) {
				w.signalSingle(c, wire.OutcomeErased, "", false)
			}
		}
	}, time.Minute)
	w.env.ExecuteWorkflow(BatchChunkWorkflow, chunkInput())
	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b"} {
		for _, c := range w.singleCommands(s) {
			if !c.IssuedAt.Equal(testStart) {
				t.Errorf("%s sent at %s, want at once", s, c.IssuedAt)
			}
		}
	}
}
