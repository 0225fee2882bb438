package devstack_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/common/config"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	sqliteschema "go.temporal.io/server/schema/sqlite"

	"github.com/lethe-dev/lethe/devstack"
	"github.com/lethe-dev/lethe/workflows"
)

const testQueue = "devstack-test"

func echoWorkflow(ctx workflow.Context, s string) (string, error) { return "echo: " + s, nil }

// waitWorkflow blocks until signalled, so it is still running when the
// server stops.
func waitWorkflow(ctx workflow.Context) (string, error) {
	var v string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &v)
	return "got " + v, nil
}

// connect dials t's server and runs a worker for the test workflows; both
// end with the test or earlier through the returned stop.
func connect(t *testing.T, ctx context.Context, srv *devstack.Temporal) (client.Client, func()) {
	t.Helper()
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  srv.Address(),
		Namespace: srv.Namespace(),
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		t.Fatalf("dial %s: %v", srv.Address(), err)
	}
	w := worker.New(c, testQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(echoWorkflow, workflow.RegisterOptions{Name: "echo"})
	w.RegisterWorkflowWithOptions(waitWorkflow, workflow.RegisterOptions{Name: "wait"})
	if err := w.Start(); err != nil {
		c.Close()
		t.Fatalf("start worker: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			w.Stop()
			c.Close()
		}
	}
	t.Cleanup(stop)
	return c, stop
}

func runEcho(t *testing.T, ctx context.Context, c client.Client) {
	t.Helper()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: testQueue}, "echo", "hi")
	if err != nil {
		t.Fatalf("start echo: %v", err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil {
		t.Fatalf("echo: %v", err)
	}
	if got != "echo: hi" {
		t.Errorf("echo answered %q, want %q", got, "echo: hi")
	}
}

func startTemporal(t *testing.T, ctx context.Context, cfg devstack.TemporalConfig) *devstack.Temporal {
	t.Helper()
	srv, err := devstack.StartTemporal(ctx, cfg)
	if err != nil {
		t.Fatalf("StartTemporal: %v", err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

func TestTemporalSurvivesRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "temporal") // does not exist yet
	cfg := devstack.TemporalConfig{Address: "127.0.0.1:0", Namespace: "lethe-test", DataDir: dir}

	srv := startTemporal(t, ctx, cfg)
	if _, err := os.Stat(filepath.Join(dir, devstack.TemporalDBFile)); err != nil {
		t.Fatalf("no SQLite file in the data folder: %v", err)
	}
	c, stop := connect(t, ctx, srv)
	runEcho(t, ctx, c)
	waiting, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "waits-across-restart", TaskQueue: testQueue}, "wait")
	if err != nil {
		t.Fatalf("start wait: %v", err)
	}
	stop()
	srv.Stop()

	// Same folder, same address: the workflow is still there and resumes.
	cfg.Address = srv.Address()
	srv = startTemporal(t, ctx, cfg)
	c, _ = connect(t, ctx, srv)
	if err := c.SignalWorkflow(ctx, waiting.GetID(), "", "go", "after restart"); err != nil {
		t.Fatalf("signal the workflow started before the restart: %v", err)
	}
	var got string
	if err := c.GetWorkflow(ctx, waiting.GetID(), waiting.GetRunID()).Get(ctx, &got); err != nil {
		t.Fatalf("workflow started before the restart: %v", err)
	}
	if got != "got after restart" {
		t.Errorf("workflow answered %q, want %q", got, "got after restart")
	}
	runEcho(t, ctx, c)
	assertSearchAttributes(t, ctx, c, srv.Namespace())
}

func TestTemporalEphemeral(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := startTemporal(t, ctx, devstack.TemporalConfig{Address: "127.0.0.1:0", Ephemeral: true})
	if srv.Namespace() != devstack.DefaultNamespace {
		t.Errorf("namespace = %q, want %q", srv.Namespace(), devstack.DefaultNamespace)
	}
	c, _ := connect(t, ctx, srv)
	runEcho(t, ctx, c)
	assertSearchAttributes(t, ctx, c, srv.Namespace())
}

func assertSearchAttributes(t *testing.T, ctx context.Context, c client.Client, namespace string) {
	t.Helper()
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		t.Fatalf("ListSearchAttributes: %v", err)
	}
	for name, want := range workflows.SearchAttributeTypes {
		if got, ok := resp.GetCustomAttributes()[name]; !ok || got != want {
			t.Errorf("search attribute %s: got %v (registered %v), want %v", name, got, ok, want)
		}
	}
	if _, ok := resp.GetCustomAttributes()["LetheStatus"]; !ok {
		t.Errorf("LetheStatus is not registered; custom attributes: %v", resp.GetCustomAttributes())
	}
}

func TestTemporalAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := filepath.Join(t.TempDir(), "temporal")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	srv, err := devstack.StartTemporal(ctx, devstack.TemporalConfig{Address: ln.Addr().String(), DataDir: dir})
	if err == nil {
		srv.Stop()
		t.Fatal("StartTemporal on a taken address succeeded")
	}
	var inUse *devstack.InUseError
	if !errors.As(err, &inUse) {
		t.Errorf("error %v is not an *InUseError", err)
	}
	if want := "temporal address " + ln.Addr().String() + " is in use"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data folder was touched before the port check (stat: %v)", err)
	}
}

func TestTemporalConfigValidate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := devstack.StartTemporal(ctx, devstack.TemporalConfig{Address: "127.0.0.1:0"}); err == nil {
		t.Error("StartTemporal without a data folder and not ephemeral succeeded")
	}
	if _, err := devstack.StartTemporal(ctx, devstack.TemporalConfig{Address: "example.com:7233", Ephemeral: true}); err == nil {
		t.Error("StartTemporal on a host name other than localhost succeeded")
	}
}

// TestTemporalSurvivesProcessExit proves the state is in the file: within
// one process the SQLite plugin keeps its connection pooled across a
// restart, so only a new process shows what the disk holds.
func TestTemporalSurvivesProcessExit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "temporal")

	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), helperEnv+"="+dir)
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}

	srv := startTemporal(t, ctx, devstack.TemporalConfig{Address: "127.0.0.1:0", DataDir: dir})
	c, _ := connect(t, ctx, srv)
	if err := c.SignalWorkflow(ctx, childWorkflowID, "", "go", "after exit"); err != nil {
		t.Fatalf("signal the workflow the dead process started: %v", err)
	}
	var got string
	if err := c.GetWorkflow(ctx, childWorkflowID, "").Get(ctx, &got); err != nil {
		t.Fatalf("workflow started by the dead process: %v", err)
	}
	if got != "got after exit" {
		t.Errorf("workflow answered %q, want %q", got, "got after exit")
	}
}

// useSearchAttributes starts a workflow carrying LetheStatus and finds it by
// that attribute: the attributes are usable, in starts and in list queries.
func useSearchAttributes(t *testing.T, ctx context.Context, c client.Client) {
	t.Helper()
	probe := "probe-" + uuid.NewString()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		TaskQueue:             testQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.SearchStatus.ValueSet(probe)),
	}, "echo", "hi")
	if err != nil {
		t.Fatalf("start a workflow with LetheStatus: %v", err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("workflow with LetheStatus: %v", err)
	}
	query := fmt.Sprintf("%s = %q", workflows.SearchStatus.GetName(), probe)
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		if err != nil {
			t.Fatalf("list by LetheStatus: %v", err)
		}
		if len(resp.GetExecutions()) == 1 && resp.GetExecutions()[0].GetExecution().GetRunId() == run.GetRunID() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the workflow was never listed by %s", query)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// A namespace the server creates holds Lethe's search attributes from the
// start, so the server caches them instead of reading them through on
// every use, and they work at once.
func TestTemporalCachesSearchAttributesOfNewNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := startTemporal(t, ctx, devstack.TemporalConfig{Address: "127.0.0.1:0", DataDir: t.TempDir()})
	if !srv.SearchAttributesCached() {
		t.Error("search attributes are read through although the namespace was created with them")
	}
	c, _ := connect(t, ctx, srv)
	useSearchAttributes(t, ctx, c)
}

// A data folder from before the namespace was created with the search
// attributes: they are registered at start and work at once, read through
// for this run; the next start finds them and caches them.
func TestTemporalRegistersSearchAttributesOfOlderNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	const namespace = "older"
	store := &config.SQL{
		PluginName:   sqliteplugin.PluginName,
		DatabaseName: filepath.Join(dir, devstack.TemporalDBFile),
		ConnectAttributes: map[string]string{
			"mode": "rwc", "journal_mode": "wal", "synchronous": "normal",
		},
	}
	if err := sqliteschema.SetupSchema(store); err != nil {
		t.Fatalf("create the older store: %v", err)
	}
	bare, err := sqliteschema.NewNamespaceConfig("active", namespace, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqliteschema.CreateNamespaces(store, bare); err != nil {
		t.Fatalf("create the namespace without search attributes: %v", err)
	}

	cfg := devstack.TemporalConfig{Address: "127.0.0.1:0", Namespace: namespace, DataDir: dir}
	srv := startTemporal(t, ctx, cfg)
	if srv.SearchAttributesCached() {
		t.Error("search attributes cached although they were registered after the server started")
	}
	c, stop := connect(t, ctx, srv)
	assertSearchAttributes(t, ctx, c, namespace)
	useSearchAttributes(t, ctx, c)
	stop()
	srv.Stop()

	srv = startTemporal(t, ctx, cfg)
	if !srv.SearchAttributesCached() {
		t.Error("search attributes still read through on the start after they were registered")
	}
	c, _ = connect(t, ctx, srv)
	useSearchAttributes(t, ctx, c)
}
