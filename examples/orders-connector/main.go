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

// schema creates the service's table and the small ledger of commands it
// carried out, which makes a repeated command_id answer as the first did.
const schema = `
CREATE TABLE IF NOT EXISTS orders (order_id text PRIMARY KEY, user_id text NOT NULL, total_cents bigint NOT NULL);
CREATE TABLE IF NOT EXISTS lethe_commands (command_id text PRIMARY KEY, outcome text NOT NULL, records bigint NOT NULL)`

// Erase deletes the subject's orders in one transaction and records the
// command in the same transaction: a command delivered again (Lethe and
// Kafka deliver at least once) gets the recorded answer instead of running
// again and reporting not_found. A dry run counts, rolls back and records
// nothing.
func (o orders) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return connectors.Result{}, fmt.Errorf("begin: %w", err) // transient: retried
	}
	defer tx.Rollback()
	if !req.DryRun {
		// Claim the command; a concurrent or later repeat waits here, then
		// reads what the first delivery recorded.
		res, err := tx.ExecContext(ctx, `INSERT INTO lethe_commands (command_id, outcome, records) VALUES ($1, '', 0) ON CONFLICT DO NOTHING`, req.CommandID)
		if err != nil {
			return connectors.Result{}, fmt.Errorf("claim command: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var r connectors.Result
			if err := tx.QueryRowContext(ctx, `SELECT outcome, records FROM lethe_commands WHERE command_id = $1`, req.CommandID).Scan(&r.Outcome, &r.Records); err != nil {
				return connectors.Result{}, fmt.Errorf("read recorded command: %w", err)
			}
			return r, nil
		}
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM orders WHERE user_id = ANY($1)`, pq.Array(req.Values("user_id")))
	if err != nil {
		return connectors.Result{}, fmt.Errorf("delete orders: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return connectors.Result{}, err
	}
	result := connectors.Result{Outcome: wire.OutcomeErased, Records: n}
	if n == 0 {
		result.Outcome = wire.OutcomeNotFound
	}
	if req.DryRun {
		return result, nil // deferred Rollback undoes the DELETE
	}
	if _, err := tx.ExecContext(ctx, `UPDATE lethe_commands SET outcome = $2, records = $3 WHERE command_id = $1`, req.CommandID, result.Outcome, n); err != nil {
		return connectors.Result{}, fmt.Errorf("record command: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return connectors.Result{}, fmt.Errorf("commit: %w", err)
	}
	return result, nil
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
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	brokers := strings.Split(os.Getenv("LETHE_KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		brokers = []string{"127.0.0.1:9092"}
	}
	return connectors.Run(ctx, connectors.Config{Brokers: brokers, System: "orders", Logger: log}, orders{db: db})
}
