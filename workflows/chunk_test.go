package workflows

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

const (
	testBatchID  = "b47c0000-0000-4000-8000-000000000001"
	testChunkID  = "c4c40000-0000-4000-8000-000000000001"
	testParentID = "erasure-batch-" + testBatchID
)

// chunkWorld is a chunk test's registry, Kafka, ledger and batch workflow:
// the mocked activities and the mocked signal to the parent record here.
type chunkWorld struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment

	mu      sync.Mutex
	targets []activities.Target
	// held are the holds the registry reports, whatever the wave.
	held    []activities.HeldTarget
	plans   []activities.PlanChunkInput
	syncs   []activities.SyncChunkInput
	reports []ChunkDone
}

func newChunkWorld(t *testing.T, targets ...activities.Target) *chunkWorld {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	w := &chunkWorld{t: t, targets: targets}
	w.env = suite.NewTestWorkflowEnvironment()
	w.env.SetTestTimeout(60 * time.Second)
	w.env.SetStartTime(testStart)
	Register(w.env, &activities.Activities{})
	var a *activities.Activities
	w.env.OnActivity(a.PlanChunk, mock.Anything, mock.Anything).Return(w.plan)
	w.env.OnActivity(a.SyncChunk, mock.Anything, mock.Anything).Return(w.sync)
	w.env.OnSignalExternalWorkflow(mock.Anything, testParentID, "", SignalChunkDone, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.reports = append(w.reports, arg.(ChunkDone))
			return nil
		})
	return w
}

func (w *chunkWorld) plan(_ context.Context, in activities.PlanChunkInput) (activities.PlanChunkResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.plans = append(w.plans, in)
	var res activities.PlanChunkResult
	for _, t := range w.targets {
		for _, s := range in.Subjects {
			if overlaps(t.Types, s.Types) {
				res.Targets = append(res.Targets, t)
				break
			}
		}
	}
	res.Held = slices.Clone(w.held)
	return res, nil
}

func (w *chunkWorld) sync(_ context.Context, in activities.SyncChunkInput) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.syncs = append(w.syncs, in)
	return nil
}

// batchCommands lists the batch commands published to a system, in order.
func (w *chunkWorld) batchCommands(system string) []wire.BatchCommand {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []wire.BatchCommand
	for _, s := range w.syncs {
		for _, o := range s.Commands {
			if o.Batch != nil && o.Batch.System == system {
				out = append(out, *o.Batch)
			}
		}
	}
	return out
}

// singleCommands lists the single commands published to a system.
func (w *chunkWorld) singleCommands(system string) []wire.Command {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []wire.Command
	for _, s := range w.syncs {
		for _, o := range s.Commands {
			if o.Single != nil && o.Single.System == system {
				out = append(out, *o.Single)
			}
		}
	}
	return out
}

// ledger replays every delta written into the final rows: outcome by item
// and system, status by item, and the events.
func (w *chunkWorld) ledger() (map[int]map[string]registry.OutcomeGroup, map[int]lethe.RequestStatus, []lethe.AuditEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	outcomes := map[int]map[string]registry.OutcomeGroup{}
	statuses := map[int]lethe.RequestStatus{}
	var events []lethe.AuditEvent
	names := map[string]bool{}
	for _, s := range w.syncs {
		d := s.Ledger
		if d.Name == "" {
			continue
		}
		if names[d.Name] {
			w.t.Errorf("ledger delta %s written twice", d.Name)
		}
		names[d.Name] = true
		for _, g := range d.Outcomes {
			for _, it := range g.Items {
				if outcomes[it] == nil {
					outcomes[it] = map[string]registry.OutcomeGroup{}
				}
				outcomes[it][g.System] = g
			}
		}
		for _, g := range d.Subjects {
			for _, it := range g.Items {
				statuses[it] = g.Status
			}
		}
		events = append(events, d.Events...)
	}
	return outcomes, statuses, events
}

func (w *chunkWorld) signalBatch(c wire.BatchCommand, outcomes ...wire.ItemOutcome) {
	w.env.SignalWorkflow(SignalBatchConfirm, BatchConfirmSignal{Confirmations: []wire.BatchConfirmation{{
		Schema: wire.SchemaBatchConfirmation, CommandID: c.CommandID, BatchID: c.BatchID, System: c.System,
		Items: outcomes, ConfirmedAt: w.env.Now()}}})
}

