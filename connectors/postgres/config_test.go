package postgres_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/connectors/postgres"
)

const validYAML = `
system: billing
brokers: ["127.0.0.1:9092"]
database_url_env: BILLING_DATABASE_URL
commands: {table: lethe.commands, retention: 720h}
dedup: {table: lethe.dedup}
identifiers:
  user_id:
    erase:
      - DELETE FROM invoices WHERE user_id = $1
      - |
        -- keep the amounts for accounting
        UPDATE payments SET card_holder = NULL WHERE user_id = $1 AND card_holder IS NOT NULL
    reveal:
      - type: stripe_customer_id
        query: SELECT stripe_customer_id FROM customers WHERE user_id = $1
  stripe_customer_id:
    erase:
      - /* nested /* comment */ */ (DELETE FROM customers WHERE stripe_customer_id = $1)
`

func TestParseConfig(t *testing.T) {
	cfg, err := postgres.ParseConfig([]byte(validYAML))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.System != "billing" || cfg.DatabaseURLEnv != "BILLING_DATABASE_URL" || !slices.Equal(cfg.Brokers, []string{"127.0.0.1:9092"}) {
		t.Errorf("got %+v", cfg)
	}
	if cfg.Commands.Table != "lethe.commands" || cfg.Commands.Retention != 30*24*time.Hour {
		t.Errorf("commands %+v, want lethe.commands kept 720h", cfg.Commands)
	}
	if cfg.Dedup == nil || cfg.Dedup.Table != "lethe.dedup" {
		t.Errorf("dedup %+v, want lethe.dedup", cfg.Dedup)
	}
	u := cfg.Identifiers["user_id"]
	if len(u.Erase) != 2 || len(u.Reveal) != 1 || u.Reveal[0].Type != "stripe_customer_id" {
		t.Errorf("user_id statements %+v", u)
	}
	if got, want := cfg.IdentifierTypes(), []string{"stripe_customer_id", "user_id"}; !slices.Equal(got, want) {
		t.Errorf("IdentifierTypes() = %v, want %v", got, want)
	}
	if got, want := cfg.ProducedTypes(), []string{"stripe_customer_id"}; !slices.Equal(got, want) {
		t.Errorf("ProducedTypes() = %v, want %v", got, want)
	}
}

func TestParseConfigRejects(t *testing.T) {
	const ids = "identifiers:\n  user_id:\n    erase: [\"DELETE FROM t WHERE id = $1\"]\n"
	const head = "system: billing\ndatabase_url: postgres://localhost/billing\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"empty file", "", "empty"},
		{"unknown key", head + "brokerz: [a]\n" + ids, "brokerz"},
		{"unknown key in statements", head + "identifiers:\n  user_id:\n    erases: [\"DELETE FROM t WHERE id = $1\"]\n", "not found"},
		{"two documents", head + ids + "---\nsystem: other\n", "more than one"},
		{"missing system", "database_url: postgres://localhost/billing\n" + ids, "system is missing"},
		{"bad system name", "system: Billing\ndatabase_url: postgres://x\n" + ids, "not a valid system name"},
		{"bad topic", head + "topic: \"a b\"\n" + ids, "topic"},
		{"no database", "system: billing\n" + ids, "database_url_env"},
		{"both database settings", head + "database_url_env: DB\n" + ids, "both set"},
		{"bad env name", "system: billing\ndatabase_url_env: \"1-DB\"\n" + ids, "not an environment variable name"},
		{"empty broker", head + "brokers: [\"\"]\n" + ids, "brokers[0]"},
		{"password in the file", head + "kafka: {sasl: {mechanism: PLAIN, username: u, password: secret}}\n" + ids, "password"},
		{"unknown sasl mechanism", head + "kafka: {sasl: {mechanism: GSSAPI, username: u, password_env: P}}\n" + ids, `kafka.sasl.mechanism "GSSAPI"`},
		{"sasl without user", head + "kafka: {sasl: {mechanism: PLAIN, password_env: P}}\n" + ids, "kafka.sasl.username"},
		{"sasl without password", head + "kafka: {sasl: {mechanism: scram-sha-256, username: u}}\n" + ids, "kafka.sasl.password_env"},
		{"ca file without tls", head + "kafka: {tls_ca_file: ca.pem}\n" + ids, "kafka.tls is false"},
		{"client certificate without key", head + "kafka: {tls: true, tls_cert_file: c.pem}\n" + ids, "kafka.tls_key_file"},
		{"server name without tls", head + "kafka: {tls_server_name: kafka.internal}\n" + ids, "kafka.tls is false"},
		{"bad commands table", head + "commands: {table: \"Commands; DROP\"}\n" + ids, "commands.table"},
		{"bad commands retention", head + "commands: {retention: 3 days}\n" + ids, "line 3: cannot unmarshal"},
		{"short commands retention", head + "commands: {retention: 5m}\n" + ids, "shorter than an hour"},
		{"bad dedup table", head + "dedup: {table: \"a.b.c\"}\n" + ids, "dedup.table"},
		{"dedup retention is the SDK's", head + "dedup: {retention: 24h}\n" + ids, "retention"},
		{"no identifiers", head, "identifiers is empty"},
		{"empty identifiers", head + "identifiers: {}\n", "identifiers is empty"},
		{"bad identifier type", head + "identifiers:\n  User-ID:\n    erase: [\"DELETE FROM t WHERE id = $1\"]\n", `"User-ID" is not a valid identifier type`},
		{"no statements", head + "identifiers:\n  user_id: {}\n", "neither erase statements nor reveal queries"},
		{"empty statement", head + "identifiers:\n  user_id:\n    erase: [\"  -- nothing\\n\"]\n", "identifiers.user_id.erase[0]: the statement is empty"},
		{"insert as erase", head + "identifiers:\n  user_id:\n    erase:\n      - DELETE FROM t WHERE id = $1\n      - INSERT INTO t VALUES ($1)\n", "identifiers.user_id.erase[1]: the statement starts with INSERT"},
		{"delete as reveal", head + ids[:len(ids)-1] + "\n    reveal:\n      - type: email\n        query: DELETE FROM t WHERE id = $1 RETURNING email\n", "identifiers.user_id.reveal[0]: the statement starts with DELETE"},
		{"reveal without type", head + ids + "    reveal:\n      - query: SELECT email FROM t WHERE id = $1\n", "identifiers.user_id.reveal[0]: type is missing"},
		{"reveal with bad type", head + ids + "    reveal:\n      - type: E-mail\n        query: SELECT email FROM t WHERE id = $1\n", "identifiers.user_id.reveal[0]: type \"E-mail\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := postgres.ParseConfig([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("ParseConfig accepted:\n%s", tt.yaml)
			}
			if !errors.Is(err, postgres.ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestLoadConfigNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "billing.yaml")
	if err := os.WriteFile(path, []byte("system: billing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := postgres.LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, postgres.ErrConfig) {
		t.Errorf("LoadConfig error %v, want a config error naming %s", err, path)
	}
	if _, err := postgres.LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, postgres.ErrConfig) {
		t.Errorf("LoadConfig of a missing file: %v, want a config error", err)
	}
}

// TestExampleConfigLoads keeps the shipped example valid.
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := postgres.LoadConfig("example.yaml")
	if err != nil {
		t.Fatalf("LoadConfig(example.yaml): %v", err)
	}
	if len(cfg.IdentifierTypes()) == 0 || len(cfg.ProducedTypes()) == 0 {
		t.Errorf("the example should show erase statements and reveal queries: %+v", cfg)
	}
}
