package webhook

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/promobserver"
)

// Main runs the connector described by the file at configPath until ctx
// ends: what `lethe connector webhook --config FILE` does. env reads the
// environment (os.Getenv in production), for the secret and, when the file
// names no brokers, LETHE_KAFKA_BROKERS. It returns nil once ctx is canceled.
func Main(ctx context.Context, configPath string, env func(string) string, logger *slog.Logger) error {
	return MainWithMetrics(ctx, configPath, env, logger, nil)
}

// MainWithMetrics is Main counting the connector's work on reg through
// promobserver, for `lethe connector webhook` with LETHE_METRICS_ADDR; a
// nil reg counts nothing.
func MainWithMetrics(ctx context.Context, configPath string, env func(string) string, logger *slog.Logger, reg prometheus.Registerer) error {
	if env == nil {
		return errors.New("webhook: nil env")
	}
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return err
	}
	if logger == nil {
		logger = slog.Default()
	}
	cfg.Logger = logger
	secret := env(cfg.SecretEnv)
	if secret == "" {
		return fmt.Errorf("webhook: $%s is empty; it must hold the shared secret", cfg.SecretEnv)
	}
	if len(secret) < MinSecretBytes {
		return fmt.Errorf("webhook: $%s holds %d bytes; the shared secret needs at least %d", cfg.SecretEnv, len(secret), MinSecretBytes)
	}
	if cfg.StoreDB != nil {
		db, store, err := openStore(ctx, cfg.StoreDB, env)
		if err != nil {
			return err
		}
		defer db.Close()
		cfg.Store = store
	}
	conn, err := New(cfg, []byte(secret), nil)
	if err != nil {
		return err
	}
	if cfg.Callback != nil {
		ln, err := net.Listen("tcp", cfg.Callback.Listen)
		if err != nil {
			return fmt.Errorf("webhook: callback.listen: %w", err)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		served := make(chan error, 1)
		go func() { served <- conn.serveCallbacks(ctx, ln) }()
		defer func() {
			cancel()
			<-served
		}()
		logger.Info("webhook callback server listening", "addr", ln.Addr().String())
	}
	tlsConfig, mechanism, err := cfg.Kafka.Build(env)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	keyID, signingSecret, err := cfg.Signing.Build(env)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	brokers := cfg.Brokers
	if len(brokers) == 0 {
		brokers = splitBrokers(env(BrokersEnv))
	}
	if len(brokers) == 0 {
		brokers = []string{DefaultBrokers}
	}
	var observer connectors.Observer
	if reg != nil {
		if observer, err = promobserver.New(reg, conn.cfg.Topic); err != nil {
			return fmt.Errorf("webhook: metrics: %w", err)
		}
	}
	logger.Info("webhook connector starting", "system", cfg.System, "topic", conn.cfg.Topic,
		"max_attempts", conn.cfg.Retries.MaxAttempts, "timeout", conn.cfg.Timeout)
	return connectors.Run(ctx, connectors.Config{
		Observer: observer,
		Dedup:    conn.store,
		Brokers:  brokers,
		System:   cfg.System,
		Topic:    conn.cfg.Topic,
		Logger:   logger,
		TLS:      tlsConfig,
		SASL:     mechanism,
		KeyID:    keyID,
		Secret:   signingSecret,
		// The connector retries the endpoint itself, within the bounds the
		// file sets; retrying it again in the SDK would multiply them.
		Retry: connectors.RetryPolicy{MaxAttempts: 1},
	}, conn)
}

// openStore opens the store's database and its PostgreSQL store. Errors
// never quote the URL, which may carry a password.
func openStore(ctx context.Context, sc *StoreConfig, env func(string) string) (*sql.DB, connectors.PendingStore, error) {
	dbURL := env(sc.DatabaseURLEnv)
	if dbURL == "" {
		return nil, nil, fmt.Errorf("webhook: $%s (store.database_url_env) is empty", sc.DatabaseURLEnv)
	}
	pc, err := pq.NewConnector(dbURL)
	if err != nil {
		return nil, nil, fmt.Errorf("webhook: $%s (store.database_url_env) is not a valid database URL", sc.DatabaseURLEnv)
	}
	db := sql.OpenDB(pc)
	store, err := connectors.NewPostgresDedup(ctx, db, sc.Table)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("webhook: store: %w", err)
	}
	return db, store.(connectors.PendingStore), nil
}

func splitBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}