func (w *chunkWorld) signalSingle(c wire.Command, o wire.Outcome, detail string, retryable bool) {
	w.env.SignalWorkflow(SignalConfirm, ConfirmSignal{Confirmations: []wire.Confirmation{{
		Schema: wire.SchemaConfirmation, CommandID: c.CommandID, RequestID: c.RequestID, System: c.System,
		Outcome: o, Records: 1, Detail: detail, Retryable: retryable, ConfirmedAt: w.env.Now()}}})
}

func itemOf(c wire.BatchCommand, itemID string) (wire.BatchItem, bool) {
	for _, it := range c.Items {
		if it.ItemID == itemID {
			return it, true
		}
	}
	return wire.BatchItem{}, false
}

var chunkSubjects = []BatchSubject{
	{Item: 0, ItemID: "1fe00000-0000-4000-8000-000000000000", Identifiers: []wire.Identifier{
		{Type: "email", Value: "zero@canary.test"}, {Type: "user_id", Value: "canary-u0"}}},
	{Item: 1, ItemID: "1fe00000-0000-4000-8000-000000000001", Identifiers: []wire.Identifier{
		{Type: "email", Value: "one@canary.test"}, {Type: "user_id", Value: "canary-u1"}}},
	{Item: 2, ItemID: "1fe00000-0000-4000-8000-000000000002", Identifiers: []wire.Identifier{
		{Type: "email", Value: "two@canary.test"}, {Type: "user_id", Value: "canary-u2"}}},
}

func chunkInput() ChunkInput {
	return ChunkInput{BatchID: testBatchID, ParentID: testParentID, Chunk: 0, ChunkID: testChunkID,
		Subjects: chunkSubjects, CreatedAt: testStart, Deadline: testStart.Add(30 * 24 * time.Hour),
		Policy: Policy{MaxAttempts: 3, RetryDelay: 30 * time.Second}, CommandSeed: "seed"}
}

