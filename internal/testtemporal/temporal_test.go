package testtemporal_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe/internal/testtemporal"
	"github.com/lethe-dev/lethe/workflows"
)

func TestTemporalRegistersSearchAttributes(t *testing.T) {
	c, ns := testtemporal.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		t.Fatalf("ListSearchAttributes: %v", err)
	}
	if _, ok := resp.GetCustomAttributes()["LetheStatus"]; !ok {
		t.Errorf("LetheStatus missing from %v", resp.GetCustomAttributes())
	}
	for name, want := range workflows.SearchAttributeTypes {
		if got := resp.GetCustomAttributes()[name]; got != want {
			t.Errorf("search attribute %s has type %v, want %v", name, got, want)
		}
	}
}

// upsertWorkflow sets the status attribute the way the erasure workflow does.
func upsertWorkflow(ctx workflow.Context) error {
	return workflow.UpsertTypedSearchAttributes(ctx, workflows.SearchStatus.ValueSet("running"))
}

func TestNewWorkerRunsWorkflowsThatUpsertSearchAttributes(t *testing.T) {
	c, ns := testtemporal.Start(t)
	testtemporal.NewWorker(t, c, func(r worker.Registry) {
		r.RegisterWorkflowWithOptions(upsertWorkflow, workflow.RegisterOptions{Name: "upsert"})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: workflows.TaskQueue}, "upsert")
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	// Visibility is written asynchronously after the workflow's events, so
	// the query is repeated until it sees the workflow or the context ends.
	query := fmt.Sprintf("%s = 'running'", workflows.SearchStatus.GetName())
	for {
		list, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: ns, Query: query})
		if err != nil {
			t.Fatalf("ListWorkflow: %v", err)
		}
		if ex := list.GetExecutions(); len(ex) == 1 && ex[0].GetExecution().GetWorkflowId() == run.GetID() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("query %q never found the workflow that upserted it", query)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
