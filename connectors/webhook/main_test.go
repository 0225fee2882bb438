package webhook_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/webhook"
	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/metrics/metricstest"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestMainRefusesToStart(t *testing.T) {
	good := writeConfig(t, minimal)
	cases := []struct {
		name    string
		path    string
		env     map[string]string
		wantErr string
	}{
		{"missing file", good + ".absent", map[string]string{"SECRET": string(testSecret)}, "no such file"},
		{"invalid file", writeConfig(t, "system: crm\nsecret_env: SECRET\n"), map[string]string{"SECRET": string(testSecret)}, "url"},
		{"secret unset", good, nil, "$SECRET is empty"},
		{"secret too short", good, map[string]string{"SECRET": "0123456789"}, "holds 10 bytes"},
		{"store url unset", writeConfig(t, minimal+"store: {database_url_env: STORE_URL}\n"),
			map[string]string{"SECRET": string(testSecret)}, "$STORE_URL (store.database_url_env) is empty"},
		{"callback secret file missing", writeConfig(t, minimal+"callback: {listen: \"127.0.0.1:0\", secret_file: /nonexistent/cb}\n"),
			map[string]string{"SECRET": string(testSecret)}, "callback.secret_file"},
		{"sasl password unset", writeConfig(t, minimal+"kafka: {sasl: {mechanism: PLAIN, username: u, password_env: PW}}\n"),
			map[string]string{"SECRET": string(testSecret)}, "$PW"},
		{"bad ca file", writeConfig(t, minimal+"kafka: {tls: true, tls_ca_file: /nonexistent/ca.pem}\n"),
			map[string]string{"SECRET": string(testSecret)}, "tls_ca_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			err := webhook.Main(ctx, tc.path, envOf(tc.env), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Main = %v, want an error mentioning %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), string(testSecret)) {
				t.Errorf("Main's error quotes the secret: %v", err)
			}
		})
	}
}

// TestMainEndToEnd runs the connector as `lethe connector webhook` does,
// against a real Kafka-protocol broker and a service endpoint guarded by the
// Verifier, and plays Lethe's part on the topics.
func TestMainEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, wire.ConfirmationsTopic, wire.DefaultTopic("crm"))
	svc, srv := newService(t)

	subject := []wire.Identifier{{Type: "email", Value: personal}, {Type: "user_id", Value: "u-" + uuid.NewString()}}
	device := []wire.Identifier{{Type: "device_id", Value: "d-" + uuid.NewString()}}
	svc.seed(subject, device, 2)

	// The brokers come from the environment, as in a deployment.
	path := writeConfig(t, fmt.Sprintf("system: crm\nurl: %s/lethe/erase\nsecret_env: WEBHOOK_SECRET\ntimeout: 5s\n"+
		"retries: {max_attempts: 3, initial: 10ms, max: 50ms}\n", srv.URL))
	env := envOf(map[string]string{"WEBHOOK_SECRET": string(testSecret), webhook.BrokersEnv: strings.Join(brokers, ",")})
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	reg := prometheus.NewRegistry()
	go func() { done <- webhook.MainWithMetrics(runCtx, path, env, logger, reg) }()
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Main returned %v after cancel, want nil", err)
			}
		case <-time.After(testTimeout):
			t.Errorf("Main did not return after cancel")
		}
	}()

	requestID := uuid.NewString()
	now := time.Now().UTC().Truncate(time.Second)
	command := func(ids []wire.Identifier, dryRun bool) wire.Command {
		return wire.Command{
			Schema: wire.SchemaCommand, CommandID: uuid.NewString(), RequestID: requestID, System: "crm", Attempt: 1,
			Identifiers: ids, IssuedAt: now, ConfirmBy: now.Add(72 * time.Hour), DryRun: dryRun,
		}
	}
	dry := command(subject, true)
	erase := command(subject, false)
	again := erase
	again.Attempt = 2
	unknown := command([]wire.Identifier{{Type: "email", Value: "nobody@example.com"}}, false)

	w := connectors.NewWriter(brokers)
	defer w.Close()
	for _, c := range []wire.Command{dry, erase, again, unknown} {
		m, err := connectors.EncodeCommand(wire.DefaultTopic("crm"), c)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteMessages(ctx, m); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	confs := readConfirmations(ctx, t, brokers, 4)
	check := func(name string, c wire.Confirmation, outcome wire.Outcome, records int64, derived int) {
		t.Helper()
		if c.Outcome != outcome || c.Records != records || len(c.DerivedIdentifiers) != derived || c.System != "crm" || c.RequestID != requestID {
			t.Errorf("%s: confirmation %+v, want %s with %d records and %d derived", name, c, outcome, records, derived)
		}
	}
	check("dry run", confs[0], wire.OutcomeErased, 4, 1)
	check("erase", confs[1], wire.OutcomeErased, 4, 1)
	check("repeat", confs[2], wire.OutcomeErased, 4, 1)
	check("unknown subject", confs[3], wire.OutcomeNotFound, 0, 0)
	// The observer counts each command before its confirmation is sent.
	f := metricstest.Scrape(t, metrics.Handler(reg))
	if got, _ := f.Value("lethe_connector_commands_total", "system", "crm", "outcome", "not_found"); got != 1 {
		t.Errorf("lethe_connector_commands_total{outcome=not_found} = %v, want 1", got)
	}
	if got, _ := f.Value("lethe_connector_commands_total", "system", "crm", "outcome", "erased"); got < 2 {
		t.Errorf("lethe_connector_commands_total{outcome=erased} = %v, want the dry run and the erasure", got)
	}
	if confs[0].CommandID != dry.CommandID || confs[1].CommandID != erase.CommandID || confs[3].CommandID != unknown.CommandID {
		t.Errorf("confirmations out of order: %+v", confs)
	}
	if len(confs[1].DerivedIdentifiers) == 1 && confs[1].DerivedIdentifiers[0] != device[0] {
		t.Errorf("derived = %+v, want %+v", confs[1].DerivedIdentifiers, device)
	}
	if n := svc.remaining(subject); n != 0 {
		t.Errorf("the service still holds %d records of the erased subject", n)
	}
	if n := svc.erasuresOf(erase.CommandID); n != 1 {
		t.Errorf("the command erased %d times, want once", n)
	}
	if p := svc.problemsSeen(); len(p) > 0 {
		t.Errorf("the service found problems with the requests: %v", p)
	}
	if strings.Contains(logs.String(), personal) {
		t.Errorf("logs contain an identifier value:\n%s", logs.String())
	}
}

