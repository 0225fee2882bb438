package relay_test

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
	"go.temporal.io/api/serviceerror"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/metrics/metricstest"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/relay"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

const testTimeout = 90 * time.Second

// secret stands for a derived identifier value: it must never be logged.
const secret = "cus_secret_123"

var topic = wire.ConfirmationsTopic

func confirmation(requestID, system string) wire.Confirmation {
	return wire.Confirmation{
		Schema:             wire.SchemaConfirmation,
		CommandID:          uuid.NewString(),
		RequestID:          requestID,
		System:             system,
		Outcome:            wire.OutcomeErased,
		Records:            2,
		DerivedIdentifiers: []wire.Identifier{{Type: "stripe_customer_id", Value: secret}},
		ConfirmedAt:        time.Now().UTC().Truncate(time.Millisecond),
	}
}

func produce(ctx context.Context, t *testing.T, brokers []string, msgs ...kafka.Message) {
	t.Helper()
	w := kafkax.NewWriter(brokers)
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func encode(t *testing.T, cs ...wire.Confirmation) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	for _, c := range cs {
		m, err := connectors.EncodeConfirmation(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// call is one signal: arg when it is workflows.SignalConfirm's, batch when
// it is workflows.SignalBatchConfirm's.
type call struct {
	workflowID, runID, signal string
	arg                       workflows.ConfirmSignal
	batch                     workflows.BatchConfirmSignal
}

// signaler records signals; fail, when set, may refuse a call.
type signaler struct {
	mu       sync.Mutex
	accepted []call
	refused  int
	fail     func(c call) error
}

func (s *signaler) SignalWorkflow(_ context.Context, workflowID, runID, signalName string, arg interface{}) error {
	c := call{workflowID: workflowID, runID: runID, signal: signalName}
	switch a := arg.(type) {
	case workflows.ConfirmSignal:
		c.arg = a
	case workflows.BatchConfirmSignal:
		c.batch = a
	default:
		return fmt.Errorf("signal %q carries a %T", signalName, arg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		if err := s.fail(c); err != nil {
			s.refused++
			return err
		}
	}
	s.accepted = append(s.accepted, c)
	return nil
}

func (s *signaler) calls() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]call(nil), s.accepted...)
}

func (s *signaler) confirmations() int {
	n := 0
	for _, c := range s.calls() {
		n += len(c.arg.Confirmations)
	}
	return n
}

// items counts the items of the batch confirmations signaled.
func (s *signaler) items() int {
	n := 0
	for _, c := range s.calls() {
		for _, b := range c.batch.Confirmations {
			n += len(b.Items)
		}
	}
	return n
}

// auditor records events; failures is how many calls to refuse first.
type auditor struct {
	mu       sync.Mutex
	events   []lethe.AuditEvent
	failures int
	refused  int
}

func (a *auditor) AppendAudit(_ context.Context, events []lethe.AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refused < a.failures {
		a.refused++
		return errors.New("database is down")
	}
	a.events = append(a.events, events...)
	return nil
}

func (a *auditor) all() []lethe.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]lethe.AuditEvent(nil), a.events...)
}

// start runs a relay until the test ends, then checks Run returned nil.
func start(t *testing.T, cfg relay.Config, s relay.Signaler, a relay.Auditor) *relay.Relay {
	t.Helper()
	r, err := relay.New(cfg, s, a)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
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
	return r
}

