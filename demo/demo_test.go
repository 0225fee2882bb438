package demo_test

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/lib/pq"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/demo"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// seeded opens a fresh database with the demo schemas and data.
func seeded(t *testing.T) (context.Context, *sql.DB, demo.Subject) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := demo.Migrate(ctx, db); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s, err := demo.Seed(ctx, db)
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	return ctx, db, s
}

// request builds a new command as a connector would hand it over: fresh
// ids, and only the identifier types the system declared.
func request(system string, ids []wire.Identifier, dryRun bool) connectors.Request {
	var declared []string
	for _, s := range demo.Systems() {
		if s.Name == system {
			declared = s.Identifiers
		}
	}
	var mine []wire.Identifier
	for _, id := range ids {
		if slices.Contains(declared, id.Type) {
			mine = append(mine, id)
		}
	}
	return connectors.Request{
		CommandID: uuid.NewString(), RequestID: uuid.NewString(),
		System: system, Attempt: 1, Identifiers: mine, DryRun: dryRun,
		IssuedAt: time.Now(), ConfirmBy: time.Now().Add(time.Hour),
	}
}

func count(t *testing.T, ctx context.Context, db *sql.DB, system string, ids []wire.Identifier) int64 {
	t.Helper()
	n, err := demo.Count(ctx, db, system, ids)
	if err != nil {
		t.Fatalf("Count(%s): %v", system, err)
	}
	return n
}

var bystander = []wire.Identifier{
	{Type: demo.TypeUserID, Value: "u-demo-2"},
	{Type: demo.TypeEmail, Value: "grace@example.com"},
	{Type: demo.TypeDeviceID, Value: "dev-demo-2"},
}

// seededRows is what Seed gives the demo subject in each system.
var seededRows = map[string]int64{demo.SystemAccounts: 2, demo.SystemOrders: 3, demo.SystemAnalytics: 4}

func TestMigrateAndSeedAreIdempotent(t *testing.T) {
	t.Parallel()
	ctx, db, s := seeded(t)
	if err := demo.Migrate(ctx, db); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if _, err := demo.Seed(ctx, db); err != nil {
		t.Fatalf("second Seed: %v", err)
	}
	if s != demo.DemoSubject {
		t.Errorf("Seed returned %+v, want %+v", s, demo.DemoSubject)
	}
	for system, want := range seededRows {
		if got := count(t, ctx, db, system, s.AllIdentifiers()); got != want {
			t.Errorf("%s holds %d rows of the subject after seeding twice, want %d", system, got, want)
		}
	}
}

func TestEraseRemovesRowsAndReportsCounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		system      string
		ids         func(demo.Subject) []wire.Identifier
		wantDerived []wire.Identifier
	}{
		{demo.SystemAccounts, func(s demo.Subject) []wire.Identifier {
			// By email alone: accounts must still find the account.
			return []wire.Identifier{{Type: demo.TypeEmail, Value: s.Email}}
		}, []wire.Identifier{{Type: demo.TypeDeviceID, Value: "dev-demo-1"}}},
		{demo.SystemOrders, demo.Subject.Identifiers, nil},
		{demo.SystemAnalytics, demo.Subject.AllIdentifiers, nil},
	}
	for _, tt := range tests {
		t.Run(tt.system, func(t *testing.T) {
			t.Parallel()
			ctx, db, s := seeded(t)
			h := demo.Handlers(db)[tt.system]
			before := count(t, ctx, db, tt.system, bystander)

			req := request(tt.system, tt.ids(s), false)
			res, err := h.Erase(ctx, req)
			if err != nil {
				t.Fatalf("Erase: %v", err)
			}
			if res.Outcome != wire.OutcomeErased || res.Records != seededRows[tt.system] {
				t.Errorf("Erase = %s with %d records, want erased with %d", res.Outcome, res.Records, seededRows[tt.system])
			}
			if !slices.Equal(res.Derived, tt.wantDerived) {
				t.Errorf("derived = %v, want %v", res.Derived, tt.wantDerived)
			}
			if got := count(t, ctx, db, tt.system, s.AllIdentifiers()); got != 0 {
				t.Errorf("%d rows of the subject remain, want 0", got)
			}
			if got := count(t, ctx, db, tt.system, bystander); got != before || got == 0 {
				t.Errorf("bystander rows went from %d to %d, want them untouched", before, got)
			}

			// The same command again is recognised and answered as before,
			// without the derived identifiers, which are gone with the data.
			repeat := req
			repeat.Attempt = 2
			again, err := h.Erase(ctx, repeat)
			if err != nil {
				t.Fatalf("repeated Erase: %v", err)
			}
			if again.Outcome != res.Outcome || again.Records != res.Records || again.Detail != res.Detail || len(again.Derived) != 0 {
				t.Errorf("repeated Erase = %+v, want %s with %d records, detail %q, nothing derived", again, res.Outcome, res.Records, res.Detail)
			}

			// A new command finds nothing left and says so.
			res, err = h.Erase(ctx, request(tt.system, tt.ids(s), false))
			if err != nil {
				t.Fatalf("new Erase: %v", err)
			}
			if res.Outcome != wire.OutcomeNotFound || res.Records != 0 || len(res.Derived) != 0 {
				t.Errorf("new Erase = %+v, want not_found with no records or derived identifiers", res)
			}
		})
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	ctx, db, s := seeded(t)
	for system, h := range demo.Handlers(db) {
		res, err := h.Erase(ctx, request(system, s.AllIdentifiers(), true))
		if err != nil {
			t.Fatalf("%s: dry-run Erase: %v", system, err)
		}
		if res.Outcome != wire.OutcomeErased || res.Records != seededRows[system] {
			t.Errorf("%s: dry run = %s with %d records, want erased with %d", system, res.Outcome, res.Records, seededRows[system])
		}
		if got := count(t, ctx, db, system, s.AllIdentifiers()); got != seededRows[system] {
			t.Errorf("%s: %d rows after a dry run, want all %d", system, got, seededRows[system])
		}
		if system == demo.SystemAccounts {
			want := []wire.Identifier{{Type: demo.TypeDeviceID, Value: s.DeviceID}}
			if !slices.Equal(res.Derived, want) {
				t.Errorf("accounts: dry run derived %v, want %v so the plan reaches analytics", res.Derived, want)
			}
		}
	}
}

func TestUnknownSubjectIsNotFound(t *testing.T) {
	t.Parallel()
	ctx, db, _ := seeded(t)
	nobody := []wire.Identifier{
		{Type: demo.TypeUserID, Value: "u-nobody"},
		{Type: demo.TypeEmail, Value: "nobody@example.com"},
		{Type: demo.TypeDeviceID, Value: "dev-nobody"},
	}
	for system, h := range demo.Handlers(db) {
		for _, dry := range []bool{false, true} {
			res, err := h.Erase(ctx, request(system, nobody, dry))
			if err != nil {
				t.Fatalf("%s: Erase: %v", system, err)
			}
			if res.Outcome != wire.OutcomeNotFound || res.Records != 0 || len(res.Derived) != 0 {
				t.Errorf("%s (dry run %v): Erase = %+v, want not_found with nothing derived", system, dry, res)
			}
		}
	}
	// The seeded subject is untouched.
	for system, want := range seededRows {
		if got := count(t, ctx, db, system, demo.DemoSubject.AllIdentifiers()); got != want {
			t.Errorf("%s: %d rows, want %d", system, got, want)
		}
	}
}

