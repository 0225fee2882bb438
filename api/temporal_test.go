package api_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// fakeClient stands in for the Temporal client: the embedded nil interface
// makes any call the engine should not make panic.
type fakeClient struct {
	client.Client
	opts      client.StartWorkflowOptions
	workflow  any
	args      []any
	startErr  error
	cancelErr error
	getErr    error
	canceled  []string
	got       []string
	// signals are the signals sent, in order; signalErr answers them.
	signals   []fakeSignal
	signalErr error
}

type fakeSignal struct {
	id, name string
	arg      any
}

func (c *fakeClient) SignalWorkflow(ctx context.Context, id, runID, name string, arg any) error {
	if c.signalErr != nil {
		return c.signalErr
	}
	c.signals = append(c.signals, fakeSignal{id: id, name: name, arg: arg})
	return nil
}

func (c *fakeClient) ExecuteWorkflow(ctx context.Context, opts client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	c.opts, c.workflow, c.args = opts, wf, args
	return nil, c.startErr
}

func (c *fakeClient) CancelWorkflow(ctx context.Context, id, runID string) error {
	c.canceled = append(c.canceled, id)
	return c.cancelErr
}

func (c *fakeClient) GetWorkflow(ctx context.Context, id, runID string) client.WorkflowRun {
	c.got = append(c.got, id)
	return fakeRun{err: c.getErr}
}

type fakeRun struct {
	client.WorkflowRun
	err error
}

func (r fakeRun) Get(ctx context.Context, v any) error { return r.err }

func TestTemporalEngineStart(t *testing.T) {
	c := &fakeClient{}
	policy := workflows.Policy{MaxAttempts: 3, RetryDelay: time.Minute}
	e := api.NewTemporalEngine(c, policy)
	in := workflows.ErasureInput{
		RequestID: "6f1c0e9a-2b7d-4c1e-9a35-0d4f2b8c7e11",
		Subject:   []wire.Identifier{{Type: "user_id", Value: "u-1"}},
		CreatedAt: testNow,
		Deadline:  testNow.Add(time.Hour),
	}
	if err := e.StartErasure(context.Background(), in); err != nil {
		t.Fatalf("StartErasure: %v", err)
	}
	if c.opts.ID != "erasure-"+in.RequestID || c.opts.TaskQueue != workflows.TaskQueue {
		t.Errorf("options = %+v", c.opts)
	}
	if c.opts.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING {
		t.Errorf("conflict policy = %v, want USE_EXISTING", c.opts.WorkflowIDConflictPolicy)
	}
	if status, ok := c.opts.TypedSearchAttributes.GetKeyword(workflows.SearchStatus); !ok || status != "pending" {
		t.Errorf("LetheStatus = %q (%v), want pending", status, ok)
	}
	if c.workflow != workflows.ErasureWorkflowName {
		t.Errorf("workflow = %v, want %s", c.workflow, workflows.ErasureWorkflowName)
	}
	if len(c.args) != 1 {
		t.Fatalf("args = %v, want one ErasureInput", c.args)
	}
	got, ok := c.args[0].(workflows.ErasureInput)
	if !ok || got.RequestID != in.RequestID || !reflect.DeepEqual(got.Policy, policy) || len(got.Subject) != 1 {
		t.Errorf("input = %+v, want the request with the engine's policy", c.args[0])
	}
}

