package e2e_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors/connectortest"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/internal/conformance"
)

// TestPythonConnectorConformance: examples/python-connector passes `lethe
// conformance`, seeded with its own `seed` entry point.
func TestPythonConnectorConformance(t *testing.T) {
	runForeignConformance(t, "pyconf", python(t), pythonConnector)
}

// TestNodeConnectorConformance: examples/node-connector passes `lethe
// conformance`, seeded with its own `seed` entry point.
func TestNodeConnectorConformance(t *testing.T) {
	runForeignConformance(t, "nodeconf", node(t), filepath.Join(nodeConnector, "connector.js"))
}

// runForeignConformance runs a connector written in another language on the
// real stack, with the credential Lethe issued, and `lethe conformance`'s
// code against it (conformance.Command, what the binary runs once its flags
// are read): every check must pass. The stack's relay sees the command's
// confirmations too and rejects them as not issued, as it would on a real
// deployment.
func runForeignConformance(t *testing.T, system, interpreter, program string) {
	master, err := credential.New(bytes.Repeat([]byte{14}, credential.MinMasterKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{SystemKey: master, Plaintext: true})
	s.putSystem(lethe.System{Name: system, Identifiers: []string{"user_id"}})
	cred := s.issueCredential(system)

	data := filepath.Join(t.TempDir(), "shop.json")
	if err := os.WriteFile(data, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	program, err = filepath.Abs(program)
	if err != nil {
		t.Fatal(err)
	}
	startForeign(t, interpreter, program, "LETHE_SYSTEM="+system, "LETHE_KAFKA_BROKERS="+strings.Join(s.Brokers, ","),
		"SHOP_DATA="+data, "LETHE_CONNECTOR_KEY_ID="+cred.KeyID, "LETHE_CONNECTOR_SECRET="+cred.Secret)

	cmd := conformance.Command{
		Wire: connectortest.WireConfig{
			System:         system,
			Brokers:        s.Brokers,
			IdentifierType: "user_id",
			KeyID:          cred.KeyID,
			Secret:         cred.Secret,
			// Generous: a foreign client joins its consumer group in its
			// own time; this bounds only how long a failure takes.
			Timeout: 2 * time.Minute,
		},
		SeedCommand: "SHOP_DATA=" + strconv.Quote(data) + " " + strconv.Quote(interpreter) + " " + strconv.Quote(program) + " seed",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err = cmd.Run(ctx, &out)
	t.Logf("lethe conformance --system %s:\n%s", system, out.String())
	if err != nil {
		t.Errorf("lethe conformance = %v, want every check passed", err)
	}
	lines := strings.Split(out.String(), "\n")
	for _, c := range connectortest.WireChecks {
		if !slices.Contains(lines, "PASS "+c) {
			t.Errorf("no line PASS %s", c)
		}
	}
}
