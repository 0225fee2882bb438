package demo_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors/connectortest"
	"github.com/lethe-dev/lethe/demo"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// TestDemoServicesConform runs the conformance kit against each demo
// service's handler on real PostgreSQL, with subjects of fresh ids seeded
// straight into the service's tables.
func TestDemoServicesConform(t *testing.T) {
	t.Parallel()
	db, _ := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := demo.Migrate(ctx, db); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	handlers := demo.Handlers(db)
	remaining := func(system string) func(context.Context, connectortest.Subject) (int64, error) {
		return func(ctx context.Context, s connectortest.Subject) (int64, error) {
			return demo.Count(ctx, db, system, append(s.Identifiers, s.Derived...))
		}
	}
	configs := []connectortest.Config{
		{
			System: demo.SystemAccounts,
			NewSubject: func() connectortest.Subject {
				id := uuid.NewString()
				return connectortest.Subject{
					Identifiers: []wire.Identifier{{Type: demo.TypeUserID, Value: "u-" + id}, {Type: demo.TypeEmail, Value: id + "@example.com"}},
					Derived:     []wire.Identifier{{Type: demo.TypeDeviceID, Value: "dev-" + id}},
				}
			},
			Seed: func(ctx context.Context, s connectortest.Subject) error {
				user, email, device := s.Identifiers[0].Value, s.Identifiers[1].Value, s.Derived[0].Value
				return insert(ctx, db,
					row{`INSERT INTO demo_accounts.accounts (user_id, email, display_name) VALUES ($1, $2, 'Test Person')`, []any{user, email}},
					row{`INSERT INTO demo_accounts.devices (device_id, user_id, platform) VALUES ($1, $2, 'ios')`, []any{device, user}},
				)
			},
			RevealsDerived: true,
		},
		{
			System:     demo.SystemOrders,
			NewSubject: subjectOf(demo.TypeUserID, "u-"),
			Seed: func(ctx context.Context, s connectortest.Subject) error {
				var rows []row
				for i := range 3 {
					rows = append(rows, row{`INSERT INTO demo_orders.orders (order_id, user_id, total_cents) VALUES ($1, $2, $3)`,
						[]any{"ord-" + uuid.NewString(), s.Identifiers[0].Value, 1000 + i}})
				}
				return insert(ctx, db, rows...)
			},
		},
		{
			System:     demo.SystemAnalytics,
			NewSubject: subjectOf(demo.TypeDeviceID, "dev-"),
			Seed: func(ctx context.Context, s connectortest.Subject) error {
				var rows []row
				for _, name := range []string{"app_open", "screen_view", "app_close"} {
					rows = append(rows, row{`INSERT INTO demo_analytics.events (event_id, device_id, name) VALUES ($1, $2, $3)`,
						[]any{"evt-" + uuid.NewString(), s.Identifiers[0].Value, name}})
				}
				return insert(ctx, db, rows...)
			},
		},
	}
	if len(configs) != len(handlers) {
		t.Fatalf("%d configs for %d demo handlers: every demo service must be checked", len(configs), len(handlers))
	}
	for _, cfg := range configs {
		cfg.Handler = handlers[cfg.System]
		cfg.Remaining = remaining(cfg.System)
		t.Run(cfg.System, func(t *testing.T) {
			t.Parallel()
			if cfg.Handler == nil {
				t.Fatalf("no demo handler for %s", cfg.System)
			}
			connectortest.Run(t, cfg)
		})
	}
}

// subjectOf makes subjects known by one identifier type, of fresh values.
func subjectOf(idType, prefix string) func() connectortest.Subject {
	return func() connectortest.Subject {
		return connectortest.Subject{Identifiers: []wire.Identifier{{Type: idType, Value: prefix + uuid.NewString()}}}
	}
}

type row struct {
	query string
	args  []any
}

// insert stores rows in one transaction, as a service's own writes would.
func insert(ctx context.Context, db *sql.DB, rows ...row) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, r := range rows {
		if _, err := tx.ExecContext(ctx, r.query, r.args...); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return tx.Commit()
}
