package connectors_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// testTimeout bounds every test here; none should come near it.
const testTimeout = 90 * time.Second

const system = "orders"

var topic = wire.DefaultTopic(system)

// secret stands for an identifier value: it must never show up in a
// confirmation's detail or in a log line.
const secret = "ada@example.com"

func newCommand(requestID string) wire.Command {
	now := time.Now().UTC().Truncate(time.Second)
	return wire.Command{
		Schema:      wire.SchemaCommand,
		CommandID:   uuid.NewString(),
		RequestID:   requestID,
		System:      system,
		Attempt:     1,
		Identifiers: []wire.Identifier{{Type: "email", Value: secret}},
		IssuedAt:    now,
		ConfirmBy:   now.Add(72 * time.Hour),
	}
}

func produce(ctx context.Context, t *testing.T, brokers []string, msgs ...kafka.Message) {
	t.Helper()
	w := connectors.NewWriter(brokers)
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func commandMessage(t *testing.T, cmd wire.Command) kafka.Message {
	t.Helper()
	m, err := connectors.EncodeCommand(topic, cmd)
	if err != nil {
		t.Fatalf("encode command: %v", err)
	}
	return m
}

// consumer reads a topic from its start in a consumer group of its own.
type consumer struct {
	r *kafka.Reader
}

func newConsumer(t *testing.T, brokers []string, topic string) *consumer {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     brokers,
		GroupID:     "test-" + uuid.NewString(),
		Topic:       topic,
		StartOffset: kafka.FirstOffset,
		MaxWait:     100 * time.Millisecond,
	})
	t.Cleanup(func() { r.Close() })
	return &consumer{r: r}
}

// next returns the next message, failing the test if none comes before ctx ends.
func (c *consumer) next(ctx context.Context, t *testing.T) kafka.Message {
	t.Helper()
	m, err := c.r.FetchMessage(ctx)
	if err != nil {
		t.Fatalf("read %s: %v", c.r.Config().Topic, err)
	}
	return m
}

// confirmationsUntil reads confirmations until the one answering commandID
// and returns them all, that one last. Tests send commands of one request,
// which share a partition, so everything confirmed before commandID is in.
func (c *consumer) confirmationsUntil(ctx context.Context, t *testing.T, commandID string) []wire.Confirmation {
	t.Helper()
	var out []wire.Confirmation
	for {
		m := c.next(ctx, t)
		conf, err := wire.DecodeConfirmation(m.Value)
		if err != nil {
			t.Fatalf("decode confirmation: %v", err)
		}
		if h, _ := connectors.Header(m, wire.HeaderSchema); h != wire.SchemaConfirmation {
			t.Errorf("schema header = %q, want %q", h, wire.SchemaConfirmation)
		}
		if string(m.Key) != conf.RequestID {
			t.Errorf("key = %q, want the request id %q", m.Key, conf.RequestID)
		}
		out = append(out, conf)
		if conf.CommandID == commandID {
			return out
		}
	}
}

// recorder is a handler that counts its calls per command id.
type recorder struct {
	mu     sync.Mutex
	calls  map[string]int
	reqs   []connectors.Request
	result func(connectors.Request) (connectors.Result, error)
}

func newRecorder(result func(connectors.Request) (connectors.Result, error)) *recorder {
	if result == nil {
		result = func(req connectors.Request) (connectors.Result, error) {
			return connectors.Result{Outcome: wire.OutcomeErased, Records: int64(len(req.Values("email")))}, nil
		}
	}
	return &recorder{calls: make(map[string]int), result: result}
}

func (r *recorder) Erase(_ context.Context, req connectors.Request) (connectors.Result, error) {
	r.mu.Lock()
	r.calls[req.CommandID]++
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return r.result(req)
}

func (r *recorder) count(commandID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[commandID]
}

var _ connectors.Handler = (*recorder)(nil)

