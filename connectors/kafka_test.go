package connectors_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

func TestDeadLetter(t *testing.T) {
	m := kafka.Message{
		Topic:     "lethe.erasure.orders",
		Partition: 2,
		Offset:    41,
		Key:       []byte("k"),
		Value:     []byte("v"),
		Headers: []kafka.Header{
			{Key: "trace", Value: []byte("t")},
			{Key: wire.HeaderDLQReason, Value: []byte("an older reason")},
		},
	}
	d := connectors.DeadLetter(m, "bad schema")
	if d.Topic != "lethe.erasure.orders.dlq" || string(d.Key) != "k" || string(d.Value) != "v" {
		t.Errorf("dead letter = %s %q %q, want the original key and value on the DLQ topic", d.Topic, d.Key, d.Value)
	}
	if v, _ := connectors.Header(d, "trace"); v != "t" {
		t.Errorf("trace header = %q, want the original", v)
	}
	var reasons []string
	for _, h := range d.Headers {
		if h.Key == wire.HeaderDLQReason {
			reasons = append(reasons, string(h.Value))
		}
	}
	if len(reasons) != 1 || reasons[0] != "bad schema" {
		t.Errorf("reason headers = %q, want only the new reason", reasons)
	}
	if d.Partition != 0 || d.Offset != 0 {
		t.Errorf("dead letter keeps partition/offset %d/%d; the writer must choose them", d.Partition, d.Offset)
	}

	m.Value = bytes.Repeat([]byte("x"), 600<<10)
	d = connectors.DeadLetter(m, "too big")
	if reason, _ := connectors.Header(d, wire.HeaderDLQReason); d.Value != nil || !strings.HasPrefix(reason, "too big (original value of 614400 bytes dropped)") {
		t.Errorf("oversized dead letter keeps %d bytes, reason %q; want the value dropped and said so", len(d.Value), reason)
	}
}

func TestConsume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const tp = "consume.test"
	brokers, cluster := testenv.Kafka(t, tp)
	var msgs []kafka.Message
	for _, v := range []string{"1", "2", "3", "4", "5"} {
		msgs = append(msgs, kafka.Message{Topic: tp, Key: []byte("same"), Value: []byte(v)})
	}
	produce(ctx, t, brokers, msgs...)
	log := slog.New(slog.DiscardHandler)

	t.Run("a failing handler stops it uncommitted", func(t *testing.T) {
		r := connectors.NewReader(brokers, "failing", tp, log)
		defer r.Close()
		boom := errors.New("boom")
		err := connectors.Consume(ctx, r, 3, 200*time.Millisecond, log, func(context.Context, []kafka.Message) error { return boom })
		if !errors.Is(err, boom) {
			t.Errorf("Consume = %v, want the handler's error", err)
		}
		if info := cluster.GroupInfo("failing"); info != nil && len(info.Commits[tp]) > 0 {
			t.Errorf("commits = %+v, want none", info.Commits[tp])
		}
	})

	t.Run("batches, then commits", func(t *testing.T) {
		r := connectors.NewReader(brokers, "batches", tp, log)
		defer r.Close()
		cctx, stop := context.WithCancel(ctx)
		var got []string
		err := connectors.Consume(cctx, r, 3, 200*time.Millisecond, log, func(_ context.Context, batch []kafka.Message) error {
			got = append(got, values(batch))
			if len(got) == 2 {
				stop() // Consume must still commit this batch, then return
			}
			return nil
		})
		if err != nil {
			t.Errorf("Consume = %v after cancel, want nil", err)
		}
		if strings.Join(got, "|") != "123|45" {
			t.Errorf("batches = %q, want 123|45", got)
		}
		var committed int64
		for _, c := range cluster.GroupInfo("batches").Commits[tp] {
			committed += c.Offset
		}
		if committed != 5 {
			t.Errorf("committed offsets sum to %d, want 5: a batch handled before the cancel is committed", committed)
		}
	})
}

func values(msgs []kafka.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		b.Write(m.Value)
	}
	return b.String()
}

func TestRetry(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t.Run("until success", func(t *testing.T) {
		calls := 0
		err := connectors.Retry(context.Background(), log, "op", func(context.Context) error {
			calls++
			if calls < 3 {
				return errors.New("transient")
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Errorf("Retry = %v after %d calls, want nil after 3", err, calls)
		}
	})
	t.Run("until canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		err := connectors.Retry(ctx, log, "op", func(context.Context) error {
			calls++
			cancel()
			return errors.New("down")
		})
		if !errors.Is(err, context.Canceled) || calls != 1 {
			t.Errorf("Retry = %v after %d calls, want context.Canceled after 1", err, calls)
		}
	})
}
