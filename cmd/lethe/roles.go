package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/roles"
	"github.com/lethe-dev/lethe/internal/temporalx"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/workflows"
)

// deps are the connections a role needs, opened once and closed together.
type deps struct {
	cfg      *config
	log      *slog.Logger
	store    *registry.Store
	temporal client.Client
	kafka    kafkasec.Security
	settings roles.Settings
	// metrics is the process's registry, served at /metrics.
	metrics *metrics.Metrics
	// access is who may call the API, set by the roles that serve it.
	access roles.Access
}

// openDeps connects to PostgreSQL and Temporal; both must answer.
func openDeps(ctx context.Context, cfg *config, log *slog.Logger) (*deps, error) {
	dc, err := cfg.dataConverter(log)
	if err != nil {
		return nil, err
	}
	settings, err := cfg.roleSettings()
	if err != nil {
		return nil, err
	}
	reg := metrics.New()
	kafkaSec, err := cfg.kafkaSecurity()
	if err != nil {
		return nil, err
	}
	topts, err := cfg.temporalOptions(temporalx.ClientOptions(cfg.TemporalAddress, cfg.TemporalNamespace, log, dc))
	if err != nil {
		return nil, err
	}
	topts.MetricsHandler = reg.Temporal()
	kafkaTLS, kafkaSASL := kafkaSec.Secured()
	log.Info("transport", "kafka_tls", kafkaTLS, "kafka_sasl", kafkaSASL,
		"temporal_tls", topts.ConnectionOptions.TLS != nil, "temporal_api_key", topts.Credentials != nil)
	store, err := registry.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		kafkaSec.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	tc, err := temporalx.DialOptions(ctx, topts)
	if err != nil {
		kafkaSec.Close()
		store.Close()
		return nil, err
	}
	return &deps{cfg: cfg, log: log, store: store, temporal: tc, kafka: kafkaSec, settings: settings, metrics: reg}, nil
}

func (d *deps) Close() {
	d.temporal.Close()
	d.store.Close()
	d.kafka.Close()
}

// roles are d's connections as the shared role wiring takes them.
func (d *deps) roles() roles.Deps {
	return roles.Deps{
		Store:         d.store,
		Temporal:      d.temporal,
		Namespace:     d.cfg.TemporalNamespace,
		Brokers:       d.cfg.brokers(),
		KafkaSecurity: d.kafka,
		Partitions:    d.cfg.TopicPartitions,
		Logger:        d.log,
		Settings:      d.settings,
		Access:        d.access,
		Metrics:       d.metrics,
	}
}

// roleSettings reads the operator's choices the roles apply.
func (c *config) roleSettings() (roles.Settings, error) {
	deadline, before, policies, reminders, err := c.deadlines()
	if err != nil {
		return roles.Settings{}, err
	}
	notifier, err := c.escalations()
	if err != nil {
		return roles.Settings{}, err
	}
	settle, err := c.settle()
	if err != nil {
		return roles.Settings{}, err
	}
	master, overlap, require, err := c.signing()
	if err != nil {
		return roles.Settings{}, err
	}
	rec, err := c.reconcile()
	if err != nil {
		return roles.Settings{}, err
	}
	failover, err := c.failover()
	if err != nil {
		return roles.Settings{}, err
	}
	return roles.Settings{
		Policy:            workflows.Policy{MaxAttempts: c.MaxAttempts, Reminders: reminders, Settle: settle},
		Deadline:          deadline,
		TargetBefore:      before,
		Policies:          policies,
		Escalations:       notifier,
		SystemKey:         master,
		CredentialOverlap: overlap,
		RequireSignatures: require,
		Reconcile:         rec,
		Failover:          failover,
	}, nil
}

func runMigrate(ctx context.Context, cfg *config, log *slog.Logger, stdout io.Writer) error {
	store, err := cfg.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := registry.Migrate(ctx, store.DB()); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintln(stdout, "migrations applied")
	return nil
}

func runAPI(ctx context.Context, cfg *config, log *slog.Logger) error {
	// Settings are checked before connecting, so a mistake is reported at once.
	if _, err := cfg.certSettings(); err != nil {
		return err
	}
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	if d.access, _, err = cfg.apiAccess(ctx, d.store, false, log); err != nil {
		return err
	}
	if err := warnIfNoCredential(ctx, cfg, d.store, log); err != nil {
		return err
	}
	ln, err := listen(cfg.HTTPAddr, "API")
	if err != nil {
		return err
	}
	h, pruner, err := apiHandler(d)
	if err != nil {
		ln.Close()
		return err
	}
	log.Info("api listening", "addr", ln.Addr().String())
	g, gctx := errgroup.WithContext(ctx)
	if h, err = serveMetrics(gctx, g, d, h); err != nil {
		ln.Close()
		return err
	}
	g.Go(func() error { return serveHTTP(gctx, ln, h) })
	if pruner != nil {
		g.Go(func() error { return pruner.Run(gctx) })
	}
	return g.Wait()
}

