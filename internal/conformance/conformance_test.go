package conformance

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe/connectors/connectortest"
	"github.com/lethe-dev/lethe/wire"
)

func TestSeedNamesTheSubjectInItsEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "seeded")
	seed := Seed(`printf '%s=%s' "$LETHE_SEED_TYPE" "$LETHE_SEED_VALUE" > '` + out + `'`)
	s := connectortest.Subject{Identifiers: []wire.Identifier{{Type: "user_id", Value: "lethe-conformance-1"}}}
	if err := seed(context.Background(), s); err != nil {
		t.Fatalf("seed: %v", err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "user_id=lethe-conformance-1" {
		t.Errorf("the seed command saw %q, want user_id=lethe-conformance-1", got)
	}
}

func TestSeedFailureQuotesTheCommandsOutput(t *testing.T) {
	seed := Seed(`echo "no database" >&2; exit 3`)
	s := connectortest.Subject{Identifiers: []wire.Identifier{{Type: "user_id", Value: "v"}}}
	err := seed(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "no database") {
		t.Errorf("seed = %v, want the exit status and the command's output", err)
	}
}
