package metrics_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/metrics/metricstest"
	"github.com/lethe-dev/lethe/registry"
)

// Everything a process records parses as the text format, under the
// families and labels docs/operating.md lists.
func TestExpositionParses(t *testing.T) {
	m := metrics.New()
	m.Count(lethe.EscalationOverdue)
	m.Count(lethe.EscalationOverdue)
	m.CommandFinished("crm", lethe.SystemErased, true, 90*time.Second)
	m.CommandFinished("crm", lethe.SystemFailed, false, 0)
	m.DeadLettered("lethe.confirmations", "malformed", 3)
	m.RelayLag(7)
	m.Reconciled("restarted")
	m.ObserveRequest("GET /v1/erasures/{id}", 200, 20*time.Millisecond)
	if err := m.CollectLedger(fakeLedger{counts: registry.ErasureCounts{
		ByStatus: map[lethe.RequestStatus]int64{lethe.RequestRunning: 4, lethe.RequestCompleted: 9},
		Open:     4, Overdue: 1, BatchesOpen: 2, BatchesOverdue: 1,
	}, silent: map[string]int64{"crm": 2, "billing": 0},
		pull: map[string]registry.PullCounts{"ledger": {Queued: 3, Leased: 5}}}, nil); err != nil {
		t.Fatal(err)
	}
	f := metricstest.Scrape(t, m.Handler())
	f.Require(t, "go_goroutines", "process_start_time_seconds",
		"lethe_escalations_total", "lethe_system_commands_total", "lethe_confirmation_seconds",
		"lethe_dlq_messages_total", "lethe_relay_lag_messages", "lethe_http_request_duration_seconds",
		"lethe_erasures_total", "lethe_erasures_open", "lethe_erasures_overdue", "lethe_system_commands_silent",
		"lethe_batches_open", "lethe_batches_overdue", "lethe_reconciler_actions_total")
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"lethe_escalations_total", []string{"kind", "overdue"}, 2},
		{"lethe_escalations_total", []string{"kind", "reminder"}, 0},
		{"lethe_system_commands_total", []string{"system", "crm", "outcome", "erased"}, 1},
		{"lethe_system_commands_total", []string{"system", "crm", "outcome", "failed"}, 1},
		// A failure for silence has no confirmation time.
		{"lethe_confirmation_seconds", []string{"system", "crm"}, 1},
		{"lethe_dlq_messages_total", []string{"topic", "lethe.confirmations", "reason", "malformed"}, 3},
		{"lethe_relay_lag_messages", nil, 7},
		{"lethe_http_request_duration_seconds", []string{"route", "GET /v1/erasures/{id}", "code", "200"}, 1},
		{"lethe_erasures_total", []string{"status", "running"}, 4},
		{"lethe_erasures_total", []string{"status", "completed"}, 9},
		{"lethe_erasures_total", []string{"status", "failed"}, 0},
		{"lethe_erasures_open", nil, 4},
		{"lethe_erasures_overdue", nil, 1},
		{"lethe_batches_open", nil, 2},
		{"lethe_batches_overdue", nil, 1},
		{"lethe_system_commands_silent", []string{"system", "crm"}, 2},
		{"lethe_reconciler_actions_total", []string{"action", "restarted"}, 1},
		// Shown at zero before it happens, so that an alert on an increase
		// sees the first one.
		{"lethe_reconciler_actions_total", []string{"action", "failed"}, 0},
		{"lethe_system_commands_silent", []string{"system", "billing"}, 0},
		{"lethe_pull_commands", []string{"system", "ledger", "state", "queued"}, 3},
		{"lethe_pull_commands", []string{"system", "ledger", "state", "leased"}, 5},
	} {
		if got, ok := f.Value(tc.name, tc.labels...); !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if sum := f["lethe_confirmation_seconds"].GetMetric()[0].GetHistogram().GetSampleSum(); sum != 90 {
		t.Errorf("confirmation seconds sum = %v, want 90", sum)
	}
}

type fakeLedger struct {
	counts registry.ErasureCounts
	silent map[string]int64
	pull   map[string]registry.PullCounts
	err    error
	// silentErr fails the second query only.
	silentErr error
	calls     *int
}

