// Package promobserver counts a connector's work in Prometheus: it is a
// connectors.Observer, kept out of the connectors package so that the SDK
// itself depends on no metrics library. A service registers it on its own
// registry and passes it as connectors.Config.Observer:
//
//	reg := prometheus.NewRegistry()
//	obs, err := promobserver.New(reg, "")
//	...
//	connectors.Run(ctx, connectors.Config{..., Observer: obs}, handler)
//
// Its labels are the system's name, an outcome, a topic and a fixed reason;
// never a value of a command.
package promobserver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// Observer counts connectors.Run's events. Its methods are safe for
// concurrent use, as Run requires.
type Observer struct {
	topic      string
	handled    *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	duplicates *prometheus.CounterVec
	retries    *prometheus.CounterVec
	dlq        *prometheus.CounterVec
}

var _ connectors.Observer = (*Observer)(nil)

// durationBuckets span a handler that answers at once to one that retries
// for minutes.
var durationBuckets = []float64{.005, .025, .1, .5, 1, 2.5, 10, 30, 60, 300, 900}

// New registers the connector's families on reg. topic is the command topic
// the connector reads (connectors.Config.Topic), which labels its dead
// letters; empty means the system's default topic, wire.DefaultTopic.
func New(reg prometheus.Registerer, topic string) (*Observer, error) {
	o := &Observer{
		topic: topic,
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_connector_commands_total",
			Help: "Commands the connector confirmed, by system and outcome (erased, not_found, retained, failed).",
		}, []string{"system", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lethe_connector_command_duration_seconds",
			Help:    "Time from the handler's first call on a command to its confirmation, retries included, by system.",
			Buckets: durationBuckets,
		}, []string{"system"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_connector_duplicates_total",
			Help: "Commands answered with a recorded confirmation instead of calling the handler, by system.",
		}, []string{"system"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_connector_handler_retries_total",
			Help: "Retries of a handler that returned an error, by system.",
		}, []string{"system"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_dlq_messages_total",
			Help: "Messages sent to a dead-letter topic, by the topic they were read from and a fixed reason.",
		}, []string{"topic", "reason"}),
	}
	for _, c := range []prometheus.Collector{o.handled, o.duration, o.duplicates, o.retries, o.dlq} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// CommandHandled counts a confirmed command and observes how long it took.
func (o *Observer) CommandHandled(system string, outcome wire.Outcome, attempts int, d time.Duration) {
	o.handled.WithLabelValues(system, string(outcome)).Inc()
	o.duration.WithLabelValues(system).Observe(d.Seconds())
}

// CommandDuplicate counts a command answered from the dedup store.
func (o *Observer) CommandDuplicate(system string) {
	o.duplicates.WithLabelValues(system).Inc()
}

// CommandDeadLettered counts a dead-lettered message under the command
// topic and the SDK's fixed reason.
func (o *Observer) CommandDeadLettered(system, reason string) {
	topic := o.topic
	if topic == "" {
		topic = wire.DefaultTopic(system)
	}
	o.dlq.WithLabelValues(topic, reason).Inc()
}

// HandlerRetried counts a retry of the handler.
func (o *Observer) HandlerRetried(system string) {
	o.retries.WithLabelValues(system).Inc()
}