// TestTemporalEngineWorkflowTaskTimeout: the engine starts workflows with
// the task timeout it was given, and leaves Temporal's default without one.
func TestTemporalEngineWorkflowTaskTimeout(t *testing.T) {
	in := workflows.ErasureInput{RequestID: "6f1c0e9a-2b7d-4c1e-9a35-0d4f2b8c7e11", CreatedAt: testNow, Deadline: testNow.Add(time.Hour)}
	for _, tt := range []struct {
		name string
		opts []api.EngineOption
		want time.Duration
	}{
		{"default", nil, 0},
		{"set", []api.EngineOption{api.WorkflowTaskTimeout(4 * time.Second)}, 4 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClient{}
			if err := api.NewTemporalEngine(c, workflows.Policy{}, tt.opts...).StartErasure(context.Background(), in); err != nil {
				t.Fatalf("StartErasure: %v", err)
			}
			if got := c.opts.WorkflowTaskTimeout; got != tt.want {
				t.Errorf("WorkflowTaskTimeout = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTemporalEngineStartErrors(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantKind lethe.Kind
		wantCode string
	}{
		{"already started", serviceerror.NewWorkflowExecutionAlreadyStarted("started", "", ""), 0, ""},
		{"unavailable", serviceerror.NewUnavailable("connection refused"), lethe.KindUnavailable, "temporal_unavailable"},
		{"rpc deadline", serviceerror.NewDeadlineExceeded("deadline"), lethe.KindUnavailable, "temporal_unavailable"},
		{"context deadline", context.DeadlineExceeded, lethe.KindUnavailable, "temporal_unavailable"},
		{"throttled", serviceerror.NewResourceExhausted(enumspb.RESOURCE_EXHAUSTED_CAUSE_RPS_LIMIT, "slow down"), lethe.KindUnavailable, "temporal_unavailable"},
		{"misconfigured", serviceerror.NewInvalidArgument("search attribute LetheStatus is not defined"), lethe.KindInternal, "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := api.NewTemporalEngine(&fakeClient{startErr: tt.err}, workflows.Policy{})
			err := e.StartErasure(context.Background(), workflows.ErasureInput{RequestID: "x"})
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("StartErasure = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("StartErasure = nil, want an error")
			}
			if k, c := lethe.ErrorKind(err), lethe.ErrorCode(err); k != tt.wantKind || c != tt.wantCode {
				t.Errorf("kind, code = %v, %q; want %v, %q", k, c, tt.wantKind, tt.wantCode)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("%v does not keep its cause", err)
			}
		})
	}
}

func TestTemporalEngineCancel(t *testing.T) {
	const id = "6f1c0e9a-2b7d-4c1e-9a35-0d4f2b8c7e11"
	tests := []struct {
		name      string
		cancelErr error
		getErr    error
		wantCode  string // "" for success
		wantWait  bool
	}{
		{"closed by the cancel", nil, temporal.NewCanceledError(), "", true},
		{"cancel already requested", serviceerror.NewCancellationAlreadyRequested("again"), temporal.NewCanceledError(), "", true},
		{"completed instead", nil, nil, "already_finished", true},
		{"failed instead", nil, &temporal.WorkflowExecutionError{}, "already_finished", true},
		{"no longer known", serviceerror.NewNotFound("workflow not found"), nil, "already_finished", false},
		{"gone while waiting", nil, serviceerror.NewNotFound("gone"), "already_finished", true},
		{"unreachable", serviceerror.NewUnavailable("connection refused"), nil, "temporal_unavailable", false},
		{"wait interrupted", nil, context.DeadlineExceeded, "temporal_unavailable", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClient{cancelErr: tt.cancelErr, getErr: tt.getErr}
			err := api.NewTemporalEngine(c, workflows.Policy{}).CancelErasure(context.Background(), id)
			if got := errCode(err); got != tt.wantCode {
				t.Errorf("CancelErasure = %v, want code %q", err, tt.wantCode)
			}
			if tt.wantCode == "already_finished" && lethe.ErrorKind(err) != lethe.KindConflict {
				t.Errorf("already_finished is kind %v, want a conflict", lethe.ErrorKind(err))
			}
			if len(c.canceled) != 1 || c.canceled[0] != workflows.ErasureWorkflowID(id) {
				t.Errorf("canceled %v", c.canceled)
			}
			if waited := len(c.got) == 1; waited != tt.wantWait {
				t.Errorf("waited for the close = %v, want %v", waited, tt.wantWait)
			}
		})
	}
}

func errCode(err error) string {
	if err == nil {
		return ""
	}
	return lethe.ErrorCode(err)
}

func TestTemporalEngineStartBatch(t *testing.T) {
	const id = "6f1c0e9a-2b7d-4c1e-9a35-0d4f2b8c7e11"
	policy := workflows.Policy{MaxAttempts: 3, RetryDelay: time.Minute}
	in := workflows.BatchInput{BatchID: id, Chunks: 2, Total: 3, CreatedAt: testNow, Deadline: testNow.Add(time.Hour), CommandSeed: "seed"}
	chunks := []workflows.BatchChunk{
		{Chunk: 0, ChunkID: "c0", Subjects: []workflows.BatchSubject{{Item: 0, ItemID: "i0", Identifiers: []wire.Identifier{{Type: "user_id", Value: "u"}}}}},
		{Chunk: 1, ChunkID: "c1"},
	}
	for _, tt := range []struct {
		name     string
		startErr error
	}{
		{"new", nil},
		{"already started", serviceerror.NewWorkflowExecutionAlreadyStarted("started", "", "")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClient{startErr: tt.startErr}
			e := api.NewTemporalEngine(c, policy, api.WorkflowTaskTimeout(4*time.Second))
			if err := e.StartBatch(context.Background(), in, chunks); err != nil {
				t.Fatalf("StartBatch: %v", err)
			}
			if c.opts.ID != workflows.BatchWorkflowID(id) || c.opts.TaskQueue != workflows.TaskQueue ||
				c.opts.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING ||
				c.opts.WorkflowIDReusePolicy != enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE ||
				c.opts.WorkflowTaskTimeout != 4*time.Second {
				t.Errorf("options = %+v", c.opts)
			}
			if c.workflow != workflows.BatchWorkflowName || len(c.args) != 1 {
				t.Fatalf("workflow %v with %v", c.workflow, c.args)
			}
			if got, ok := c.args[0].(workflows.BatchInput); !ok || got.BatchID != id || !reflect.DeepEqual(got.Policy, policy) {
				t.Errorf("input = %+v, want the batch with the engine's policy", c.args[0])
			}
			if len(c.signals) != 2 {
				t.Fatalf("signals = %+v, want one per chunk", c.signals)
			}
			for i, sig := range c.signals {
				ch, _ := sig.arg.(workflows.BatchChunk)
				if sig.id != workflows.BatchWorkflowID(id) || sig.name != workflows.SignalBatchChunk || ch.Chunk != i {
					t.Errorf("signal %d = %+v, want chunk %d", i, sig, i)
				}
			}
		})
	}
	t.Run("engine down", func(t *testing.T) {
		c := &fakeClient{startErr: serviceerror.NewUnavailable("connection refused")}
		err := api.NewTemporalEngine(c, policy).StartBatch(context.Background(), in, chunks)
		if errCode(err) != "temporal_unavailable" || len(c.signals) != 0 {
			t.Errorf("StartBatch = %v after %d signals, want temporal_unavailable before any", err, len(c.signals))
		}
	})
	t.Run("signal fails", func(t *testing.T) {
		c := &fakeClient{signalErr: serviceerror.NewUnavailable("connection refused")}
		err := api.NewTemporalEngine(c, policy).StartBatch(context.Background(), in, chunks)
		if errCode(err) != "temporal_unavailable" {
			t.Errorf("StartBatch = %v, want temporal_unavailable", err)
		}
	})
}