// apiHandler builds the API over d, and the retention pruner that runs
// beside it when LETHE_RETENTION is set (nil otherwise).
func apiHandler(d *deps) (http.Handler, *roles.Pruner, error) {
	rd, err := d.withDigester()
	if err != nil {
		return nil, nil, err
	}
	cs, err := d.cfg.certSettings()
	if err != nil {
		return nil, nil, err
	}
	signer := cs.signer
	var pruner *roles.Pruner
	if cs.retention > 0 {
		pruner = &roles.Pruner{Store: d.store, Signer: signer, Retention: cs.retention, Logger: d.log}
		if err := pruner.Validate(); err != nil {
			return nil, nil, err
		}
	}
	if signer == nil {
		d.log.Warn("LETHE_SIGNING_KEY is not set: certificates of erasure are not issued (GET /v1/erasures/{id}/certificate answers 503 signing_key_missing)")
	} else {
		d.log.Info("certificates of erasure signed", "key_id", signer.KeyID())
	}
	rd.Signer, rd.RetiredKeys = signer, cs.retired
	h, err := roles.APIHandler(rd)
	if err != nil {
		return nil, nil, err
	}
	return h, pruner, nil
}

// serveMetrics serves the API process's /metrics: on LETHE_METRICS_ADDR in
// g when it is set, so that a network policy can open it alone, or else
// beside the API's routes on h, as the API serves its health beside them;
// it returns the handler to serve on the API's listener.
func serveMetrics(ctx context.Context, g *errgroup.Group, d *deps, h http.Handler) (http.Handler, error) {
	if d.cfg.MetricsAddr == "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", d.metrics.Handler())
		mux.Handle("/", h)
		return mux, nil
	}
	ln, err := listen(d.cfg.MetricsAddr, "metrics")
	if err != nil {
		return nil, err
	}
	mm := http.NewServeMux()
	mm.Handle("GET /metrics", d.metrics.Handler())
	g.Go(func() error { return serveHTTP(ctx, ln, mm) })
	return h, nil
}

// withDigester is d's roles with the digester the API and the worker need.
func (d *deps) withDigester() (roles.Deps, error) {
	dg, err := d.cfg.digester()
	if err != nil {
		return roles.Deps{}, err
	}
	r := d.roles()
	r.Digester = dg
	return r, nil
}

func runWorker(ctx context.Context, cfg *config, log *slog.Logger) error {
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := temporalx.RegisterSearchAttributes(ctx, d.temporal, cfg.TemporalNamespace); err != nil {
		// An operator may have registered them already with other rights.
		log.Warn("could not register search attributes", "err", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return workerLoop(gctx, d) })
	g.Go(func() error { return healthLoop(gctx, d) })
	return g.Wait()
}

// workerLoop hosts the erasure workflow and its activities until ctx ends.
func workerLoop(ctx context.Context, d *deps) error {
	r, err := d.withDigester()
	if err != nil {
		return err
	}
	return roles.RunWorker(ctx, r)
}

func runRelay(ctx context.Context, cfg *config, log *slog.Logger) error {
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return relayLoop(gctx, d) })
	g.Go(func() error { return healthLoop(gctx, d) })
	return g.Wait()
}

// relayLoop turns confirmations into workflow signals until ctx ends.
func relayLoop(ctx context.Context, d *deps) error { return roles.RunRelay(ctx, d.roles()) }

// healthLoop serves /healthz and /readyz for the worker and relay, which
// have no API of their own for Kubernetes to probe, and /metrics: on the
// health listener, or on LETHE_METRICS_ADDR when set, so that a network
// policy can open the scrape port to the monitoring namespace alone.
func healthLoop(ctx context.Context, d *deps) error {
	ln, err := listen(d.cfg.HealthAddr, "health")
	if err != nil {
		return err
	}
	var metrics net.Listener
	if d.cfg.MetricsAddr != "" {
		if metrics, err = listen(d.cfg.MetricsAddr, "metrics"); err != nil {
			ln.Close()
			return err
		}
	}
	return serveHealth(ctx, d, ln, metrics)
}

// serveHealth serves the probes on health and /metrics on metrics, or on
// health too when metrics is nil, until ctx ends.
func serveHealth(ctx context.Context, d *deps, health, metrics net.Listener) error {
	ready := roles.TemporalReady(d.temporal)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, nil)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		err := d.store.Ping(ctx)
		if err == nil {
			err = ready(ctx)
		}
		writeHealth(w, err)
	})
	if metrics == nil {
		mux.Handle("GET /metrics", d.metrics.Handler())
		return serveHTTP(ctx, health, mux)
	}
	mm := http.NewServeMux()
	mm.Handle("GET /metrics", d.metrics.Handler())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveHTTP(gctx, health, mux) })
	g.Go(func() error { return serveHTTP(gctx, metrics, mm) })
	return g.Wait()
}

// writeHealth answers a probe in the API's shapes.
func writeHealth(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "not_ready", "message": err.Error()}})
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"status": "ok"})
}

// listen opens a TCP listener, naming what it is for when the port is taken.
func listen(addr, what string) (net.Listener, error) { return roles.Listen(addr, what) }

// serveHTTP serves h on ln until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	return roles.Serve(ctx, ln, h)
}
