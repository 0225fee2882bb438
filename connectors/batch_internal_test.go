package connectors

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/wire"
)

// batchFunc is a BatchHandler made of a function.
type batchFunc func(ctx context.Context, req BatchRequest) ([]ItemResult, error)

func (f batchFunc) Erase(context.Context, Request) (Result, error) {
	return Result{}, errors.New("not called for batch commands")
}

func (f batchFunc) EraseBatch(ctx context.Context, req BatchRequest) ([]ItemResult, error) {
	return f(ctx, req)
}

func internalBatch(n int) wire.BatchCommand {
	c := wire.BatchCommand{
		Schema: wire.SchemaBatchCommand, CommandID: uuid.NewString(), BatchID: uuid.NewString(), System: fuzzSystem, Attempt: 1,
		IssuedAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), ConfirmBy: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC),
	}
	for range n {
		c.Items = append(c.Items, wire.BatchItem{ItemID: uuid.NewString(), Identifiers: []wire.Identifier{{Type: "email", Value: fuzzValue}}})
	}
	return c
}

// handleOneBatch runs the consumer's handling of one batch command and
// decodes every batch confirmation it would publish.
func handleOneBatch(t *testing.T, c *consumer, bc wire.BatchCommand) []wire.BatchConfirmation {
	t.Helper()
	m, err := EncodeBatchCommand(fuzzTopic, bc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	results, ok := c.handle(ctx, ctx, ctx, []kafka.Message{m})
	if !ok || !results[0].done {
		t.Fatal("the batch command was left unanswered")
	}
	var out []wire.BatchConfirmation
	for _, msg := range append([]kafka.Message{results[0].msg}, results[0].more...) {
		conf, err := wire.DecodeBatchConfirmation(msg.Value)
		if err != nil {
			t.Fatalf("not a batch confirmation: %v (%s)", err, msg.Value)
		}
		out = append(out, conf)
	}
	return out
}

// TestBatchHandlerErrorsFailEveryItem: an error fails every item of the
// call, retryable unless Permanent; a panic is a retryable failure; an item
// left out of the results fails definitively. No detail quotes the error.
func TestBatchHandlerErrorsFailEveryItem(t *testing.T) {
	for _, tc := range []struct {
		name      string
		h         batchFunc
		retryable bool
		detail    string
		calls     int32
	}{
		{"error", func(context.Context, BatchRequest) ([]ItemResult, error) {
			return nil, errors.New("deadlock on " + fuzzValue)
		}, true, detailHandlerFailed, int32(fuzzRetry.MaxAttempts)},
		{"permanent", func(context.Context, BatchRequest) ([]ItemResult, error) {
			return nil, Permanent(errors.New("constraint on " + fuzzValue))
		}, false, detailHandlerFailedPermanently, 1},
		{"panic", func(context.Context, BatchRequest) ([]ItemResult, error) { panic(fuzzValue) }, true, detailHandlerFailed, 1},
		{"no results", func(context.Context, BatchRequest) ([]ItemResult, error) { return nil, nil }, false, detailNoItemResult, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			h := batchFunc(func(ctx context.Context, req BatchRequest) ([]ItemResult, error) {
				calls.Add(1)
				return tc.h(ctx, req)
			})
			logs := &bytes.Buffer{}
			confs := handleOneBatch(t, fuzzConsumer(t, logs, h), internalBatch(3))
			if len(confs) != 1 || len(confs[0].Items) != 3 {
				t.Fatalf("got %+v, want one confirmation of 3 items", confs)
			}
			for i, it := range confs[0].Items {
				if it.Outcome != wire.OutcomeFailed || it.Retryable != tc.retryable || it.Detail != tc.detail {
					t.Errorf("item %d = %+v, want failed, retryable %v, detail %q", i, it, tc.retryable, tc.detail)
				}
			}
			if got := calls.Load(); got != tc.calls {
				t.Errorf("handler called %d times, want %d", got, tc.calls)
			}
			if strings.Contains(logs.String(), fuzzValue) {
				t.Errorf("logs quote an identifier value: %s", logs)
			}
		})
	}
}