func TestTemporalEngineCancelBatch(t *testing.T) {
	const id = "6f1c0e9a-2b7d-4c1e-9a35-0d4f2b8c7e11"
	for _, tt := range []struct {
		name     string
		getErr   error
		wantCode string
	}{
		{"closed by the cancel", temporal.NewCanceledError(), ""},
		{"completed instead", nil, "already_finished"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClient{getErr: tt.getErr}
			err := api.NewTemporalEngine(c, workflows.Policy{}).CancelBatch(context.Background(), id)
			if errCode(err) != tt.wantCode {
				t.Errorf("CancelBatch = %v, want code %q", err, tt.wantCode)
			}
			want := []string{workflows.BatchWorkflowID(id)}
			if !reflect.DeepEqual(c.canceled, want) || !reflect.DeepEqual(c.got, want) {
				t.Errorf("canceled %v and waited for %v, want %v", c.canceled, c.got, want)
			}
		})
	}
}

func TestTemporalEngineRetryBatch(t *testing.T) {
	const id = "6f1c0e9a-2b7d-4c1e-9a35-0d4f2b8c7e11"
	order := workflows.RetrySignal{Actor: "token:ops", Systems: []string{"orders"}}
	c := &fakeClient{}
	if err := api.NewTemporalEngine(c, workflows.Policy{}).RetryBatch(context.Background(), id, order); err != nil {
		t.Fatalf("RetryBatch: %v", err)
	}
	if len(c.signals) != 1 || c.signals[0].id != workflows.BatchWorkflowID(id) || c.signals[0].name != workflows.SignalRetry ||
		!reflect.DeepEqual(c.signals[0].arg, order) {
		t.Errorf("signals = %+v", c.signals)
	}
	for err, code := range map[error]string{
		serviceerror.NewNotFound("workflow execution already completed"): "workflow_gone",
		serviceerror.NewUnavailable("connection refused"):                "temporal_unavailable",
	} {
		err := api.NewTemporalEngine(&fakeClient{signalErr: err}, workflows.Policy{}).RetryBatch(context.Background(), id, order)
		if errCode(err) != code {
			t.Errorf("RetryBatch = %v, want %s", err, code)
		}
		if code == "workflow_gone" && lethe.ErrorKind(err) != lethe.KindConflict {
			t.Errorf("workflow_gone is kind %v, want a conflict", lethe.ErrorKind(err))
		}
	}
}
