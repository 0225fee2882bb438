// Package bench is the engine of `lethe bench`: it drives Lethe end to end
// through its public HTTP API, with K synthetic systems whose connectors
// run the SDK and confirm at once, and measures in the same run, on the same
// stack, the raw components Lethe stands on: an empty Temporal workflow, a
// naive workflow that runs K activities and waits for K signals, and raw
// Kafka round trips. Its figures are ratios to those baselines, since the
// machines it runs on are shared and noisy (see docs/benchmarks.md).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/wire"
)

// DefaultKs are the fan-outs PERFORMANCE.md sets targets for.
var DefaultKs = []int{1, 5, 20}

// Defaults of Config's other fields: enough erasures for a p99 to mean
// something, the concurrency of PERFORMANCE.md's p99 target, and a bound on
// one request generous enough for an overloaded laptop.
//
// At K=1 a request takes a fraction of a second, and a round of 50 (200
// split in four) lasts about one: the ramp at each end of a round, a whole
// latency with fewer than Concurrency operations in flight, then weighs on
// the rate of the slower operation most, and K=1 measured 0.40 where the
// same build measured 0.48 with 1,000 (docs/benchmarks.md). DefaultNSingle
// makes each K=1 round last several seconds; at K=5 and K=20 a round of
// DefaultN already does.
const (
	DefaultN              = 200
	DefaultNSingle        = 1000
	DefaultConcurrency    = 20
	DefaultRequestTimeout = 5 * time.Minute
)

// MaxK bounds the fan-out: each system runs a connector, with its own
// consumer group, in this process.
const MaxK = 1000

// SystemPrefix names the benchmark's systems: bench-00, bench-01, … A run
// retires the ones of an earlier run that its fan-out does not use.
const SystemPrefix = "bench-"

// IdentifierType is the one identifier type of the benchmark's systems and
// subjects.
const IdentifierType = "user_id"

// Config says what to measure and where.
type Config struct {
	// Ks are the fan-outs to measure, in order; default DefaultKs.
	Ks []int
	// N is how many erasures (and baseline operations) each measurement
	// runs; zero means DefaultNSingle at K=1 and DefaultN otherwise.
	N int
	// Concurrency is how many are in flight at once; default
	// DefaultConcurrency.
	Concurrency int
	// URL, when set, is a running Lethe's API: the benchmark registers its
	// systems there, runs their connectors against KafkaBrokers, and skips
	// the baselines that need the Temporal server in this process.
	URL string
	// KafkaBrokers are the running Lethe's brokers, where the connectors
	// read their commands; only used with URL.
	KafkaBrokers []string
	// Token is the bearer credential for the running Lethe's API (it needs
	// systems:read, systems:write, erasures:write and erasures:read); only
	// used with URL.
	Token string
	// DatabaseURL names the PostgreSQL server on which an embedded stack
	// creates its scratch database (its database name is not used).
	DatabaseURL string
	// Keep leaves the scratch database and data folder in place.
	Keep bool
	// Progress receives progress lines while the benchmark runs; nil
	// discards them.
	Progress io.Writer
	// Logger receives the logs of the stack's parts and of the connectors;
	// nil discards them.
	Logger *slog.Logger
	// RequestTimeout bounds the wait for one request or baseline operation;
	// default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Rounds is how many interleaved rounds each measurement's N
	// operations are split into (see bencher.run). Zero picks up to
	// DefaultRounds, keeping each round at least twice Concurrency long, so
	// that ramping up and down at the round's ends weighs little.
	Rounds int
	// Bulk, when above zero, adds the bulk measurement: one bulk erasure
	// of Bulk subjects to the one fan-out of Ks, whose systems then take
	// batch commands, next to the per-request measurement at the same
	// fan-out (see bencher.bulk). At most lethe.MaxBatchSubjects.
	Bulk int
	// BulkTimeout bounds the wait for the bulk erasure to end; default
	// DefaultBulkTimeout.
	BulkTimeout time.Duration
}