// readConfirmations reads n confirmations from the start of the topic.
func readConfirmations(ctx context.Context, t *testing.T, brokers []string, n int) []wire.Confirmation {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     brokers,
		GroupID:     "test-" + uuid.NewString(),
		Topic:       wire.ConfirmationsTopic,
		StartOffset: kafka.FirstOffset,
		MaxWait:     100 * time.Millisecond,
	})
	defer r.Close()
	var out []wire.Confirmation
	for len(out) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read confirmations (%d of %d so far): %v", len(out), n, err)
		}
		c, err := wire.DecodeConfirmation(m.Value)
		if err != nil {
			t.Fatalf("decode confirmation: %v", err)
		}
		out = append(out, c)
	}
	return out
}

// TestMainCallbackWithStore runs the connector as `lethe connector webhook`
// runs it with callback and store in its file: the endpoint accepts a
// command with a bare 202, the command waits in the PostgreSQL store, and a
// signed callback to the configured address confirms it.
func TestMainCallbackWithStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, wire.ConfirmationsTopic, wire.DefaultTopic("crm"))
	dbURL := testenv.PostgresURL(t)
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // Main listens there
	secretFile := filepath.Join(t.TempDir(), "callback-secret")
	if err := os.WriteFile(secretFile, callbackSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, fmt.Sprintf("system: crm\nurl: %s/erase\nsecret_env: WEBHOOK_SECRET\n"+
		"callback: {listen: %q, secret_file: %q}\nstore: {database_url_env: STORE_URL}\n", srv.URL, addr, secretFile))
	env := envOf(map[string]string{"WEBHOOK_SECRET": string(testSecret), webhook.BrokersEnv: strings.Join(brokers, ","), "STORE_URL": dbURL})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- webhook.Main(runCtx, path, env, slog.New(slog.DiscardHandler)) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Main returned %v after cancel, want nil", err)
		}
	}()

	now := time.Now().UTC().Truncate(time.Second)
	cmd := wire.Command{Schema: wire.SchemaCommand, CommandID: uuid.NewString(), RequestID: uuid.NewString(), System: "crm", Attempt: 1,
		Identifiers: []wire.Identifier{{Type: "email", Value: personal}}, IssuedAt: now, ConfirmBy: now.Add(time.Hour)}
	w := connectors.NewWriter(brokers)
	defer w.Close()
	m, err := connectors.EncodeCommand(wire.DefaultTopic("crm"), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMessages(ctx, m); err != nil {
		t.Fatalf("produce: %v", err)
	}
	body := []byte(`{"outcome":"not_found"}`)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/callbacks/"+cmd.CommandID, bytes.NewReader(body))
		req.Header.Set(webhook.HeaderSignature, webhook.Sign(callbackSecret, time.Now(), body))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		// Not listening yet, or the command not yet accepted (404).
		select {
		case <-ctx.Done():
			t.Fatalf("the callback was never accepted (last: %v %v)", resp, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if c := readConfirmations(ctx, t, brokers, 1)[0]; c.CommandID != cmd.CommandID || c.Outcome != wire.OutcomeNotFound {
		t.Errorf("confirmation %+v, want the callback's not_found", c)
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("the endpoint got %d POSTs, want 1", n)
	}
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := deferredRows(ctx, t, db, cmd.CommandID); n != 0 {
		t.Errorf("the command still waits in the store after its callback")
	}
}
