package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/promobserver"
)

// Environment variables and defaults Main reads, as in Lethe's contract.
const (
	EnvKafkaBrokers     = "LETHE_KAFKA_BROKERS"
	DefaultKafkaBrokers = "127.0.0.1:9092"
)

// Main is `lethe connector postgres --config FILE`: it loads the
// configuration at configPath, opens the service's database, checks every
// statement against it and consumes the system's commands until ctx ends,
// returning nil then. env reads the environment (os.Getenv in production),
// so that tests and the CLI pass their own. It returns an error when the
// configuration is wrong, the database is unreachable or a statement fails
// its checks: the connector refuses to start rather than fail each erasure.
func Main(ctx context.Context, configPath string, env func(string) string, logger *slog.Logger) error {
	return MainWithMetrics(ctx, configPath, env, logger, nil)
}

// MainWithMetrics is Main counting the connector's work on reg through
// promobserver, for `lethe connector postgres` with LETHE_METRICS_ADDR; a
// nil reg counts nothing.
func MainWithMetrics(ctx context.Context, configPath string, env func(string) string, logger *slog.Logger, reg prometheus.Registerer) error {
	if env == nil {
		return errors.New("postgres connector: nil env")
	}
	if logger == nil {
		logger = slog.Default()
	}
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return err
	}
	dbURL, err := cfg.databaseURL(env)
	if err != nil {
		return err
	}
	tlsConfig, mechanism, err := cfg.Kafka.Build(env)
	if err != nil {
		return fmt.Errorf("postgres connector: %w", err)
	}
	keyID, secret, err := cfg.Signing.Build(env)
	if err != nil {
		return fmt.Errorf("postgres connector: %w", err)
	}
	db, err := openDB(dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("postgres connector: database unreachable: %w", err)
	}
	c, err := New(ctx, db, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	logger.Info("postgres connector ready", "system", cfg.System,
		"register_identifiers", cfg.IdentifierTypes(), "register_produces", cfg.ProducedTypes())

	var dedup connectors.DedupStore
	if cfg.Dedup != nil {
		if dedup, err = connectors.NewPostgresDedup(ctx, db, cfg.Dedup.Table); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("postgres connector: dedup: %w", err)
		}
	}

	var observer connectors.Observer
	if reg != nil {
		if observer, err = promobserver.New(reg, cfg.Topic); err != nil {
			return fmt.Errorf("postgres connector: metrics: %w", err)
		}
	}
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		prune(ctx, c, logger)
	}()
	defer func() { <-pruned }()
	return connectors.Run(ctx, connectors.Config{
		Observer: observer,
		Brokers:  cfg.brokers(env),
		System:   cfg.System,
		Topic:    cfg.Topic,
		Logger:   logger,
		TLS:      tlsConfig,
		SASL:     mechanism,
		Dedup:    dedup,
		KeyID:    keyID,
		Secret:   secret,
	}, c)
}

// PruneInterval is how often Main deletes expired records of the commands table.
const PruneInterval = time.Hour

// prune deletes expired records of the commands table now and every PruneInterval until ctx
// ends. A failure is only logged: the records are small, and the next round
// catches up.
func prune(ctx context.Context, c *Connector, logger *slog.Logger) {
	t := time.NewTicker(PruneInterval)
	defer t.Stop()
	for {
		if n, err := c.Prune(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("prune the commands table", "error", err.Error())
		} else if n > 0 {
			logger.Info("pruned the commands table", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// openDB returns a pool on the database at dbURL. A URL that does not parse
// is reported without the parser's message, which quotes the URL and with
// it the password.
func openDB(dbURL string) (*sql.DB, error) {
	connector, err := pq.NewConnector(dbURL)
	if err != nil {
		reason := "check its syntax"
		var uerr *url.Error
		if errors.As(err, &uerr) {
			reason = uerr.Err.Error()
		}
		return nil, fmt.Errorf("postgres connector: the database URL is malformed: %s", reason)
	}
	return sql.OpenDB(connector), nil
}

// databaseURL returns the URL the configuration points at.
func (c Config) databaseURL(env func(string) string) (string, error) {
	if c.DatabaseURL != "" {
		return c.DatabaseURL, nil
	}
	u := env(c.DatabaseURLEnv)
	if u == "" {
		return "", fmt.Errorf("postgres connector: environment variable %s (database_url_env) is not set", c.DatabaseURLEnv)
	}
	return u, nil
}

// brokers returns the configured brokers, else those of the environment as
// for every Lethe process, else the contract's default.
func (c Config) brokers(env func(string) string) []string {
	if len(c.Brokers) > 0 {
		return c.Brokers
	}
	var out []string
	for _, b := range strings.Split(env(EnvKafkaBrokers), ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		out = []string{DefaultKafkaBrokers}
	}
	return out
}