// syncBuffer collects log output from Run's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// start runs Run in the background and, when the test ends, stops it and
// checks it returned nil. The returned stop does the same earlier.
func start(t *testing.T, cfg connectors.Config, h connectors.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- connectors.Run(ctx, cfg, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v after cancel, want nil", err)
				}
			case <-time.After(testTimeout):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func config(brokers []string, log *syncBuffer) connectors.Config {
	cfg := connectors.Config{Brokers: brokers, System: system}
	if log != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// awaitCommitted waits until the group has committed, on every partition of
// topic, the end of what was produced there.
func awaitCommitted(ctx context.Context, t *testing.T, cluster *kfake.Cluster, group, topic string) {
	t.Helper()
	for {
		done := true
		info := cluster.GroupInfo(group)
		for _, p := range cluster.PartitionInfos(topic) {
			var committed int64
			if info != nil {
				committed = info.Commits[topic][p.Partition].Offset
			}
			if committed != p.HighWatermark {
				done = false
			}
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s did not commit all of %s: %v", group, topic, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestRunConfirmsAndCommits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(nil)
	start(t, config(brokers, nil), h)

	cmd := newCommand(uuid.NewString())
	produce(ctx, t, brokers, commandMessage(t, cmd))
	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, cmd.CommandID)

	if len(got) != 1 {
		t.Fatalf("got %d confirmations, want 1", len(got))
	}
	c := got[0]
	if c.RequestID != cmd.RequestID || c.System != system || c.Outcome != wire.OutcomeErased || c.Records != 1 || c.Retryable {
		t.Errorf("confirmation = %+v, want erased, 1 record, for the command's request and system", c)
	}
	if h.count(cmd.CommandID) != 1 {
		t.Errorf("handler called %d times, want 1", h.count(cmd.CommandID))
	}
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)
}

func TestRunAnswersDuplicateFromRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(nil)
	start(t, config(brokers, nil), h)
	confirmations := newConsumer(t, brokers, wire.ConfirmationsTopic)

	requestID := uuid.NewString()
	cmd := newCommand(requestID)
	// Once alone, once again later with a barrier after it, so the duplicate
	// is answered from the store and not from the same batch.
	produce(ctx, t, brokers, commandMessage(t, cmd))
	first := confirmations.confirmationsUntil(ctx, t, cmd.CommandID)
	barrier := newCommand(requestID)
	produce(ctx, t, brokers, commandMessage(t, cmd), commandMessage(t, barrier))
	rest := confirmations.confirmationsUntil(ctx, t, barrier.CommandID)

	if len(first) != 1 || len(rest) != 2 {
		t.Fatalf("got %d then %d confirmations, want 1 then 2", len(first), len(rest))
	}
	if !equalConfirmations(first[0], rest[0]) {
		t.Errorf("duplicate answered with %+v, want the recorded %+v", rest[0], first[0])
	}
	if n := h.count(cmd.CommandID); n != 1 {
		t.Errorf("handler called %d times for the duplicated command, want 1", n)
	}
}

func TestRunAnswersDuplicateInOneBatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(nil)
	cfg := config(brokers, nil)
	cfg.BatchWait = time.Second // the three commands land in one batch
	start(t, cfg, h)

	requestID := uuid.NewString()
	cmd, barrier := newCommand(requestID), newCommand(requestID)
	m := commandMessage(t, cmd)
	produce(ctx, t, brokers, m, m, commandMessage(t, barrier))
	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, barrier.CommandID)

	if len(got) != 3 {
		t.Fatalf("got %d confirmations, want 3", len(got))
	}
	if !equalConfirmations(got[0], got[1]) {
		t.Errorf("the two confirmations of one command differ: %+v and %+v", got[0], got[1])
	}
	if n := h.count(cmd.CommandID); n != 1 {
		t.Errorf("handler called %d times for the duplicated command, want 1", n)
	}
}

func equalConfirmations(a, b wire.Confirmation) bool {
	return a.CommandID == b.CommandID && a.RequestID == b.RequestID && a.System == b.System &&
		a.Outcome == b.Outcome && a.Records == b.Records && a.Detail == b.Detail &&
		a.Retryable == b.Retryable && a.ConfirmedAt.Equal(b.ConfirmedAt) &&
		fmt.Sprint(a.DerivedIdentifiers) == fmt.Sprint(b.DerivedIdentifiers)
}

