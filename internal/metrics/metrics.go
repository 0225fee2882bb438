// Package metrics builds the one Prometheus registry of a Lethe process and
// the metric families its roles record on: the API's requests and the
// ledger's totals, the worker's outcomes and escalations, the relay's lag and
// dead letters, and the Temporal SDK's own metrics. Roles receive a *Metrics
// through internal/roles and record through small interfaces of their own
// packages, so that no package but this one imports Prometheus.
//
// No label holds an identifier value: labels are system names, statuses,
// outcomes, fixed reasons, route patterns, status codes and topic names.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lethe-dev/lethe"
)

// Metrics is one process's registry and the families Lethe records on it.
// A process builds one with New and hands it to every role it runs, so that
// `lethe dev` serves the API's, the worker's and the relay's families on one
// endpoint. Its methods are safe for concurrent use.
type Metrics struct {
	// Registry holds every family; Handler serves it.
	Registry *prometheus.Registry

	escalations  *prometheus.CounterVec
	commands     *prometheus.CounterVec
	confirmation *prometheus.HistogramVec
	relayLag     prometheus.Gauge
	dlq          *prometheus.CounterVec
	requests     *prometheus.HistogramVec
	reconciler   *prometheus.CounterVec

	temporalOnce sync.Once
	temporal     *sdkCollector
}

// confirmationBuckets span a connector that answers in a second to a
// system that takes its whole confirm_within of days: 1 s to 8 days.
var confirmationBuckets = []float64{1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 3 * 24 * 3600, 8 * 24 * 3600}

// New returns a registry with the Go and process collectors and Lethe's
// families. It is a registry of its own, not Prometheus' global default,
// so that tests and embedded stacks never share counters.
func New() *Metrics {
	m := &Metrics{
		Registry: NewRegistry(),
		escalations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_escalations_total",
			Help: "Erasure requests escalated by the worker, by kind (reminder, target, overdue).",
		}, []string{"kind"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_system_commands_total",
			Help: "Commands of erasure requests that reached a final outcome in the ledger, by system and outcome (erased, not_found, retained, failed).",
		}, []string{"system", "outcome"}),
		confirmation: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lethe_confirmation_seconds",
			Help:    "Time from a system's first dispatch within a request to its confirmation, by system.",
			Buckets: confirmationBuckets,
		}, []string{"system"}),
		relayLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lethe_relay_lag_messages",
			Help: "Confirmations the relay has not read yet, as its Kafka reader last saw them.",
		}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_dlq_messages_total",
			Help: "Messages sent to a dead-letter topic, by the topic they were read from and a fixed reason.",
		}, []string{"topic", "reason"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lethe_http_request_duration_seconds",
			Help:    "Time the API took to answer, by route pattern and status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "code"}),
		reconciler: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_reconciler_actions_total",
			Help: "Orphaned requests the worker's reconciler acted on, by action (restarted, failed).",
		}, []string{"action"}),
	}
	m.Registry.MustRegister(
		m.escalations, m.commands, m.confirmation, m.relayLag, m.dlq, m.requests, m.reconciler,
	)
	// Every kind is there at zero before it happens, so that an alert on
	// an increase sees the first one.
	for _, k := range []lethe.EscalationKind{lethe.EscalationReminder, lethe.EscalationTarget, lethe.EscalationOverdue, lethe.EscalationNotDispatched} {
		m.escalations.WithLabelValues(string(k))
	}
	for _, a := range ReconcilerActions {
		m.reconciler.WithLabelValues(a)
	}
	return m
}

// ReconcilerActions are the values of lethe_reconciler_actions_total's
// action label: an orphaned request was restarted, or marked failed.
var ReconcilerActions = []string{"restarted", "failed"}

// NewRegistry returns a registry of its own with the Go and process
// collectors: the base of every Lethe process's /metrics, and all of it for
// a reference connector's, which adds promobserver's families.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler serves reg in the Prometheus exposition formats. A family that
// cannot be read (the ledger, when PostgreSQL does not answer) is left out
// and counted in promhttp_metric_handler_errors_total; the others are still
// served.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
}

// Handler serves the registry; see the function Handler.
func (m *Metrics) Handler() http.Handler { return Handler(m.Registry) }

// Count adds one escalation of kind k; it is the worker's
// activities.EscalationCounter.
func (m *Metrics) Count(k lethe.EscalationKind) {
	m.escalations.WithLabelValues(string(k)).Inc()
}

// CommandFinished counts one system of a request reaching a final status in
// the ledger and, when it was confirmed (rather than failed for silence),
// observes how long the confirmation took since the first dispatch. It is
// the worker's activities.OutcomeObserver.
func (m *Metrics) CommandFinished(system string, status lethe.SystemStatus, confirmed bool, took time.Duration) {
	m.commands.WithLabelValues(system, string(status)).Inc()
	if confirmed {
		m.confirmation.WithLabelValues(system).Observe(max(took, 0).Seconds())
	}
}

// DeadLettered counts n messages read from topic and sent to its
// dead-letter topic for reason; it is relay.Metrics.
func (m *Metrics) DeadLettered(topic, reason string, n int) {
	m.dlq.WithLabelValues(topic, reason).Add(float64(n))
}

// DeadLetterReasons shows the reasons of topic at zero before the first
// dead letter, so that an alert on their increase sees the first one.
func (m *Metrics) DeadLetterReasons(topic string, reasons ...string) {
	for _, r := range reasons {
		m.dlq.WithLabelValues(topic, r)
	}
}

// RelayLag records the relay's lag in messages; it is relay.Metrics.
func (m *Metrics) RelayLag(n int64) {
	m.relayLag.Set(float64(n))
}

// ObserveRequest records one API answer under its route pattern (never the
// path, which holds ids); it is api.RequestObserver.
func (m *Metrics) ObserveRequest(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Observe(d.Seconds())
}

// Reconciled counts one orphaned request the reconciler acted on; action
// is one of ReconcilerActions.
func (m *Metrics) Reconciled(action string) {
	m.reconciler.WithLabelValues(action).Inc()
}