// DefaultBulkTimeout bounds a bulk erasure of the benchmark: 100,000
// subjects at a few hundred a second, on a loaded laptop, with room.
const DefaultBulkTimeout = time.Hour

// DefaultRounds is the most rounds Config.Rounds picks by itself.
const DefaultRounds = 4

// n is how many operations each measurement at fan-out k runs.
func (c Config) n(k int) int {
	switch {
	case c.N > 0:
		return c.N
	case k == 1:
		return DefaultNSingle
	}
	return DefaultN
}

// rounds is Rounds, or the number it picks, for a measurement of n operations.
func (c Config) rounds(n int) int {
	if c.Rounds > 0 {
		return min(c.Rounds, n)
	}
	return max(1, min(DefaultRounds, n/(2*c.Concurrency)))
}

func (c Config) withDefaults() Config {
	if len(c.Ks) == 0 {
		c.Ks = DefaultKs
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Logger == nil {
		c.Logger = silent()
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.BulkTimeout == 0 {
		c.BulkTimeout = DefaultBulkTimeout
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	for _, k := range c.Ks {
		if k < 1 || k > MaxK {
			return fmt.Errorf("bench: K=%d: each K must be from 1 to %d", k, MaxK)
		}
	}
	switch {
	case c.N < 0:
		return errors.New("bench: N is negative")
	case c.Concurrency < 1:
		return errors.New("bench: concurrency must be at least 1")
	case c.RequestTimeout < 0:
		return errors.New("bench: request timeout is negative")
	case c.Rounds < 0:
		return errors.New("bench: rounds is negative")
	case c.Bulk < 0:
		return errors.New("bench: the bulk erasure's subjects are negative")
	case c.Bulk > lethe.MaxBatchSubjects:
		return fmt.Errorf("bench: a bulk erasure takes at most %d subjects", lethe.MaxBatchSubjects)
	case c.Bulk > 0 && len(c.Ks) != 1:
		return errors.New("bench: the bulk measurement is of one fan-out: give one K")
	case c.BulkTimeout < 0:
		return errors.New("bench: bulk timeout is negative")
	case c.URL != "" && len(c.KafkaBrokers) == 0:
		return errors.New("bench: a running Lethe (URL) needs the Kafka brokers its connectors read")
	case c.URL == "" && c.DatabaseURL == "":
		return errors.New("bench: the embedded stack needs a PostgreSQL server (database URL)")
	}
	return nil
}

// Run measures every fan-out of cfg and returns the report. It returns an
// error, and no partial report, when a request fails, times out or the
// ledger disagrees: a figure for requests that did not complete correctly
// would flatter Lethe.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &progress{w: cfg.Progress}
	loadBefore := LoadAverage()
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)

	var st *stack
	if cfg.URL == "" {
		p.printf("starting the embedded stack …")
		s, err := embedded(ctx, cfg, p.printf, fail)
		if err != nil {
			return nil, err
		}
		st = s
	} else {
		st = remote(cfg)
	}
	report, err := measure(ctx, cfg, st, p, fail)
	if cerr := st.close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	report.LoadBefore, report.LoadAfter = loadBefore, LoadAverage()
	return report, nil
}

// bencher holds what the measurements of one run share.
type bencher struct {
	cfg     Config
	st      *stack
	p       *progress
	api     *apiClient
	writer  *kafka.Writer
	runID   string
	seq     atomic.Int64
	fail    func(error)
	workers *baselineWorker
	// batch registers the systems as taking batch commands: in a run
	// with the bulk measurement, the per-request one uses the same
	// systems.
	batch bool
}

func measure(ctx context.Context, cfg Config, st *stack, p *progress, fail func(error)) (*Report, error) {
	runID, err := randomName("")
	if err != nil {
		return nil, err
	}
	b := &bencher{
		cfg:    cfg,
		st:     st,
		p:      p,
		api:    newAPIClient(st.apiURL, st.token, cfg.Concurrency),
		writer: kafkax.NewWriter(st.brokers),
		runID:  runID[:8],
		fail:   fail,
		batch:  cfg.Bulk > 0,
	}
	defer b.api.close()
	defer b.writer.Close()
	report := &Report{Machine: ThisMachine(), Stack: st.describe, Concurrency: cfg.Concurrency}
	if st.temporal != nil {
		w, err := startBaselineWorker(st.temporal, b.writer)
		if err != nil {
			return nil, err
		}
		defer w.stop()
		b.workers = w
	} else {
		report.Notes = append(report.Notes, "the empty and naive workflow baselines need the Temporal server in this process: "+
			"they are skipped against a running Lethe, and so are the ratios to them")
	}
	// The bulk erasure runs first, so that the peak RSS it reports is
	// that of the stack and the bulk erasure, before the per-request
	// measurement adds its own.
	if cfg.Bulk > 0 {
		bulk, notes, err := b.bulk(ctx, cfg.Ks[0])
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, err) {
				err = fmt.Errorf("%w (%v)", err, cause)
			}
			return nil, fmt.Errorf("bulk K=%d: %w", cfg.Ks[0], err)
		}
		report.Bulk = bulk
		report.Notes = append(report.Notes, notes...)
	}
	for _, k := range cfg.Ks {
		run, notes, err := b.run(ctx, k)
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, err) {
				err = fmt.Errorf("%w (%v)", err, cause)
			}
			return nil, fmt.Errorf("K=%d: %w", k, err)
		}
		report.Runs = append(report.Runs, run)
		report.Notes = append(report.Notes, notes...)
	}
	if report.Bulk != nil {
		report.Bulk.compare(report.Runs[0])
	}
	rss, err := PeakRSS()
	if err != nil {
		report.Notes = append(report.Notes, "peak RSS unknown: "+err.Error())
	}
	report.PeakRSSBytes = rss
	return report, nil
}

