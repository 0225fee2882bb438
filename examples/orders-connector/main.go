// Command orders-connector is a complete connector for a service that keeps
// orders in PostgreSQL: the example docs/connectors.md walks through. It
// erases a subject's orders by user_id when Lethe tells it to, and confirms.
//
//	ORDERS_DATABASE_URL=postgres://postgres@127.0.0.1:5432/orders?sslmode=disable \
//	LETHE_KAFKA_BROKERS=127.0.0.1:9092 go run ./examples/orders-connector
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// orders erases what the orders service holds about a subject.
type orders struct{ db *sql.DB }

// Erase deletes the subject's orders in one transaction. A repeated command
// finds nothing left and says not_found, which is what idempotent means here;
// on a dry run the transaction is rolled back and the count reported.
func (o orders) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	userIDs := req.Values("user_id")
	if len(userIDs) == 0 {
		return connectors.Result{Outcome: wire.OutcomeNotFound}, nil
	}
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return connectors.Result{}, fmt.Errorf("begin: %w", err) // transient: retried
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM orders WHERE user_id = ANY($1)`, pq.Array(userIDs))
	if err != nil {
		return connectors.Result{}, fmt.Errorf("delete orders: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return connectors.Result{}, err
	}
	if n == 0 {
		return connectors.Result{Outcome: wire.OutcomeNotFound}, nil
	}
	if !req.DryRun {
		if err := tx.Commit(); err != nil {
			return connectors.Result{}, fmt.Errorf("commit: %w", err)
		}
	}
	return connectors.Result{Outcome: wire.OutcomeErased, Records: n, Detail: fmt.Sprintf("%d order(s)", n)}, nil
}

var _ connectors.Handler = orders{}

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("orders connector stopped", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dbURL := os.Getenv("ORDERS_DATABASE_URL")
	if dbURL == "" {
		return errors.New("ORDERS_DATABASE_URL is not set")
	}
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS orders (order_id text PRIMARY KEY, user_id text NOT NULL, total_cents bigint NOT NULL)`); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	brokers := strings.Split(os.Getenv("LETHE_KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		brokers = []string{"127.0.0.1:9092"}
	}
	return connectors.Run(ctx, connectors.Config{Brokers: brokers, System: "orders", Logger: log}, orders{db: db})
}
