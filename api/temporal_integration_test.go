package api_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/workflows"
)

// The engine against a real Temporal server is tested in api/servertest,
// so that this package's tests do not link the server.

func quietLogger() log.Logger { return log.NewStructuredLogger(slog.New(slog.DiscardHandler)) }

// TestTemporalEngineUnreachable points the engine at a port nobody listens
// on: the start must fail as temporal_unavailable within the caller's
// deadline, not as an internal error.
func TestTemporalEngineUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := client.NewLazyClient(client.Options{HostPort: addr, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("lazy client: %v", err)
	}
	defer c.Close()
	engine := api.NewTemporalEngine(c, workflows.Policy{})
	calls := map[string]func(ctx context.Context) error{
		"start": func(ctx context.Context) error {
			return engine.StartErasure(ctx, workflows.ErasureInput{RequestID: "x"})
		},
		"cancel": func(ctx context.Context) error { return engine.CancelErasure(ctx, "x") },
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := call(ctx)
		cancel()
		if lethe.ErrorKind(err) != lethe.KindUnavailable || lethe.ErrorCode(err) != "temporal_unavailable" {
			t.Errorf("%s against nothing = %v, want temporal_unavailable", name, err)
		}
	}
}