// operation is one thing measured: a Lethe erasure or a baseline's unit.
type operation struct {
	name string
	do   func(ctx context.Context) error
	load load
}

// run measures fan-out k. Lethe and the baselines run interleaved, in
// rounds (Lethe, empty workflow, naive workflow, raw Kafka; again), so that
// a machine whose load changes during the run weighs on all of them alike:
// on a shared machine, measuring one after the other would compare
// different machines. After the rounds, Lethe's accept rate is measured on
// its own, and the ledger checked for every request.
func (b *bencher) run(ctx context.Context, k int) (FanOut, []string, error) {
	b.p.printf("K=%d", k)
	names, notes, err := b.prepareSystems(ctx, k)
	if err != nil {
		return FanOut{}, nil, err
	}
	g := newGroup(ctx, b.fail)
	defer g.stop()
	var handled atomic.Int64
	b.startConnectors(g, names, &handled)

	var ids idList
	letheOp := &operation{name: "Lethe", do: func(ctx context.Context) error {
		e, err := b.submit(ctx, k)
		if err != nil {
			return err
		}
		ids.add(e.ID)
		return b.await(ctx, e)
	}}
	ops := []*operation{letheOp}
	var empty, naive, raw *operation
	if b.workers != nil {
		if err := b.startNaive(ctx, g, k); err != nil {
			return FanOut{}, nil, fmt.Errorf("naive workflow baseline: %w", err)
		}
		empty = &operation{name: "empty workflow", do: b.emptyOp}
		naive = &operation{name: fmt.Sprintf("naive workflow K=%d", k), do: b.naiveOp(k)}
		ops = append(ops, empty, naive)
	}
	rawOp, err := b.startRawKafka(ctx, g, k)
	if err != nil {
		return FanOut{}, nil, fmt.Errorf("raw Kafka baseline: %w", err)
	}
	raw = &operation{name: "raw Kafka round trips", do: rawOp}
	ops = append(ops, raw)

	// The first operation of each waits for consumers to join their
	// groups and for caches to fill: it is not measured.
	for _, op := range ops {
		b.p.printf("  %s: warming up …", op.name)
		if err := op.do(ctx); err != nil {
			return FanOut{}, nil, fmt.Errorf("%s: warm-up: %w", op.name, err)
		}
	}
	handled.Store(0)
	total := b.cfg.n(k)
	rounds := b.cfg.rounds(total)
	for r := range rounds {
		n := share(total, rounds, r)
		for _, op := range ops {
			what := op.name
			if rounds > 1 {
				what = fmt.Sprintf("%s (round %d/%d)", op.name, r+1, rounds)
			}
			l, err := runLoad(ctx, n, b.cfg.Concurrency, b.p, what, func(ctx context.Context, _ int) error { return op.do(ctx) })
			if err != nil {
				return FanOut{}, nil, err
			}
			op.load.add(l)
		}
	}
	commands := handled.Load()

	accepted, err := b.acceptBurst(ctx, k, total, &ids)
	if err != nil {
		return FanOut{}, nil, err
	}
	all := ids.all()
	if _, err := runLoad(ctx, len(all), b.cfg.Concurrency, b.p, "Lethe: ledger checked", func(ctx context.Context, i int) error {
		return b.verify(ctx, all[i], names)
	}); err != nil {
		return FanOut{}, nil, err
	}

	l := letheOp.load
	run := FanOut{K: k, N: total, Rounds: rounds, Lethe: LetheFigures{
		AcceptedPerSecond:  accepted,
		CompletedPerSecond: Rate(len(l.latencies), l.elapsed),
		Latency:            Summarize(l.latencies),
		Commands:           commands,
		CommandsPerSecond:  Rate(int(commands), l.elapsed),
		Seconds:            l.elapsed.Seconds(),
	}}
	if empty != nil {
		run.Empty, run.Naive = figures(empty.load), figures(naive.load)
	}
	run.Kafka = figures(raw.load)
	run.ratios()
	return run, notes, nil
}

