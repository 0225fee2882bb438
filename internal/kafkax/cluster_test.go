package kafkax_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/roles"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// A Cluster's topic creation, writer and reader all log in with its
// Security: Lethe's principal creates a system's topic, writes a command
// and reads a confirmation on a broker that requires SASL and enforces
// ACLs, while the same calls without the login are refused.
func TestClusterOverSASL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	users := []testenv.KafkaUser{{Name: "lethe", Password: "pw-lethe", ACLs: roles.LetheKafkaACLs("lethe")}}
	brokers, _ := testenv.SecureKafka(t, "pw-admin", users, wire.ConfirmationsTopic)
	c := kafkax.Cluster{Brokers: brokers, Security: testenv.KafkaLogin(t, "lethe", "pw-lethe")}

	topic := wire.DefaultTopic("orders")
	if err := c.EnsureTopics(ctx, 1, topic); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	w := c.Writer()
	defer w.Close()
	msgs := []kafka.Message{
		{Topic: topic, Key: []byte("r1"), Value: []byte(`{"command":1}`)},
		{Topic: wire.ConfirmationsTopic, Key: []byte("r1"), Value: []byte(`{"confirmation":1}`)},
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write: %v", err)
	}
	r := c.Reader("lethe-relay", wire.ConfirmationsTopic, slog.New(slog.DiscardHandler))
	defer r.Close()
	m, err := r.FetchMessage(ctx)
	if err != nil || string(m.Value) != `{"confirmation":1}` {
		t.Fatalf("read confirmation: %q, %v", m.Value, err)
	}
	if err := r.CommitMessages(ctx, m); err != nil {
		t.Errorf("commit: %v", err)
	}

	plain := kafkax.Cluster{Brokers: brokers}
	short, scancel := context.WithTimeout(ctx, 3*time.Second)
	defer scancel()
	if err := plain.EnsureTopics(short, 1, wire.DefaultTopic("billing")); err == nil {
		t.Errorf("topic created without logging in")
	}
}
