package roles

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// RunRelay, as `lethe relay` runs it, connects with Deps.KafkaSecurity and
// needs no more than Lethe's ACLs: on a broker that requires SCRAM and
// enforces them it reads a malformed confirmation with its group,
// dead-letters it and commits. (The topics exist before, so that the test's
// reader of the dead letters is assigned its partitions at once; creating
// them under these ACLs is TestLeastPrivilegeACLs's.)
func TestRunRelayUnderLetheACLs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), aclTestTimeout)
	defer cancel()
	users := []testenv.KafkaUser{{Name: "lethe", Password: "lethe-pw", ACLs: LetheKafkaACLs("lethe")}}
	brokers, _ := testenv.SecureKafka(t, "admin-pw", users, wire.ConfirmationsTopic, wire.DLQTopic(wire.ConfirmationsTopic))
	adminSec := testenv.KafkaLogin(t, testenv.KafkaAdmin, "admin-pw")
	admin := kafkax.Cluster{Brokers: brokers, Security: adminSec}
	w := admin.Writer()
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Topic: wire.ConfirmationsTopic, Key: []byte("r"), Value: []byte("not json")}); err != nil {
		t.Fatal(err)
	}

	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- RunRelay(rctx, Deps{Store: registry.New(nil), Temporal: fakeClient{}, Brokers: brokers,
			KafkaSecurity: testenv.KafkaLogin(t, "lethe", "lethe-pw"), Partitions: 1, Logger: slog.New(slog.DiscardHandler)})
	}()
	r := admin.Reader("dlq-check", wire.DLQTopic(wire.ConfirmationsTopic), slog.New(slog.DiscardHandler))
	defer r.Close()
	m, err := r.FetchMessage(ctx)
	if err != nil {
		t.Fatalf("no dead letter from the relay: %v", err)
	}
	if string(m.Value) != "not json" {
		t.Errorf("dead letter %q, want the malformed confirmation", m.Value)
	}
	// The relay's group commits the offset past the malformed message.
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: adminSec.Transport()}
	parts := make([]int, testenv.KafkaPartitions)
	for i := range parts {
		parts[i] = i
	}
	for {
		var committed int64
		res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: "lethe-relay",
			Topics: map[string][]int{wire.ConfirmationsTopic: parts}})
		if err == nil {
			for _, p := range res.Topics[wire.ConfirmationsTopic] {
				if p.CommittedOffset > 0 {
					committed += p.CommittedOffset
				}
			}
		}
		if committed == 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the relay's group never committed past the malformed confirmation (last error %v)", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil && rctx.Err() == nil {
		t.Errorf("relay: %v", err)
	}
}

const aclTestTimeout = 60 * time.Second
