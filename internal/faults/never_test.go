package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// TestSystemNeverConfirms runs a request to two systems, one of which never
// answers, with the real activities on a real PostgreSQL ledger and a real
// broker, in Temporal's test environment so that time skips through every
// confirm_within (72 h) instead of waiting for it. The silent system gets the
// same command five times (attempts 1 to 5, one command_id), each after the
// last one's confirm_within, then is failed; the request ends failed, and
// the audit shows every attempt.
func TestSystemNeverConfirms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testBudget)
	defer cancel()
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	brokers, _ := testenv.Kafka(t, wire.DefaultTopic("silent"), wire.DefaultTopic("prompt"))
	for _, name := range []string{"silent", "prompt"} {
		if _, _, err := store.PutSystem(ctx, lethe.System{Name: name, Identifiers: subjectTypes}, registry.SystemWrite{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	dg, err := digest.New(bytes.Repeat([]byte{7}, digest.MinKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	subj := []wire.Identifier{{Type: "email", Value: "never-0@example.org"}, {Type: "user_id", Value: "u-never-0"}}
	var digests []lethe.SubjectDigest
	for _, id := range subj {
		digests = append(digests, lethe.SubjectDigest{Type: id.Type, Digest: dg.Sum(id.Type, id.Value)})
	}
	id := uuid.NewString()
	if _, _, err := store.CreateErasure(ctx, registry.NewErasure{ID: id, Subject: digests,
		WorkflowID: workflows.ErasureWorkflowID(id)}, nil); err != nil {
		t.Fatal(err)
	}

	writer := kafkax.NewWriter(brokers)
	defer writer.Close()
	pub := &recordingPublisher{Publisher: writer}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	workflows.Register(env, &activities.Activities{Registry: store, Ledger: store, Publisher: pub})
	start := env.Now().UTC()
	// The prompt system answers an hour in; the silent one never does.
	env.RegisterDelayedCallback(func() {
		cmds := pub.commands("prompt")
		if len(cmds) != 1 {
			t.Errorf("prompt got %d commands before its confirmation, want 1", len(cmds))
			return
		}
		env.SignalWorkflow(workflows.SignalConfirm, workflows.ConfirmSignal{Confirmations: []wire.Confirmation{{
			Schema: wire.SchemaConfirmation, CommandID: cmds[0].CommandID, RequestID: id, System: "prompt",
			Outcome: wire.OutcomeErased, Records: 2, ConfirmedAt: env.Now().UTC(),
		}}})
	}, time.Hour)
	env.ExecuteWorkflow(workflows.ErasureWorkflowName, workflows.ErasureInput{
		RequestID: id, Subject: subj, CreatedAt: start, Deadline: start.Add(lethe.DefaultDeadline),
		Policy: workflows.Policy{MaxAttempts: workflows.DefaultMaxAttempts},
	})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow completed %v with %v, want completed without error", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}

	// The fault: the silent system got its one command five times.
	silent := pub.commands("silent")
	if len(silent) != workflows.DefaultMaxAttempts {
		t.Fatalf("silent got %d commands, want %d", len(silent), workflows.DefaultMaxAttempts)
	}
	within := lethe.DefaultConfirmWithin
	for i, c := range silent {
		if c.Attempt != i+1 || c.CommandID != silent[0].CommandID {
			t.Errorf("command %d: attempt %d, command_id %s; want attempt %d, command_id %s", i, c.Attempt, c.CommandID, i+1, silent[0].CommandID)
		}
		if got, want := c.IssuedAt.Sub(silent[0].IssuedAt), time.Duration(i)*within; got != want {
			t.Errorf("attempt %d issued %s after the first, want %s", i+1, got, want)
		}
	}
	// They really reached the broker.
	var onTopic []int
	for _, c := range readCommands(t, ctx, brokers, wire.DefaultTopic("silent"), len(silent)) {
		onTopic = append(onTopic, c.Attempt)
	}
	slices.Sort(onTopic)
	if !slices.Equal(onTopic, []int{1, 2, 3, 4, 5}) {
		t.Errorf("attempts on the silent topic = %v, want 1 to 5", onTopic)
	}

	e, err := store.GetErasure(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != lethe.RequestFailed || e.CompletedAt == nil {
		t.Errorf("request status %s, want failed", e.Status)
	}
	want := map[string]lethe.SystemProgress{
		"silent": {Status: lethe.SystemFailed, Attempts: 5},
		"prompt": {Status: lethe.SystemErased, Attempts: 1, Records: 2},
	}
	for _, p := range e.Systems {
		w := want[p.Name]
		if p.Status != w.Status || p.Attempts != w.Attempts || p.Records != w.Records {
			t.Errorf("system %s: %s, %d attempts, %d records; want %s, %d, %d", p.Name, p.Status, p.Attempts, p.Records, w.Status, w.Attempts, w.Records)
		}
	}
	if len(e.Systems) != 2 {
		t.Errorf("%d systems in the ledger, want 2", len(e.Systems))
	}

	events, err := store.Audit(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var silentTrail []string
	var silentAt []time.Duration
	finals := 0
	for _, ev := range events {
		switch {
		case ev.System == "silent":
			silentTrail = append(silentTrail, string(ev.Kind)+"#"+strconv.Itoa(ev.Attempt))
			silentAt = append(silentAt, ev.At.Sub(silent[0].IssuedAt))
		case ev.System == "" && (ev.Kind == lethe.AuditCompleted || ev.Kind == lethe.AuditFailed || ev.Kind == lethe.AuditCanceled):
			finals++
			if ev.Kind != lethe.AuditFailed {
				t.Errorf("the request ended with a %s event, want failed", ev.Kind)
			}
		}
	}
	wantTrail := []string{"dispatched#1", "redispatched#2", "redispatched#3", "redispatched#4", "redispatched#5", "failed#5"}
	if !slices.Equal(silentTrail, wantTrail) {
		t.Errorf("silent's audit = %v, want %v\n%s", silentTrail, wantTrail, auditText(events))
	}
	// Each step comes one confirm_within after the last (PostgreSQL keeps
	// microseconds, hence the tolerance).
	for i, at := range silentAt {
		if want := time.Duration(i) * within; (at - want).Abs() > time.Millisecond {
			t.Errorf("silent's audit event %d at %s after the first dispatch, want %s", i, at, want)
		}
	}
	if finals != 1 {
		t.Errorf("%d final audit events, want exactly one failed\n%s", finals, auditText(events))
	}
}

// recordingPublisher publishes through Publisher and keeps a copy of every
// command, so the test knows what each system was sent and when.
type recordingPublisher struct {
	activities.Publisher

	mu   sync.Mutex
	sent []wire.Command
}

func (p *recordingPublisher) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if err := p.Publisher.WriteMessages(ctx, msgs...); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		var c wire.Command
		if err := json.Unmarshal(m.Value, &c); err == nil {
			p.sent = append(p.sent, c)
		}
	}
	return nil
}

// commands lists what system was sent, in order.
func (p *recordingPublisher) commands(system string) []wire.Command {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []wire.Command
	for _, c := range p.sent {
		if c.System == system {
			out = append(out, c)
		}
	}
	return out
}

// readCommands reads the first n commands of topic, under a consumer group
// of its own so that no connector misses them.
func readCommands(t *testing.T, ctx context.Context, brokers []string, topic string, n int) []wire.Command {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: "faults-reader-" + uuid.NewString(), Topic: topic,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var out []wire.Command
	for len(out) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		c, err := wire.DecodeCommand(m.Value)
		if err != nil {
			t.Fatalf("a command on %s does not decode: %v", topic, err)
		}
		out = append(out, c)
	}
	return out
}
