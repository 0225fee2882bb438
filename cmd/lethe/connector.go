package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/lethe-dev/lethe/connectors/postgres"
	"github.com/lethe-dev/lethe/connectors/webhook"
)

// referenceConnectors are the connectors a service can run without writing
// Go: `lethe connector <kind> --config FILE`.
var referenceConnectors = map[string]func(ctx context.Context, configPath string, env func(string) string, logger *slog.Logger) error{
	"postgres": postgres.Main,
	"webhook":  webhook.Main,
}

const connectorUsage = `Usage: lethe connector <postgres|webhook> --config FILE

  postgres   erase with SQL statements per identifier type (connectors/postgres/example.yaml)
  webhook    forward commands to a signed HTTP endpoint (connectors/webhook/example.yaml)

Kafka brokers come from the file or $LETHE_KAFKA_BROKERS; logs follow
$LETHE_LOG_LEVEL and $LETHE_LOG_FORMAT. See docs/connectors.md.
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
	return referenceConnectors[kind](ctx, configPath, connectorEnv, log.With("connector", kind))
}
