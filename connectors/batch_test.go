package connectors_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

func newBatchCommand(n int) wire.BatchCommand {
	now := time.Now().UTC().Truncate(time.Second)
	c := wire.BatchCommand{
		Schema:    wire.SchemaBatchCommand,
		CommandID: uuid.NewString(),
		BatchID:   uuid.NewString(),
		System:    system,
		Attempt:   1,
		IssuedAt:  now,
		ConfirmBy: now.Add(72 * time.Hour),
	}
	for range n {
		c.Items = append(c.Items, wire.BatchItem{ItemID: uuid.NewString(), Identifiers: []wire.Identifier{{Type: "email", Value: secret}}})
	}
	return c
}

func batchMessage(t *testing.T, c wire.BatchCommand) kafka.Message {
	t.Helper()
	m, err := connectors.EncodeBatchCommand(topic, c)
	if err != nil {
		t.Fatalf("encode batch command: %v", err)
	}
	return m
}

// nextBatchConfirmation reads the next message of the confirmations topic,
// which must be a batch confirmation keyed by its batch id.
func (c *consumer) nextBatchConfirmation(ctx context.Context, t *testing.T) (wire.BatchConfirmation, kafka.Message) {
	t.Helper()
	m := c.next(ctx, t)
	conf, err := wire.DecodeBatchConfirmation(m.Value)
	if err != nil {
		t.Fatalf("decode batch confirmation: %v", err)
	}
	if h, _ := connectors.Header(m, wire.HeaderSchema); h != wire.SchemaBatchConfirmation {
		t.Errorf("schema header = %q, want %q", h, wire.SchemaBatchConfirmation)
	}
	if string(m.Key) != conf.BatchID {
		t.Errorf("key = %q, want the batch id %q", m.Key, conf.BatchID)
	}
	return conf, m
}

// batchRecorder is a BatchHandler that fails the items it is told to, and
// records the items of each call.
type batchRecorder struct {
	mu    sync.Mutex
	calls [][]string // item ids per EraseBatch call
	fail  map[string]bool
	err   error
}

func (b *batchRecorder) Erase(context.Context, connectors.Request) (connectors.Result, error) {
	return connectors.Result{}, errors.New("a batch-capable handler is not called one subject at a time here")
}

func (b *batchRecorder) EraseBatch(_ context.Context, req connectors.BatchRequest) ([]connectors.ItemResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	var out []connectors.ItemResult
	for _, it := range req.Items {
		ids = append(ids, it.ItemID)
		r := connectors.Result{Outcome: wire.OutcomeErased, Records: 2}
		switch {
		case b.fail[it.ItemID]:
			r = connectors.Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: "the shard is read-only"}
		case req.DryRun:
			r.Detail = "dry run"
		}
		out = append(out, connectors.ItemResult{ItemID: it.ItemID, Result: r})
	}
	b.calls = append(b.calls, ids)
	return out, b.err
}

func (b *batchRecorder) callItems() [][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]string(nil), b.calls...)
}

var _ connectors.BatchHandler = (*batchRecorder)(nil)

