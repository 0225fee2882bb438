package registry_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
)

func names(systems []lethe.System) []string {
	out := []string{}
	for _, s := range systems {
		out = append(out, s.Name)
	}
	return out
}

func TestPutSystem(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)

	orders := lethe.System{
		Name:          "orders",
		Identifiers:   []string{"email", "user_id"},
		Produces:      []string{"stripe_customer_id"},
		Topic:         "lethe.erasure.orders",
		Owner:         "team-orders",
		Description:   "orders and invoices",
		ConfirmWithin: lethe.Duration(72 * time.Hour),
		Mode:          lethe.ModeKafka,
	}

	t.Run("create", func(t *testing.T) {
		got, created, err := s.PutSystem(ctx, orders, ops)
		if err != nil {
			t.Fatalf("PutSystem: %v", err)
		}
		if !created {
			t.Errorf("created = false, want true for a new name")
		}
		want := orders
		want.CreatedAt, want.UpdatedAt = t0, t0
		if !reflect.DeepEqual(got, want) {
			t.Errorf("stored = %+v\nwant %+v", got, want)
		}
	})

	t.Run("replace", func(t *testing.T) {
		clk.Advance(time.Hour)
		changed := orders
		changed.Identifiers = []string{"user_id"}
		changed.Produces = nil
		changed.Owner = "team-billing"
		changed.ConfirmWithin = lethe.Duration(90 * time.Minute)
		got, created, err := s.PutSystem(ctx, changed, ops)
		if err != nil {
			t.Fatalf("PutSystem: %v", err)
		}
		if created {
			t.Errorf("created = true, want false when replacing an active system")
		}
		want := changed
		want.Produces = []string{}
		want.CreatedAt, want.UpdatedAt = t0, t0.Add(time.Hour)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("stored = %+v\nwant %+v", got, want)
		}
		fetched, err := s.GetSystem(ctx, "orders")
		if err != nil {
			t.Fatalf("GetSystem: %v", err)
		}
		if !reflect.DeepEqual(fetched, want) {
			t.Errorf("GetSystem = %+v\nwant %+v", fetched, want)
		}
	})

	t.Run("defaults for a caller that sent none", func(t *testing.T) {
		got, _, err := s.PutSystem(ctx, lethe.System{Name: "crm", Identifiers: []string{"email"}}, ops)
		if err != nil {
			t.Fatalf("PutSystem: %v", err)
		}
		if got.Topic != "lethe.erasure.crm" {
			t.Errorf("topic = %q, want lethe.erasure.crm", got.Topic)
		}
		if got.ConfirmWithin != lethe.Duration(lethe.DefaultConfirmWithin) {
			t.Errorf("confirm_within = %v, want %v", got.ConfirmWithin, lethe.Duration(lethe.DefaultConfirmWithin))
		}
		if got.Produces == nil {
			t.Errorf("produces = nil, want an empty slice")
		}
	})
}

func TestRetireSystem(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	for _, sys := range []lethe.System{
		{Name: "billing", Identifiers: []string{"user_id"}},
		{Name: "orders", Identifiers: []string{"email", "user_id"}},
	} {
		if _, _, err := s.PutSystem(ctx, sys, ops); err != nil {
			t.Fatalf("PutSystem(%s): %v", sys.Name, err)
		}
	}

	clk.Advance(time.Hour)
	if err := s.RetireSystem(ctx, "orders", "token:ops"); err != nil {
		t.Fatalf("RetireSystem: %v", err)
	}

	t.Run("get answers not found", func(t *testing.T) {
		_, err := s.GetSystem(ctx, "orders")
		wantCode(t, err, lethe.KindNotFound, "system_not_found")
	})
	t.Run("list leaves it out", func(t *testing.T) {
		got, err := s.ListSystems(ctx)
		if err != nil {
			t.Fatalf("ListSystems: %v", err)
		}
		if want := []string{"billing"}; !reflect.DeepEqual(names(got), want) {
			t.Errorf("ListSystems = %v, want %v", names(got), want)
		}
	})
	t.Run("match leaves it out", func(t *testing.T) {
		got, err := s.MatchSystems(ctx, []string{"email", "user_id"})
		if err != nil {
			t.Fatalf("MatchSystems: %v", err)
		}
		if want := []string{"billing"}; !reflect.DeepEqual(names(got), want) {
			t.Errorf("MatchSystems = %v, want %v", names(got), want)
		}
	})
	t.Run("retiring again answers not found", func(t *testing.T) {
		wantCode(t, s.RetireSystem(ctx, "orders", "token:ops"), lethe.KindNotFound, "system_not_found")
	})
	t.Run("retiring an unknown name answers not found", func(t *testing.T) {
		wantCode(t, s.RetireSystem(ctx, "nobody", "token:ops"), lethe.KindNotFound, "system_not_found")
	})
	t.Run("put brings it back as created", func(t *testing.T) {
		clk.Advance(time.Hour)
		got, created, err := s.PutSystem(ctx, lethe.System{Name: "orders", Identifiers: []string{"email"}}, ops)
		if err != nil {
			t.Fatalf("PutSystem: %v", err)
		}
		if !created {
			t.Errorf("created = false, want true when reviving a retired system")
		}
		if want := t0.Add(2 * time.Hour); !got.CreatedAt.Equal(want) {
			t.Errorf("created_at = %v, want the revival time %v", got.CreatedAt, want)
		}
		if _, err := s.GetSystem(ctx, "orders"); err != nil {
			t.Errorf("GetSystem after revival: %v", err)
		}
	})
}

