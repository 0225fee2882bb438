// Package kafkax is the Kafka plumbing of Lethe's own processes: the API and
// the worker write commands, the relay reads confirmations, `lethe dev` and
// the API create topics. The code itself lives in package connectors, so that
// Lethe and the services it drives write, read, dead-letter and retry with
// one implementation; this package gives the orchestrator's side one place
// to import it from, plus what only the orchestrator needs.
package kafkax

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
)

// DefaultPartitions is how many partitions a topic Lethe creates gets.
const DefaultPartitions = connectors.DefaultPartitions

// NewWriter returns the writer for commands, confirmations and dead letters:
// each message names its topic, every in-sync replica acknowledges, keys are
// hashed so one request's messages stay ordered, batches flush after 5ms, and
// topics are never created by accident. See connectors.NewWriter.
func NewWriter(brokers []string) *kafka.Writer { return connectors.NewWriter(brokers) }

// NewReader returns a consumer-group reader that commits only on explicit,
// synchronous CommitMessages calls. See connectors.NewReader.
func NewReader(brokers []string, groupID, topic string, log *slog.Logger) *kafka.Reader {
	return connectors.NewReader(brokers, groupID, topic, log)
}

// EnsureTopics creates the missing ones of topics through the cluster's
// controller, with a replication factor of min(3, brokers), and waits until
// they are visible; existing topics are left alone. See connectors.EnsureTopics.
func EnsureTopics(ctx context.Context, brokers []string, partitions int, topics ...string) error {
	return connectors.EnsureTopics(ctx, brokers, partitions, topics...)
}

// DeadLetter returns the message that carries m, with reason in the
// wire.HeaderDLQReason header, to its topic's dead-letter topic. See
// connectors.DeadLetter.
func DeadLetter(m kafka.Message, reason string) kafka.Message {
	return connectors.DeadLetter(m, reason)
}

// Consume runs the at-least-once loop: fetch a batch, handle it, commit it,
// retrying fetches and commits until ctx ends. See connectors.Consume.
func Consume(ctx context.Context, r *kafka.Reader, size int, wait time.Duration, log *slog.Logger,
	handle func(ctx context.Context, batch []kafka.Message) error) error {
	return connectors.Consume(ctx, r, size, wait, log, handle)
}

// Retry calls fn with capped exponential backoff until it succeeds or ctx
// ends. See connectors.Retry.
func Retry(ctx context.Context, log *slog.Logger, op string, fn func(context.Context) error) error {
	return connectors.Retry(ctx, log, op, fn)
}

// WriteAll writes msgs, retrying the failed ones until all are acknowledged
// or ctx ends. See connectors.WriteAll.
func WriteAll(ctx context.Context, w *kafka.Writer, log *slog.Logger, msgs ...kafka.Message) error {
	return connectors.WriteAll(ctx, w, log, msgs...)
}

// SplitBrokers reads LETHE_KAFKA_BROKERS: a comma-separated list of
// addresses, blanks around them and empty entries ignored.
func SplitBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}
