package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/lib/pq"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/codec"
	"github.com/lethe-dev/lethe/devstack"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/metrics"
	"github.com/lethe-dev/lethe/internal/roles"
	"github.com/lethe-dev/lethe/internal/temporalx"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// topicPartitions is the partition count of every topic the benchmark's
// stack creates: `lethe dev`'s default (LETHE_TOPIC_PARTITIONS).
const topicPartitions = 3

// stack is what the benchmark drives: Lethe's API and the brokers its
// connectors use, plus, when the stack runs in this process, the Temporal
// client the baselines share with Lethe's worker.
type stack struct {
	apiURL string
	// token authenticates the benchmark's calls to the API.
	token   string
	brokers []string
	// temporal is nil when the stack is a running Lethe given by URL.
	temporal  client.Client
	namespace string
	// describe says what the stack is, for the report.
	describe string
	close    func() error
}

// embedded starts Lethe the way `lethe dev` runs it, in this process and on
// free loopback ports: a scratch PostgreSQL database on the server of
// cfg.DatabaseURL, the embedded Kafka-protocol broker and Temporal server
// (SQLite in WAL mode) keeping their data in a temporary folder, and the API,
// worker and relay wired by package roles.
// A role that stops before the stack is closed calls fail, so that the
// measurement under way ends instead of waiting for answers that never come.
func embedded(ctx context.Context, cfg Config, progress func(format string, args ...any), fail func(error)) (_ *stack, err error) {
	var undo []func() error
	cleanup := func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()

	name, err := randomName("lethe_bench_")
	if err != nil {
		return nil, err
	}
	dbURL, err := withDatabase(cfg.DatabaseURL, name)
	if err != nil {
		return nil, err
	}
	if err := registry.EnsureDatabase(ctx, dbURL); err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	undo = append(undo, func() error {
		if cfg.Keep {
			progress("kept database %s", name)
			return nil
		}
		return dropDatabase(context.WithoutCancel(ctx), dbURL, name)
	})
	store, err := registry.Open(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	undo = append(undo, store.Close)
	if err := registry.Migrate(ctx, store.DB()); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}

	dir, err := os.MkdirTemp("", "lethe-bench-")
	if err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	undo = append(undo, func() error {
		if cfg.Keep {
			progress("kept data folder %s", dir)
			return nil
		}
		return os.RemoveAll(dir)
	})
	broker, err := devstack.StartKafka(devstack.KafkaConfig{Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "kafka"), Partitions: topicPartitions})
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() error { broker.Close(); return nil })
	tserver, err := devstack.StartTemporal(ctx, devstack.TemporalConfig{Address: "127.0.0.1:0", DataDir: filepath.Join(dir, "temporal")})
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() error { tserver.Stop(); return nil })
	// Payloads are encrypted as `lethe dev` encrypts them, with a key
	// nobody keeps; the baselines share the client and so the codec.
	keys, err := codec.GenerateKeys("bench")
	if err != nil {
		return nil, err
	}
	keyring, err := codec.ParseKeys(keys)
	if err != nil {
		return nil, err
	}
	// Lethe records its metrics as deployed, the SDK's included; the
	// baselines share the client, and so its metrics handler.
	reg := metrics.New()
	topts := temporalx.ClientOptions(tserver.Address(), tserver.Namespace(), cfg.Logger, codec.DataConverter(keyring))
	topts.MetricsHandler = reg.Temporal()
	tc, err := temporalx.DialOptions(ctx, topts)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() error { tc.Close(); return nil })

	brokers := broker.Brokers()
	if err := kafkax.EnsureTopics(ctx, brokers, topicPartitions, wire.ConfirmationsTopic, wire.DLQTopic(wire.ConfirmationsTopic)); err != nil {
		return nil, fmt.Errorf("create confirmation topics: %w", err)
	}
	dg, err := randomDigester()
	if err != nil {
		return nil, err
	}
	// The benchmark calls the API as a service would, with a Lethe token
	// checked against the tokens table on every call.
	token, err := auth.NewToken()
	if err != nil {
		return nil, err
	}
	if _, err := store.CreateToken(ctx, registry.NewToken{Name: "bench", Hash: auth.HashToken(token),
		Scopes: []auth.Scope{auth.SystemsRead, auth.SystemsWrite, auth.ErasuresWrite, auth.ErasuresRead}}); err != nil {
		return nil, err
	}
	deps := roles.Deps{
		Store: store, Temporal: tc, Namespace: tserver.Namespace(),
		Brokers: brokers, Partitions: topicPartitions, Logger: cfg.Logger, Digester: dg,
		Access:  roles.Access{Auth: &auth.Chain{Tokens: auth.NewTokenVerifier(store)}},
		Metrics: reg,
	}
	h, err := roles.APIHandler(deps)
	if err != nil {
		return nil, err
	}
	ln, err := roles.Listen("127.0.0.1:0", "API")
	if err != nil {
		return nil, err
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(rctx)
	for _, role := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"API", func(ctx context.Context) error { return roles.Serve(ctx, ln, h) }},
		{"worker", func(ctx context.Context) error { return roles.RunWorker(ctx, deps) }},
		{"relay", func(ctx context.Context) error { return roles.RunRelay(ctx, deps) }},
	} {
		g.Go(func() error {
			err := role.run(gctx)
			if rctx.Err() == nil {
				why := err
				if why == nil {
					why = errors.New("it returned early")
				}
				fail(fmt.Errorf("the %s stopped: %w", role.name, why))
			}
			return err
		})
	}
	undo = append(undo, func() error {
		stop()
		if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
	var once sync.Once
	var closeErr error
	return &stack{
		apiURL:    "http://" + ln.Addr().String(),
		token:     token,
		brokers:   brokers,
		temporal:  tc,
		namespace: tserver.Namespace(),
		describe: fmt.Sprintf("embedded, as `lethe dev` runs it: Temporal on SQLite (WAL) with encrypted payloads and "+
			"the Kafka-protocol broker, their data in %s; PostgreSQL database %s; API, worker and relay in this process", dir, name),
		close: func() error {
			once.Do(func() { closeErr = cleanup() })
			return closeErr
		},
	}, nil
}

// remote is a running Lethe: only its API and its brokers are reachable.
func remote(cfg Config) *stack {
	return &stack{
		apiURL:   cfg.URL,
		token:    cfg.Token,
		brokers:  cfg.KafkaBrokers,
		describe: "running Lethe at " + cfg.URL + ", brokers " + fmt.Sprint(cfg.KafkaBrokers),
		close:    func() error { return nil },
	}
}

// randomName is prefix followed by 16 random hex digits.
func randomName(prefix string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

// randomDigester keys the scratch ledger's digests with a key nobody keeps:
// the benchmark's subjects are synthetic and its database is dropped.
func randomDigester() (*digest.Digester, error) {
	key := make([]byte, digest.MinKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return digest.New(key)
}

// withDatabase returns base (a postgres:// URL or a key=value DSN, as
// LETHE_DATABASE_URL allows) naming database name instead.
func withDatabase(base, name string) (string, error) {
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	if _, err := pq.NewConfig(base); err != nil {
		return "", fmt.Errorf("database url: %w", err)
	}
	// In a DSN the last of repeated keys wins.
	return base + " dbname=" + name, nil
}

// dropDatabase drops the scratch database, ending any connection left open.
func dropDatabase(ctx context.Context, dbURL, name string) error {
	cfg, err := pq.NewConfig(dbURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	admin := cfg.Clone()
	admin.Database = "postgres"
	connector, err := pq.NewConnectorConfig(admin)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(name)+` WITH (FORCE)`); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// silent is the logger of parts whose logs the benchmark does not show.
func silent() *slog.Logger { return slog.New(slog.DiscardHandler) }
