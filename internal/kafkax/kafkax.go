// Package kafkax is the Kafka plumbing of Lethe's own processes: the API and
// the worker write commands, the relay reads confirmations, `lethe dev` and
// the API create topics. The code itself lives in package connectors and
// internal/kafkasec, so that Lethe and the services it drives secure, write,
// read, dead-letter and retry with one implementation; this package gives the orchestrator's side one place
// to import it from, plus what only the orchestrator needs.
package kafkax

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/kafkasec"
)

// DefaultPartitions is how many partitions a topic Lethe creates gets.
const DefaultPartitions = connectors.DefaultPartitions

// Cluster is a Kafka cluster as the roles reach it: its bootstrap brokers
// and the security of the connections (LETHE_KAFKA_TLS*, LETHE_KAFKA_SASL*).
// The roles build every writer, reader and topic creation through it, so
// that none of them connects in plaintext to a cluster that wants TLS or
// SASL.
type Cluster struct {
	Brokers []string
	// Security is the zero value for plaintext connections.
	Security kafkasec.Security
	// Group are the timeouts of the consumer groups of c's readers; the
	// zero value is kafkasec's defaults.
	Group kafkasec.GroupTimeouts
}

// Writer returns the writer for commands, confirmations and dead letters
// (see NewWriter) over c's secured connections.
func (c Cluster) Writer() *kafka.Writer { return kafkasec.NewWriter(c.Brokers, c.Security) }

// Reader returns a consumer-group reader (see NewReader) over c's secured
// connections.
func (c Cluster) Reader(groupID, topic string, log *slog.Logger) *kafka.Reader {
	return kafkasec.NewReader(c.Brokers, groupID, topic, log, c.Security, c.Group, nil)
}

// EnsureTopics creates the missing ones of topics (see EnsureTopics) over
// c's secured connections.
func (c Cluster) EnsureTopics(ctx context.Context, partitions int, topics ...string) error {
	return kafkasec.EnsureTopics(ctx, c.Brokers, c.Security, partitions, topics...)
}

// NewWriter returns the writer for commands, confirmations and dead letters:
// each message names its topic, every in-sync replica acknowledges, keys are
// hashed so one request's messages stay ordered, batches flush after 5ms, and
// topics are never created by accident. Its connections are plaintext, for
// the embedded broker and tests; the roles use Cluster.Writer.
func NewWriter(brokers []string) *kafka.Writer { return Cluster{Brokers: brokers}.Writer() }

// NewReader returns a plaintext consumer-group reader that commits only on
// explicit, synchronous CommitMessages calls; the roles use Cluster.Reader.
func NewReader(brokers []string, groupID, topic string, log *slog.Logger) *kafka.Reader {
	return Cluster{Brokers: brokers}.Reader(groupID, topic, log)
}

// EnsureTopics creates the missing ones of topics through the cluster's
// controller over plaintext connections, with a replication factor of
// min(3, brokers), and waits until they are visible; existing topics are
// left alone. The roles use Cluster.EnsureTopics.
func EnsureTopics(ctx context.Context, brokers []string, partitions int, topics ...string) error {
	return Cluster{Brokers: brokers}.EnsureTopics(ctx, partitions, topics...)
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
