package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/devstack"
	"github.com/lethe-dev/lethe/internal/temporalx"
	"github.com/lethe-dev/lethe/wire"
)

// benchInFlight is how many requests the benchmarks keep in flight.
const benchInFlight = 20

// embeddedStack builds the stack on `lethe dev`'s own Temporal server (SQLite
// file, WAL) rather than temporaltest, so figures match what users run.
func embeddedStack(b *testing.B) *stack {
	b.Helper()
	ts, err := devstack.StartTemporal(context.Background(), devstack.TemporalConfig{Address: "127.0.0.1:0", DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ts.Stop)
	c, err := temporalx.Dial(context.Background(), ts.Address(), ts.Namespace(), silentLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return newStack(b, stackOptions{Temporal: c, Namespace: ts.Namespace()})
}

// autoConfirm erases nothing and confirms at once: the cheapest connector,
// so the benchmark measures Lethe rather than a service.
type autoConfirm struct{}

func (autoConfirm) Erase(context.Context, connectors.Request) (connectors.Result, error) {
	return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
}

// BenchmarkErasure measures end-to-end erasures (API accepted → every system
// confirmed → completed) at fan-out K with benchInFlight requests in flight,
// and, in the same run on the same server, the rate of an empty workflow
// started and awaited through the same client. Run with -benchtime Nx for N
// erasures per fan-out.
func BenchmarkErasure(b *testing.B) {
	for _, k := range []int{1, 5, 20} {
		b.Run(fmt.Sprintf("K=%d", k), func(b *testing.B) {
			s := embeddedStack(b)
			for i := range k {
				name := fmt.Sprintf("bench-%02d", i)
				s.putSystem(lethe.System{Name: name, Identifiers: []string{"user_id"}})
				s.runConnector(name, autoConfirm{})
			}
			// Warm up: one request through every part before timing.
			s.await(s.submit(map[string]string{"user_id": "warm-up"}).ID, time.Minute)

			b.ResetTimer()
			lat, elapsed := runConcurrently(b, b.N, func(i int) {
				e := s.submit(map[string]string{"user_id": fmt.Sprintf("bench-%d", i)})
				// Wait on the workflow's result, a long poll like the
				// baseline's, instead of loading the API with status polls;
				// the ledger is written before the workflow returns.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				if err := s.Temporal.GetWorkflow(ctx, e.WorkflowID, "").Get(ctx, nil); err != nil {
					b.Errorf("request %s: %v", e.ID, err)
				}
			})
			b.StopTimer()
			rate := float64(b.N) / elapsed.Seconds()
			var completed int
			if err := s.DB.QueryRow(`SELECT count(*) FROM erasure_requests WHERE status = 'completed'`).Scan(&completed); err != nil || completed != b.N+1 {
				b.Errorf("ledger shows %d completed requests (%v), want %d", completed, err, b.N+1)
			}

			base := baselineEmptyWorkflow(b, s.Temporal, b.N)
			b.ReportMetric(rate, "erasures/s")
			b.ReportMetric(ms(percentile(lat, 50)), "p50_ms")
			b.ReportMetric(ms(percentile(lat, 99)), "p99_ms")
			b.ReportMetric(base, "empty_wf/s")
			b.ReportMetric(rate/base, "ratio")
		})
	}
}

// emptyWorkflow is the baseline: a workflow that does nothing.
func emptyWorkflow(ctx workflow.Context) error { return nil }

// baselineEmptyWorkflow starts and awaits n empty workflows, benchInFlight at
// a time, through c and returns their rate per second.
func baselineEmptyWorkflow(b *testing.B, c client.Client, n int) float64 {
	b.Helper()
	const queue = "bench-baseline"
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(emptyWorkflow, workflow.RegisterOptions{Name: "EmptyWorkflow"})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	run := func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("baseline-%d-%d", time.Now().UnixNano(), i), TaskQueue: queue}, "EmptyWorkflow")
		if err == nil {
			err = r.Get(ctx, nil)
		}
		if err != nil {
			b.Errorf("baseline workflow: %v", err)
		}
	}
	run(-1)
	_, elapsed := runConcurrently(b, n, run)
	return float64(n) / elapsed.Seconds()
}

// runConcurrently runs fn for 0..n-1 with benchInFlight goroutines and
// returns each call's latency and the total time.
func runConcurrently(b *testing.B, n int, fn func(i int)) ([]time.Duration, time.Duration) {
	b.Helper()
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(benchInFlight, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				fn(i)
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	return lat, time.Since(start)
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
