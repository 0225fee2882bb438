// Package demo holds the three sample services `lethe dev --demo` runs, so
// that a first erasure has real rows to remove: accounts (erases by user_id
// and email, and reveals the subject's device_id), orders (erases by user_id)
// and analytics (erases by device_id only, so it is reached only through the
// identifier accounts derives). Each keeps its data in its own PostgreSQL
// schema, as separate services would, and implements connectors.Handler the
// way a service team would.
package demo

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// The demo systems' names, as registered and as their connectors know them.
const (
	SystemAccounts  = "accounts"
	SystemOrders    = "orders"
	SystemAnalytics = "analytics"
)

// The identifier types the demo systems use.
const (
	TypeUserID   = "user_id"
	TypeEmail    = "email"
	TypeDeviceID = "device_id"
)

// Owner is the owner every demo system is registered with, so a person
// browsing the registry can tell them from real systems.
const Owner = "demo"

// Systems are the registry entries of the demo systems, ready for
// PUT /v1/systems/{name}.
func Systems() []lethe.System {
	return []lethe.System{
		{
			Name:          SystemAccounts,
			Identifiers:   []string{TypeUserID, TypeEmail},
			Produces:      []string{TypeDeviceID},
			Topic:         wire.DefaultTopic(SystemAccounts),
			Owner:         Owner,
			Description:   "demo: user accounts and their registered devices",
			ConfirmWithin: lethe.Duration(lethe.DefaultConfirmWithin),
		},
		{
			Name:          SystemOrders,
			Identifiers:   []string{TypeUserID},
			Produces:      []string{},
			Topic:         wire.DefaultTopic(SystemOrders),
			Owner:         Owner,
			Description:   "demo: orders placed by users",
			ConfirmWithin: lethe.Duration(lethe.DefaultConfirmWithin),
		},
		{
			Name:          SystemAnalytics,
			Identifiers:   []string{TypeDeviceID},
			Produces:      []string{},
			Topic:         wire.DefaultTopic(SystemAnalytics),
			Owner:         Owner,
			Description:   "demo: app usage events keyed by device only",
			ConfirmWithin: lethe.Duration(lethe.DefaultConfirmWithin),
		},
	}
}

// Handlers maps each demo system's name to its connector handler over db.
func Handlers(db *sql.DB) map[string]connectors.Handler {
	return map[string]connectors.Handler{
		SystemAccounts:  &Accounts{DB: db},
		SystemOrders:    &Orders{DB: db},
		SystemAnalytics: &Analytics{DB: db},
	}
}

// migrateLock is the advisory lock key that serialises Migrate across
// processes: CREATE SCHEMA IF NOT EXISTS still races with itself.
const migrateLock = 0x6c657468_6564656d // "lethedem"

const schemaSQL = `
CREATE SCHEMA IF NOT EXISTS demo_accounts;
CREATE TABLE IF NOT EXISTS demo_accounts.accounts (
	user_id      text PRIMARY KEY,
	email        text NOT NULL UNIQUE,
	display_name text NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS demo_accounts.devices (
	device_id  text PRIMARY KEY,
	user_id    text NOT NULL REFERENCES demo_accounts.accounts (user_id),
	platform   text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS devices_user_id_idx ON demo_accounts.devices (user_id);

CREATE SCHEMA IF NOT EXISTS demo_orders;
CREATE TABLE IF NOT EXISTS demo_orders.orders (
	order_id    text PRIMARY KEY,
	user_id     text NOT NULL,
	total_cents bigint NOT NULL,
	placed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_user_id_idx ON demo_orders.orders (user_id);

CREATE SCHEMA IF NOT EXISTS demo_analytics;
CREATE TABLE IF NOT EXISTS demo_analytics.events (
	event_id    text PRIMARY KEY,
	device_id   text NOT NULL,
	name        text NOT NULL,
	occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_device_id_idx ON demo_analytics.events (device_id);

-- Each service's ledger of the commands it carried out (see handlers.go):
-- command ids and counts only, never an identifier value. A row is claimed
-- first and its result filled in by the same transaction, so no other
-- transaction ever sees outcome, records or detail empty.
CREATE TABLE IF NOT EXISTS demo_accounts.erasure_commands (
	command_id text PRIMARY KEY,
	outcome    text,
	records    bigint,
	detail     text,
	done_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS demo_orders.erasure_commands (
	command_id text PRIMARY KEY,
	outcome    text,
	records    bigint,
	detail     text,
	done_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS demo_analytics.erasure_commands (
	command_id text PRIMARY KEY,
	outcome    text,
	records    bigint,
	detail     text,
	done_at    timestamptz NOT NULL DEFAULT now()
);
`

// Migrate creates the demo schemas and tables. It is idempotent, so every
// start of `lethe dev --demo` may call it.
func Migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate demo schemas: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return fmt.Errorf("migrate demo schemas: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, schemaSQL); err != nil {
		return fmt.Errorf("migrate demo schemas: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate demo schemas: %w", err)
	}
	return nil
}

// Subject is the demo's data subject: the person whose erasure the banner of
// `lethe dev --demo` suggests.
type Subject struct {
	UserID   string
	Email    string
	DeviceID string
}