// acceptBurst measures how fast the API accepts n requests when clients
// only submit, Concurrency at a time, then waits, untimed, for all of them
// to complete, adding their ids to ids. It returns the accepted requests/s.
func (b *bencher) acceptBurst(ctx context.Context, k, n int, ids *idList) (float64, error) {
	burst := make([]lethe.Erasure, n)
	accepted, err := runLoad(ctx, n, b.cfg.Concurrency, b.p, "Lethe: requests accepted", func(ctx context.Context, i int) error {
		e, err := b.submit(ctx, k)
		burst[i] = e
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, e := range burst {
		ids.add(e.ID)
	}
	if _, err := runLoad(ctx, n, b.cfg.Concurrency, b.p, "Lethe: accepted requests completed", func(ctx context.Context, i int) error {
		return b.await(ctx, burst[i])
	}); err != nil {
		return 0, err
	}
	return Rate(n, accepted.elapsed), nil
}

// submit submits the erasure of a new synthetic subject, whose identifier
// value is unique to this run and names no one.
func (b *bencher) submit(ctx context.Context, k int) (lethe.Erasure, error) {
	id := b.nextID("subject")
	return b.api.submit(ctx, id, map[string]string{IdentifierType: fmt.Sprintf("%s-k%d", id, k)})
}

// idList collects request ids from concurrent callers.
type idList struct {
	mu  sync.Mutex
	ids []string
}

func (l *idList) add(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, id)
}

func (l *idList) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ids)
}

// systemName is the name of the benchmark's i-th system.
func systemName(i int) string { return fmt.Sprintf("%s%02d", SystemPrefix, i) }

// prepareSystems registers the k systems through the API and retires the
// benchmark's systems that an earlier fan-out left, so that every request
// reaches exactly these k. It notes other systems that erase by the same
// identifier type: on a running Lethe the requests reach them too.
func (b *bencher) prepareSystems(ctx context.Context, k int) ([]string, []string, error) {
	names := make([]string, k)
	for i := range names {
		names[i] = systemName(i)
	}
	existing, err := b.api.listSystems(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list systems: %w", err)
	}
	var notes []string
	for _, s := range existing {
		switch {
		case strings.HasPrefix(s.Name, SystemPrefix) && !slices.Contains(names, s.Name):
			if err := b.api.retireSystem(ctx, s.Name); err != nil {
				return nil, nil, fmt.Errorf("retire %s: %w", s.Name, err)
			}
		case !strings.HasPrefix(s.Name, SystemPrefix) && slices.Contains(s.Identifiers, IdentifierType):
			notes = append(notes, fmt.Sprintf("K=%d: system %s also erases by %s, so every request reached it too", k, s.Name, IdentifierType))
		}
	}
	for _, name := range names {
		if err := b.api.putSystem(ctx, name, IdentifierType, b.batch); err != nil {
			return nil, nil, fmt.Errorf("register %s: %w", name, err)
		}
	}
	return names, notes, nil
}

