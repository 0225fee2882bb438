package registry_test

import (
	"database/sql"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// auditRow is one audit event as the tests read it back, with its actor.
type auditRow struct {
	Kind, System, Hold, Actor, Detail string
}

// auditWhere returns the audit rows matching cond (a WHERE clause over
// audit_events with $1 bound to arg), in chain order.
func auditWhere(t *testing.T, db *sql.DB, cond string, arg any) []auditRow {
	t.Helper()
	rows, err := db.QueryContext(testContext(t),
		`SELECT kind, system, hold_id, actor, detail FROM audit_events WHERE `+cond+` ORDER BY seq`, arg)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.Kind, &r.System, &r.Hold, &r.Actor, &r.Detail); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestErasureCreatedBy(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newErasure(t0)
	in.CreatedBy = "token:support-desk"
	e := create(t, s, in)
	if e.CreatedBy != "token:support-desk" {
		t.Errorf("CreateErasure answered created_by %q", e.CreatedBy)
	}
	got, err := s.GetErasure(ctx, in.ID)
	if err != nil || got.CreatedBy != "token:support-desk" {
		t.Errorf("GetErasure = created_by %q, %v; want token:support-desk", got.CreatedBy, err)
	}
	anon := create(t, s, newErasure(t0.Add(time.Minute)))
	if anon.CreatedBy != "" {
		t.Errorf("a request created by nobody has created_by %q", anon.CreatedBy)
	}
	items, _, err := s.ListErasures(ctx, registry.ErasureFilter{})
	if err != nil || len(items) != 2 || items[0].CreatedBy != "" || items[1].CreatedBy != "token:support-desk" {
		t.Errorf("ListErasures = %+v, %v; want created_by '' then token:support-desk", items, err)
	}
	facts, err := s.CertificateFacts(ctx, in.ID)
	if err != nil || facts.Erasure.CreatedBy != "token:support-desk" {
		t.Errorf("CertificateFacts = created_by %q, %v", facts.Erasure.CreatedBy, err)
	}
	events, err := s.Audit(ctx, in.ID)
	if err != nil || len(events) != 1 || events[0].Kind != lethe.AuditReceived || events[0].Actor != "token:support-desk" {
		t.Errorf("Audit = %+v, %v; want the received event by token:support-desk", events, err)
	}
	// JSON always carries created_by, even empty.
	b, _ := json.Marshal(anon)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if v, ok := m["created_by"]; !ok || v != "" {
		t.Errorf("JSON of a request by nobody: created_by = %v (present %v), want \"\"", v, ok)
	}
	verifyIntact(t, s)
}

func TestExtendAndCancelNameTheirActor(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	e := create(t, s, newErasure(t0))
	clk.Advance(time.Hour)
	if _, err := s.ExtendErasure(ctx, e.ID, 24*time.Hour, "archives", "oidc:dpo", nil); err != nil {
		t.Fatalf("ExtendErasure: %v", err)
	}
	if err := s.AuditCancelRequest(ctx, e.ID, "token:support-desk"); err != nil {
		t.Fatalf("AuditCancelRequest: %v", err)
	}
	events, err := s.Audit(ctx, e.ID)
	if err != nil || len(events) != 3 {
		t.Fatalf("Audit = %+v, %v; want received, extended, cancel_requested", events, err)
	}
	if ev := events[1]; ev.Kind != lethe.AuditExtended || ev.Actor != "oidc:dpo" {
		t.Errorf("second event = %+v, want extended by oidc:dpo", ev)
	}
	if ev := events[2]; ev.Kind != lethe.AuditCancelRequested || ev.Actor != "token:support-desk" || !ev.At.Equal(t0.Add(time.Hour)) {
		t.Errorf("third event = %+v, want cancel_requested by token:support-desk at the store's clock", ev)
	}
	wantCode(t, s.AuditCancelRequest(ctx, uuid.NewString(), "x"), lethe.KindNotFound, "erasure_not_found")
	wantCode(t, s.AuditCancelRequest(ctx, "not-a-uuid", "x"), lethe.KindNotFound, "erasure_not_found")
	verifyIntact(t, s)
}

func TestHoldActors(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	in := registry.NewHold{ID: "case-9", Subject: []lethe.SubjectDigest{adaUser}, Basis: "Art. 17(3)(e)", PlacedBy: "oidc:anna"}
	h := putHold(t, s, in)
	if h.PlacedBy != "oidc:anna" || h.LiftedBy != "" {
		t.Errorf("placed hold = placed_by %q lifted_by %q", h.PlacedBy, h.LiftedBy)
	}
	b, _ := json.Marshal(h)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["lifted_by"]; ok || m["placed_by"] != "oidc:anna" {
		t.Errorf("JSON of an active hold = %s, want placed_by and no lifted_by", b)
	}

	clk.Advance(time.Hour)
	lifted, _, err := s.LiftHold(ctx, "case-9", "oidc:ben")
	if err != nil || lifted.LiftedBy != "oidc:ben" || lifted.PlacedBy != "oidc:anna" || lifted.LiftedAt == nil {
		t.Fatalf("LiftHold = %+v, %v; want lifted by oidc:ben", lifted, err)
	}
	// Lifting again changes nothing, not even who lifted it.
	if again, _, err := s.LiftHold(ctx, "case-9", "oidc:eve"); err != nil || again.LiftedBy != "oidc:ben" {
		t.Errorf("second LiftHold = lifted_by %q, %v; want oidc:ben kept", again.LiftedBy, err)
	}
	got, err := s.GetHold(ctx, "case-9")
	if err != nil || got.LiftedBy != "oidc:ben" {
		t.Errorf("GetHold = lifted_by %q, %v", got.LiftedBy, err)
	}
	// Placing it again makes it the new placer's, lifted by nobody.
	in.PlacedBy = "oidc:carl"
	again := putHold(t, s, in)
	if again.PlacedBy != "oidc:carl" || again.LiftedBy != "" || again.LiftedAt != nil {
		t.Errorf("re-placed hold = %+v, want placed by oidc:carl and not lifted", again)
	}
	list, err := s.ListHolds(ctx, false)
	if err != nil || len(list) != 1 || list[0].PlacedBy != "oidc:carl" {
		t.Errorf("ListHolds = %+v, %v", list, err)
	}

	events := auditWhere(t, s.DB(), `hold_id = $1`, "case-9")
	want := []auditRow{
		{Kind: "hold_placed", Hold: "case-9", Actor: "oidc:anna"},
		{Kind: "hold_lifted", Hold: "case-9", Actor: "oidc:ben"},
		{Kind: "hold_placed", Hold: "case-9", Actor: "oidc:carl"},
	}
	if len(events) != len(want) {
		t.Fatalf("hold events = %+v, want %d", events, len(want))
	}
	for i, w := range want {
		if g := events[i]; g.Kind != w.Kind || g.Hold != w.Hold || g.Actor != w.Actor {
			t.Errorf("hold event %d = %+v, want %+v", i, g, w)
		}
	}
	verifyIntact(t, s)
}

// TestPutSystemRefusesTopicChangeWithoutScope: the refused write leaves the
// row and the audit as they were.
func TestPutSystemRefusesTopicChangeWithoutScope(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	writer := registry.SystemWrite{Actor: "token:ci"}
	orig, _, err := s.PutSystem(ctx, lethe.System{Name: "orders", Identifiers: []string{"user_id"}, Topic: "team.orders"}, writer)
	if err != nil {
		t.Fatalf("create without the admin scope: %v", err)
	}
	rows := countAudit(t, s.DB())
	clk.Advance(time.Hour)
	for name, sys := range map[string]lethe.System{
		"another topic":     {Name: "orders", Identifiers: []string{"email"}, Topic: "elsewhere"},
		"the default topic": {Name: "orders", Identifiers: []string{"email"}},
	} {
		_, _, err := s.PutSystem(ctx, sys, writer)
		wantCode(t, err, lethe.KindForbidden, "insufficient_scope")
		got, err := s.GetSystem(ctx, "orders")
		if err != nil || got.Topic != "team.orders" || !got.UpdatedAt.Equal(orig.UpdatedAt) || len(got.Identifiers) != 1 || got.Identifiers[0] != "user_id" {
			t.Errorf("%s: after the refusal the system is %+v, %v; want it unchanged", name, got, err)
		}
		if n := countAudit(t, s.DB()); n != rows {
			t.Errorf("%s: the refusal wrote %d audit rows", name, n-rows)
		}
	}
	// The same topic needs no scope.
	if _, _, err := s.PutSystem(ctx, lethe.System{Name: "orders", Identifiers: []string{"email"}, Topic: "team.orders"}, writer); err != nil {
		t.Errorf("replace keeping the topic: %v", err)
	}
	// A retired system comes back with any topic: it is a new registration.
	if err := s.RetireSystem(ctx, "orders", "token:ci"); err != nil {
		t.Fatal(err)
	}
	if _, created, err := s.PutSystem(ctx, lethe.System{Name: "orders", Identifiers: []string{"email"}, Topic: "new.orders"}, writer); err != nil || !created {
		t.Errorf("bring back a retired system with another topic = created %v, %v", created, err)
	}
	verifyIntact(t, s)
}

func TestRegistryChangesAudited(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	sys := lethe.System{Name: "orders", Identifiers: []string{"user_id"}, Topic: "team.orders", Owner: "team-orders"}

	created, _, err := s.PutSystem(ctx, sys, registry.SystemWrite{Actor: "token:ci"})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	sys.Owner = "team-billing"
	replaced, _, err := s.PutSystem(ctx, sys, registry.SystemWrite{Actor: "token:ci"})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	sys.Topic = "billing.orders"
	moved, _, err := s.PutSystem(ctx, sys, registry.SystemWrite{Actor: "oidc:admin", MayChangeTopic: true})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if err := s.RetireSystem(ctx, "orders", "oidc:admin"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.RetireSystem(ctx, "orders", "oidc:admin"), lethe.KindNotFound, "system_not_found")
	clk.Advance(time.Minute)
	revived, _, err := s.PutSystem(ctx, sys, registry.SystemWrite{Actor: "token:ci"})
	if err != nil {
		t.Fatal(err)
	}

	type change struct {
		Before *lethe.System `json:"before"`
		After  *lethe.System `json:"after"`
	}
	want := []struct {
		kind   lethe.AuditKind
		actor  string
		detail any
	}{
		{lethe.AuditSystemCreated, "token:ci", created},
		{lethe.AuditSystemReplaced, "token:ci", change{&created, &replaced}},
		{lethe.AuditSystemTopicChanged, "oidc:admin", change{&replaced, &moved}},
		{lethe.AuditSystemRetired, "oidc:admin", moved},
		{lethe.AuditSystemCreated, "token:ci", revived},
	}
	events := auditWhere(t, s.DB(), `system = $1 AND request_id IS NULL`, "orders")
	if len(events) != len(want) {
		t.Fatalf("system events = %+v, want %d", events, len(want))
	}
	for i, w := range want {
		g := events[i]
		wantDetail, _ := json.Marshal(w.detail)
		if g.Kind != string(w.kind) || g.Actor != w.actor || g.Hold != "" {
			t.Errorf("event %d = %s by %q, want %s by %q", i, g.Kind, g.Actor, w.kind, w.actor)
		}
		if !jsonEqual(t, g.Detail, string(wantDetail)) {
			t.Errorf("event %d (%s) detail = %s\nwant %s", i, g.Kind, g.Detail, wantDetail)
		}
	}
	verifyIntact(t, s)
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("not JSON: %s: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("not JSON: %s: %v", b, err)
	}
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return string(ca) == string(cb)
}
