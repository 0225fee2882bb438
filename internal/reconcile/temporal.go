package reconcile

import (
	"context"
	"errors"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/lethe-dev/lethe/internal/resume"
)

// NewWorkflows returns the Workflows that asks Temporal through c.
func NewWorkflows(c client.Client) Workflows { return temporalWorkflows{c: c} }

type temporalWorkflows struct{ c client.Client }

func (t temporalWorkflows) Status(ctx context.Context, requestID string) (enumspb.WorkflowExecutionStatus, bool, error) {
	return resume.Status(ctx, t.c, requestID)
}

func (t temporalWorkflows) Restart(ctx context.Context, requestID string) (bool, error) {
	in, err := resume.Carried(ctx, t.c, requestID)
	if err != nil {
		return false, err
	}
	err = resume.Start(ctx, t.c, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return false, nil
	}
	return err == nil, err
}