func (f fakeLedger) CountErasures(context.Context) (registry.ErasureCounts, error) {
	if f.calls != nil {
		*f.calls++
	}
	return f.counts, f.err
}

func (f fakeLedger) CountSilentCommands(context.Context) (map[string]int64, error) {
	if f.calls != nil {
		*f.calls++
	}
	return f.silent, f.silentErr
}

func (f fakeLedger) CountPullCommands(context.Context) (map[string]registry.PullCounts, error) {
	if f.calls != nil {
		*f.calls++
	}
	return f.pull, nil
}

// Scrapes within the cache's life read the ledger once.
func TestLedgerTotalsAreCached(t *testing.T) {
	m := metrics.New()
	calls := 0
	if err := m.CollectLedger(fakeLedger{counts: registry.ErasureCounts{Open: 2}, calls: &calls}, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		metricstest.Scrape(t, m.Handler())
	}
	if calls != 3 {
		t.Errorf("three scrapes made %d ledger queries, want the three of one read", calls)
	}
}

// A silent-commands query that fails leaves every ledger family out of the
// scrape rather than serving totals without it, and the rest of the page
// served.
func TestLedgerSilentFailure(t *testing.T) {
	m := metrics.New()
	if err := m.CollectLedger(fakeLedger{counts: registry.ErasureCounts{Open: 1},
		silentErr: errors.New("statement timeout")}, nil); err != nil {
		t.Fatal(err)
	}
	f := metricstest.Scrape(t, m.Handler())
	for _, name := range []string{"lethe_erasures_open", "lethe_system_commands_silent"} {
		if _, ok := f[name]; ok {
			t.Errorf("%s served although the ledger could not be read", name)
		}
	}
	f.Require(t, "lethe_escalations_total")
}

// A ledger that cannot be read leaves its families out of the scrape and
// the rest of the page served.
func TestLedgerFailureKeepsTheRest(t *testing.T) {
	m := metrics.New()
	if err := m.CollectLedger(fakeLedger{err: errors.New("database unreachable")}, nil); err != nil {
		t.Fatal(err)
	}
	m.RelayLag(1)
	f := metricstest.Scrape(t, m.Handler())
	if _, ok := f["lethe_erasures_open"]; ok {
		t.Error("lethe_erasures_open served although the ledger could not be read")
	}
	f.Require(t, "lethe_relay_lag_messages", "lethe_escalations_total")
	// The handler counts a failed gathering after it answers: the next
	// scrape shows it.
	f = metricstest.Scrape(t, m.Handler())
	if got, _ := f.Value("promhttp_metric_handler_errors_total", "cause", "gathering"); got != 1 {
		t.Errorf("promhttp_metric_handler_errors_total{cause=gathering} = %v, want the failure counted", got)
	}
}

// A second API over the same registry is no error.
func TestCollectLedgerTwice(t *testing.T) {
	m := metrics.New()
	for range 2 {
		if err := m.CollectLedger(fakeLedger{}, nil); err != nil {
			t.Fatalf("CollectLedger: %v", err)
		}
	}
}

// The SDK's metrics land on the registry under Prometheus names, one
// series per tag set even when one name is used with different tag keys.
func TestTemporalHandler(t *testing.T) {
	m := metrics.New()
	h := m.Temporal().WithTags(map[string]string{"namespace": "default", "client_name": "temporal_go"})
	h.Counter("temporal_request").Inc(2)
	h.WithTags(map[string]string{"operation": "StartWorkflowExecution"}).Counter("temporal_request").Inc(1)
	h.WithTags(map[string]string{"task_queue": "lethe-erasure"}).Gauge("temporal_num_pollers").Update(3)
	h.Timer("temporal_request_latency").Record(250 * time.Millisecond)
	f := metricstest.Scrape(t, m.Handler())
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"temporal_request_total", []string{"namespace", "default", "operation", "StartWorkflowExecution"}, 1},
		{"temporal_num_pollers", []string{"task_queue", "lethe-erasure"}, 3},
		{"temporal_request_latency_seconds", []string{"namespace", "default"}, 1},
	} {
		if got, ok := f.Value(tc.name, tc.labels...); !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if n := len(f["temporal_request_total"].GetMetric()); n != 2 {
		t.Errorf("temporal_request_total has %d series, want 2 (one per tag set)", n)
	}
}
