package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/wire"
)

// tool returns the path of a command-line tool the test drives, failing
// the test (never skipping it) when it is missing.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run `make test-setup` (apt-get install -y kcat openssl) before the tests", name)
	}
	return p
}

// run runs a tool with stdin and returns its stdout, failing the test with
// its stderr when it fails.
func run(ctx context.Context, t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// hmacHex signs value with openssl, as a service in any language could.
func hmacHex(ctx context.Context, t *testing.T, openssl, secretHex string, value []byte) string {
	t.Helper()
	out := strings.TrimSpace(string(run(ctx, t, value, openssl, "dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:"+secretHex)))
	// "HMAC-SHA2-256(stdin)= <hex>", worded differently across versions.
	_, sig, ok := strings.Cut(out, "= ")
	if !ok {
		t.Fatalf("openssl printed %q, want a line ending in \"= <hex>\"", out)
	}
	return sig
}

// TestSignedMessagesWithKcatAndOpenSSL plays a service written without
// Lethe's SDK: Debian's kcat reads a signed command from the system's
// topic, openssl checks its signature with the secret the API issued and
// signs the confirmation, and kcat sends it back with the two headers. The
// request completes on the real stack (API, worker, relay, PostgreSQL,
// Temporal, a Kafka-protocol broker). A confirmation whose value was
// changed after signing is sent first and must not count.
func TestSignedMessagesWithKcatAndOpenSSL(t *testing.T) {
	kcat, openssl := tool(t, "kcat"), tool(t, "openssl")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	master, err := credential.New(bytes.Repeat([]byte{11}, credential.MinMasterKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	// The broker stays plaintext even under LETHE_E2E_SECURE=1: Debian's
	// kcat (librdkafka) finds no SASL handshake in kfake's ApiVersions and
	// cannot log in to the secure broker. What this test checks is the
	// signatures, which a signed stack requires as usual.
	s := newStack(t, stackOptions{SystemKey: master, Plaintext: true})
	s.putSystem(lethe.System{Name: "ledger", Identifiers: []string{"user_id"}})
	// On a signed stack putSystem issued one already; this newer one is
	// what the worker signs with from now on.
	cred := s.issueCredential("ledger")

	e := s.submit(map[string]string{"user_id": "u-kcat-1"})
	broker := s.Brokers[0]
	topic := wire.DefaultTopic("ledger")
	// One message, its headers on the first line and its value, byte for
	// byte, after it.
	out := run(ctx, t, nil, kcat, "-C", "-b", broker, "-t", topic, "-o", "beginning", "-c", "1", "-f", "%h\n%s", "-q")
	headerLine, value, ok := bytes.Cut(out, []byte("\n"))
	if !ok {
		t.Fatalf("kcat printed %q, want headers and a value", out)
	}
	headers := map[string]string{}
	for _, h := range strings.Split(string(headerLine), ",") {
		k, v, _ := strings.Cut(h, "=")
		headers[k] = v
	}
	if headers[wire.HeaderKeyID] != cred.KeyID {
		t.Fatalf("command's %s = %q, want the issued %q (headers %v)", wire.HeaderKeyID, headers[wire.HeaderKeyID], cred.KeyID, headers)
	}
	if got := hmacHex(ctx, t, openssl, cred.Secret, value); got != headers[wire.HeaderSignature] {
		t.Fatalf("openssl computes %s over the command, the header says %s", got, headers[wire.HeaderSignature])
	}
	cmd, err := wire.DecodeCommand(value)
	if err != nil || cmd.RequestID != e.ID {
		t.Fatalf("command = %+v, %v; want one for request %s", cmd, err, e.ID)
	}

	confirmation := fmt.Sprintf(`{"schema":"erasure.confirmation.v1","command_id":%q,"request_id":%q,"system":"ledger","outcome":"erased","records":2,"detail":"","retryable":false,"confirmed_at":%q}`,
		cmd.CommandID, cmd.RequestID, time.Now().UTC().Format(time.RFC3339))
	produce := func(value []byte, signature string) {
		file := filepath.Join(t.TempDir(), "confirmation.json")
		if err := os.WriteFile(file, value, 0o600); err != nil {
			t.Fatal(err)
		}
		run(ctx, t, nil, kcat, "-P", "-b", broker, "-t", wire.ConfirmationsTopic, "-k", cmd.RequestID,
			"-H", wire.HeaderSchema+"="+wire.SchemaConfirmation,
			"-H", wire.HeaderKeyID+"="+cred.KeyID,
			"-H", wire.HeaderSignature+"="+signature,
			file)
	}
	signature := hmacHex(ctx, t, openssl, cred.Secret, []byte(confirmation))
	produce([]byte(strings.Replace(confirmation, `"records":2`, `"records":9`, 1)), signature)
	produce([]byte(confirmation), signature)

	done := s.await(e.ID, 2*time.Minute)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("request %s, want completed: %s", done.Status, describe(done))
	}
	if p := systemByName(t, done, "ledger"); p.Status != lethe.SystemErased || p.Records != 2 {
		t.Errorf("ledger = %s with %d records, want erased with the 2 of the well-signed confirmation", p.Status, p.Records)
	}
	var refused int
	if err := s.DB.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE kind = 'bad_signature' AND request_id = $1`, e.ID).Scan(&refused); err != nil || refused != 1 {
		t.Errorf("bad_signature audit events of the request = %d (%v), want 1 for the altered confirmation", refused, err)
	}
}
