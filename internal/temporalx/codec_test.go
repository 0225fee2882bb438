package temporalx_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-dev/lethe/codec"
	"github.com/lethe-dev/lethe/internal/temporalx"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/internal/testtemporal"
)

// canary stands for an identifier value: it must not be readable anywhere
// in a history written through the codec.
const canary = "canary-7f3e@example.org"

const testKeys = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

type canaryInput struct {
	Subject string `json:"subject"`
}

type canaryResult struct {
	Echo    string `json:"echo"`
	Failure string `json:"failure"`
	Signal  string `json:"signal"`
}

// echo returns its input, so the value is in an activity's input and result.
func echo(_ context.Context, v string) (string, error) { return v, nil }

// refuse fails with the value in its message, as a careless error would.
func refuse(_ context.Context, v string) error {
	return temporal.NewNonRetryableApplicationError("cannot erase "+v, "refused", nil)
}

// canaryWorkflow puts the value in every kind of payload a history holds:
// workflow input and result, activity input and result, an activity
// failure message, and a signal.
func canaryWorkflow(ctx workflow.Context, in canaryInput) (canaryResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var out canaryResult
	if err := workflow.ExecuteActivity(ctx, "echo", in.Subject).Get(ctx, &out.Echo); err != nil {
		return out, err
	}
	err := workflow.ExecuteActivity(ctx, "refuse", in.Subject).Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return out, err
	}
	out.Failure = appErr.Message()
	workflow.GetSignalChannel(ctx, "canary").Receive(ctx, &out.Signal)
	return out, nil
}

// newCanaryWorker polls queue with c for canaryWorkflow and its activities
// until the test ends.
func newCanaryWorker(t *testing.T, c client.Client, queue string, opts worker.Options) worker.Worker {
	t.Helper()
	w := worker.New(c, queue, opts)
	w.RegisterWorkflowWithOptions(canaryWorkflow, workflow.RegisterOptions{Name: "canary"})
	w.RegisterActivityWithOptions(echo, activity.RegisterOptions{Name: "echo"})
	w.RegisterActivityWithOptions(refuse, activity.RegisterOptions{Name: "refuse"})
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(w.Stop)
	return w
}

// runCanary runs canaryWorkflow on its own task queue through c and returns
// its result and its workflow id.
func runCanary(t *testing.T, c client.Client, queue string) (canaryResult, string) {
	t.Helper()
	newCanaryWorker(t, c, queue, worker.Options{WorkflowPanicPolicy: worker.FailWorkflow})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: queue, TaskQueue: queue, Memo: map[string]any{"note": canary},
	}, "canary", canaryInput{Subject: canary})
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	if err := c.SignalWorkflow(ctx, run.GetID(), "", "canary", canary); err != nil {
		t.Fatalf("signal: %v", err)
	}
	var res canaryResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	return res, run.GetID()
}

// history reads a workflow's raw events, payloads as the server stores them.
func history(t *testing.T, c client.Client, id string) []*historypb.HistoryEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var events []*historypb.HistoryEvent
	it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("read history of %s: %v", id, err)
		}
		events = append(events, e)
	}
	return events
}

// eventsWithCanary names the events whose stored bytes contain the canary.
func eventsWithCanary(t *testing.T, events []*historypb.HistoryEvent) []string {
	t.Helper()
	var found []string
	for _, e := range events {
		raw, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(canary)) {
			found = append(found, e.GetEventType().String())
		}
	}
	return found
}

