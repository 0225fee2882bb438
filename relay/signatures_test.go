package relay_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/metrics/metricstest"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/relay"
	"github.com/lethe-dev/lethe/wire"
)

// signed is m with the two signature headers, computed over its value.
func signed(m kafka.Message, keyID string, secret []byte) kafka.Message {
	m.Headers = append(append([]kafka.Header(nil), m.Headers...),
		kafka.Header{Key: wire.HeaderKeyID, Value: []byte(keyID)},
		kafka.Header{Key: wire.HeaderSignature, Value: []byte(wire.Sign(secret, m.Value))})
	return m
}

// TestRelayChecksSignatures runs the relay on a Kafka-protocol broker and
// PostgreSQL: a system with a credential gets only its correctly signed
// confirmation counted, and every forgery is dead-lettered and audited,
// while a system never issued a credential still works unsigned.
func TestRelayChecksSignatures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	for _, name := range []string{"orders", "billing", "legacy"} {
		if _, _, err := store.PutSystem(ctx, lethe.System{Name: name, Identifiers: []string{"user_id"}}, registry.SystemWrite{Actor: "token:ops"}); err != nil {
			t.Fatal(err)
		}
	}
	master, err := credential.New(bytes.Repeat([]byte{3}, credential.MinMasterKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	ordersKey, err := store.IssueCredential(ctx, "orders", "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	billingKey, err := store.IssueCredential(ctx, "billing", "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	known := uuid.NewString()
	if _, _, err := store.CreateErasure(ctx, registry.NewErasure{ID: known, RequestHash: "h",
		Subject: []lethe.SubjectDigest{{Type: "user_id", Digest: "d"}}}, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	unknown := uuid.NewString()

	good := encode(t, confirmation(known, "orders"))[0]
	otherSystems := encode(t, confirmation(known, "orders"))[0]
	unsigned := encode(t, confirmation(unknown, "orders"))[0]
	flipped := signed(encode(t, confirmation(known, "orders"))[0], ordersKey, master.Secret(ordersKey))
	flipped.Value = bytes.Replace(flipped.Value, []byte(`"records":2`), []byte(`"records":3`), 1)
	legacy := encode(t, confirmation(known, "legacy"))[0]
	produce(ctx, t, brokers,
		signed(otherSystems, billingKey, master.Secret(billingKey)),
		unsigned,
		flipped,
		signed(good, ordersKey, master.Secret(ordersKey)),
		legacy,
	)

	s := &signaler{}
	logs := &testenv.LogBuffer{}
	cfg := config(brokers, logs)
	cfg.Credentials, cfg.SystemKey = store, master
	m := metrics.New()
	cfg.Metrics = m
	r := start(t, cfg, s, store)
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })
	eventually(ctx, t, "refusals counted", func() bool { return r.Stats().BadSignatures == 3 })
	if got, _ := metricstest.Scrape(t, m.Handler()).Value("lethe_dlq_messages_total",
		"topic", topic, "reason", relay.DLQBadSignature); got != 3 {
		t.Errorf("lethe_dlq_messages_total{reason=bad_signature} = %v, want 3", got)
	}

	var signaled []string
	for _, c := range s.calls() {
		for _, conf := range c.arg.Confirmations {
			signaled = append(signaled, conf.System+"/"+conf.CommandID)
		}
	}
	goodConf, _ := wire.DecodeConfirmation(good.Value)
	legacyConf, _ := wire.DecodeConfirmation(legacy.Value)
	want := []string{"orders/" + goodConf.CommandID, "legacy/" + legacyConf.CommandID}
	if strings.Join(signaled, ",") != strings.Join(want, ",") {
		t.Errorf("signaled %v, want only the well-signed and the legacy confirmation %v", signaled, want)
	}

	dlq := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: "test-dlq", Topic: wire.DLQTopic(topic), StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer dlq.Close()
	// The refused confirmations lie on several partitions: their order
	// in the dead-letter topic and the audit is not theirs on the topic.
	pending := map[string]bool{string(otherSystems.Value): true, string(unsigned.Value): true, string(flipped.Value): true}
	for range 3 {
		m, err := dlq.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read dead letter: %v", err)
		}
		if !pending[string(m.Value)] {
			t.Errorf("dead letter %q is none of the refused confirmations, or came twice", m.Value)
		}
		delete(pending, string(m.Value))
		if reason, _ := connectors.Header(m, wire.HeaderDLQReason); reason != "bad_signature" {
			t.Errorf("dead-letter reason = %q, want bad_signature", reason)
		}
	}

	rows, err := db.QueryContext(ctx, `SELECT coalesce(request_id::text, ''), system, detail
		FROM audit_events WHERE kind = 'bad_signature' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var req, system, detail string
		if err := rows.Scan(&req, &system, &detail); err != nil {
			t.Fatal(err)
		}
		got = append(got, req+"|"+system+"|"+detail)
	}
	slices.Sort(got)
	wantAudit := []string{
		known + "|orders|key " + billingKey + " is not a current key of system orders",
		known + "|orders|signature does not match the value under key " + ordersKey,
		"|orders|unsigned: no single lethe-key-id and lethe-signature header",
	}
	slices.Sort(wantAudit)
	if strings.Join(got, "\n") != strings.Join(wantAudit, "\n") {
		t.Errorf("bad_signature audit =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantAudit, "\n"))
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the relay logged a derived identifier value:\n%s", logs)
	}
}

// TestRelayRequireSignatures refuses an unsigned confirmation of a system
// that was never issued a credential once signatures are required.
func TestRelayRequireSignatures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic)
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	produce(ctx, t, brokers, encode(t, confirmation(uuid.NewString(), "legacy"))...)

	s := &signaler{}
	cfg := config(brokers, &testenv.LogBuffer{})
	cfg.Credentials, cfg.RequireSignatures = store, true
	r := start(t, cfg, s, store)
	eventually(ctx, t, "batch committed", func() bool { return committed(cluster, topic) })
	eventually(ctx, t, "refusal counted", func() bool { return r.Stats().BadSignatures == 1 })
	if n := s.confirmations(); n != 0 {
		t.Errorf("%d confirmations signaled, want none", n)
	}
	if _, err := relayNew(relayConfigRequiringWithoutCredentials(brokers)); err == nil {
		t.Error("New accepted RequireSignatures without credentials")
	}
}

func relayConfigRequiringWithoutCredentials(brokers []string) relay.Config {
	return relay.Config{Brokers: brokers, RequireSignatures: true}
}

func relayNew(cfg relay.Config) (*relay.Relay, error) {
	return relay.New(cfg, &signaler{}, &auditor{})
}
