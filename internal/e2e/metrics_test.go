package e2e_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/metrics/metricstest"
	"github.com/lethe-dev/lethe/wire"
)

// TestMetricsMove erases a subject through the demo systems and reads the
// stack's /metrics afterwards: it parses, every system's outcome was
// counted once with its confirmation time, the API timed the request under
// its route pattern, the ledger's totals show the completed request, the
// Temporal SDK's metrics are there, and no label holds an id or a value.
func TestMetricsMove(t *testing.T) {
	s := newStack(t, stackOptions{})
	subject := startDemo(t, s)
	e := s.submit(subjectMap(subject.Identifiers()))
	done := s.await(e.ID, 60*time.Second)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("request %s, want completed: %s", done.Status, describe(done))
	}
	// The ledger says completed before the workflow has returned; the SDK
	// counts the workflow once it has.
	s.closed(e.ID)

	rec := httptest.NewRecorder()
	s.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	page := rec.Body.String()
	f := metricstest.Parse(t, page)
	f.Require(t, "lethe_system_commands_total", "lethe_confirmation_seconds", "lethe_http_request_duration_seconds",
		"lethe_erasures_total", "lethe_erasures_open", "lethe_erasures_overdue", "lethe_escalations_total",
		"lethe_relay_lag_messages", "lethe_dlq_messages_total", "temporal_workflow_completed_total",
		"go_goroutines", "process_cpu_seconds_total")

	for _, p := range done.Systems {
		if got, _ := f.Value("lethe_system_commands_total", "system", p.Name, "outcome", string(p.Status)); got != 1 {
			t.Errorf("lethe_system_commands_total{system=%s,outcome=%s} = %v, want 1", p.Name, p.Status, got)
		}
		if got, _ := f.Value("lethe_confirmation_seconds", "system", p.Name); got != 1 {
			t.Errorf("lethe_confirmation_seconds{system=%s} count = %v, want 1", p.Name, got)
		}
	}
	if got, _ := f.Value("lethe_http_request_duration_seconds", "route", "POST /v1/erasures", "code", "202"); got != 1 {
		t.Errorf("lethe_http_request_duration_seconds{route=POST /v1/erasures,code=202} count = %v, want 1", got)
	}
	if got, _ := f.Value("lethe_http_request_duration_seconds", "route", "GET /v1/erasures/{id}", "code", "200"); got < 1 {
		t.Errorf("lethe_http_request_duration_seconds{route=GET /v1/erasures/{id}} count = %v, want the polls", got)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"lethe_erasures_total", []string{"status", "completed"}, 1},
		{"lethe_erasures_open", nil, 0},
		{"lethe_erasures_overdue", nil, 0},
		{"lethe_batches_open", nil, 0},
		{"lethe_batches_overdue", nil, 0},
		{"lethe_dlq_messages_total", []string{"reason", "malformed"}, 0},
	} {
		if got, ok := f.Value(c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if got, _ := f.Value("temporal_workflow_completed_total", "namespace", s.Namespace); got < 1 {
		t.Errorf("temporal_workflow_completed_total{namespace=%s} = %v, want the erasure's workflow", s.Namespace, got)
	}
	for _, secret := range append([]string{e.ID}, identifierValues(subject.AllIdentifiers())...) {
		if strings.Contains(page, secret) {
			t.Errorf("/metrics holds %q", secret)
		}
	}
}

// identifierValues are the values of ids, which nothing Lethe serves may hold.
func identifierValues(ids []wire.Identifier) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.Value
	}
	return out
}
