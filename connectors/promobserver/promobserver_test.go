package promobserver_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/promobserver"
	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/metrics/metricstest"
	"github.com/lethe-dev/lethe/wire"
)

// Each of Run's events moves its family, and dead letters are labelled
// with the command topic, the given one or the system's default.
func TestObserverCounts(t *testing.T) {
	for _, tc := range []struct{ topic, want string }{
		{"", wire.DefaultTopic("crm")},
		{"crm-erasures", "crm-erasures"},
	} {
		reg := prometheus.NewRegistry()
		o, err := promobserver.New(reg, tc.topic)
		if err != nil {
			t.Fatal(err)
		}
		o.CommandHandled("crm", wire.OutcomeErased, 2, 3*time.Second)
		o.CommandHandled("crm", wire.OutcomeErased, 1, time.Second)
		o.CommandDuplicate("crm")
		o.HandlerRetried("crm")
		o.CommandDeadLettered("crm", connectors.DLQMalformed)
		f := metricstest.Scrape(t, metrics.Handler(reg))
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"lethe_connector_commands_total", []string{"system", "crm", "outcome", "erased"}, 2},
			{"lethe_connector_command_duration_seconds", []string{"system", "crm"}, 2},
			{"lethe_connector_duplicates_total", []string{"system", "crm"}, 1},
			{"lethe_connector_handler_retries_total", []string{"system", "crm"}, 1},
			{"lethe_dlq_messages_total", []string{"topic", tc.want, "reason", connectors.DLQMalformed}, 1},
		} {
			if got, ok := f.Value(c.name, c.labels...); !ok || got != c.want {
				t.Errorf("topic %q: %s%v = %v (found %v), want %v", tc.topic, c.name, c.labels, got, ok, c.want)
			}
		}
	}
}

// Registering twice on one registry is refused, not a panic.
func TestNewTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := promobserver.New(reg, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := promobserver.New(reg, ""); err == nil {
		t.Error("a second observer on the same registry was accepted")
	}
}