func config(brokers []string, logs *testenv.LogBuffer) relay.Config {
	return relay.Config{
		Brokers:   brokers,
		BatchWait: time.Second, // everything produced beforehand lands in one batch
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// eventually polls cond until it holds or ctx ends.
func eventually(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// committed reports whether the relay's group has committed everything
// produced to topic.
func committed(cluster *kfake.Cluster, topic string) bool {
	info := cluster.GroupInfo(relay.DefaultGroupID)
	for _, p := range cluster.PartitionInfos(topic) {
		var offset int64
		if info != nil {
			offset = info.Commits[topic][p.Partition].Offset
		}
		if offset != p.HighWatermark {
			return false
		}
	}
	return true
}

func TestRelayCoalescesOneSignalPerRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	reqA, reqB := uuid.NewString(), uuid.NewString()
	a := []wire.Confirmation{confirmation(reqA, "orders"), confirmation(reqA, "billing"), confirmation(reqA, "crm")}
	b := []wire.Confirmation{confirmation(reqB, "orders"), confirmation(reqB, "billing")}
	produce(ctx, t, brokers, encode(t, a[0], b[0], a[1], b[1], a[2])...)

	s := &signaler{}
	logs := &testenv.LogBuffer{}
	r := start(t, config(brokers, logs), s, &auditor{})
	eventually(ctx, t, "all confirmations signaled", func() bool { return s.confirmations() == 5 })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })

	calls := s.calls()
	if len(calls) != 2 {
		t.Fatalf("got %d signals for 5 confirmations of 2 requests, want 2", len(calls))
	}
	byWorkflow := map[string]call{}
	for _, c := range calls {
		if c.signal != workflows.SignalConfirm || c.runID != "" {
			t.Errorf("signal %q to run %q, want %q to the current run", c.signal, c.runID, workflows.SignalConfirm)
		}
		byWorkflow[c.workflowID] = c
	}
	for _, want := range []struct {
		requestID string
		confs     []wire.Confirmation
	}{{reqA, a}, {reqB, b}} {
		c, ok := byWorkflow[workflows.ErasureWorkflowID(want.requestID)]
		if !ok {
			t.Errorf("no signal for request %s", want.requestID)
			continue
		}
		got := c.arg.Confirmations
		if len(got) != len(want.confs) {
			t.Errorf("request %s: signal carries %d confirmations, want %d", want.requestID, len(got), len(want.confs))
			continue
		}
		for i := range got {
			if got[i].CommandID != want.confs[i].CommandID || got[i].System != want.confs[i].System ||
				got[i].Outcome != wire.OutcomeErased || got[i].Records != 2 || !got[i].ConfirmedAt.Equal(want.confs[i].ConfirmedAt) ||
				len(got[i].DerivedIdentifiers) != 1 || got[i].DerivedIdentifiers[0] != want.confs[i].DerivedIdentifiers[0] {
				t.Errorf("request %s, confirmation %d = %+v, want %+v in the order read", want.requestID, i, got[i], want.confs[i])
			}
		}
	}
	if st := r.Stats(); st.Signals != 2 || st.Confirmations != 5 || st.DeadLettered != 0 || st.Late != 0 {
		t.Errorf("stats = %+v, want 2 signals carrying 5 confirmations", st)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the relay logged a derived identifier value:\n%s", logs)
	}
}