// Identifiers are what the person asking for erasure knows and sends to
// POST /v1/erasures: the user id and the email. The device id is left out
// on purpose; Lethe learns it from accounts.
func (s Subject) Identifiers() []wire.Identifier {
	return []wire.Identifier{{Type: TypeUserID, Value: s.UserID}, {Type: TypeEmail, Value: s.Email}}
}

// AllIdentifiers adds the derived device id, for checking what remains in
// every system (Count) after an erasure.
func (s Subject) AllIdentifiers() []wire.Identifier {
	return append(s.Identifiers(), wire.Identifier{Type: TypeDeviceID, Value: s.DeviceID})
}

// DemoSubject is the subject Seed creates.
var DemoSubject = Subject{UserID: "u-demo-1", Email: "ada@example.com", DeviceID: "dev-demo-1"}

// bystander is a second person whose rows an erasure of DemoSubject must
// leave alone; seeding them makes an over-eager DELETE visible.
var bystander = Subject{UserID: "u-demo-2", Email: "grace@example.com", DeviceID: "dev-demo-2"}

// Seed inserts the demo subject (an account with one device, three orders,
// four analytics events) and a bystander. Rows that already exist are left
// as they are, so seeding again restores what an erasure removed.
func Seed(ctx context.Context, db *sql.DB) (Subject, error) { return SeedSubject(ctx, db, DemoSubject) }

// SeedSubject seeds s as Seed seeds the demo subject, with row keys drawn
// from s's identifiers, so that a test can plant distinctive values (a
// canary) and look for them afterwards.
func SeedSubject(ctx context.Context, db *sql.DB, s Subject) (Subject, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return Subject{}, fmt.Errorf("seed demo data: %w", err)
	}
	defer tx.Rollback()
	type row struct {
		query string
		args  []any
	}
	const (
		account = `INSERT INTO demo_accounts.accounts (user_id, email, display_name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
		device  = `INSERT INTO demo_accounts.devices (device_id, user_id, platform) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
		order   = `INSERT INTO demo_orders.orders (order_id, user_id, total_cents) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
		event   = `INSERT INTO demo_analytics.events (event_id, device_id, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	)
	b := bystander
	rows := []row{
		{account, []any{s.UserID, s.Email, "Ada Lovelace"}},
		{device, []any{s.DeviceID, s.UserID, "ios"}},
		{order, []any{"ord-" + s.UserID + "-1", s.UserID, 4200}},
		{order, []any{"ord-" + s.UserID + "-2", s.UserID, 1999}},
		{order, []any{"ord-" + s.UserID + "-3", s.UserID, 12550}},
		{event, []any{"evt-" + s.DeviceID + "-1", s.DeviceID, "app_open"}},
		{event, []any{"evt-" + s.DeviceID + "-2", s.DeviceID, "screen_view"}},
		{event, []any{"evt-" + s.DeviceID + "-3", s.DeviceID, "purchase"}},
		{event, []any{"evt-" + s.DeviceID + "-4", s.DeviceID, "app_close"}},

		{account, []any{b.UserID, b.Email, "Grace Hopper"}},
		{device, []any{b.DeviceID, b.UserID, "android"}},
		{order, []any{"ord-demo-4", b.UserID, 990}},
		{event, []any{"evt-demo-5", b.DeviceID, "app_open"}},
		{event, []any{"evt-demo-6", b.DeviceID, "app_close"}},
	}
	for _, r := range rows {
		if _, err := tx.ExecContext(ctx, r.query, r.args...); err != nil {
			return Subject{}, fmt.Errorf("seed demo data: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Subject{}, fmt.Errorf("seed demo data: %w", err)
	}
	return s, nil
}

// Count reports how many rows system still holds under ids: what an erasure
// has left behind. Identifier types the system does not know are ignored.
func Count(ctx context.Context, db *sql.DB, system string, ids []wire.Identifier) (int64, error) {
	var query string
	var args []any
	switch system {
	case SystemAccounts:
		query = `
			WITH a AS (
				SELECT user_id FROM demo_accounts.accounts
				WHERE user_id = ANY($1) OR email = ANY($2)
			)
			SELECT (SELECT count(*) FROM a)
			     + (SELECT count(*) FROM demo_accounts.devices
			        WHERE user_id IN (SELECT user_id FROM a) OR device_id = ANY($3))`
		args = []any{valuesOf(ids, TypeUserID), valuesOf(ids, TypeEmail), valuesOf(ids, TypeDeviceID)}
	case SystemOrders:
		query = `SELECT count(*) FROM demo_orders.orders WHERE user_id = ANY($1)`
		args = []any{valuesOf(ids, TypeUserID)}
	case SystemAnalytics:
		query = `SELECT count(*) FROM demo_analytics.events WHERE device_id = ANY($1)`
		args = []any{valuesOf(ids, TypeDeviceID)}
	default:
		return 0, fmt.Errorf("count demo rows: %q is not a demo system", system)
	}
	var n int64
	if err := db.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s rows: %w", system, err)
	}
	return n, nil
}

// valuesOf returns the values of the identifiers of one type as a PostgreSQL
// text array, empty (never NULL) when there are none.
func valuesOf(ids []wire.Identifier, idType string) pq.StringArray {
	out := pq.StringArray{}
	for _, id := range ids {
		if id.Type == idType {
			out = append(out, id.Value)
		}
	}
	return out
}
