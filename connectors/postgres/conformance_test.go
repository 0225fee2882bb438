package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors/connectortest"
	"github.com/lethe-dev/lethe/wire"
)

// TestConformance runs the conformance kit on the shipped example
// configuration over a real PostgreSQL database and a Kafka-protocol broker.
// The example erases a subject in two steps, as Lethe drives it: the
// command by user_id erases invoices and anonymises payments and reveals the
// customer id; the command Lethe then sends with that customer id erases the
// customer. Each step is checked as the system Lethe sees for it, batch
// commands included.
func TestConformance(t *testing.T) {
	ctx, db, _ := billingDB(t)
	c := newConnector(ctx, t, db, exampleConfig(t))

	t.Run("by user_id", func(t *testing.T) {
		connectortest.Run(t, connectortest.Config{
			System:  "billing",
			Handler: c,
			NewSubject: func() connectortest.Subject {
				n := uuid.NewString()
				return connectortest.Subject{
					Identifiers: []wire.Identifier{id("user_id", "u-"+n)},
					Derived:     []wire.Identifier{id("stripe_customer_id", "cus_"+n)},
				}
			},
			Seed: func(ctx context.Context, s connectortest.Subject) error {
				return seed(ctx, db, s.Identifiers[0].Value, s.Derived[0].Value)
			},
			// What the user_id command must erase: the invoices, and the
			// personal columns of the payments.
			Remaining: func(ctx context.Context, s connectortest.Subject) (int64, error) {
				var n int64
				err := db.QueryRowContext(ctx, `SELECT
					(SELECT count(*) FROM invoices WHERE user_id = $1) +
					(SELECT count(*) FROM payments WHERE user_id = $1 AND (card_holder IS NOT NULL OR email IS NOT NULL))`,
					s.Identifiers[0].Value).Scan(&n)
				return n, err
			},
			RevealsDerived: true,
			Batch:          true, // erase_batch statements
		})
	})

	t.Run("by stripe_customer_id", func(t *testing.T) {
		connectortest.Run(t, connectortest.Config{
			System:  "billing",
			Handler: c,
			NewSubject: func() connectortest.Subject {
				return connectortest.Subject{Identifiers: []wire.Identifier{id("stripe_customer_id", "cus_"+uuid.NewString())}}
			},
			Seed: func(ctx context.Context, s connectortest.Subject) error {
				customer := s.Identifiers[0].Value
				return seed(ctx, db, "u-"+strings.TrimPrefix(customer, "cus_"), customer)
			},
			Remaining: func(ctx context.Context, s connectortest.Subject) (int64, error) {
				var n int64
				err := db.QueryRowContext(ctx, `SELECT count(*) FROM customers WHERE stripe_customer_id = $1`, s.Identifiers[0].Value).Scan(&n)
				return n, err
			},
			Batch: true, // no erase_batch: erase statements per subject
		})
	})
}