func TestAnalyticsIgnoresUserIdentifiers(t *testing.T) {
	t.Parallel()
	ctx, db, s := seeded(t)
	// A command for analytics built without the declared-types filter still
	// must not match anything by user_id or email: analytics has neither.
	req := request(demo.SystemAnalytics, nil, false)
	req.Identifiers = s.Identifiers()
	res, err := demo.Handlers(db)[demo.SystemAnalytics].Erase(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != wire.OutcomeNotFound {
		t.Errorf("Erase by user_id and email = %s, want not_found", res.Outcome)
	}
	if got := count(t, ctx, db, demo.SystemAnalytics, s.AllIdentifiers()); got != seededRows[demo.SystemAnalytics] {
		t.Errorf("%d events remain, want %d", got, seededRows[demo.SystemAnalytics])
	}
}

func TestSystemsMatchHandlers(t *testing.T) {
	t.Parallel()
	handlers := demo.Handlers(nil)
	systems := demo.Systems()
	if len(systems) != len(handlers) {
		t.Fatalf("%d systems but %d handlers", len(systems), len(handlers))
	}
	for _, s := range systems {
		if _, ok := handlers[s.Name]; !ok {
			t.Errorf("system %s has no handler", s.Name)
		}
		if !lethe.ValidSystemName(s.Name) || s.Owner != demo.Owner || s.Topic != wire.DefaultTopic(s.Name) || s.Description == "" {
			t.Errorf("system %+v: want a valid name, owner %q, the default topic and a description", s, demo.Owner)
		}
		for _, typ := range append(slices.Clone(s.Identifiers), s.Produces...) {
			if !lethe.ValidIdentifierType(typ) {
				t.Errorf("system %s: identifier type %q is invalid", s.Name, typ)
			}
		}
	}
	// analytics is reachable only through what accounts produces.
	byName := map[string]lethe.System{}
	for _, s := range systems {
		byName[s.Name] = s
	}
	if got := byName[demo.SystemAnalytics].Identifiers; !slices.Equal(got, []string{demo.TypeDeviceID}) {
		t.Errorf("analytics identifiers = %v, want only device_id", got)
	}
	if got := byName[demo.SystemAccounts].Produces; !slices.Contains(got, demo.TypeDeviceID) {
		t.Errorf("accounts produces %v, want device_id", got)
	}
}

func TestCountUnknownSystem(t *testing.T) {
	t.Parallel()
	ctx, db, s := seeded(t)
	if _, err := demo.Count(ctx, db, "billing", s.AllIdentifiers()); err == nil {
		t.Error("Count of an unknown system succeeded, want an error")
	}
}

func TestRepeatedCommandErasesOnce(t *testing.T) {
	t.Parallel()
	ctx, db, s := seeded(t)
	for system, h := range demo.Handlers(db) {
		// Two deliveries of one command at once, as two replicas would
		// take them: one erases, the other waits and answers alike.
		req := request(system, s.AllIdentifiers(), false)
		results := make(chan connectors.Result, 2)
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				res, err := h.Erase(ctx, req)
				results <- res
				errs <- err
			}()
		}
		a, b := <-results, <-results
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("%s: Erase: %v", system, err)
			}
		}
		if a.Outcome != wire.OutcomeErased || a.Records != seededRows[system] || b.Outcome != a.Outcome || b.Records != a.Records {
			t.Errorf("%s: concurrent deliveries answered %s(%d) and %s(%d), want both erased(%d)",
				system, a.Outcome, a.Records, b.Outcome, b.Records, seededRows[system])
		}
	}
}

func TestRepeatedCommandLeavesNewDataAlone(t *testing.T) {
	t.Parallel()
	ctx, db, _ := seeded(t)
	h := demo.Handlers(db)[demo.SystemOrders]
	newcomer := []wire.Identifier{{Type: demo.TypeUserID, Value: "u-newcomer"}}
	req := request(demo.SystemOrders, newcomer, false)
	res, err := h.Erase(ctx, req)
	if err != nil || res.Outcome != wire.OutcomeNotFound {
		t.Fatalf("Erase of a user with no orders = %+v, %v; want not_found", res, err)
	}
	// The user places an order after the command was carried out; a late
	// redelivery of that command must not erase it.
	if _, err := db.ExecContext(ctx, `INSERT INTO demo_orders.orders (order_id, user_id, total_cents) VALUES ('ord-new', 'u-newcomer', 500)`); err != nil {
		t.Fatal(err)
	}
	req.Attempt = 2
	res, err = h.Erase(ctx, req)
	if err != nil || res.Outcome != wire.OutcomeNotFound || res.Records != 0 {
		t.Errorf("redelivered Erase = %+v, %v; want the recorded not_found", res, err)
	}
	if got := count(t, ctx, db, demo.SystemOrders, newcomer); got != 1 {
		t.Errorf("%d orders of the user remain, want the new one", got)
	}
}
