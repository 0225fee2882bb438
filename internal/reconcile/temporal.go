package reconcile

import (
	"context"
	"errors"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/lethe-dev/lethe/internal/resume"
)

// NewWorkflows returns the Workflows that asks Temporal through c; the runs
// it starts get taskTimeout as their workflow task timeout, as the API's do.
func NewWorkflows(c client.Client, taskTimeout time.Duration) Workflows {
	return temporalWorkflows{c: c, taskTimeout: taskTimeout}
}

type temporalWorkflows struct {
	c           client.Client
	taskTimeout time.Duration
}

func (t temporalWorkflows) Status(ctx context.Context, requestID string) (enumspb.WorkflowExecutionStatus, bool, error) {
	return resume.Status(ctx, t.c, requestID)
}

func (t temporalWorkflows) Restart(ctx context.Context, requestID string) (bool, error) {
	in, err := resume.Carried(ctx, t.c, requestID)
	if err != nil {
		return false, err
	}
	err = resume.Start(ctx, t.c, in, t.taskTimeout)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return false, nil
	}
	return err == nil, err
}