// TestBatchInvalidItemResultFailsThatItemOnly: a retained result without a
// legal basis fails its own item; the others count.
func TestBatchInvalidItemResultFailsThatItemOnly(t *testing.T) {
	bc := internalBatch(2)
	h := batchFunc(func(_ context.Context, req BatchRequest) ([]ItemResult, error) {
		return []ItemResult{
			{ItemID: req.Items[0].ItemID, Result: Result{Outcome: wire.OutcomeRetained}},
			{ItemID: req.Items[1].ItemID, Result: Result{Outcome: wire.OutcomeErased, Records: 4}},
			{ItemID: uuid.NewString(), Result: Result{Outcome: wire.OutcomeErased}}, // not asked for: ignored
		}, nil
	})
	confs := handleOneBatch(t, fuzzConsumer(t, &bytes.Buffer{}, h), bc)
	items := confs[0].Items
	if items[0].Outcome != wire.OutcomeFailed || !strings.HasPrefix(items[0].Detail, detailInvalidResult) {
		t.Errorf("item 0 = %+v, want failed for an invalid result", items[0])
	}
	if items[1].Outcome != wire.OutcomeErased || items[1].Records != 4 {
		t.Errorf("item 1 = %+v, want erased, 4 records", items[1])
	}
}

// TestBatchConfirmationTooLargeIsSplit: a thousand items retained with the
// longest details do not fit one message; they go out in several batch
// confirmations of the same command, each within the limit, every item
// once.
func TestBatchConfirmationTooLargeIsSplit(t *testing.T) {
	bc := internalBatch(wire.MaxBatchItems)
	long := strings.Repeat("a legal basis. ", wire.MaxDetailBytes/15)
	h := batchFunc(func(_ context.Context, req BatchRequest) ([]ItemResult, error) {
		out := make([]ItemResult, len(req.Items))
		for i, it := range req.Items {
			out[i] = ItemResult{ItemID: it.ItemID, Result: Result{Outcome: wire.OutcomeRetained, Detail: long}}
		}
		return out, nil
	})
	confs := handleOneBatch(t, fuzzConsumer(t, &bytes.Buffer{}, h), bc)
	if len(confs) < 2 {
		t.Fatalf("%d confirmations, want the answer split", len(confs))
	}
	seen := map[string]bool{}
	for _, c := range confs {
		if c.CommandID != bc.CommandID {
			t.Errorf("part for command %s, want %s", c.CommandID, bc.CommandID)
		}
		for _, it := range c.Items {
			if seen[it.ItemID] || it.Outcome != wire.OutcomeRetained {
				t.Errorf("item %s repeated or not retained", it.ItemID)
			}
			seen[it.ItemID] = true
		}
	}
	if len(seen) != len(bc.Items) {
		t.Errorf("%d items answered, want %d", len(seen), len(bc.Items))
	}
}

// TestBatchAdaptedHandlerIsBoundedAndRetried: items passed to a plain
// Handler run at most Config.Concurrency at once, and each item's error is
// retried like a command's.
func TestBatchAdaptedHandlerIsBoundedAndRetried(t *testing.T) {
	var (
		mu            sync.Mutex
		running, peak int
		calls         = map[string]int{}
	)
	h := HandlerFunc(func(_ context.Context, req Request) (Result, error) {
		mu.Lock()
		running++
		peak = max(peak, running)
		calls[req.RequestID]++
		first := calls[req.RequestID] == 1
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		if first {
			return Result{}, errors.New("transient")
		}
		return Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	})
	c := fuzzConsumer(t, &bytes.Buffer{}, h)
	c.cfg.Concurrency = 3
	bc := internalBatch(12)
	confs := handleOneBatch(t, c, bc)
	for i, it := range confs[0].Items {
		if it.ItemID != bc.Items[i].ItemID || it.Outcome != wire.OutcomeErased {
			t.Errorf("item %d = %+v, want erased in the command's order", i, it)
		}
	}
	if peak > 3 || peak < 2 {
		t.Errorf("peak concurrency %d, want 2 or 3 with Concurrency 3", peak)
	}
	for id, n := range calls {
		if n != 2 {
			t.Errorf("item %s called %d times, want 2 (one retry)", id, n)
		}
	}
}

func TestItemCommandIDIsStablePerItem(t *testing.T) {
	cmd, a, b := uuid.NewString(), uuid.NewString(), uuid.NewString()
	if ItemCommandID(cmd, a) != ItemCommandID(cmd, a) {
		t.Error("the same item gets two ids")
	}
	if ItemCommandID(cmd, a) == ItemCommandID(cmd, b) || ItemCommandID(cmd, a) == ItemCommandID(uuid.NewString(), a) {
		t.Error("two items, or two commands, share an id")
	}
	if !wire.ValidID(ItemCommandID(cmd, a)) {
		t.Error("an item's id is not a UUID of the wire format")
	}
}
