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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	brokers := strings.Split(os.Getenv("LETHE_KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		brokers = []string{"127.0.0.1:9092"}
	}
	const system = "newsletter"
	// 1. Read your own topic in a consumer group; commit by hand.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: "lethe-connector-" + system, Topic: "lethe.erasure." + system})
	defer r.Close()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond}
	defer w.Close()
	seen := map[string]confirmation{} // use a durable store in production
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return // context canceled
		}
		var c command
		if err := json.Unmarshal(m.Value, &c); err != nil || c.Schema != "erasure.command.v1" || c.System != system {
			// 2. Park what you cannot read on <topic>.dlq with a reason, then commit.
			dlq := kafka.Message{Topic: m.Topic + ".dlq", Key: m.Key, Value: m.Value,
				Headers: append(m.Headers, kafka.Header{Key: "lethe-dlq-reason", Value: []byte("not an erasure.command.v1 for " + system)})}
			if err := w.WriteMessages(ctx, dlq); err != nil {
				log.Printf("dead-letter: %v", err)
				continue // not committed: redelivered after a restart or rebalance
			}
			r.CommitMessages(ctx, m)
			continue
		}
		// 3. A repeated command_id is the same command: answer it the same way.
		conf, ok := seen[c.CommandID]
		if !ok {
			// 4. Erase (or, on dry_run, only count) by the identifiers given.
			conf = confirmation{Schema: "erasure.confirmation.v1", CommandID: c.CommandID, RequestID: c.RequestID,
				System: system, Outcome: "not_found", ConfirmedAt: time.Now().UTC()}
			seen[c.CommandID] = conf
		}
		// 5. Confirm on lethe.erasure.confirmations, keyed by request id, then commit.
		body, _ := json.Marshal(conf)
		reply := kafka.Message{Topic: "lethe.erasure.confirmations", Key: []byte(c.RequestID), Value: body,
			Headers: []kafka.Header{{Key: "lethe-schema", Value: []byte(conf.Schema)}}}
		if err := w.WriteMessages(ctx, reply); err != nil {
			log.Printf("confirm: %v", err)
			continue
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			log.Printf("commit: %v", err)
		}
	}
}
