package connectors_test

// Fault tests: each breaks something on purpose, checks that the fault
// really happened, and checks what Run promises despite it.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// TestFaultHandlerPanics: a handler that panics is confirmed failed, the
// command's offset is committed, and the next command is handled.
func TestFaultHandlerPanics(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	requestID := uuid.NewString()
	boom, next := newCommand(requestID), newCommand(requestID)
	var panicked atomic.Int32
	h := newRecorder(func(req connectors.Request) (connectors.Result, error) {
		if req.CommandID == boom.CommandID {
			panicked.Add(1)
			var m map[string]int
			m[req.Values("email")[0]]++ // assignment to a nil map
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	})
	start(t, config(brokers, nil), h)
	produce(ctx, t, brokers, commandMessage(t, boom), commandMessage(t, next))

	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, next.CommandID)
	if panicked.Load() != 1 {
		t.Fatalf("the handler panicked %d times, want once: a panic is not retried in the process", panicked.Load())
	}
	if len(got) != 2 || got[0].CommandID != boom.CommandID || got[0].Outcome != wire.OutcomeFailed {
		t.Fatalf("confirmations = %+v, want the panicking command failed, then the next", got)
	}
	if got[1].Outcome != wire.OutcomeErased {
		t.Errorf("the command after the panic is %s, want erased", got[1].Outcome)
	}
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)
	if n := committed(cluster, connectors.GroupPrefix+system, topic); n != 2 {
		t.Errorf("committed offsets sum to %d, want 2: the panicking command's offset is committed too", n)
	}
}

// TestFaultBrokerOutage stops the broker while a command is being handled,
// so that its confirmation cannot be written, and starts it again on the
// same port with the same data. Run rides the outage out: the command in
// flight and the commands produced after the restart are all confirmed,
// each handled once.
func TestFaultBrokerOutage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	dir := t.TempDir()
	first, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir),
		kfake.SeedTopics(testenv.KafkaPartitions, topic, wire.DLQTopic(topic), wire.ConfirmationsTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Close)
	brokers := first.ListenAddrs()
	_, port, err := net.SplitHostPort(brokers[0])
	if err != nil {
		t.Fatal(err)
	}

	requestID := uuid.NewString()
	before, inFlight, after := newCommand(requestID), newCommand(requestID), newCommand(requestID)
	started, outage := make(chan struct{}), make(chan struct{})
	h := newRecorder(func(req connectors.Request) (connectors.Result, error) {
		if req.CommandID == inFlight.CommandID {
			close(started)
			<-outage
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	})
	logs := &syncBuffer{}
	run := runInBackground(t, connectors.WithQuickRebalance(config(brokers, logs)), h)
	group := connectors.GroupPrefix + system

	produce(ctx, t, brokers, commandMessage(t, before))
	awaitCommitted(ctx, t, first, group, topic)
	produce(ctx, t, brokers, commandMessage(t, inFlight))
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the handler never got the in-flight command")
	}

	first.Close()
	if conn, err := net.DialTimeout("tcp", brokers[0], time.Second); err == nil {
		conn.Close()
		t.Fatal("the broker still accepts connections after Close; the outage would prove nothing")
	}
	close(outage)
	// The fault really happened: the confirmation's write failed.
	await(ctx, t, "a failed confirmation write", func() bool {
		return strings.Contains(logs.String(), `op="write to kafka"`)
	})
	select {
	case err := <-run.done:
		t.Fatalf("Run returned %v during the outage, want it to wait", err)
	default:
	}

	portNum, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	second, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.Ports(portNum))
	if err != nil {
		t.Fatalf("restart kfake on port %d: %v", portNum, err)
	}
	t.Cleanup(second.Close)
	produce(ctx, t, brokers, commandMessage(t, after))

	newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, after.CommandID)
	awaitCommitted(ctx, t, second, group, topic)
	// Delivery is at least once: the reader may fetch the in-flight
	// command again after the outage, before its offset is committed. It
	// must then be answered with the same confirmation, without erasing
	// again.
	got := confirmationsByCommand(t, readAll(ctx, t, brokers, second, wire.ConfirmationsTopic))
	for name, cmd := range map[string]wire.Command{"before": before, "in flight during": inFlight, "after": after} {
		confs := got[cmd.CommandID]
		if len(confs) == 0 {
			t.Errorf("the command %s the outage is not confirmed", name)
		}
		for _, c := range confs {
			if !equalConfirmations(c, confs[0]) || c.Outcome != wire.OutcomeErased {
				t.Errorf("the command %s the outage is confirmed %+v, want erased, and every time alike", name, confs)
				break
			}
		}
		if n := h.count(cmd.CommandID); n != 1 {
			t.Errorf("the command %s the outage was handled %d times, want once", name, n)
		}
	}
	run.cancel()
	if err := run.wait(ctx, t); err != nil {
		t.Errorf("Run = %v after cancel, want nil", err)
	}
}

