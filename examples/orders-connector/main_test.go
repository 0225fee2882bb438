package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/lethe-dev/lethe/connectors/connectortest"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// TestConformance runs the conformance kit on the example, as a service team
// would in its own tests.
func TestConformance(t *testing.T) {
	db, _ := testenv.Postgres(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, schema); err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	connectortest.Run(t, connectortest.Config{
		System:  "orders",
		Handler: orders{db: db},
		NewSubject: func() connectortest.Subject {
			id := fmt.Sprintf("u-%d", next.Add(1))
			return connectortest.Subject{Identifiers: []wire.Identifier{{Type: "user_id", Value: id}}}
		},
		Seed: func(ctx context.Context, s connectortest.Subject) error {
			u := s.Identifiers[0].Value
			for i := range 3 {
				if _, err := db.ExecContext(ctx, `INSERT INTO orders VALUES ($1, $2, 100)`, fmt.Sprintf("%s-o%d", u, i), u); err != nil {
					return err
				}
			}
			return nil
		},
		Remaining: func(ctx context.Context, s connectortest.Subject) (int64, error) {
			var n int64
			err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE user_id = $1`, s.Identifiers[0].Value).Scan(&n)
			return n, err
		},
	})
}