// TestChunkCarriesEverySubjectToItsEnd runs one chunk of three subjects
// over a batch-capable system, a per-subject one and one reached only
// through an identifier a system revealed, with a legal hold, a retryable
// failure, a silent item and a failure that a retry order mends.
func TestChunkCarriesEverySubjectToItsEnd(t *testing.T) {
	bulk := activities.Target{System: "bulk", Topic: wire.DefaultTopic("bulk"), Types: []string{"email"},
		ConfirmWithin: time.Hour, Batch: true}
	legacy := target("legacy", time.Hour, "user_id")
	accounts := activities.Target{System: "accounts", Topic: wire.DefaultTopic("accounts"),
		Types: []string{"account_id"}, ConfirmWithin: time.Hour, Batch: true}
	w := newChunkWorld(t, bulk, legacy, accounts)
	w.held = []activities.HeldTarget{{Local: 2, System: "legacy", Hold: lethe.Hold{ID: "case-7", Basis: "litigation"}}}
	s0, s1, s2 := chunkSubjects[0].ItemID, chunkSubjects[1].ItemID, chunkSubjects[2].ItemID

	w.env.RegisterDelayedCallback(func() {
		bc := w.batchCommands("bulk")[0]
		w.signalBatch(bc,
			wire.ItemOutcome{ItemID: s0, Outcome: wire.OutcomeErased, Records: 2,
				DerivedIdentifiers: []wire.Identifier{{Type: "account_id", Value: "canary-acct-0"}}},
			wire.ItemOutcome{ItemID: s1, Outcome: wire.OutcomeNotFound})
		for _, c := range w.singleCommands("legacy") {
			if c.Identifiers[0].Value == "canary-u0" {
				w.signalSingle(c, wire.OutcomeErased, "", false)
			} else {
				w.signalSingle(c, wire.OutcomeFailed, "busy", true)
			}
		}
	}, time.Minute)
	w.env.RegisterDelayedCallback(func() {
		w.signalBatch(w.batchCommands("accounts")[0], wire.ItemOutcome{ItemID: s0, Outcome: wire.OutcomeErased, Records: 1})
		cmds := w.singleCommands("legacy")
		w.signalSingle(cmds[len(cmds)-1], wire.OutcomeErased, "", false)
	}, 2*time.Minute)
	w.env.RegisterDelayedCallback(func() {
		cmds := w.batchCommands("bulk")
		w.signalBatch(cmds[len(cmds)-1], wire.ItemOutcome{ItemID: s2, Outcome: wire.OutcomeFailed, Detail: "locked"})
	}, time.Hour+time.Minute)
	w.env.RegisterDelayedCallback(func() {
		w.env.SignalWorkflow(SignalRetry, RetrySignal{Actor: "token:ops", Systems: []string{"bulk"}})
	}, 2*time.Hour)
	w.env.RegisterDelayedCallback(func() {
		cmds := w.batchCommands("bulk")
		w.signalBatch(cmds[len(cmds)-1], wire.ItemOutcome{ItemID: s2, Outcome: wire.OutcomeErased, Records: 1})
	}, 2*time.Hour+time.Minute)

	w.env.ExecuteWorkflow(BatchChunkWorkflow, chunkInput())
	if !w.env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	var counts ChunkCounts
	if err := w.env.GetWorkflowResult(&counts); err != nil {
		t.Fatal(err)
	}
	if counts != (ChunkCounts{Completed: 3}) {
		t.Errorf("counts = %+v, want 3 completed", counts)
	}

	// bulk: one command, sent three times under one id, carrying only the
	// email (minimisation), then only the item left each time.
	bulkCmds := w.batchCommands("bulk")
	if len(bulkCmds) != 3 {
		t.Fatalf("bulk got %d batch commands, want 3 (first, timeout, retry)", len(bulkCmds))
	}
	for i, c := range bulkCmds {
		if c.CommandID != bulkCmds[0].CommandID || c.Attempt != i+1 || c.BatchID != testChunkID {
			t.Errorf("bulk command %d: id %s attempt %d batch %s", i, c.CommandID, c.Attempt, c.BatchID)
		}
	}
	if len(bulkCmds[0].Items) != 3 {
		t.Errorf("first bulk command has %d items, want 3", len(bulkCmds[0].Items))
	}
	for _, it := range bulkCmds[0].Items {
		if len(it.Identifiers) != 1 || it.Identifiers[0].Type != "email" {
			t.Errorf("bulk item %s was sent %v, want its email only", it.ItemID, it.Identifiers)
		}
	}
	for _, c := range bulkCmds[1:] {
		if _, ok := itemOf(c, s2); !ok || len(c.Items) != 1 {
			t.Errorf("bulk attempt %d carries %d items, want only the one left", c.Attempt, len(c.Items))
		}
	}
	// legacy: one command per subject, none for the held subject; the
	// retryable failure went again under the same id.
	legacyCmds := w.singleCommands("legacy")
	if len(legacyCmds) != 3 {
		t.Fatalf("legacy got %d commands, want 3 (two subjects, one retry)", len(legacyCmds))
	}
	for _, c := range legacyCmds {
		if c.RequestID != testChunkID || c.Identifiers[0].Value == "canary-u2" {
			t.Errorf("legacy command %+v: wrong request id, or sent to the held subject", c)
		}
	}
	if legacyCmds[2].CommandID != legacyCmds[1].CommandID || legacyCmds[2].Attempt != 2 {
		t.Errorf("legacy retry = %s attempt %d, want %s attempt 2", legacyCmds[2].CommandID, legacyCmds[2].Attempt, legacyCmds[1].CommandID)
	}
	// accounts: reached only through the identifier bulk revealed.
	acct := w.batchCommands("accounts")
	if len(acct) != 1 || len(acct[0].Items) != 1 || acct[0].Items[0].ItemID != s0 ||
		acct[0].Items[0].Identifiers[0] != (wire.Identifier{Type: "account_id", Value: "canary-acct-0"}) {
		t.Errorf("accounts commands = %+v, want one for subject 0's account_id", acct)
	}

	outcomes, statuses, events := w.ledger()
	want := map[int]map[string]lethe.SystemStatus{
		0: {"bulk": lethe.SystemErased, "legacy": lethe.SystemErased, "accounts": lethe.SystemErased},
		1: {"bulk": lethe.SystemNotFound, "legacy": lethe.SystemErased},
		2: {"bulk": lethe.SystemErased, "legacy": lethe.SystemRetained},
	}
	for item, systems := range want {
		if statuses[item] != lethe.RequestCompleted {
			t.Errorf("subject %d is %s, want completed", item, statuses[item])
		}
		if len(outcomes[item]) != len(systems) {
			t.Errorf("subject %d has outcomes in %d systems, want %d", item, len(outcomes[item]), len(systems))
		}
		for name, st := range systems {
			if got := outcomes[item][name].Status; got != st {
				t.Errorf("subject %d in %s is %s, want %s", item, name, got, st)
			}
		}
	}
	if g := outcomes[2]["legacy"]; !strings.Contains(g.Detail, "case-7") {
		t.Errorf("held subject's detail = %q, want the hold named", g.Detail)
	}
	if g := outcomes[0]["bulk"]; g.Records != 2 || g.Attempts != 1 {
		t.Errorf("subject 0 in bulk: records %d attempts %d, want 2 and 1", g.Records, g.Attempts)
	}
	if g := outcomes[2]["bulk"]; g.Attempts != 3 {
		t.Errorf("subject 2 in bulk took %d attempts, want 3", g.Attempts)
	}
	var retried bool
	for _, e := range events {
		if e.Kind == lethe.AuditRedispatched && e.Actor == "token:ops" && e.System == "bulk" {
			retried = true
		}
	}
	if !retried {
		t.Errorf("no redispatched event by the retry's actor in %+v", events)
	}

	w.mu.Lock()
	reports := slices.Clone(w.reports)
	syncs := slices.Clone(w.syncs)
	w.mu.Unlock()
	if len(reports) != 2 || reports[0].Counts != (ChunkCounts{Completed: 2, Failed: 1}) ||
		reports[1].Round <= reports[0].Round || reports[1].Counts != (ChunkCounts{Completed: 3}) {
		t.Errorf("reports = %+v, want failed 1 then, after the retry, 3 completed", reports)
	}
	// No identifier value in what the ledger is given (digests are made
	// from Learned by the activity).
	for _, s := range syncs {
		b, _ := json.Marshal(s.Ledger)
		if strings.Contains(string(b), "canary") {
			t.Errorf("a ledger delta holds an identifier value: %s", b)
		}
	}
	var learned []activities.LearnedIdentifier
	for _, s := range syncs {
		learned = append(learned, s.Learned...)
	}
	if len(learned) != 1 || learned[0].Item != 0 {
		t.Errorf("learned = %+v, want subject 0's account_id once", learned)
	}
}

