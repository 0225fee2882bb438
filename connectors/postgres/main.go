package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/lethe-dev/lethe/connectors"
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
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		// lib/pq's parse errors do not quote the URL, so no password leaks.
		return fmt.Errorf("postgres connector: open database: %w", err)
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
	return connectors.Run(ctx, connectors.Config{
		Brokers: cfg.brokers(env),
		System:  cfg.System,
		Topic:   cfg.Topic,
		Logger:  logger,
	}, c)
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