// erasures counts, per command id, the erasures the handlers of all the
// replicas of a service really performed.
type erasures struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *erasures) erase(commandID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n[commandID]++
}

func (e *erasures) count(commandID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[commandID]
}

// TestFaultKilledAfterErasingBeforeCommitting runs two replicas in one group,
// sharing a PostgreSQL de-duplication store. The replica that gets the
// command erases, records the confirmation, and dies before publishing or
// committing: its context is canceled with no grace, and it stays stuck
// until its shutdown deadline has passed. The group rebalances, the other
// replica receives the command again, and answers it from the store: the
// subject is erased once, and the confirmation is the recorded one.
func TestFaultKilledAfterErasingBeforeCommitting(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.DLQTopic(topic), wire.ConfirmationsTopic)
	db := openPostgres(t)
	group := connectors.GroupPrefix + system
	erased := &erasures{n: make(map[string]int)}
	h := connectors.HandlerFunc(func(_ context.Context, req connectors.Request) (connectors.Result, error) {
		erased.erase(req.CommandID)
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 4,
			Derived: []wire.Identifier{{Type: "stripe_customer_id", Value: "cus_" + req.CommandID[:8]}}}, nil
	})

	type replica struct {
		name string
		run  atomic.Pointer[running]
		obs  *observer
	}
	var (
		victim   atomic.Pointer[replica]
		recorded = make(chan wire.Confirmation, 1)
		replicas [2]*replica
	)
	for i, name := range []string{"A", "B"} {
		store, err := connectors.NewPostgresDedup(ctx, db, "")
		if err != nil {
			t.Fatalf("replica %s: %v", name, err)
		}
		r := &replica{name: name, obs: newObserver()}
		cfg := connectors.WithQuickRebalance(config(brokers, nil))
		cfg.Dedup = store
		cfg.Observer = r.obs
		cfg.ShutdownGrace = -1
		cfg = connectors.WithAfterRecord(cfg, func(dctx context.Context, c wire.Confirmation) {
			if !victim.CompareAndSwap(nil, r) {
				return
			}
			recorded <- c
			r.run.Load().cancel() // killed: no new work, and…
			<-dctx.Done()         // …stuck until nothing more may be published or committed
		})
		r.run.Store(runInBackground(t, cfg, h))
		replicas[i] = r
	}
	await(ctx, t, "both replicas in the group, with every partition assigned", func() bool {
		info := cluster.GroupInfo(group)
		return info != nil && info.State == "Stable" && len(info.Members) == 2 && info.NumAssigned() == testenv.KafkaPartitions
	})

	cmd := commandFor()
	produce(ctx, t, brokers, commandMessage(t, cmd))
	var first wire.Confirmation
	select {
	case first = <-recorded:
	case <-ctx.Done():
		t.Fatal("no replica recorded a confirmation")
	}
	dead := victim.Load()
	survivor := replicas[0]
	if survivor == dead {
		survivor = replicas[1]
	}
	if err := dead.run.Load().wait(ctx, t); err != nil {
		t.Errorf("the killed replica's Run = %v, want nil", err)
	}

	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, cmd.CommandID)
	awaitCommitted(ctx, t, cluster, group, topic)
	// The fault really happened: the command came again, to the other
	// replica, which answered it from the store. Had the killed replica
	// committed, it would not have come again; had it published, there
	// would be two confirmations.
	survivor.obs.mu.Lock()
	duplicates := survivor.obs.duplicates
	survivor.obs.mu.Unlock()
	if duplicates != 1 {
		t.Errorf("replica %s answered %d commands from the store, want the redelivered one", survivor.name, duplicates)
	}
	if n := produced(cluster, wire.ConfirmationsTopic); n != 1 {
		t.Errorf("%d confirmations published, want only replica %s's", n, survivor.name)
	}
	if n := erased.count(cmd.CommandID); n != 1 {
		t.Errorf("the subject was erased %d times, want once", n)
	}
	if !equalConfirmations(got[0], first) || fmt.Sprint(got[0].DerivedIdentifiers) != fmt.Sprint(first.DerivedIdentifiers) {
		t.Errorf("replica %s confirmed %+v, want the recorded %+v", survivor.name, got[0], first)
	}
	survivor.run.Load().cancel()
	if err := survivor.run.Load().wait(ctx, t); err != nil {
		t.Errorf("replica %s's Run = %v, want nil", survivor.name, err)
	}
}

