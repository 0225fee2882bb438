// Package testtemporal starts an in-process Temporal server for tests, with
// Lethe's search attributes registered. It is apart from package testenv so
// that tests needing only PostgreSQL or Kafka do not link the Temporal server.
package testtemporal

import (
	"context"
	"fmt"
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

// startAttempts is how often Start tries to start the test server.
const startAttempts = 3

// newServer starts a test server, turning the panic with which temporaltest
// reports a failed start into an error.
func newServer(opts []temporaltest.TestServerOption) (ts *temporaltest.TestServer, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("start the test server: %v", p)
		}
	}()
	return temporaltest.NewServer(opts...), nil
}

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
	// The server is started without temporaltest.WithT: with it, a server
	// that fails to start (a port another test took between its choice and
	// its bind) fails the test, and its cleanup then panics on the server it
	// never had. Without it, the failure is a panic, caught here, and the
	// start is tried again.
	var ts *temporaltest.TestServer
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if ts, err = newServer(opts); err == nil {
			break
		}
		t.Logf("testtemporal: the test server did not start (attempt %d of %d): %v", attempt, startAttempts, err)
	}
	if err != nil {
		t.Fatalf("testtemporal: %v", err)
	}
	t.Cleanup(func() {
		// Stop logs a shutdown error through the test it was not given,
		// which panics; the server is stopped either way.
		defer func() { _ = recover() }()
		ts.Stop()
	})
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