// TestCodecKeepsPayloadsOutOfHistory runs a workflow through clients built
// with the codec and reads its history through a client without it: the
// value is in none of the stored events, while the codec's clients read
// every payload back. The same workflow without the codec shows that the
// check does find the value when it is there.
func TestCodecKeepsPayloadsOutOfHistory(t *testing.T) {
	raw, ns := testtemporal.Start(t)
	keys, err := codec.ParseKeys(testKeys)
	if err != nil {
		t.Fatal(err)
	}
	silent := slog.New(slog.DiscardHandler)
	coded, err := client.NewClientFromExisting(raw, temporalx.ClientOptions("", ns, silent, codec.DataConverter(keys)))
	if err != nil {
		t.Fatalf("client with codec: %v", err)
	}
	t.Cleanup(coded.Close)

	res, id := runCanary(t, coded, "codec-encrypted")
	want := canaryResult{Echo: canary, Failure: "cannot erase " + canary, Signal: canary}
	if res != want {
		t.Errorf("through the codec the workflow returned %+v, want %+v", res, want)
	}

	events := history(t, raw, id)
	if found := eventsWithCanary(t, events); len(found) > 0 {
		t.Errorf("the stored history shows the value in %v", found)
	}
	var started *historypb.HistoryEvent
	for _, e := range events {
		if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED {
			started = e
		}
	}
	if started == nil {
		t.Fatal("no WorkflowExecutionStarted event")
	}
	input := started.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()
	if len(input) != 1 || string(input[0].GetMetadata()[converter.MetadataEncoding]) != codec.Encoding {
		t.Fatalf("stored input = %v, want one %s payload", input, codec.Encoding)
	}
	decoded, err := codec.NewCodec(keys).Decode(input)
	if err != nil {
		t.Fatalf("decode stored input: %v", err)
	}
	if !bytes.Contains(decoded[0].GetData(), []byte(canary)) {
		t.Errorf("decoded input %s lacks the value", decoded[0].GetData())
	}

	// Control: without the codec the same check finds the value.
	_, plainID := runCanary(t, raw, "codec-plain")
	found := eventsWithCanary(t, history(t, raw, plainID))
	for _, want := range []string{"WorkflowExecutionStarted", "ActivityTaskFailed", "WorkflowExecutionSignaled"} {
		if !strings.Contains(strings.Join(found, " "), want) {
			t.Errorf("without the codec the check did not see the value in %s (found it in %v)", want, found)
		}
	}
}

// TestWorkerWithoutTheKeyHoldsWorkflows: a worker that lacks the key a
// workflow's payloads were encrypted with (another key, or none at all)
// must not fail the workflow — that would end an erasure over a
// configuration slip. Its workflow task fails and Temporal retries it; once
// a worker with the key polls, the workflow completes.
func TestWorkerWithoutTheKeyHoldsWorkflows(t *testing.T) {
	raw, ns := testtemporal.Start(t)
	keys, err := codec.ParseKeys(testKeys)
	if err != nil {
		t.Fatal(err)
	}
	other, err := codec.ParseKeys("k9:f0e0d0c0b0a090807060504030201000f1e1d1c1b1a191817161514131211101")
	if err != nil {
		t.Fatal(err)
	}
	silent := slog.New(slog.DiscardHandler)
	coded, err := client.NewClientFromExisting(raw, temporalx.ClientOptions("", ns, silent, codec.DataConverter(keys)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(coded.Close)

	cases := []struct {
		name    string
		keys    *codec.Keyring
		wantLog string
	}{
		{"another key", other, `unknown key id \"k1\"`},
		{"no keys", nil, "LETHE_CODEC_KEYS is not set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			queue := "held-" + strings.ReplaceAll(tc.name, " ", "-")
			var logs testenv.LogBuffer
			wrong, err := client.NewClientFromExisting(raw, temporalx.ClientOptions("", ns, slog.New(slog.NewJSONHandler(&logs, nil)), codec.DataConverter(tc.keys)))
			if err != nil {
				t.Fatal(err)
			}
			defer wrong.Close()
			// The panic policy Lethe's worker runs with (the default).
			bad := newCanaryWorker(t, wrong, queue, worker.Options{})

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			run, err := coded.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
				ID: queue, TaskQueue: queue,
				// A retried task goes to the next worker after this timeout.
				WorkflowTaskTimeout: time.Second,
			}, "canary", canaryInput{Subject: canary})
			if err != nil {
				t.Fatalf("start workflow: %v", err)
			}
			if err := coded.SignalWorkflow(ctx, run.GetID(), "", "canary", canary); err != nil {
				t.Fatalf("signal: %v", err)
			}
			for {
				types := eventTypes(t, raw, run.GetID())
				if types[enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED] {
					t.Fatal("the worker without the key failed the workflow")
				}
				if types[enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED] {
					break
				}
				if ctx.Err() != nil {
					t.Fatal("the worker without the key never failed a workflow task")
				}
				time.Sleep(50 * time.Millisecond)
			}
			bad.Stop()
			desc, err := raw.DescribeWorkflowExecution(ctx, run.GetID(), "")
			if err != nil {
				t.Fatal(err)
			}
			if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				t.Fatalf("after the worker without the key, the workflow is %v, want running", st)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("the worker's logs do not say why (%q):\n%s", tc.wantLog, logs.String())
			}
			if strings.Contains(logs.String(), canary) {
				t.Error("the worker's logs show the value")
			}

			newCanaryWorker(t, coded, queue, worker.Options{})
			var res canaryResult
			if err := run.Get(ctx, &res); err != nil {
				t.Fatalf("with the key the workflow ended with %v", err)
			}
			if res.Signal != canary {
				t.Errorf("result = %+v, want the signal read back", res)
			}
		})
	}
}