// TestFaultMalformedFlood interleaves 1,000 malformed messages of every kind
// with good commands: every malformed one lands in the dead-letter topic
// with its reason, every good one is confirmed exactly once, and every
// offset is committed.
func TestFaultMalformedFlood(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.DLQTopic(topic), wire.ConfirmationsTopic)
	const malformed, good = 1000, 250
	h := newRecorder(nil)
	obs := newObserver()
	cfg := config(brokers, nil)
	cfg.Observer = obs
	start(t, cfg, h)

	kinds := []struct {
		reason string
		value  func(wire.Command) []byte
	}{
		{"not valid JSON", func(wire.Command) []byte { return []byte(`{"schema": ` + secret) }},
		{"empty message", func(wire.Command) []byte { return nil }},
		{"schema is not", func(c wire.Command) []byte { c.Schema = "erasure.command.v0"; return encode(t, c) }},
		{"command_id is not a UUID", func(c wire.Command) []byte { c.CommandID = secret; return encode(t, c) }},
		{"identifiers is empty", func(c wire.Command) []byte { c.Identifiers = nil; return encode(t, c) }},
		{"has the wrong type", func(wire.Command) []byte { return []byte(`{"attempt": "` + secret + `"}`) }},
		{`addressed to system "billing"`, func(c wire.Command) []byte { c.System = "billing"; return encode(t, c) }},
		{"trailing data", func(c wire.Command) []byte { return append(encode(t, c), []byte(" {}")...) }},
	}
	var msgs []kafka.Message
	var goods []wire.Command
	wantReason := make(map[string]string) // dead letter value → reason
	for i := range malformed + good {
		cmd := newCommand(uuid.NewString())
		if i%5 == 4 { // one good command after every four malformed ones
			goods = append(goods, cmd)
			msgs = append(msgs, commandMessage(t, cmd))
			continue
		}
		k := kinds[i%len(kinds)]
		m := commandMessage(t, cmd)
		m.Value = k.value(cmd)
		m.Headers = append(m.Headers, kafka.Header{Key: "seq", Value: fmt.Append(nil, i)})
		wantReason[fmt.Sprint(i)] = k.reason
		msgs = append(msgs, m)
	}
	if len(goods) != good || len(wantReason) != malformed {
		t.Fatalf("built %d good and %d malformed messages, want %d and %d", len(goods), len(wantReason), good, malformed)
	}
	produce(ctx, t, brokers, msgs...)

	dead := readN(ctx, t, brokers, cluster, wire.DLQTopic(topic), malformed)
	if len(dead) != malformed {
		t.Errorf("%d dead letters, want %d", len(dead), malformed)
	}
	seen := make(map[string]bool)
	for _, m := range dead {
		seq, _ := connectors.Header(m, "seq")
		reason, ok := connectors.Header(m, wire.HeaderDLQReason)
		want, known := wantReason[seq]
		switch {
		case !known || seen[seq]:
			t.Errorf("dead letter %q is unexpected or repeated", seq)
		case !ok || !strings.Contains(reason, want):
			t.Errorf("dead letter %s has reason %q, want it to contain %q", seq, reason, want)
		case strings.Contains(reason, secret):
			t.Errorf("dead letter %s's reason quotes the message: %q", seq, reason)
		}
		seen[seq] = true
	}

	confirmed := confirmationsByCommand(t, readN(ctx, t, brokers, cluster, wire.ConfirmationsTopic, good))
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)
	if n := produced(cluster, wire.ConfirmationsTopic); n != good {
		t.Errorf("%d confirmations published, want exactly %d", n, good)
	}
	for i, cmd := range goods {
		if c := confirmed[cmd.CommandID]; len(c) != 1 || c[0].Outcome != wire.OutcomeErased {
			t.Errorf("good command %d confirmed %+v, want once, erased", i, c)
		}
		if n := h.count(cmd.CommandID); n != 1 {
			t.Errorf("good command %d handled %d times, want once", i, n)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if n := obs.deadLettered[connectors.DLQMalformed] + obs.deadLettered[connectors.DLQOtherSystem]; n != malformed {
		t.Errorf("observer heard %d dead letters, want %d", n, malformed)
	}
}

func encode(t *testing.T, c wire.Command) []byte {
	t.Helper()
	m, err := connectors.EncodeCommand(topic, c)
	if err != nil {
		t.Fatal(err)
	}
	return m.Value
}

// TestLogsCarryNoIdentifierValues drives every path that logs (success,
// duplicate, retried and failed handler, permanent error, panic, invalid
// result, dead letters, shutdown) with a canary identifier value, and checks
// that the value appears in no log line, confirmation detail, dead-letter
// reason or observer event.
func TestLogsCarryNoIdentifierValues(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.DLQTopic(topic), wire.ConfirmationsTopic)
	const canary = "canary-7f3a@example.org"
	withCanary := func(requestID string) wire.Command {
		c := newCommand(requestID)
		c.Identifiers = []wire.Identifier{{Type: "email", Value: canary}, {Type: "user_id", Value: canary}}
		return c
	}
	requestID := uuid.NewString()
	ok, flaky, failing, permanent, panicking, invalid := withCanary(requestID), withCanary(requestID), withCanary(requestID),
		withCanary(requestID), withCanary(requestID), withCanary(requestID)
	var mu sync.Mutex
	calls := make(map[string]int)
	h := connectors.HandlerFunc(func(_ context.Context, req connectors.Request) (connectors.Result, error) {
		mu.Lock()
		calls[req.CommandID]++
		n := calls[req.CommandID]
		mu.Unlock()
		v := req.Values("email")[0]
		switch req.CommandID {
		case flaky.CommandID:
			if n == 1 {
				return connectors.Result{}, fmt.Errorf("delete %s: %w", v, errors.New("deadlock"))
			}
		case failing.CommandID:
			return connectors.Result{}, fmt.Errorf("delete %s: %w", v, errors.New("connection refused"))
		case permanent.CommandID:
			return connectors.Result{}, connectors.Permanent(fmt.Errorf("row of %s is under legal hold", v))
		case panicking.CommandID:
			panic(fmt.Errorf("unexpected row for %s", v))
		case invalid.CommandID:
			return connectors.Result{Outcome: wire.OutcomeErased, Derived: []wire.Identifier{{Type: "Bad Type", Value: v}}}, nil
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	})
	logs := &syncBuffer{}
	obs := &canaryObserver{}
	cfg := config(brokers, logs)
	cfg.Observer = obs
	cfg.Retry = connectors.RetryPolicy{MaxAttempts: 2, Initial: time.Millisecond}
	run := runInBackground(t, cfg, h)

	otherSystem := withCanary(requestID)
	otherSystem.System = "billing"
	notJSON := commandMessage(t, withCanary(requestID))
	notJSON.Value = []byte(`{"identifiers": [{"type": "email", "value": "` + canary + `"}], oops`)
	wrongType := commandMessage(t, withCanary(requestID))
	wrongType.Value = []byte(`{"identifiers": "` + canary + `"}`)
	barrier := withCanary(requestID)
	produce(ctx, t, brokers,
		commandMessage(t, ok), commandMessage(t, ok), commandMessage(t, flaky), commandMessage(t, failing),
		commandMessage(t, permanent), commandMessage(t, panicking), commandMessage(t, invalid),
		commandMessage(t, otherSystem), notJSON, wrongType, commandMessage(t, barrier))
	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, barrier.CommandID)
	if len(got) != 8 {
		t.Errorf("%d confirmations, want 8", len(got))
	}
	for _, m := range readN(ctx, t, brokers, cluster, wire.ConfirmationsTopic, 8) {
		if strings.Contains(string(m.Value), canary) {
			t.Errorf("a confirmation carries the value: %s", m.Value)
		}
	}
	for _, m := range readN(ctx, t, brokers, cluster, wire.DLQTopic(topic), 3) {
		if reason, _ := connectors.Header(m, wire.HeaderDLQReason); strings.Contains(reason, canary) {
			t.Errorf("a dead letter's reason carries the value: %q", reason)
		}
	}
	run.cancel()
	if err := run.wait(ctx, t); err != nil {
		t.Errorf("Run = %v after cancel", err)
	}

	out := logs.String()
	// The paths were really taken: each left its line.
	for _, want := range []string{"connector started", "handler failed; retrying", `msg="handler failed"`, "handler failed permanently",
		"panic(*errors.errorString)", "handler returned an invalid result", "command dead-lettered", "recorded confirmation", "connector stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q; the test did not take that path", want)
		}
	}
	if strings.Contains(out, canary) || strings.Contains(out, "canary") {
		t.Errorf("the logs carry the identifier value:\n%s", out)
	}
	if obs.leaked.Load() {
		t.Errorf("an observer event carried the identifier value")
	}
}

// canaryObserver notes whether an event carried the canary's prefix.
type canaryObserver struct {
	connectors.NopObserver
	leaked atomic.Bool
}

func (o *canaryObserver) CommandDeadLettered(system, reason string) {
	if strings.Contains(system+reason, "canary") {
		o.leaked.Store(true)
	}
}
