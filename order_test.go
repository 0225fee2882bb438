package lethe_test

import (
	"reflect"
	"testing"

	"github.com/lethe-dev/lethe"
)

func TestAfterCycle(t *testing.T) {
	graph := map[string][]string{"a": nil, "b": {"a"}, "c": {"b"}, "x": {"c", "a"}}
	tests := []struct {
		name  string
		after []string
		want  []string
	}{
		{"a", nil, nil},
		{"a", []string{"x"}, []string{"a", "x", "c", "b", "a"}},
		{"a", []string{"b"}, []string{"a", "b", "a"}},
		{"a", []string{"a"}, []string{"a", "a"}},
		{"d", []string{"c", "x"}, nil},
		// b's own entry in the graph is replaced by the after given.
		{"b", []string{}, nil},
		{"c", []string{"a"}, nil},
	}
	for _, tt := range tests {
		if got := lethe.AfterCycle(tt.name, tt.after, graph); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("AfterCycle(%s, %v) = %v, want %v", tt.name, tt.after, got, tt.want)
		}
	}
}

func TestPlanErasureWavesFollowAfterAndDerivedIdentifiers(t *testing.T) {
	systems := []lethe.System{
		{Name: "a", Identifiers: []string{"email"}},
		{Name: "b", Identifiers: []string{"email"}, After: []string{"a"}},
		{Name: "c", Identifiers: []string{"email", "user_id"}, After: []string{"b", "ghost"}},
		// accounts reveals an account_id that only billing erases by.
		{Name: "accounts", Identifiers: []string{"user_id"}, Produces: []string{"account_id"}},
		{Name: "billing", Identifiers: []string{"account_id"}},
		// ledger waits for billing, which is reached in wave 2.
		{Name: "ledger", Identifiers: []string{"email"}, After: []string{"billing"}},
		{Name: "phone", Identifiers: []string{"phone"}},
	}
	plan := lethe.PlanErasure([]string{"user_id", "email"}, systems, nil)
	want := [][]string{{"a", "accounts"}, {"b", "billing"}, {"c", "ledger"}}
	if !reflect.DeepEqual(plan.Waves, want) {
		t.Fatalf("waves = %v, want %v", plan.Waves, want)
	}
	byName := map[string]lethe.PlannedSystem{}
	for _, p := range plan.Systems {
		byName[p.Name] = p
	}
	if _, ok := byName["phone"]; ok {
		t.Error("phone erases by a type the subject lacks and nothing reveals, yet is planned")
	}
	if p := byName["billing"]; !p.Derived || !reflect.DeepEqual(p.RevealedBy, []string{"accounts"}) ||
		!reflect.DeepEqual(p.Identifiers, []string{"account_id"}) {
		t.Errorf("billing = %+v, want derived, revealed by accounts, sent account_id", p)
	}
	if p := byName["c"]; !reflect.DeepEqual(p.After, []string{"b"}) || !reflect.DeepEqual(p.Identifiers, []string{"email", "user_id"}) {
		t.Errorf("c = %+v, want after [b] (ghost is not targeted), sent email and user_id", p)
	}
	if !reflect.DeepEqual(plan.IdentifierTypes, []string{"email", "user_id"}) {
		t.Errorf("identifier types = %v", plan.IdentifierTypes)
	}
}

func TestPlanErasureHeldSystemDelaysNoOneAndRevealsNothing(t *testing.T) {
	systems := []lethe.System{
		{Name: "a", Identifiers: []string{"email"}, Produces: []string{"account_id"}},
		{Name: "b", Identifiers: []string{"email"}, After: []string{"a"}},
		{Name: "billing", Identifiers: []string{"account_id"}},
	}
	hold := &lethe.Hold{ID: "h1", Basis: "litigation"}
	plan := lethe.PlanErasure([]string{"email"}, systems, map[string]*lethe.Hold{"a": hold})
	if want := [][]string{{"b"}}; !reflect.DeepEqual(plan.Waves, want) {
		t.Fatalf("waves = %v, want %v", plan.Waves, want)
	}
	if len(plan.Systems) != 2 || plan.Systems[0].Name != "a" || plan.Systems[0].Wave != 0 ||
		plan.Systems[0].Hold == nil || plan.Systems[0].Hold.ID != "h1" || plan.Systems[0].Hold.Basis != "litigation" {
		t.Errorf("systems = %+v, want a held in wave 0 first, then b", plan.Systems)
	}
}
