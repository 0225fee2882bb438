package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/credential"
)

// python is the Python that has confluent_kafka, for the example connector.
func python(t *testing.T) string {
	// Debian's package installs confluent_kafka for Debian's Python,
	// whatever other python3 comes first on the PATH.
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		python = tool(t, "python3")
	}
	if out, err := exec.Command(python, "-c", "import confluent_kafka").CombinedOutput(); err != nil {
		t.Fatalf("Python's confluent_kafka is not installed: run `make test-setup` (apt-get install -y python3-confluent-kafka): %s", out)
	}
	return python
}

// node is Node.js, with kafkajs installed for the example connector.
func node(t *testing.T) string {
	node := tool(t, "node")
	if _, err := os.Stat(filepath.Join(nodeConnector, "node_modules", "kafkajs")); err != nil {
		t.Fatalf("kafkajs is not installed: run `make test-setup` (npm ci in %s)", nodeConnector)
	}
	return node
}

// The example connectors, from this package's folder.
const (
	pythonConnector = "../../examples/python-connector/connector.py"
	nodeConnector   = "../../examples/node-connector"
)

// startForeign runs program with interpreter and env added to the
// environment until the test ends, showing its stderr if the test failed.
func startForeign(t *testing.T, interpreter, program string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, interpreter, program)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("connector's stderr:\n%s", stderr.String())
		}
	})
}

// TestPythonConnector runs examples/python-connector, a connector written
// in Python against the wire format alone with confluent-kafka
// (librdkafka); see runForeignConnector.
func TestPythonConnector(t *testing.T) {
	runForeignConnector(t, "pyshop", python(t), pythonConnector)
}

// TestNodeConnector runs examples/node-connector, a connector written in
// Node.js against the wire format alone with kafkajs; see
// runForeignConnector.
func TestNodeConnector(t *testing.T) {
	runForeignConnector(t, "nodeshop", node(t), filepath.Join(nodeConnector, "connector.js"))
}

// runForeignConnector runs a connector written in another language on the
// real stack: signed commands and confirmations, a single request and a
// batch of three subjects (one it holds nothing of). The broker stays
// plaintext, as for kcat: librdkafka and kafkajs cannot log in to kfake's
// SASL.
func runForeignConnector(t *testing.T, system, interpreter, program string) {
	master, err := credential.New(bytes.Repeat([]byte{13}, credential.MinMasterKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{SystemKey: master, Plaintext: true})
	s.putSystem(lethe.System{Name: system, Identifiers: []string{"user_id"}, Batch: true})
	cred := s.issueCredential(system)

	data := filepath.Join(t.TempDir(), "shop.json")
	if err := os.WriteFile(data, []byte(`{"py-u1": 3, "py-u2": 1, "py-u3": 2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	startForeign(t, interpreter, program, "LETHE_SYSTEM="+system, "LETHE_KAFKA_BROKERS="+strings.Join(s.Brokers, ","),
		"SHOP_DATA="+data, "LETHE_CONNECTOR_KEY_ID="+cred.KeyID, "LETHE_CONNECTOR_SECRET="+cred.Secret)

	e := s.submit(map[string]string{"user_id": "py-u1"})
	done := s.await(e.ID, 2*time.Minute)
	if p := systemByName(t, done, system); done.Status != lethe.RequestCompleted || p.Status != lethe.SystemErased || p.Records != 3 {
		t.Fatalf("request = %s, %s %+v; want completed, erased with 3 records", done.Status, system, p)
	}

	body := `{"subject":{"user_id":"py-u2"}}` + "\n" + `{"subject":{"user_id":"py-u3"}}` + "\n" + `{"subject":{"user_id":"py-nobody"}}` + "\n"
	r := s.doRaw(http.MethodPost, "/v1/erasure-batches", body, "application/x-ndjson")
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasure-batches = %d %s", r.Status, r.Body)
	}
	var b lethe.Batch
	r.Decode(t, &b)
	b = s.awaitBatch(b.ID, 2*time.Minute)
	if b.Status != lethe.RequestCompleted || len(b.Systems) != 1 ||
		b.Systems[0].Erased != 2 || b.Systems[0].NotFound != 1 || b.Systems[0].Records != 3 {
		t.Fatalf("batch = %s %+v; want completed, 2 erased (3 records) and 1 not found", b.Status, b.Systems)
	}

	left, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	var rest map[string]int
	if err := json.Unmarshal(left, &rest); err != nil || len(rest) != 0 {
		t.Errorf("the service still holds %s (%v), want nothing", left, err)
	}
	var refused int
	if err := s.DB.QueryRowContext(s.ctx, `SELECT count(*) FROM audit_events WHERE kind = $1`, lethe.AuditBadSignature).Scan(&refused); err != nil {
		t.Fatal(err)
	}
	if refused != 0 {
		t.Errorf("%d confirmations were refused for their signature", refused)
	}
}