// TestChunkCanceled marks the open subjects canceled and reports.
func TestChunkCanceled(t *testing.T) {
	bulk := activities.Target{System: "bulk", Topic: wire.DefaultTopic("bulk"), Types: []string{"email"},
		ConfirmWithin: time.Hour, Batch: true}
	w := newChunkWorld(t, bulk)
	w.env.RegisterDelayedCallback(func() {
		w.signalBatch(w.batchCommands("bulk")[0], wire.ItemOutcome{ItemID: chunkSubjects[0].ItemID, Outcome: wire.OutcomeErased})
	}, time.Minute)
	w.env.RegisterDelayedCallback(w.env.CancelWorkflow, 2*time.Minute)
	w.env.ExecuteWorkflow(BatchChunkWorkflow, chunkInput())
	if err := w.env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("workflow error = %v, want canceled", err)
	}
	_, statuses, _ := w.ledger()
	if statuses[0] != lethe.RequestCompleted || statuses[1] != lethe.RequestCanceled || statuses[2] != lethe.RequestCanceled {
		t.Errorf("statuses = %v, want 0 completed, 1 and 2 canceled", statuses)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.reports) != 1 || w.reports[0].Counts != (ChunkCounts{Completed: 1, Canceled: 2}) {
		t.Errorf("reports = %+v, want one with 1 completed and 2 canceled", w.reports)
	}
}

// TestChunkOutOfAttempts fails the subjects a system never answers, after
// the policy's attempts, with the reason.
func TestChunkOutOfAttempts(t *testing.T) {
	w := newChunkWorld(t, activities.Target{System: "bulk", Topic: wire.DefaultTopic("bulk"),
		Types: []string{"email"}, ConfirmWithin: time.Hour, Batch: true})
	in := chunkInput()
	in.Deadline = testStart.Add(5 * time.Hour)
	w.env.ExecuteWorkflow(BatchChunkWorkflow, in)
	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if n := len(w.batchCommands("bulk")); n != 3 {
		t.Errorf("bulk got %d attempts, want the policy's 3", n)
	}
	outcomes, statuses, _ := w.ledger()
	for item := range 3 {
		if statuses[item] != lethe.RequestFailed || outcomes[item]["bulk"].Status != lethe.SystemFailed ||
			!strings.Contains(outcomes[item]["bulk"].Detail, "no confirmation after 3 attempts") {
			t.Errorf("subject %d: %s, %+v", item, statuses[item], outcomes[item]["bulk"])
		}
	}
}

