package roles

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe/internal/testtemporal"
)

// TestStoppedWorkerFinishesItsTasks: a worker with WorkerOptions, stopped
// (as `lethe worker` is on SIGTERM) while an activity runs, waits for the
// activity instead of abandoning it, and the activity's result reaches
// Temporal: the next worker goes on from it and has nothing to wait out.
func TestStoppedWorkerFinishesItsTasks(t *testing.T) {
	c, _ := testtemporal.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const queue = "handoff-test"
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	slow := func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return "done", nil
	}
	flow := func(ctx workflow.Context) (string, error) {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
		var out string
		err := workflow.ExecuteActivity(ctx, "slow").Get(ctx, &out)
		return out, err
	}
	newWorker := func() worker.Worker {
		w := worker.New(c, queue, WorkerOptions(Failover{StopTimeout: time.Minute}))
		w.RegisterWorkflowWithOptions(flow, workflow.RegisterOptions{Name: "handoff"})
		w.RegisterActivityWithOptions(slow, activity.RegisterOptions{Name: "slow"})
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := newWorker()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, "handoff")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the activity never started")
	}

	stopped := make(chan struct{})
	go func() {
		w.Stop()
		close(stopped)
	}()
	// Stop has a while to return too early; a slow machine can only make
	// this test pass without proving the wait, never fail it.
	select {
	case <-stopped:
		t.Fatal("Stop returned while the activity was still running: the worker abandoned it")
	case <-time.After(2 * time.Second):
	}
	close(release)
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Stop did not return once the activity finished")
	}
	// The next worker finishes the workflow with the result the stopped one
	// reported; had it been lost, the activity would run again once its
	// minute-long timeout passed.
	t.Cleanup(newWorker().Stop)
	var out string
	if err := run.Get(ctx, &out); err != nil || out != "done" {
		t.Errorf("workflow result = %q, %v; want the activity's \"done\"", out, err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the activity ran %d times, want once: the stopped worker's result was lost", n)
	}
}