// TestRunBatchPartialFailureAndRepeat sends a batch command of three items
// to a BatchHandler that fails one: one batch confirmation carries two
// erased items and one retryable failure. The same command, attempt 2,
// calls the handler with the failed item only and is confirmed alike for
// the other two, from the dedup store.
func TestRunBatchPartialFailureAndRepeat(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	bc := newBatchCommand(3)
	h := &batchRecorder{fail: map[string]bool{bc.Items[1].ItemID: true}}
	obs := newObserver()
	cfg := config(brokers, nil)
	cfg.Observer = obs
	start(t, cfg, h)
	confs := newConsumer(t, brokers, wire.ConfirmationsTopic)

	produce(ctx, t, brokers, batchMessage(t, bc))
	first, _ := confs.nextBatchConfirmation(ctx, t)
	if first.CommandID != bc.CommandID || first.BatchID != bc.BatchID || first.System != system || len(first.Items) != 3 {
		t.Fatalf("confirmation = %+v, want the command's 3 items", first)
	}
	for i, it := range first.Items {
		want := wire.OutcomeErased
		if i == 1 {
			want = wire.OutcomeFailed
		}
		if it.ItemID != bc.Items[i].ItemID || it.Outcome != want || it.Retryable != (i == 1) {
			t.Errorf("item %d = %+v, want %s for item %s", i, it, want, bc.Items[i].ItemID)
		}
	}

	again := bc
	again.Attempt = 2
	produce(ctx, t, brokers, batchMessage(t, again))
	second, _ := confs.nextBatchConfirmation(ctx, t)
	if len(second.Items) != 3 {
		t.Fatalf("repeat confirmed %d items, want 3", len(second.Items))
	}
	for _, i := range []int{0, 2} {
		if !sameItem(second.Items[i], first.Items[i]) {
			t.Errorf("repeat item %d = %+v, want as first %+v", i, second.Items[i], first.Items[i])
		}
	}
	calls := h.callItems()
	if len(calls) != 2 || len(calls[0]) != 3 || len(calls[1]) != 1 || calls[1][0] != bc.Items[1].ItemID {
		t.Errorf("handler calls = %v, want all three items, then the failed one only", calls)
	}
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.handled) != 4 || obs.duplicates != 2 {
		t.Errorf("observer saw %d items handled and %d duplicates, want 4 and 2", len(obs.handled), obs.duplicates)
	}
}

func sameItem(a, b wire.ItemOutcome) bool {
	return a.ItemID == b.ItemID && a.Outcome == b.Outcome && a.Records == b.Records && a.Detail == b.Detail &&
		a.Retryable == b.Retryable && len(a.DerivedIdentifiers) == len(b.DerivedIdentifiers)
}

