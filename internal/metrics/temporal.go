package metrics

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// Temporal returns the handler that puts the Temporal SDK's metrics on the
// registry (client.Options.MetricsHandler): its counters as <name>_total,
// its timers as <name>_seconds histograms, its gauges as they are. The
// SDK's tags become labels; they name namespaces, task queues, workflow and
// activity types, operations and status codes, never a workflow id.
func (m *Metrics) Temporal() client.MetricsHandler {
	m.temporalOnce.Do(func() {
		m.temporal = &sdkCollector{series: map[string]prometheus.Collector{}}
		m.Registry.MustRegister(m.temporal)
	})
	return sdkHandler{c: m.temporal}
}

// sdkCollector holds one series per metric name and tag set. The SDK gives
// one name different tag sets at different call sites, which the Vec types
// refuse, so each series is a metric of its own, gathered here; the
// collector is unchecked (it describes nothing) for the same reason.
type sdkCollector struct {
	mu     sync.RWMutex
	series map[string]prometheus.Collector
}

// Describe sends nothing: the series are known only as the SDK makes them.
func (c *sdkCollector) Describe(chan<- *prometheus.Desc) {}

// Collect sends every series.
func (c *sdkCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, s := range c.series {
		s.Collect(ch)
	}
}

// get returns the series of key, making it with mk the first time.
func (c *sdkCollector) get(key string, mk func() prometheus.Collector) prometheus.Collector {
	c.mu.RLock()
	s, ok := c.series[key]
	c.mu.RUnlock()
	if ok {
		return s
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.series[key]; ok {
		return s
	}
	s = mk()
	c.series[key] = s
	return s
}

// sdkHandler is the SDK's metrics.Handler over the collector, with the tags
// of the handlers it was derived from.
type sdkHandler struct {
	c    *sdkCollector
	tags map[string]string
	// key is tags in a canonical form, the part of a series' key they make.
	key string
}

func (h sdkHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	if merged == nil {
		merged = map[string]string{}
	}
	for k, v := range tags {
		merged[sanitize(k)] = v
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(merged[k])
		b.WriteByte(0)
	}
	return sdkHandler{c: h.c, tags: merged, key: b.String()}
}

func (h sdkHandler) Counter(name string) client.MetricsCounter {
	name = sanitize(name) + "_total"
	s := h.c.get("c\x00"+name+"\x00"+h.key, func() prometheus.Collector {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "Temporal SDK counter.", ConstLabels: h.tags})
	}).(prometheus.Counter)
	return sdkCounter{s}
}

func (h sdkHandler) Gauge(name string) client.MetricsGauge {
	name = sanitize(name)
	s := h.c.get("g\x00"+name+"\x00"+h.key, func() prometheus.Collector {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "Temporal SDK gauge.", ConstLabels: h.tags})
	}).(prometheus.Gauge)
	return sdkGauge{s}
}

func (h sdkHandler) Timer(name string) client.MetricsTimer {
	name = sanitize(name) + "_seconds"
	s := h.c.get("t\x00"+name+"\x00"+h.key, func() prometheus.Collector {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: "Temporal SDK timer.",
			ConstLabels: h.tags, Buckets: sdkBuckets})
	}).(prometheus.Histogram)
	return sdkTimer{s}
}

// sdkBuckets span a poll that returns at once to a long poll of a minute.
var sdkBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

type sdkCounter struct{ c prometheus.Counter }

func (c sdkCounter) Inc(d int64) {
	if d > 0 {
		c.c.Add(float64(d))
	}
}

type sdkGauge struct{ g prometheus.Gauge }

func (g sdkGauge) Update(v float64) { g.g.Set(v) }

type sdkTimer struct{ h prometheus.Histogram }

func (t sdkTimer) Record(d time.Duration) { t.h.Observe(d.Seconds()) }

// sanitize turns a name or tag key into a valid Prometheus name: letters,
// digits and underscores, not starting with a digit.
func sanitize(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_', r >= '0' && r <= '9' && i > 0:
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
