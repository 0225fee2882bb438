package webhook_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/connectors/webhook"
)

// TestExampleConfig keeps the shipped example loadable.
func TestExampleConfig(t *testing.T) {
	cfg, err := webhook.LoadConfig("example.yaml")
	if err != nil {
		t.Fatalf("LoadConfig(example.yaml): %v", err)
	}
	if cfg.System != "crm" || cfg.SecretEnv != "LETHE_WEBHOOK_SECRET" || cfg.Timeout != 10*time.Second ||
		cfg.Retries != (webhook.RetryConfig{MaxAttempts: 4, Initial: 500 * time.Millisecond, Max: 10 * time.Second}) ||
		cfg.Headers["X-Caller"] != "lethe" {
		t.Errorf("example.yaml loaded as %+v", cfg)
	}
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "webhook.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const minimal = "system: crm\nurl: https://crm.example/erase\nsecret_env: SECRET\n"

func TestLoadConfig(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		// wantErr is a fragment of the error, empty when the file is good.
		wantErr string
	}{
		{"minimal", minimal, ""},
		{"full", minimal + "brokers: [a:9092, b:9092]\ntopic: lethe.erasure.crm2\ntimeout: 3s\nretries: {max_attempts: 2, initial: 1s, max: 2s}\nheaders: {X-Api-Key: k}\n" +
			"kafka: {tls: true, sasl: {mechanism: scram-sha-256, username: u, password_env: PW}}\n", ""},
		{"http url", strings.Replace(minimal, "https:", "http:", 1), ""},
		{"empty file", "", "empty"},
		{"unknown key", minimal + "retry: {max_attempts: 2}\n", "field retry not found"},
		{"unknown nested key", minimal + "retries: {attempts: 2}\n", "field attempts not found"},
		{"duration as a number", minimal + "timeout: 10\n", "into time.Duration"},
		{"bad system", strings.Replace(minimal, "crm", "CRM", 1), "system"},
		{"no url", "system: crm\nsecret_env: SECRET\n", "url: missing"},
		{"ftp url", strings.Replace(minimal, "https:", "ftp:", 1), "scheme"},
		{"no host", strings.Replace(minimal, "https://crm.example/erase", "https:///erase", 1), "host"},
		{"relative url", strings.Replace(minimal, "https://crm.example/erase", "/erase", 1), "scheme"},
		{"credentials in url", strings.Replace(minimal, "https://", "https://user:pw@", 1), "user:password"},
		{"no secret_env", "system: crm\nurl: https://crm.example/erase\n", "secret_env is missing"},
		{"bad secret_env", strings.Replace(minimal, "SECRET", "MY-SECRET", 1), "secret_env"},
		{"negative timeout", minimal + "timeout: -1s\n", "timeout is negative"},
		{"too many attempts", minimal + "retries: {max_attempts: 21}\n", "max_attempts"},
		{"negative attempts", minimal + "retries: {max_attempts: -1}\n", "max_attempts"},
		{"initial above max", minimal + "retries: {initial: 5s, max: 1s}\n", "above retries.max"},
		{"poll", minimal + "poll: {initial: 1m, max: 2h, allow_hosts: [status.vendor.example, \"10.0.0.1:8443\"]}\n", ""},
		{"negative poll.initial", minimal + "poll: {initial: -1s}\n", "poll.initial is negative"},
		{"negative poll.max", minimal + "poll: {max: -1s}\n", "poll.max is negative"},
		{"poll.initial above max", minimal + "poll: {initial: 2h, max: 1h}\n", "above poll.max"},
		{"allow_hosts with a path", minimal + "poll: {allow_hosts: [\"vendor.example/status\"]}\n", "not a host"},
		{"empty allow_hosts entry", minimal + "poll: {allow_hosts: [\"\"]}\n", "not a host"},
		{"reserved header", minimal + "headers: {lethe-signature: forged}\n", "Lethe-Signature is set by the protocol"},
		{"idempotency header", minimal + "headers: {Idempotency-Key: x}\n", "set by the protocol"},
		{"bad header name", minimal + "headers: {\"X Bad\": x}\n", "not a header name"},
		{"header with newline", minimal + "headers: {X-A: \"a\\r\\nX-B: b\"}\n", "line break"},
		{"empty broker", minimal + "brokers: [\"\"]\n", "empty broker"},
		{"ca without tls", minimal + "kafka: {tls_ca_file: ca.pem}\n", "kafka.tls is false"},
		{"unknown sasl", minimal + "kafka: {sasl: {mechanism: GSSAPI, username: u, password_env: PW}}\n", "mechanism"},
		{"sasl without user", minimal + "kafka: {sasl: {mechanism: PLAIN, password_env: PW}}\n", "username"},
		{"sasl without password_env", minimal + "kafka: {sasl: {mechanism: PLAIN, username: u}}\n", "password_env"},
		{"callback", minimal + "callback: {listen: \"127.0.0.1:8090\", secret_file: /run/secrets/cb}\n", ""},
		{"callback without listen", minimal + "callback: {secret_file: /run/secrets/cb}\n", "callback.listen is missing"},
		{"callback listen without port", minimal + "callback: {listen: localhost, secret_file: cb}\n", "not host:port"},
		{"callback without secret_file", minimal + "callback: {listen: \":8090\"}\n", "callback.secret_file is missing"},
		{"callback unknown key", minimal + "callback: {listen: \":8090\", secret: x}\n", "field secret not found"},
		{"store", minimal + "store: {database_url_env: CRM_STORE_URL, table: connector.dedup}\n", ""},
		{"store without database_url_env", minimal + "store: {table: dedup}\n", "store.database_url_env is missing"},
		{"store bad database_url_env", minimal + "store: {database_url_env: bad-name}\n", "store.database_url_env"},
		{"store bad table", minimal + "store: {database_url_env: URL, table: \"Dedup\"}\n", "store.table"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := webhook.LoadConfig(writeConfig(t, tc.yaml))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("LoadConfig: %v, want no error", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("LoadConfig accepted the file, want an error about %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("LoadConfig error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	if _, err := webhook.LoadConfig(filepath.Join(t.TempDir(), "absent.yaml")); err == nil {
		t.Error("LoadConfig of a missing file succeeded")
	}
}
