package postgres_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/postgres"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// syncBuffer collects a logger's output from Run's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// writeConfig writes yaml to a file of the test's own and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "connector.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// TestMainErasesThroughKafka runs the connector as `lethe connector
// postgres` does, on the example configuration, and plays Lethe's part on a
// real Kafka-protocol broker: a command in, a confirmation out.
func TestMainErasesThroughKafka(t *testing.T) {
	ctx, db, url := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	brokers, _ := testenv.Kafka(t, wire.ConfirmationsTopic)
	env := envOf(map[string]string{"BILLING_DATABASE_URL": url, postgres.EnvKafkaBrokers: strings.Join(brokers, ",")})
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	example, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	config := writeConfig(t, string(example)+"\ndedup: {table: lethe_connector_dedup}\n")

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- postgres.Main(runCtx, config, env, logger) }()
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Main returned %v after cancel, want nil", err)
			}
		case <-ctx.Done():
			t.Error("Main did not return after cancel")
		}
	}()

	now := time.Now().UTC()
	cmd := wire.Command{
		Schema: wire.SchemaCommand, CommandID: uuid.NewString(), RequestID: uuid.NewString(), System: "billing", Attempt: 1,
		Identifiers: []wire.Identifier{id("user_id", "u-1")}, IssuedAt: now, ConfirmBy: now.Add(time.Hour),
	}
	w := connectors.NewWriter(brokers)
	defer w.Close()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, GroupID: "test-" + uuid.NewString(), Topic: wire.ConfirmationsTopic,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
	})
	defer r.Close()
	roundTrip := func(cmd wire.Command) wire.Confirmation {
		t.Helper()
		msg, err := connectors.EncodeCommand(wire.DefaultTopic("billing"), cmd)
		if err != nil {
			t.Fatal(err)
		}
		// The connector creates its topic once started: until then the
		// write is retried.
		if err := connectors.WriteAll(ctx, w, slog.New(slog.DiscardHandler), msg); err != nil {
			t.Fatalf("send command: %v", err)
		}
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read confirmation: %v\nlogs:\n%s", err, logs.String())
		}
		conf, err := wire.DecodeConfirmation(m.Value)
		if err != nil {
			t.Fatalf("decode confirmation: %v", err)
		}
		return conf
	}

	conf := roundTrip(cmd)
	if conf.CommandID != cmd.CommandID || conf.Outcome != wire.OutcomeErased || conf.Records != 3 {
		t.Errorf("confirmation %+v, want erased with 3 records for the command", conf)
	}
	if want := []wire.Identifier{id("stripe_customer_id", "cus_1")}; !slices.Equal(conf.DerivedIdentifiers, want) {
		t.Errorf("derived %v, want %v", conf.DerivedIdentifiers, want)
	}
	// Lethe's re-dispatch of the same command gets the same answer.
	cmd.Attempt = 2
	again := roundTrip(cmd)
	if again.CommandID != conf.CommandID || again.Outcome != conf.Outcome || again.Records != conf.Records ||
		!slices.Equal(again.DerivedIdentifiers, conf.DerivedIdentifiers) {
		t.Errorf("re-dispatch confirmed %+v, want the first confirmation %+v", again, conf)
	}
	// The commands table and the SDK's store, both in the service's
	// database, each recorded the command once.
	if n := commandRows(ctx, t, db, "lethe_connector_commands"); n != 1 {
		t.Errorf("%d rows in the commands table, want 1", n)
	}
	if n := commandRows(ctx, t, db, "lethe_connector_dedup"); n != 1 {
		t.Errorf("%d rows in the SDK's dedup table, want 1", n)
	}
	if _, inv, pay := holdings(ctx, t, db, "u-1"); inv != 0 || pay != 0 {
		t.Errorf("%d invoices and %d payments left, want none", inv, pay)
	}
	out := logs.String()
	if !strings.Contains(out, "register_identifiers") {
		t.Errorf("the start-up log does not say what to register:\n%s", out)
	}
	for _, v := range []string{"u-1", "cus_1"} {
		if strings.Contains(out, v) {
			t.Errorf("the logs quote the identifier value %q:\n%s", v, out)
		}
	}
}

func TestMainRefusesToStart(t *testing.T) {
	ctx, _, url := billingDB(t)
	const ids = "identifiers:\n  user_id:\n    erase: [\"DELETE FROM invoices WHERE user_id = $1\"]\n"
	tests := []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"missing file", "", nil, "no such file"},
		{"invalid config", "system: billing\n", nil, "database_url_env"},
		{"database variable unset", "system: billing\ndatabase_url_env: BILLING_DB\n" + ids, nil, "BILLING_DB"},
		{"sasl password unset", "system: billing\ndatabase_url_env: BILLING_DB\n" +
			"kafka: {sasl: {mechanism: SCRAM-SHA-512, username: billing, password_env: KAFKA_PASSWORD}}\n" + ids,
			map[string]string{"BILLING_DB": url}, "KAFKA_PASSWORD"},
		{"missing CA file", "system: billing\ndatabase_url_env: BILLING_DB\n" +
			"kafka: {tls: true, tls_ca_file: /nonexistent/ca.pem}\n" + ids,
			map[string]string{"BILLING_DB": url}, "tls_ca_file"},
		{"malformed database URL", "system: billing\ndatabase_url_env: BILLING_DB\n" + ids,
			map[string]string{"BILLING_DB": "postgres://billing:s3cret@db:port/billing"}, "database URL is malformed"},
		{"bad statement", "system: billing\ndatabase_url_env: BILLING_DB\n" +
			"identifiers:\n  user_id:\n    erase: [\"DELETE FROM invoice WHERE user_id = $1\"]\n",
			map[string]string{"BILLING_DB": url}, "identifiers.user_id.erase[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "missing.yaml")
			if tt.yaml != "" {
				path = writeConfig(t, tt.yaml)
			}
			err := postgres.Main(ctx, path, envOf(tt.env), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Main error %v, want one mentioning %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Main error %q quotes the password", err)
			}
		})
	}
}
