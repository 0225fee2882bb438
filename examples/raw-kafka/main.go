// Command raw-kafka is a connector written against the wire format alone,
// with a plain Kafka client and no Lethe package: the steps a team in any
// language follows (docs/connectors.md). It answers every command for the
// system "newsletter" with not_found.
//
//	LETHE_KAFKA_BROKERS=127.0.0.1:9092 go run ./examples/raw-kafka
package main

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

const system = "newsletter"

// command is the part of erasure.command.v1 this connector reads.
type command struct {
	Schema      string `json:"schema"`
	CommandID   string `json:"command_id"`
	RequestID   string `json:"request_id"`
	System      string `json:"system"`
	Attempt     int    `json:"attempt"`
	Identifiers []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"identifiers"`
	DryRun bool `json:"dry_run"`
}

// confirmation is erasure.confirmation.v1.
type confirmation struct {
	Schema      string    `json:"schema"`
	CommandID   string    `json:"command_id"`
	RequestID   string    `json:"request_id"`
	System      string    `json:"system"`
	Outcome     string    `json:"outcome"`
	Records     int64     `json:"records"`
	Detail      string    `json:"detail"`
	Retryable   bool      `json:"retryable"`
	ConfirmedAt time.Time `json:"confirmed_at"`
}

// reader and writer are the parts of kafka-go's Reader and Writer used.
type reader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

type writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	brokers := strings.Split(os.Getenv("LETHE_KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		brokers = []string{"127.0.0.1:9092"}
	}
	// 1. Read your own topic in a consumer group; commit by hand.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: "lethe-connector-" + system, Topic: "lethe.erasure." + system})
	defer r.Close()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond}
	defer w.Close()
	run(ctx, r, w, time.Second)
}

// run serves commands until ctx ends. A message is committed only once its
// answer (a confirmation, or the message parked on the dead-letter topic)
// is acknowledged; until then the same message is handled again, every
// pause: committing a later message first would commit past it, and the
// command would never be answered (rule 4 of the wire format).
func run(ctx context.Context, r reader, w writer, pause time.Duration) {
	seen := map[string]confirmation{} // use a durable store in production
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return // context canceled
		}
		for {
			err := handle(ctx, w, m, seen)
			if err == nil {
				err = r.CommitMessages(ctx, m)
			}
			if err == nil {
				break
			}
			log.Printf("offset %d not answered yet, trying again: %v", m.Offset, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
		}
	}
}

// handle answers one message and returns once the answer is acknowledged.
func handle(ctx context.Context, w writer, m kafka.Message, seen map[string]confirmation) error {
	var c command
	if err := json.Unmarshal(m.Value, &c); err != nil || c.Schema != "erasure.command.v1" || c.System != system {
		// 2. Park what you cannot read on <topic>.dlq with a reason.
		dlq := kafka.Message{Topic: m.Topic + ".dlq", Key: m.Key, Value: m.Value,
			Headers: append(m.Headers, kafka.Header{Key: "lethe-dlq-reason", Value: []byte("not an erasure.command.v1 for " + system)})}
		return w.WriteMessages(ctx, dlq)
	}
	// 3. A repeated command_id is the same command: answer it the same way.
	conf, ok := seen[c.CommandID]
	if !ok {
		// 4. Erase (or, on dry_run, only count) by the identifiers given.
		conf = confirmation{Schema: "erasure.confirmation.v1", CommandID: c.CommandID, RequestID: c.RequestID,
			System: system, Outcome: "not_found", ConfirmedAt: time.Now().UTC()}
		seen[c.CommandID] = conf
	}
	// 5. Confirm on lethe.erasure.confirmations, keyed by request id.
	body, err := json.Marshal(conf)
	if err != nil {
		return err
	}
	return w.WriteMessages(ctx, kafka.Message{Topic: "lethe.erasure.confirmations", Key: []byte(c.RequestID), Value: body,
		Headers: []kafka.Header{{Key: "lethe-schema", Value: []byte(conf.Schema)}}})
}
