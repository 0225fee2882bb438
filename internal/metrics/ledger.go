package metrics

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// LedgerCounter reads the ledger's totals; registry.Store implements it.
type LedgerCounter interface {
	CountErasures(ctx context.Context) (registry.ErasureCounts, error)
	// CountSilentCommands counts, by system name, the open commands
	// unanswered for longer than their system's confirm_within.
	CountSilentCommands(ctx context.Context) (map[string]int64, error)
	// CountPullCommands counts the queue of pull-mode commands by system:
	// due for a lease, and leased.
	CountPullCommands(ctx context.Context) (map[string]registry.PullCounts, error)
}

// Ledger query bounds: a scrape waits at most ledgerTimeout for PostgreSQL,
// and totals younger than ledgerCacheFor are served again, so that several
// Prometheus servers scraping several API replicas cost the database one
// query per replica every ledgerCacheFor.
const (
	ledgerTimeout  = 2 * time.Second
	ledgerCacheFor = 10 * time.Second
)

// ledgerCollector reports the ledger's totals, read at scrape time. Reading
// at scrape time rather than on a timer keeps the figures as fresh as the
// scrape and costs nothing when nobody scrapes; the short cache and timeout
// keep a slow database from slowing the scrape or the API.
type ledgerCollector struct {
	src LedgerCounter
	log *slog.Logger
	now func() time.Time

	total, open, overdue, silent *prometheus.Desc
	batchesOpen, batchesOverdue  *prometheus.Desc
	pull                         *prometheus.Desc

	mu     sync.Mutex
	at     time.Time
	counts ledgerCounts
}

// ledgerCounts is one read of the ledger, served to the scrapes of the
// cache's life.
type ledgerCounts struct {
	erasures registry.ErasureCounts
	silent   map[string]int64
	pull     map[string]registry.PullCounts
}

// CollectLedger adds lethe_erasures_total{status}, lethe_erasures_open,
// lethe_erasures_overdue, lethe_batches_open, lethe_batches_overdue,
// lethe_system_commands_silent{system} and lethe_pull_commands{system,state},
// read
// from src at scrape time. The API role calls
// it: every replica reports the same ledger, so alerts take max(), not
// sum(). A failed read is logged and reported as a failed family for that
// scrape; the rest of the page is still served.
func (m *Metrics) CollectLedger(src LedgerCounter, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	err := m.Registry.Register(&ledgerCollector{
		src: src, log: log, now: time.Now,
		total: prometheus.NewDesc("lethe_erasures_total",
			"Erasure requests in the ledger by current status (a gauge: a request moves between statuses).",
			[]string{"status"}, nil),
		open: prometheus.NewDesc("lethe_erasures_open",
			"Erasure requests still pending or running.", nil, nil),
		overdue: prometheus.NewDesc("lethe_erasures_overdue",
			"Open erasure requests past their deadline.", nil, nil),
		batchesOpen: prometheus.NewDesc("lethe_batches_open",
			"Bulk erasures (batches) still pending or running.", nil, nil),
		batchesOverdue: prometheus.NewDesc("lethe_batches_overdue",
			"Open bulk erasures (batches) past their deadline.", nil, nil),
		silent: prometheus.NewDesc("lethe_system_commands_silent",
			"Commands of open erasure requests that their system has left unanswered for longer than its confirm_within, by system.",
			[]string{"system"}, nil),
		pull: prometheus.NewDesc("lethe_pull_commands",
			"Commands of pull-mode systems waiting for a lease (state queued) or leased to a connector (state leased), by system.",
			[]string{"system", "state"}, nil),
	})
	// A second API over the same registry reads the same ledger.
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		return nil
	}
	return err
}

// Describe sends the families' descriptions.
func (c *ledgerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

func (c *ledgerCollector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{c.total, c.open, c.overdue, c.silent, c.batchesOpen, c.batchesOverdue, c.pull}
}

// Collect reads the totals, or serves the cached ones while fresh.
func (c *ledgerCollector) Collect(ch chan<- prometheus.Metric) {
	read, err := c.read()
	if err != nil {
		c.log.Warn("metrics: could not read the ledger's totals", "error", err.Error())
		for _, d := range c.descs() {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
		return
	}
	counts := read.erasures
	for _, st := range []lethe.RequestStatus{lethe.RequestPending, lethe.RequestRunning,
		lethe.RequestCompleted, lethe.RequestFailed, lethe.RequestCanceled} {
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(counts.ByStatus[st]), string(st))
	}
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(counts.Open))
	ch <- prometheus.MustNewConstMetric(c.overdue, prometheus.GaugeValue, float64(counts.Overdue))
	ch <- prometheus.MustNewConstMetric(c.batchesOpen, prometheus.GaugeValue, float64(counts.BatchesOpen))
	ch <- prometheus.MustNewConstMetric(c.batchesOverdue, prometheus.GaugeValue, float64(counts.BatchesOverdue))
	for system, n := range read.silent {
		ch <- prometheus.MustNewConstMetric(c.silent, prometheus.GaugeValue, float64(n), system)
	}
	for system, n := range read.pull {
		ch <- prometheus.MustNewConstMetric(c.pull, prometheus.GaugeValue, float64(n.Queued), system, "queued")
		ch <- prometheus.MustNewConstMetric(c.pull, prometheus.GaugeValue, float64(n.Leased), system, "leased")
	}
}

// read returns the cached counts while fresh, or reads every query
// within one timeout.
func (c *ledgerCollector) read() (ledgerCounts, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.at.IsZero() && now.Sub(c.at) < ledgerCacheFor {
		return c.counts, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), ledgerTimeout)
	defer cancel()
	erasures, err := c.src.CountErasures(ctx)
	if err != nil {
		return ledgerCounts{}, err
	}
	silent, err := c.src.CountSilentCommands(ctx)
	if err != nil {
		return ledgerCounts{}, err
	}
	pull, err := c.src.CountPullCommands(ctx)
	if err != nil {
		return ledgerCounts{}, err
	}
	c.at, c.counts = now, ledgerCounts{erasures: erasures, silent: silent, pull: pull}
	return c.counts, nil
}