// startConnectors runs one connector per system in g, as its service
// would, with a handler that erases nothing, counts the command (or each
// item of a batch command) and confirms at once: the cheapest service
// there is, so that the benchmark measures Lethe.
func (b *bencher) startConnectors(g *group, names []string, handled *atomic.Int64) {
	h := instantHandler{handled: handled}
	for _, name := range names {
		cfg := connectors.Config{Brokers: b.st.brokers, System: name, Logger: b.cfg.Logger}
		g.run("connector "+name, func(ctx context.Context) error { return connectors.Run(ctx, cfg, h) })
	}
}

// instantHandler is the benchmark's service: every subject erased, one
// record each, at once, whether it comes alone or in a batch command.
type instantHandler struct {
	handled *atomic.Int64
}

var _ connectors.BatchHandler = instantHandler{}

func (h instantHandler) Erase(context.Context, connectors.Request) (connectors.Result, error) {
	h.handled.Add(1)
	return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
}

// EraseBatch confirms every item of the command in one answer.
func (h instantHandler) EraseBatch(_ context.Context, req connectors.BatchRequest) ([]connectors.ItemResult, error) {
	out := make([]connectors.ItemResult, len(req.Items))
	for i, it := range req.Items {
		out[i] = connectors.ItemResult{ItemID: it.ItemID, Result: connectors.Result{Outcome: wire.OutcomeErased, Records: 1}}
	}
	h.handled.Add(int64(len(out)))
	return out, nil
}

// pollInterval is how often a request is polled on a running Lethe: the
// resolution of its latencies there.
const pollInterval = 50 * time.Millisecond

// await returns once e has completed. In process it waits on the workflow's
// result, a long poll like the baselines', rather than load the API with
// status polls; the workflow writes the ledger before it returns, which
// verify checks later. On a running Lethe it polls the API.
func (b *bencher) await(ctx context.Context, e lethe.Erasure) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	if b.st.temporal != nil {
		if err := b.st.temporal.GetWorkflow(ctx, e.WorkflowID, "").Get(ctx, nil); err != nil {
			var canceled *temporal.CanceledError
			if errors.As(err, &canceled) {
				return fmt.Errorf("request %s was canceled", e.ID)
			}
			return fmt.Errorf("request %s: %w", e.ID, err)
		}
		return nil
	}
	for {
		got, err := b.api.erasure(ctx, e.ID)
		if err != nil {
			return err
		}
		switch {
		case got.Status == lethe.RequestCompleted:
			return nil
		case got.Status.Final():
			return fmt.Errorf("request %s ended %s", e.ID, got.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("request %s still %s: %w", e.ID, got.Status, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// verify checks in the ledger, through the API, that a request completed
// and that each of the benchmark's systems erased it.
func (b *bencher) verify(ctx context.Context, id string, names []string) error {
	e, err := b.api.erasure(ctx, id)
	if err != nil {
		return err
	}
	if e.Status != lethe.RequestCompleted {
		return fmt.Errorf("request %s is %s in the ledger, want completed", id, e.Status)
	}
	for _, name := range names {
		i := slices.IndexFunc(e.Systems, func(p lethe.SystemProgress) bool { return p.Name == name })
		if i < 0 {
			return fmt.Errorf("request %s never reached %s", id, name)
		}
		if st := e.Systems[i].Status; st != lethe.SystemErased {
			return fmt.Errorf("request %s: %s is %s in the ledger, want erased", id, name, st)
		}
	}
	return nil
}