// eventTypes lists the types of the events in the workflow's history.
func eventTypes(t *testing.T, c client.Client, id string) map[enumspb.EventType]bool {
	t.Helper()
	types := map[enumspb.EventType]bool{}
	for _, e := range history(t, c, id) {
		types[e.GetEventType()] = true
	}
	return types
}

// TestWorkerRefusesPlaintext: every Lethe process encrypts, so a worker
// with keys takes an unencrypted payload for what it is, a client without
// the keys going around the API. A workflow started with plaintext input
// fails with the reason before any of its code runs; a plaintext signal is
// dropped while the encrypted one after it counts. Workflows started before
// codec.PlaintextBefore, which predate encryption, still run.
func TestWorkerRefusesPlaintext(t *testing.T) {
	raw, ns := testtemporal.Start(t)
	keys, err := codec.ParseKeys(testKeys)
	if err != nil {
		t.Fatal(err)
	}
	silent := slog.New(slog.DiscardHandler)
	keyed := func(t *testing.T, opts ...codec.Option) client.Client {
		c, err := client.NewClientFromExisting(raw, temporalx.ClientOptions("", ns, silent, codec.DataConverter(keys, opts...)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	start := func(t *testing.T, c client.Client, queue string) client.WorkflowRun {
		t.Helper()
		run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: queue, TaskQueue: queue},
			"canary", canaryInput{Subject: canary})
		if err != nil {
			t.Fatalf("start workflow: %v", err)
		}
		return run
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, tc := range []struct {
		name   string
		cutoff time.Time
	}{
		{"no cutoff", time.Time{}},
		{"cutoff before the start", time.Now().Add(-time.Hour)},
	} {
		t.Run("plaintext input, "+tc.name, func(t *testing.T) {
			queue := "plain-input-" + strings.ReplaceAll(tc.name, " ", "-")
			coded := keyed(t, codec.PlaintextBefore(tc.cutoff))
			newCanaryWorker(t, coded, queue, worker.Options{})
			start(t, raw, queue)
			// The failure's message is encrypted too: read it with the keys.
			err := coded.GetWorkflow(ctx, queue, "").Get(ctx, nil)
			if err == nil || !strings.Contains(err.Error(), "unencrypted payload refused") {
				t.Fatalf("a plaintext start ended with %v, want the workflow failed for its unencrypted input", err)
			}
			if strings.Contains(err.Error(), canary) {
				t.Error("the failure shows the value")
			}
			types := eventTypes(t, raw, queue)
			if !types[enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED] || types[enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED] {
				t.Errorf("events %v: want the workflow failed before scheduling anything", types)
			}
		})
	}

	t.Run("plaintext signal", func(t *testing.T) {
		coded := keyed(t)
		newCanaryWorker(t, coded, "plain-signal", worker.Options{})
		run := start(t, coded, "plain-signal")
		if err := raw.SignalWorkflow(ctx, run.GetID(), "", "canary", "forged"); err != nil {
			t.Fatal(err)
		}
		if err := coded.SignalWorkflow(ctx, run.GetID(), "", "canary", canary); err != nil {
			t.Fatal(err)
		}
		var res canaryResult
		if err := run.Get(ctx, &res); err != nil {
			t.Fatalf("workflow: %v", err)
		}
		if res.Signal != canary {
			t.Errorf("the workflow read signal %q, want the encrypted one after the dropped plaintext one", res.Signal)
		}
	})

	t.Run("started before the cutoff", func(t *testing.T) {
		coded := keyed(t, codec.PlaintextBefore(time.Now().Add(time.Hour)))
		newCanaryWorker(t, coded, "plain-before", worker.Options{})
		start(t, raw, "plain-before")
		if err := raw.SignalWorkflow(ctx, "plain-before", "", "canary", canary); err != nil {
			t.Fatal(err)
		}
		var res canaryResult
		if err := coded.GetWorkflow(ctx, "plain-before", "").Get(ctx, &res); err != nil {
			t.Fatalf("a workflow that predates the cutoff ended with %v, want it run", err)
		}
		if res.Echo != canary || res.Signal != canary {
			t.Errorf("result = %+v, want the plaintext input and signal read", res)
		}
	})
}