func TestRelayDeadLettersMalformed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	req := uuid.NewString()
	bad := confirmation(req, "orders")
	bad.Outcome = "vanished"
	badMsgs := encode(t, bad)
	badMsgs[0].Headers = append(badMsgs[0].Headers, kafka.Header{Key: "trace", Value: []byte("t-9")})
	notJSON := kafka.Message{Topic: topic, Key: []byte(req), Value: []byte("{" + secret)}
	good := confirmation(req, "billing")
	produce(ctx, t, brokers, append([]kafka.Message{notJSON, badMsgs[0]}, encode(t, good)...)...)

	s := &signaler{}
	logs := &testenv.LogBuffer{}
	r := start(t, config(brokers, logs), s, &auditor{})
	eventually(ctx, t, "good confirmation signaled", func() bool { return s.confirmations() == 1 })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })
	if got := s.calls()[0].arg.Confirmations[0].CommandID; got != good.CommandID {
		t.Errorf("signaled %s, want the good confirmation %s", got, good.CommandID)
	}

	dlq := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: "test-dlq", Topic: wire.DLQTopic(topic), StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer dlq.Close()
	for _, want := range []struct {
		original kafka.Message
		reason   string
	}{{notJSON, "not valid JSON"}, {badMsgs[0], "outcome is not one of"}} {
		m, err := dlq.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read dead letter: %v", err)
		}
		if !bytes.Equal(m.Key, want.original.Key) || !bytes.Equal(m.Value, want.original.Value) {
			t.Errorf("dead letter %q/%q, want the original %q/%q", m.Key, m.Value, want.original.Key, want.original.Value)
		}
		for _, h := range want.original.Headers {
			if v, ok := connectors.Header(m, h.Key); !ok || v != string(h.Value) {
				t.Errorf("header %s = %q, want the original %q", h.Key, v, h.Value)
			}
		}
		if reason, _ := connectors.Header(m, wire.HeaderDLQReason); !strings.Contains(reason, want.reason) {
			t.Errorf("reason = %q, want it to contain %q", reason, want.reason)
		}
	}
	if st := r.Stats(); st.DeadLettered != 2 || st.Signals != 1 {
		t.Errorf("stats = %+v, want 2 dead-lettered and 1 signal", st)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the relay logged message content:\n%s", logs)
	}
}

func TestRelayAuditsLateConfirmations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	gone, live := uuid.NewString(), uuid.NewString()
	late := []wire.Confirmation{confirmation(gone, "orders"), confirmation(gone, "billing")}
	produce(ctx, t, brokers, encode(t, late[0], confirmation(live, "orders"), late[1])...)

	s := &signaler{fail: func(c call) error {
		if c.workflowID == workflows.ErasureWorkflowID(gone) {
			return serviceerror.NewNotFound("workflow execution already completed")
		}
		return nil
	}}
	a := &auditor{failures: 1} // the audit store hiccups once
	r := start(t, config(brokers, &testenv.LogBuffer{}), s, a)
	eventually(ctx, t, "late confirmations audited", func() bool { return len(a.all()) == 2 })
	eventually(ctx, t, "live confirmation signaled", func() bool { return s.confirmations() == 1 })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })

	for i, e := range a.all() {
		if e.RequestID != gone || e.System != late[i].System || e.Kind != lethe.AuditConfirmationLate ||
			e.Detail != "no running workflow" || e.At.IsZero() {
			t.Errorf("audit event %d = %+v, want confirmation_late of %s/%s", i, e, gone, late[i].System)
		}
		if strings.Contains(fmt.Sprint(e), secret) {
			t.Errorf("audit event %d carries an identifier value: %+v", i, e)
		}
	}
	if st := r.Stats(); st.Late != 2 || st.Signals != 1 {
		t.Errorf("stats = %+v, want 2 late and 1 signal", st)
	}
}

func TestRelayRetriesTransientErrorsBeforeCommitting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	req := uuid.NewString()
	c := confirmation(req, "orders")
	produce(ctx, t, brokers, encode(t, c)...)

	// Each refusal looks at the commits: nothing may be committed while the
	// signal has not been accepted.
	var committedEarly bool
	s := &signaler{}
	s.fail = func(call) error {
		if committed(cluster, topic) {
			committedEarly = true
		}
		if s.refused < 2 {
			return serviceerror.NewUnavailable("history service is restarting")
		}
		return nil
	}
	r := start(t, config(brokers, &testenv.LogBuffer{}), s, &auditor{})
	eventually(ctx, t, "signal accepted", func() bool { return s.confirmations() == 1 })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused != 2 || len(s.accepted) != 1 {
		t.Errorf("signal refused %d and accepted %d times, want 2 then exactly 1", s.refused, len(s.accepted))
	}
	if committedEarly {
		t.Errorf("the batch was committed before its signal was accepted")
	}
	if st := r.Stats(); st.Signals != 1 || st.Late != 0 {
		t.Errorf("stats = %+v, want 1 signal", st)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  relay.Config
		s    relay.Signaler
		a    relay.Auditor
	}{
		{"no brokers", relay.Config{}, &signaler{}, &auditor{}},
		{"empty broker", relay.Config{Brokers: []string{""}}, &signaler{}, &auditor{}},
		{"negative batch", relay.Config{Brokers: []string{"b:1"}, BatchSize: -1}, &signaler{}, &auditor{}},
		{"negative wait", relay.Config{Brokers: []string{"b:1"}, BatchWait: -time.Second}, &signaler{}, &auditor{}},
		{"no signaler", relay.Config{Brokers: []string{"b:1"}}, nil, &auditor{}},
		{"no auditor", relay.Config{Brokers: []string{"b:1"}}, &signaler{}, nil},
	}
	for _, tt := range tests {
		if _, err := relay.New(tt.cfg, tt.s, tt.a); err == nil {
			t.Errorf("%s: New = nil error, want one", tt.name)
		}
	}
}

func TestRelaySplitsOversizedSignalsInOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	req := uuid.NewString()
	// Three confirmations of about 300 KiB each: more than one signal may carry.
	var big []wire.Confirmation
	for i := range 3 {
		c := confirmation(req, fmt.Sprintf("system-%d", i))
		c.DerivedIdentifiers = nil
		for j := range 256 {
			c.DerivedIdentifiers = append(c.DerivedIdentifiers, wire.Identifier{Type: "device_id", Value: fmt.Sprintf("%04d", j) + strings.Repeat("x", 1000)})
		}
		big = append(big, c)
	}
	produce(ctx, t, brokers, encode(t, big...)...)

	s := &signaler{}
	start(t, config(brokers, &testenv.LogBuffer{}), s, &auditor{})
	eventually(ctx, t, "all confirmations signaled", func() bool { return s.confirmations() == 3 })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })

	calls := s.calls()
	if len(calls) < 2 {
		t.Errorf("got %d signals for %d KiB of confirmations, want them split", len(calls), 3*300)
	}
	var order []string
	for _, c := range calls {
		for _, conf := range c.arg.Confirmations {
			order = append(order, conf.System)
		}
	}
	if got := strings.Join(order, ","); got != "system-0,system-1,system-2" {
		t.Errorf("signaled in order %s, want system-0,system-1,system-2", got)
	}
}

// A malformed message moves lethe_dlq_messages_total under the topic it was
// read from and the fixed reason, never the parser's words; the relay
// records its lag after the batch.
func TestRelayMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	req := uuid.NewString()
	notJSON := kafka.Message{Topic: topic, Key: []byte(req), Value: []byte("{" + secret)}
	produce(ctx, t, brokers, append([]kafka.Message{notJSON}, encode(t, confirmation(req, "billing"))...)...)

	m := metrics.New()
	m.RelayLag(99) // a value the relay must overwrite
	cfg := config(brokers, &testenv.LogBuffer{})
	cfg.Metrics = m
	s := &signaler{}
	start(t, cfg, s, &auditor{})
	eventually(ctx, t, "good confirmation signaled", func() bool { return s.confirmations() == 1 })
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })

	f := metricstest.Scrape(t, m.Handler())
	f.Require(t, "lethe_dlq_messages_total", "lethe_relay_lag_messages")
	if got, _ := f.Value("lethe_dlq_messages_total", "topic", topic, "reason", relay.DLQMalformed); got != 1 {
		t.Errorf("lethe_dlq_messages_total{reason=malformed} = %v, want 1", got)
	}
	if reasons := f.LabelValues("lethe_dlq_messages_total", "reason"); len(reasons) != 1 {
		t.Errorf("dead-letter reasons %v, want only %q", reasons, relay.DLQMalformed)
	}
	if lag, _ := f.Value("lethe_relay_lag_messages"); lag != 0 {
		t.Errorf("lethe_relay_lag_messages = %v once everything is read, want 0", lag)
	}
}
