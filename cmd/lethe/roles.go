package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"golang.org/x/sync/errgroup"

	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/temporalx"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/relay"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// deps are the connections a role needs, opened once and closed together.
type deps struct {
	cfg      *config
	log      *slog.Logger
	store    *registry.Store
	temporal client.Client
}

// openDeps connects to PostgreSQL and Temporal; both must answer.
func openDeps(ctx context.Context, cfg *config, log *slog.Logger) (*deps, error) {
	store, err := registry.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	tc, err := temporalx.Dial(ctx, cfg.TemporalAddress, cfg.TemporalNamespace, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	return &deps{cfg: cfg, log: log, store: store, temporal: tc}, nil
}

func (d *deps) Close() {
	d.temporal.Close()
	d.store.Close()
}

// topics creates Kafka topics with the configured partition count.
type topics struct {
	brokers    []string
	partitions int
}

// EnsureTopics creates the topics that do not exist yet.
func (t topics) EnsureTopics(ctx context.Context, names ...string) error {
	return kafkax.EnsureTopics(ctx, t.brokers, t.partitions, names...)
}

// policy is the retry policy new workflows start with.
func (c *config) policy() workflows.Policy {
	return workflows.Policy{MaxAttempts: c.MaxAttempts}
}

func runMigrate(ctx context.Context, cfg *config, log *slog.Logger, stdout io.Writer) error {
	store, err := registry.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer store.Close()
	if err := registry.Migrate(ctx, store.DB()); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintln(stdout, "migrations applied")
	return nil
}

func runAPI(ctx context.Context, cfg *config, log *slog.Logger) error {
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	ln, err := listen(cfg.HTTPAddr, "API")
	if err != nil {
		return err
	}
	h, err := apiHandler(d)
	if err != nil {
		ln.Close()
		return err
	}
	log.Info("api listening", "addr", ln.Addr().String())
	return serveHTTP(ctx, ln, h)
}

// apiHandler builds the API over d.
func apiHandler(d *deps) (http.Handler, error) {
	dg, err := d.cfg.digester()
	if err != nil {
		return nil, err
	}
	srv, err := api.New(api.Config{
		Store:    d.store,
		Engine:   api.NewTemporalEngine(d.temporal, d.cfg.policy()),
		Topics:   topics{brokers: d.cfg.brokers(), partitions: d.cfg.TopicPartitions},
		Digester: dg,
		Logger:   d.log,
		Ready:    temporalReady(d.temporal),
	})
	if err != nil {
		return nil, err
	}
	return srv.Handler(), nil
}

// temporalReady checks that the Temporal frontend answers.
func temporalReady(c client.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return fmt.Errorf("temporal: %w", err)
		}
		return nil
	}
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
	writer := kafkax.NewWriter(d.cfg.brokers())
	defer writer.Close()
	w := worker.New(d.temporal, workflows.TaskQueue, worker.Options{})
	workflows.Register(w, &activities.Activities{Registry: d.store, Ledger: d.store, Publisher: writer})
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	d.log.Info("worker polling", "task_queue", workflows.TaskQueue, "namespace", d.cfg.TemporalNamespace)
	<-ctx.Done()
	w.Stop()
	return ctx.Err()
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
func relayLoop(ctx context.Context, d *deps) error {
	brokers := d.cfg.brokers()
	if err := kafkax.EnsureTopics(ctx, brokers, d.cfg.TopicPartitions, wire.ConfirmationsTopic, wire.DLQTopic(wire.ConfirmationsTopic)); err != nil {
		return fmt.Errorf("create confirmation topics: %w", err)
	}
	r, err := relay.New(relay.Config{Brokers: brokers, Logger: d.log}, d.temporal, d.store)
	if err != nil {
		return err
	}
	d.log.Info("relay consuming", "topic", wire.ConfirmationsTopic)
	return r.Run(ctx)
}

// healthLoop serves /healthz and /readyz for the worker and relay, which
// have no API of their own for Kubernetes to probe.
func healthLoop(ctx context.Context, d *deps) error {
	ln, err := listen(d.cfg.HealthAddr, "health")
	if err != nil {
		return err
	}
	ready := temporalReady(d.temporal)
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
	return serveHTTP(ctx, ln, mux)
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
func listen(addr, what string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s address %s: %w", what, addr, err)
	}
	return ln, nil
}

// serveHTTP serves h on ln until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return ctx.Err()
	}
	return err
}
