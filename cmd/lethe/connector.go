package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/lethe-dev/lethe/connectors/postgres"
	"github.com/lethe-dev/lethe/connectors/webhook"
	"github.com/lethe-dev/lethe/internal/metrics"
)

// referenceConnectors are the connectors a service can run without writing
// Go: `lethe connector <kind> --config FILE`.
var referenceConnectors = map[string]func(ctx context.Context, configPath string, env func(string) string, logger *slog.Logger, reg prometheus.Registerer) error{
	"postgres": postgres.MainWithMetrics,
	"webhook":  webhook.MainWithMetrics,
}

const connectorUsage = `Usage: lethe connector <postgres|webhook> --config FILE

  postgres   erase with SQL statements per identifier type (connectors/postgres/example.yaml)
  webhook    forward commands to a signed HTTP endpoint (connectors/webhook/example.yaml)

Kafka brokers come from the file or $LETHE_KAFKA_BROKERS; logs follow
$LETHE_LOG_LEVEL and $LETHE_LOG_FORMAT; $LETHE_METRICS_ADDR, when set,
serves GET /metrics there. See docs/connectors.md.
`

// runConnectorRole runs a reference connector until ctx ends.
func runConnectorRole(ctx context.Context, args []string, env func(string) string, stderr io.Writer) error {
	if len(args) == 0 || referenceConnectors[args[0]] == nil {
		fmt.Fprint(stderr, connectorUsage)
		if len(args) == 0 {
			return errors.New("connector: name a kind: postgres or webhook")
		}
		return fmt.Errorf("connector: unknown kind %q", args[0])
	}
	kind := args[0]
	var configPath string
	cfg, err := parseConfig("connector "+kind, args[1:], env, stderr, func(fs *flag.FlagSet, _ *config) {
		fs.StringVar(&configPath, "config", "", "the connector's configuration file (YAML)")
	})
	if err != nil {
		return err
	}
	if configPath == "" {
		return fmt.Errorf("connector %s: --config FILE is required", kind)
	}
	log, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	// The file may leave the brokers to the environment; flags mirror it.
	connectorEnv := func(k string) string {
		if k == "LETHE_KAFKA_BROKERS" {
			return cfg.KafkaBrokers
		}
		return env(k)
	}
	run := referenceConnectors[kind]
	if cfg.MetricsAddr == "" {
		return run(ctx, configPath, connectorEnv, log.With("connector", kind), nil)
	}
	ln, err := listen(cfg.MetricsAddr, "metrics")
	if err != nil {
		return err
	}
	reg := metrics.NewRegistry()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveHTTP(gctx, ln, mux) })
	g.Go(func() error {
		err := run(gctx, configPath, connectorEnv, log.With("connector", kind), reg)
		if err == nil {
			// The connector stopped with ctx: so does the metrics listener.
			err = context.Canceled
		}
		return err
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