func TestGetSystemUnknown(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	_, err := s.GetSystem(testContext(t), "nobody")
	wantCode(t, err, lethe.KindNotFound, "system_not_found")
}

func TestListSystems(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	got, err := s.ListSystems(ctx)
	if err != nil {
		t.Fatalf("ListSystems on an empty registry: %v", err)
	}
	if got == nil || len(got) != 0 {
		t.Errorf("ListSystems on an empty registry = %#v, want an empty non-nil slice", got)
	}

	for _, name := range []string{"zeta", "alpha", "mid"} {
		if _, _, err := s.PutSystem(ctx, lethe.System{Name: name, Identifiers: []string{"user_id"}}, ops); err != nil {
			t.Fatalf("PutSystem(%s): %v", name, err)
		}
	}
	got, err = s.ListSystems(ctx)
	if err != nil {
		t.Fatalf("ListSystems: %v", err)
	}
	if want := []string{"alpha", "mid", "zeta"}; !reflect.DeepEqual(names(got), want) {
		t.Errorf("ListSystems = %v, want %v (by name)", names(got), want)
	}
}

func TestMatchSystems(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	for _, sys := range []lethe.System{
		{Name: "analytics", Identifiers: []string{"device_id"}},
		{Name: "billing", Identifiers: []string{"stripe_customer_id", "user_id"}},
		{Name: "crm", Identifiers: []string{"email"}},
		{Name: "orders", Identifiers: []string{"email", "user_id"}},
	} {
		if _, _, err := s.PutSystem(ctx, sys, ops); err != nil {
			t.Fatalf("PutSystem(%s): %v", sys.Name, err)
		}
	}

	tests := []struct {
		name  string
		types []string
		want  []string
	}{
		{"one type", []string{"email"}, []string{"crm", "orders"}},
		{"any of several types", []string{"user_id", "device_id"}, []string{"analytics", "billing", "orders"}},
		{"a derived type", []string{"stripe_customer_id"}, []string{"billing"}},
		{"an unknown type", []string{"passport"}, []string{}},
		{"no types", nil, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.MatchSystems(ctx, tt.types)
			if err != nil {
				t.Fatalf("MatchSystems(%v): %v", tt.types, err)
			}
			if got == nil {
				t.Fatalf("MatchSystems(%v) = nil, want a non-nil slice", tt.types)
			}
			if !reflect.DeepEqual(names(got), tt.want) {
				t.Errorf("MatchSystems(%v) = %v, want %v", tt.types, names(got), tt.want)
			}
		})
	}
}

func TestIdentifiersIndexServesTheOverlap(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// With the planner denied sequential scans, only the partial GIN index
	// can answer the overlap; if the predicate could not use it, the plan
	// would show a Seq Scan anyway.
	if _, err := tx.ExecContext(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.QueryContext(ctx, `EXPLAIN SELECT name FROM systems
		WHERE retired_at IS NULL AND identifiers && ARRAY['email']::text[] ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan += line + "\n"
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "systems_active_identifiers") {
		t.Errorf("plan does not use systems_active_identifiers:\n%s", plan)
	}
}