func TestRunDeadLetters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(nil)
	start(t, config(brokers, nil), h)

	requestID := uuid.NewString()
	key := []byte(requestID)
	header := kafka.Header{Key: "trace", Value: []byte("t-1")}
	notJSON := kafka.Message{Topic: topic, Key: key, Value: []byte(`{"schema": nope`), Headers: []kafka.Header{header}}
	other := newCommand(requestID)
	other.System = "billing"
	wrongSystem := commandMessage(t, other)
	good := newCommand(requestID)
	produce(ctx, t, brokers, notJSON, wrongSystem, commandMessage(t, good))

	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, good.CommandID)
	if len(got) != 1 || got[0].Outcome != wire.OutcomeErased {
		t.Errorf("confirmations = %+v, want only the good command's, erased", got)
	}

	dlq := newConsumer(t, brokers, wire.DLQTopic(topic))
	tests := []struct {
		name       string
		original   kafka.Message
		wantReason string
	}{
		{"invalid JSON", notJSON, "not valid JSON"},
		{"wrong system", wrongSystem, `addressed to system "billing"`},
	}
	for _, tt := range tests {
		m := dlq.next(ctx, t)
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Equal(m.Key, tt.original.Key) || !bytes.Equal(m.Value, tt.original.Value) {
				t.Errorf("dead letter key/value = %q/%q, want the original %q/%q", m.Key, m.Value, tt.original.Key, tt.original.Value)
			}
			for _, h := range tt.original.Headers {
				if v, ok := connectors.Header(m, h.Key); !ok || v != string(h.Value) {
					t.Errorf("header %s = %q, want the original %q", h.Key, v, h.Value)
				}
			}
			reason, ok := connectors.Header(m, wire.HeaderDLQReason)
			if !ok || !strings.Contains(reason, tt.wantReason) {
				t.Errorf("reason header = %q, want it to contain %q", reason, tt.wantReason)
			}
		})
	}
	if n := h.count(other.CommandID); n != 0 {
		t.Errorf("handler called %d times for another system's command, want 0", n)
	}
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)
}

func TestRunHandlerErrorIsRetryableAndKeepsValuesOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(func(req connectors.Request) (connectors.Result, error) {
		return connectors.Result{}, fmt.Errorf("delete rows of %s: %w", req.Values("email")[0], errors.New("connection reset"))
	})
	logs := &syncBuffer{}
	cfg := config(brokers, logs)
	cfg.Retry = connectors.RetryPolicy{MaxAttempts: 2, Initial: time.Millisecond}
	start(t, cfg, h)
	confirmations := newConsumer(t, brokers, wire.ConfirmationsTopic)

	cmd := newCommand(uuid.NewString())
	produce(ctx, t, brokers, commandMessage(t, cmd))
	got := confirmations.confirmationsUntil(ctx, t, cmd.CommandID)
	c := got[len(got)-1]
	if n := h.count(cmd.CommandID); n != 2 {
		t.Errorf("handler called %d times for one delivery, want the policy's 2", n)
	}
	if c.Outcome != wire.OutcomeFailed || !c.Retryable {
		t.Errorf("confirmation outcome=%s retryable=%v, want failed and retryable", c.Outcome, c.Retryable)
	}
	if c.Detail == "" || strings.Contains(c.Detail, secret) || strings.Contains(c.Detail, "connection reset") {
		t.Errorf("detail = %q, want a fixed text without the error's", c.Detail)
	}

	// A retryable failure is not replayed: the re-dispatch reaches the handler.
	cmd.Attempt = 2
	produce(ctx, t, brokers, commandMessage(t, cmd))
	confirmations.confirmationsUntil(ctx, t, cmd.CommandID)
	if n := h.count(cmd.CommandID); n != 4 {
		t.Errorf("handler called %d times, want 4: a retryable failure must be retried on re-dispatch", n)
	}
	if out := logs.String(); strings.Contains(out, secret) || !strings.Contains(out, "handler failed") {
		t.Errorf("logs must report the failure without the value; got:\n%s", out)
	}
}

func TestRunPassesDryRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(func(req connectors.Request) (connectors.Result, error) {
		if !req.DryRun {
			return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 7, Detail: "dry run"}, nil
	})
	start(t, config(brokers, nil), h)

	cmd := newCommand(uuid.NewString())
	cmd.DryRun = true
	produce(ctx, t, brokers, commandMessage(t, cmd))
	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, cmd.CommandID)
	if c := got[len(got)-1]; c.Records != 7 || c.Detail != "dry run" {
		t.Errorf("confirmation = %+v, want the dry run's 7 records", c)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reqs) != 1 || !h.reqs[0].DryRun {
		t.Fatalf("handler requests = %+v, want one with DryRun", h.reqs)
	}
	r := h.reqs[0]
	if r.RequestID != cmd.RequestID || r.Attempt != 1 || !r.IssuedAt.Equal(cmd.IssuedAt) || !r.ConfirmBy.Equal(cmd.ConfirmBy) ||
		len(r.Identifiers) != 1 || r.Identifiers[0] != cmd.Identifiers[0] {
		t.Errorf("handler request = %+v, want the command's fields", r)
	}
}