// TestChunkRejectsWhatItDidNotIssue ignores a batch confirmation of an
// unknown command, one naming another system, a single confirmation
// posing as a batch command's, and items the command did not carry; it
// audits them and still completes on the genuine answer.
func TestChunkRejectsWhatItDidNotIssue(t *testing.T) {
	bulk := activities.Target{System: "bulk", Topic: wire.DefaultTopic("bulk"), Types: []string{"email"},
		ConfirmWithin: time.Hour, Batch: true}
	w := newChunkWorld(t, bulk)
	in := chunkInput()
	in.Subjects = chunkSubjects[:2]
	s0, s1 := chunkSubjects[0].ItemID, chunkSubjects[1].ItemID
	w.env.RegisterDelayedCallback(func() {
		real := w.batchCommands("bulk")[0]
		forged := real
		forged.CommandID = unknownCmdID
		w.signalBatch(forged, wire.ItemOutcome{ItemID: s0, Outcome: wire.OutcomeErased})
		other := real
		other.System = "crm"
		w.signalBatch(other, wire.ItemOutcome{ItemID: s0, Outcome: wire.OutcomeErased})
		w.signalSingle(wire.Command{CommandID: real.CommandID, RequestID: testChunkID, System: "bulk"}, wire.OutcomeErased, "", false)
		w.signalBatch(real, wire.ItemOutcome{ItemID: chunkSubjects[2].ItemID, Outcome: wire.OutcomeErased})
	}, time.Minute)
	w.env.RegisterDelayedCallback(func() {
		if _, statuses, _ := w.ledger(); statuses[0] != lethe.RequestRunning || statuses[1] != lethe.RequestRunning {
			t.Errorf("statuses after forged answers = %v, want both still running", statuses)
		}
		w.signalBatch(w.batchCommands("bulk")[0],
			wire.ItemOutcome{ItemID: s0, Outcome: wire.OutcomeErased}, wire.ItemOutcome{ItemID: s1, Outcome: wire.OutcomeNotFound})
	}, 2*time.Minute)
	w.env.ExecuteWorkflow(BatchChunkWorkflow, in)
	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	_, statuses, events := w.ledger()
	if statuses[0] != lethe.RequestCompleted || statuses[1] != lethe.RequestCompleted {
		t.Errorf("statuses = %v, want both completed on the genuine answer", statuses)
	}
	rejected := map[string]int{}
	for _, e := range events {
		var chunk, n int
		if e.Kind == lethe.AuditConfirmationRejected {
			if _, err := fmt.Sscanf(e.Detail, "chunk %d: %d confirmations", &chunk, &n); err != nil {
				t.Errorf("rejected event detail %q: %v", e.Detail, err)
			}
			rejected[e.System] += n
		}
	}
	if rejected["bulk"] != 2 || rejected["crm"] != 1 {
		t.Errorf("rejected = %v: want bulk's two forged confirmations and crm's one audited", rejected)
	}
}

// TestChunkAnswersOpenCommands checks QueryCommand on a chunk: a single
// command waiting for its answer is returned as it was sent, identifiers
// included; a batch command, a confirmed one and an unknown id are not.
func TestChunkAnswersOpenCommands(t *testing.T) {
	bulk := activities.Target{System: "bulk", Topic: wire.DefaultTopic("bulk"), Types: []string{"email"},
		ConfirmWithin: time.Hour, Batch: true}
	legacy := target("legacy", time.Hour, "user_id")
	w := newChunkWorld(t, bulk, legacy)
	in := chunkInput()
	in.Subjects = chunkSubjects[:1]
	query := func(id string) *wire.Command {
		t.Helper()
		v, err := w.env.QueryWorkflow(QueryCommand, id)
		if err != nil {
			t.Fatalf("query %s: %v", id, err)
		}
		var open OpenCommand
		if err := v.Get(&open); err != nil {
			t.Fatal(err)
		}
		return open.Command
	}
	w.env.RegisterDelayedCallback(func() {
		single := w.singleCommands("legacy")[0]
		got := query(single.CommandID)
		if got == nil || got.CommandID != single.CommandID || got.Attempt != single.Attempt ||
			len(got.Identifiers) != 1 || got.Identifiers[0] != single.Identifiers[0] {
			t.Errorf("open single command = %+v, want %+v", got, single)
		}
		if got := query(w.batchCommands("bulk")[0].CommandID); got != nil {
			t.Errorf("a batch command was answered: %+v", got)
		}
		if got := query(unknownCmdID); got != nil {
			t.Errorf("an unknown command was answered: %+v", got)
		}
		w.signalSingle(single, wire.OutcomeErased, "", false)
		w.signalBatch(w.batchCommands("bulk")[0], wire.ItemOutcome{ItemID: chunkSubjects[0].ItemID, Outcome: wire.OutcomeErased})
	}, time.Minute)
	w.env.RegisterDelayedCallback(func() {
		if got := query(w.singleCommands("legacy")[0].CommandID); got != nil {
			t.Errorf("a confirmed command is still answered: %+v", got)
		}
	}, 2*time.Minute)
	w.env.ExecuteWorkflow(BatchChunkWorkflow, in)
	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}
