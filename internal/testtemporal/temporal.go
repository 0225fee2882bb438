// Package testtemporal starts an in-process Temporal server for tests, with
// Lethe's search attributes registered. It is apart from package testenv so
// that tests needing only PostgreSQL or Kafka do not link the Temporal server.
package testtemporal

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/lethe-dev/lethe/internal/temporalx"
	"github.com/lethe-dev/lethe/workflows"
)

// temporalSetupTimeout bounds registering the search attributes, so that a
// server that never answers fails the test instead of hanging it.
const temporalSetupTimeout = time.Minute

// Start starts an in-process Temporal server (in memory, on a random
// port) with Lethe's search attributes registered in its namespace, and
// returns a client on that namespace. The namespace is random, not
// "default": pass it on wherever code names one. Server and client stop
// when the test ends, and both stay silent. extra options go to the test
// server after Lethe's, for a test that needs the server configured
// otherwise (its dynamic config, say).
func Start(t testing.TB, extra ...temporaltest.TestServerOption) (c client.Client, namespace string) {
	t.Helper()
	silent := sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	opts := []temporaltest.TestServerOption{
		temporaltest.WithBaseClientOptions(client.Options{Logger: silent}),
	}
	opts = append(opts, extra...)
	tt, isT := t.(*testing.T)
	if isT {
		opts = append(opts, temporaltest.WithT(tt))
	}
	ts := temporaltest.NewServer(opts...)
	if !isT {
		// Without WithT the server neither fails t nor stops by itself.
		t.Cleanup(ts.Stop)
	}
	namespace = ts.GetDefaultNamespace()
	c = ts.GetDefaultClient() // closed by ts.Stop

	ctx, cancel := context.WithTimeout(context.Background(), temporalSetupTimeout)
	defer cancel()
	if err := temporalx.RegisterSearchAttributes(ctx, c, namespace); err != nil {
		t.Fatalf("testtemporal: %v", err)
	}
	return c, namespace
}

// NewWorker starts a worker on workflows.TaskQueue with c, lets register add
// workflows and activities to it, and stops it when the test ends (before
// the server, since cleanups run last-in first-out). Workflow panics and
// non-determinism fail the workflow at once instead of retrying, so a broken
// workflow fails its test quickly.
func NewWorker(t testing.TB, c client.Client, register func(worker.Registry)) worker.Worker {
	t.Helper()
	w := worker.New(c, workflows.TaskQueue, worker.Options{WorkflowPanicPolicy: worker.FailWorkflow})
	register(w)
	if err := w.Start(); err != nil {
		t.Fatalf("testtemporal: start worker: %v", err)
	}
	t.Cleanup(w.Stop)
	return w
}