func TestRunInvalidResultFailsDefinitively(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(func(connectors.Request) (connectors.Result, error) {
		return connectors.Result{Outcome: "deleted", Records: 3}, nil
	})
	start(t, config(brokers, nil), h)

	cmd := newCommand(uuid.NewString())
	produce(ctx, t, brokers, commandMessage(t, cmd))
	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, cmd.CommandID)
	if c := got[len(got)-1]; c.Outcome != wire.OutcomeFailed || c.Retryable || c.Detail != "handler returned an invalid outcome" {
		t.Errorf("confirmation = %+v, want failed, not retryable, invalid outcome", c)
	}
}

func TestRunResumesFromCommittedOffsets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(nil)
	confirmations := newConsumer(t, brokers, wire.ConfirmationsTopic)
	requestID := uuid.NewString()

	stop := start(t, config(brokers, nil), h)
	first := newCommand(requestID)
	produce(ctx, t, brokers, commandMessage(t, first))
	confirmations.confirmationsUntil(ctx, t, first.CommandID)
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)
	stop()

	// A new Run has an empty in-memory store: only the committed offset
	// keeps it from handling the first command again.
	start(t, config(brokers, nil), h)
	second := newCommand(requestID)
	produce(ctx, t, brokers, commandMessage(t, second))
	got := confirmations.confirmationsUntil(ctx, t, second.CommandID)

	if len(got) != 1 {
		t.Errorf("after restart got %d confirmations, want only the new command's", len(got))
	}
	if n := h.count(first.CommandID); n != 1 {
		t.Errorf("first command handled %d times, want 1", n)
	}
	if n := h.count(second.CommandID); n != 1 {
		t.Errorf("second command handled %d times, want 1", n)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	h := newRecorder(nil)
	tests := []struct {
		name string
		cfg  connectors.Config
	}{
		{"no brokers", connectors.Config{System: system}},
		{"bad system", connectors.Config{Brokers: []string{"127.0.0.1:1"}, System: "Orders!"}},
		{"bad topic", connectors.Config{Brokers: []string{"127.0.0.1:1"}, System: system, Topic: "a topic"}},
		{"empty broker", connectors.Config{Brokers: []string{""}, System: system}},
		{"negative batch", connectors.Config{Brokers: []string{"127.0.0.1:1"}, System: system, BatchSize: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err == nil {
				t.Errorf("Validate() = nil, want an error")
			}
			if err := connectors.Run(ctx, tt.cfg, h); err == nil {
				t.Errorf("Run() = nil, want an error")
			}
		})
	}
	if err := connectors.Run(ctx, connectors.Config{Brokers: []string{"127.0.0.1:1"}, System: system}, nil); err == nil {
		t.Errorf("Run with a nil handler = nil, want an error")
	}
	// Nothing listens on port 1: Run must say so rather than wait forever.
	if err := connectors.Run(ctx, connectors.Config{Brokers: []string{"127.0.0.1:1"}, System: system}, h); err == nil {
		t.Errorf("Run with an unreachable broker = nil, want an error")
	}
}

func TestRunSurvivesHandlerPanic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	requestID := uuid.NewString()
	boom := newCommand(requestID)
	h := newRecorder(func(req connectors.Request) (connectors.Result, error) {
		if req.CommandID == boom.CommandID {
			panic("nil map in " + req.Values("email")[0])
		}
		return connectors.Result{Outcome: wire.OutcomeNotFound}, nil
	})
	logs := &syncBuffer{}
	start(t, config(brokers, logs), h)

	next := newCommand(requestID)
	produce(ctx, t, brokers, commandMessage(t, boom), commandMessage(t, next))
	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, next.CommandID)
	if len(got) != 2 || got[0].Outcome != wire.OutcomeFailed || !got[0].Retryable || got[1].Outcome != wire.OutcomeNotFound {
		t.Errorf("confirmations = %+v, want a retryable failure then not_found", got)
	}
	if out := logs.String(); strings.Contains(out, secret) || !strings.Contains(out, "panic(string)") {
		t.Errorf("logs must name the panic without its value; got:\n%s", out)
	}
}
