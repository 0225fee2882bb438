package connectors_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// The two benchmarks below measure the PERFORMANCE.md row "connector SDK,
// no-op handler ≥ 0.8 × raw kafka-go consume → produce → commit": both
// consume the same pre-produced commands from the same kind of broker and
// stop timing when the group has committed them all.

func BenchmarkRunNoopHandler(b *testing.B) {
	brokers, cluster, group := benchSetup(b)
	noop := connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		return connectors.Result{Outcome: wire.OutcomeNotFound}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	done := make(chan error, 1)
	go func() {
		done <- connectors.Run(ctx, connectors.Config{Brokers: brokers, System: system, GroupID: group, Logger: slog.New(slog.DiscardHandler)}, noop)
	}()
	benchAwait(b, cluster, group)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

func BenchmarkRawKafkaGo(b *testing.B) {
	brokers, cluster, group := benchSetup(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	go func() {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: group, Topic: topic, StartOffset: kafka.FirstOffset, MaxWait: time.Second})
		defer r.Close()
		w := connectors.NewWriter(brokers)
		defer w.Close()
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				return
			}
			if err := w.WriteMessages(ctx, kafka.Message{Topic: wire.ConfirmationsTopic, Key: m.Key, Value: m.Value}); err != nil {
				return
			}
			if err := r.CommitMessages(ctx, m); err != nil {
				return
			}
		}
	}()
	benchAwait(b, cluster, group)
	b.StopTimer()
}

func benchSetup(b *testing.B) ([]string, *kfake.Cluster, string) {
	brokers, cluster := testenv.Kafka(b, topic, wire.ConfirmationsTopic, wire.DLQTopic(topic))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w := connectors.NewWriter(brokers)
	defer w.Close()
	msgs := make([]kafka.Message, 0, b.N)
	for range b.N {
		m, err := connectors.EncodeCommand(topic, newCommand(uuid.NewString()))
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		b.Fatal(err)
	}
	return brokers, cluster, "bench-" + uuid.NewString()
}

func benchAwait(b *testing.B, cluster *kfake.Cluster, group string) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		info := cluster.GroupInfo(group)
		done := info != nil
		for _, p := range cluster.PartitionInfos(topic) {
			if !done || info.Commits[topic][p.Partition].Offset != p.HighWatermark {
				done = false
				break
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("group %s did not commit every command in time", group)
		}
		time.Sleep(time.Millisecond)
	}
}
