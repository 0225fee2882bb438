package devstack_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/lethe-dev/lethe/devstack"
)

// helperEnv, when set to a data folder, turns the test binary into a child
// process that starts Temporal there, starts a workflow and exits without
// stopping anything, as a killed `lethe dev` would.
const helperEnv = "DEVSTACK_TEST_TEMPORAL_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		if err := startWorkflowAndExit(dir); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func startWorkflowAndExit(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := devstack.StartTemporal(ctx, devstack.TemporalConfig{Address: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		return err
	}
	c, err := client.DialContext(ctx, client.Options{
		HostPort: srv.Address(), Namespace: srv.Namespace(),
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		return err
	}
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: childWorkflowID, TaskQueue: testQueue}, "wait")
	return err // and exit: no Stop, no Close
}

const childWorkflowID = "started-by-a-process-that-died"