// TestRunBatchAdaptsHandler gives a batch command, as a dry run, to a plain
// Handler: each item reaches it as a request whose id is the item's and
// whose command id is ItemCommandID, dry run set, and the per-item results
// come back in one batch confirmation. Signed with the system's credential
// both ways, and a single command in the same topic is still answered.
func TestRunBatchAdaptsHandler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(func(req connectors.Request) (connectors.Result, error) {
		if !req.DryRun {
			return connectors.Result{Outcome: wire.OutcomeFailed, Detail: "not a dry run"}, nil
		}
		return connectors.Result{Outcome: wire.OutcomeNotFound, Detail: "dry run: nothing"}, nil
	})
	cfg := config(brokers, nil)
	cfg.KeyID, cfg.Secret = testKeyID, testSecretHex
	cfg.Concurrency = 2
	start(t, cfg, h)

	bc := newBatchCommand(5)
	bc.DryRun = true
	single := newCommand(uuid.NewString())
	single.DryRun = true
	produce(ctx, t, brokers, signCommand(t, batchMessage(t, bc), testKeyID, testSecretHex))
	produce(ctx, t, brokers, signCommand(t, commandMessage(t, single), testKeyID, testSecretHex))

	msgs := readN(ctx, t, brokers, cluster, wire.ConfirmationsTopic, 2)
	key, _ := hex.DecodeString(testSecretHex)
	var batch *wire.BatchConfirmation
	for _, m := range msgs {
		sig, _ := connectors.Header(m, wire.HeaderSignature)
		if !wire.Verify(key, m.Value, sig) {
			t.Errorf("confirmation %s is not signed over its value", m.Value)
		}
		if s, _ := connectors.Header(m, wire.HeaderSchema); s == wire.SchemaBatchConfirmation {
			c, err := wire.DecodeBatchConfirmation(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			batch = &c
		}
	}
	if batch == nil {
		t.Fatal("no batch confirmation")
	}
	for i, it := range batch.Items {
		if it.ItemID != bc.Items[i].ItemID || it.Outcome != wire.OutcomeNotFound {
			t.Errorf("item %d = %+v, want not_found for %s", i, it, bc.Items[i].ItemID)
		}
		if n := h.count(connectors.ItemCommandID(bc.CommandID, it.ItemID)); n != 1 {
			t.Errorf("item %d handled %d times, want once under its item command id", i, n)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	items := 0
	for _, req := range h.reqs {
		if req.CommandID == single.CommandID {
			continue
		}
		items++
		if !req.DryRun || req.Attempt != 1 || req.System != system || req.Values("email")[0] != secret ||
			req.CommandID != connectors.ItemCommandID(bc.CommandID, req.RequestID) {
			t.Errorf("item request = %+v, want a dry run of its item", req)
		}
	}
	if items != 5 {
		t.Errorf("handler saw %d item requests, want 5", items)
	}
}

// TestRunBatchDeadLetters dead-letters batch commands that break the
// contract, with the wire package's reason, whether the schema header or
// the body's schema field names them: none reaches the handler.
func TestRunBatchDeadLetters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := &batchRecorder{}
	obs := newObserver()
	cfg := config(brokers, nil)
	cfg.Observer = obs
	start(t, cfg, h)

	repeated := newBatchCommand(3)
	repeated.Items[2].ItemID = repeated.Items[0].ItemID
	other := newBatchCommand(1)
	other.System = "billing"
	headless := batchMessage(t, newBatchCommand(1))
	headless.Headers = nil
	headless.Value = bytes.Replace(headless.Value, []byte(`"attempt":1`), []byte(`"attempt":0`), 1)
	produce(ctx, t, brokers, batchMessage(t, repeated), batchMessage(t, other), headless)

	msgs := readN(ctx, t, brokers, cluster, wire.DLQTopic(topic), 3)
	reasons := map[string]bool{}
	for _, m := range msgs {
		r, _ := connectors.Header(m, wire.HeaderDLQReason)
		reasons[r] = true
		if strings.Contains(r, secret) {
			t.Errorf("reason %q quotes an identifier value", r)
		}
	}
	for _, want := range []string{
		"malformed message: items[2].item_id repeats items[0].item_id",
		`command is addressed to system "billing", not "orders"`,
		"malformed message: attempt is below 1",
	} {
		if !reasons[want] {
			t.Errorf("no dead letter with reason %q among %v", want, reasons)
		}
	}
	if n := len(h.callItems()); n != 0 {
		t.Errorf("handler called %d times, want never", n)
	}
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.deadLettered[connectors.DLQMalformed] != 2 || obs.deadLettered[connectors.DLQOtherSystem] != 1 {
		t.Errorf("observer saw dead letters %v", obs.deadLettered)
	}
}

// TestRunBatchWithPostgresDedup runs a batch command through a connector
// whose store is NewPostgresDedup, which looks items up and records them
// many at a time: a second replica, sharing the store, answers the same
// command again from it for the items that did not fail, and calls the
// handler with the failed one only.
func TestRunBatchWithPostgresDedup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	db := openPostgres(t)
	store, err := connectors.NewPostgresDedup(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	bc := newBatchCommand(4)
	h := &batchRecorder{fail: map[string]bool{bc.Items[2].ItemID: true}}
	cfg := config(brokers, nil)
	cfg.Dedup = store
	stop := start(t, cfg, h)
	confs := newConsumer(t, brokers, wire.ConfirmationsTopic)
	produce(ctx, t, brokers, batchMessage(t, bc))
	first, _ := confs.nextBatchConfirmation(ctx, t)
	stop()

	var rows int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM lethe_connector_dedup`).Scan(&rows); err != nil || rows != 3 {
		t.Fatalf("the store holds %d rows (%v), want the 3 items that did not fail", rows, err)
	}
	store2, err := connectors.NewPostgresDedup(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	h2 := &batchRecorder{}
	cfg.Dedup = store2
	start(t, cfg, h2)
	again := bc
	again.Attempt = 2
	produce(ctx, t, brokers, batchMessage(t, again))
	second, _ := confs.nextBatchConfirmation(ctx, t)
	for i := range bc.Items {
		if i == 2 {
			if second.Items[i].Outcome != wire.OutcomeErased {
				t.Errorf("the failed item was confirmed %s on its new attempt, want erased", second.Items[i].Outcome)
			}
			continue
		}
		if !sameItem(first.Items[i], second.Items[i]) {
			t.Errorf("item %d = %+v on the other replica, want as first %+v", i, second.Items[i], first.Items[i])
		}
	}
	if calls := h2.callItems(); len(calls) != 1 || len(calls[0]) != 1 || calls[0][0] != bc.Items[2].ItemID {
		t.Errorf("the other replica's handler calls = %v, want the failed item only", calls)
	}
}
