package registry_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

var (
	adaEmail = lethe.SubjectDigest{Type: "email", Digest: "d-ada-email"}
	adaUser  = lethe.SubjectDigest{Type: "user_id", Digest: "d-ada-user"}
	bobEmail = lethe.SubjectDigest{Type: "email", Digest: "d-bob-email"}
)

func putSystems(t *testing.T, s *registry.Store, systems ...lethe.System) {
	t.Helper()
	for _, sys := range systems {
		if _, _, err := s.PutSystem(testContext(t), sys, ops); err != nil {
			t.Fatalf("PutSystem %s: %v", sys.Name, err)
		}
	}
}

func putHold(t *testing.T, s *registry.Store, h registry.NewHold) lethe.Hold {
	t.Helper()
	got, _, err := s.PutHold(testContext(t), h)
	if err != nil {
		t.Fatalf("PutHold %s: %v", h.ID, err)
	}
	return got
}

// heldBy maps each matched system to the id of the hold on it ("" if none).
func heldBy(t *testing.T, s *registry.Store, q registry.MatchQuery) map[string]string {
	t.Helper()
	ms, err := s.MatchTargets(testContext(t), q)
	if err != nil {
		t.Fatalf("MatchTargets: %v", err)
	}
	out := map[string]string{}
	for _, m := range ms {
		out[m.System.Name] = ""
		if m.Hold != nil {
			out[m.System.Name] = m.Hold.ID
		}
	}
	return out
}

// Holds match by any digest of the subject, for one system or all, and only
// while neither lifted nor expired; the longest-lasting one is reported.
func TestMatchTargetsFindsHolds(t *testing.T) {
	s, clk := newStore(t)
	ctx := testContext(t)
	putSystems(t, s,
		lethe.System{Name: "billing", Identifiers: []string{"email"}},
		lethe.System{Name: "orders", Identifiers: []string{"user_id"}},
		lethe.System{Name: "crm", Identifiers: []string{"email", "user_id"}})
	e := create(t, s, newErasure(t0, adaEmail, adaUser))
	soon := t0.Add(48 * time.Hour)
	putHold(t, s, registry.NewHold{ID: "case-1", Subject: []lethe.SubjectDigest{adaUser}, System: "orders",
		Basis: "Art. 17(3)(e): litigation", ExpiresAt: &soon})
	putHold(t, s, registry.NewHold{ID: "tax-7", Subject: []lethe.SubjectDigest{{Type: "email", Digest: adaEmail.Digest}},
		Basis: "Art. 17(3)(b): tax law"})
	putHold(t, s, registry.NewHold{ID: "bob", Subject: []lethe.SubjectDigest{bobEmail}, Basis: "other subject"})

	q := registry.MatchQuery{RequestID: e.ID, Types: []string{"email", "user_id"},
		Subject: []lethe.SubjectDigest{adaEmail, adaUser}, At: t0}
	// tax-7 holds all systems and never expires, so it outlasts case-1 on orders.
	want := map[string]string{"billing": "tax-7", "crm": "tax-7", "orders": "tax-7"}
	if got := heldBy(t, s, q); !maps.Equal(got, want) {
		t.Errorf("holds = %v, want %v", got, want)
	}
	if _, _, err := s.LiftHold(ctx, "tax-7", "token:legal"); err != nil {
		t.Fatalf("LiftHold: %v", err)
	}
	want = map[string]string{"billing": "", "crm": "", "orders": "case-1"}
	if got := heldBy(t, s, q); !maps.Equal(got, want) {
		t.Errorf("after lifting tax-7: holds = %v, want %v", got, want)
	}
	q.At = soon
	want["orders"] = ""
	if got := heldBy(t, s, q); !maps.Equal(got, want) {
		t.Errorf("at case-1's expiry: holds = %v, want %v", got, want)
	}
	// Bob's hold never reaches Ada's request.
	clk.Advance(time.Hour)
	if got := heldBy(t, s, registry.MatchQuery{RequestID: e.ID, Types: []string{"email"},
		Subject: []lethe.SubjectDigest{adaEmail}, At: t0}); got["billing"] != "" {
		t.Errorf("billing held by %q for another subject's hold", got["billing"])
	}
}

// A plan records the digests systems revealed against the request, and the
// holds it found, so that lifting one names the requests to wake.
func TestLiftHoldNamesOpenHeldRequests(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	putSystems(t, s, lethe.System{Name: "orders", Identifiers: []string{"user_id"}})
	open := create(t, s, newErasure(t0, adaEmail))
	done := create(t, s, newErasure(t0.Add(time.Second), adaEmail))
	putHold(t, s, registry.NewHold{ID: "case-1", Subject: []lethe.SubjectDigest{adaUser}, Basis: "litigation"})
	for _, e := range []lethe.Erasure{open, done} {
		// user_id was revealed by a system: it is recorded, and it is what
		// the hold matches.
		got := heldBy(t, s, registry.MatchQuery{RequestID: e.ID, Types: []string{"user_id"},
			Subject: []lethe.SubjectDigest{adaEmail, adaUser}, Record: []lethe.SubjectDigest{adaUser}, At: t0})
		if got["orders"] != "case-1" {
			t.Fatalf("orders held by %q, want case-1", got["orders"])
		}
		digests, err := s.SubjectDigests(ctx, e.ID)
		if err != nil || !slices.Contains(digests, adaUser) {
			t.Fatalf("subject digests %v (%v), want the revealed user_id recorded", digests, err)
		}
	}
	if err := s.ApplyLedger(ctx, done.ID, lethe.LedgerDelta{Status: lethe.RequestCompleted}); err != nil {
		t.Fatalf("ApplyLedger: %v", err)
	}
	h, requests, err := s.LiftHold(ctx, "case-1", "token:legal")
	if err != nil {
		t.Fatalf("LiftHold: %v", err)
	}
	if h.Active || h.LiftedAt == nil || !slices.Equal(requests, []string{open.ID}) {
		t.Errorf("lifted %+v waking %v, want inactive with lifted_at, waking only %s", h, requests, open.ID)
	}
	again, requests, err := s.LiftHold(ctx, "case-1", "token:legal")
	if err != nil || len(requests) != 0 || !again.LiftedAt.Equal(*h.LiftedAt) {
		t.Errorf("second lift = %+v, %v, %v; want the same hold, no request, no error", again, requests, err)
	}
	if _, _, err := s.LiftHold(ctx, "nope", "token:legal"); err == nil {
		t.Error("lifting an unknown hold succeeded")
	} else {
		wantCode(t, err, lethe.KindNotFound, "hold_not_found")
	}
}

func TestPutHoldCreatesReplacesAndReactivates(t *testing.T) {
	s, clk := newStore(t)
	ctx := testContext(t)
	until := t0.Add(72 * time.Hour)
	h, created, err := s.PutHold(ctx, registry.NewHold{ID: "case-1", Subject: []lethe.SubjectDigest{adaUser, adaEmail},
		System: "orders", Basis: "litigation", ExpiresAt: &until})
	if err != nil || !created {
		t.Fatalf("PutHold = %v, created %v", err, created)
	}
	if !h.Active || h.System != "orders" || !slices.Equal(h.SubjectTypes, []string{"email", "user_id"}) ||
		!h.ExpiresAt.Equal(until) || !h.CreatedAt.Equal(t0) {
		t.Errorf("hold %+v", h)
	}
	if _, _, err := s.LiftHold(ctx, "case-1", "token:legal"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	h, created, err = s.PutHold(ctx, registry.NewHold{ID: "case-1", Subject: []lethe.SubjectDigest{adaUser},
		Basis: "litigation, all systems"})
	if err != nil || created {
		t.Fatalf("replace = %v, created %v; want replaced", err, created)
	}
	if !h.Active || h.LiftedAt != nil || h.System != "" || h.ExpiresAt != nil || !h.CreatedAt.Equal(t0) ||
		!h.UpdatedAt.Equal(t0.Add(time.Hour)) || !slices.Equal(h.SubjectTypes, []string{"user_id"}) {
		t.Errorf("replaced hold %+v, want active again, all systems, no expiry", h)
	}
	all, err := s.ListHolds(ctx, false)
	if err != nil || len(all) != 1 {
		t.Fatalf("ListHolds = %v, %v", all, err)
	}
	clk.Advance(100 * time.Hour)
	if _, _, err := s.PutHold(ctx, registry.NewHold{ID: "short", Subject: []lethe.SubjectDigest{bobEmail},
		Basis: "x", ExpiresAt: ptr(t0.Add(2 * time.Hour))}); err != nil {
		t.Fatal(err)
	}
	active, err := s.ListHolds(ctx, true)
	if err != nil || len(active) != 1 || active[0].ID != "case-1" {
		t.Errorf("active holds %+v (%v), want only case-1 (short has expired)", active, err)
	}
	for _, bad := range []registry.NewHold{
		{ID: "has space", Subject: []lethe.SubjectDigest{adaUser}, Basis: "x"},
		{ID: "no-subject", Basis: "x"},
		{ID: "no-basis", Subject: []lethe.SubjectDigest{adaUser}, Basis: "  "},
		{ID: "bad-system", Subject: []lethe.SubjectDigest{adaUser}, Basis: "x", System: "Orders"},
		{ID: "long-basis", Subject: []lethe.SubjectDigest{adaUser}, Basis: strings.Repeat("b", registry.MaxHoldBasisChars+1)},
	} {
		if _, _, err := s.PutHold(ctx, bad); lethe.ErrorKind(err) != lethe.KindInvalid {
			t.Errorf("PutHold(%s) = %v, want an invalid-input error", bad.ID, err)
		}
	}
	audit := holdAudit(t, s)
	if !slices.Equal(audit, []string{"hold_placed case-1", "hold_lifted case-1", "hold_placed case-1", "hold_placed short"}) {
		t.Errorf("hold audit %v", audit)
	}
}

// holdAudit lists "kind hold" of the audit events about holds, in order.
func holdAudit(t *testing.T, s *registry.Store) []string {
	t.Helper()
	rows, err := s.DB().QueryContext(testContext(t),
		`SELECT kind, hold_id FROM audit_events WHERE hold_id <> '' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k, h string
		if err := rows.Scan(&k, &h); err != nil {
			t.Fatal(err)
		}
		out = append(out, k+" "+h)
	}
	return out
}

// An extension moves deadline and target once, within two months, before
// the deadline, is audited, and is undone if the workflow cannot be told.
func TestExtendErasure(t *testing.T) {
	s, clk := newStore(t)
	ctx := testContext(t)
	e := create(t, s, newErasure(t0))
	if !e.Target.Equal(e.Deadline.Add(-lethe.DefaultTargetBefore)) {
		t.Errorf("default target %v, want two days before the deadline %v", e.Target, e.Deadline)
	}
	down := lethe.Errorf(lethe.KindUnavailable, "temporal_unavailable", "down")
	_, err := s.ExtendErasure(ctx, e.ID, 30*24*time.Hour, "complex", "token:dpo", func(context.Context, registry.Extension) error { return down })
	if !errors.Is(err, down) {
		t.Fatalf("extension with the workflow unreachable = %v, want its error", err)
	}
	if got, _ := s.GetErasure(ctx, e.ID); !got.Deadline.Equal(e.Deadline) || got.ExtendedAt != nil {
		t.Fatalf("a failed extension changed the request: %+v", got)
	}
	_, err = s.ExtendErasure(ctx, e.ID, 63*24*time.Hour, "too long", "token:dpo", nil)
	wantCode(t, err, lethe.KindInvalid, "invalid_extension")

	clk.Advance(time.Hour)
	var told registry.Extension
	got, err := s.ExtendErasure(ctx, e.ID, 30*24*time.Hour, "40 systems, archives", "token:dpo",
		func(_ context.Context, ext registry.Extension) error { told = ext; return nil })
	if err != nil {
		t.Fatalf("ExtendErasure: %v", err)
	}
	wantDeadline := e.Deadline.Add(30 * 24 * time.Hour)
	if !got.Deadline.Equal(wantDeadline) || !got.Target.Equal(e.Target.Add(30*24*time.Hour)) ||
		got.ExtendedAt == nil || !got.ExtendedAt.Equal(t0.Add(time.Hour)) || got.ExtensionReason != "40 systems, archives" {
		t.Errorf("extended %+v", got)
	}
	if !told.Deadline.Equal(wantDeadline) || !told.Target.Equal(got.Target) {
		t.Errorf("workflow told %+v, want the new dates", told)
	}
	if read, _ := s.GetErasure(ctx, e.ID); !read.Deadline.Equal(wantDeadline) || read.ExtensionReason == "" {
		t.Errorf("read back %+v", read)
	}
	_, err = s.ExtendErasure(ctx, e.ID, time.Hour, "again", "token:dpo", nil)
	wantCode(t, err, lethe.KindConflict, "already_extended")
	events, err := s.Audit(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	var extended []lethe.AuditEvent
	for _, ev := range events {
		if ev.Kind == lethe.AuditExtended {
			extended = append(extended, ev)
		}
	}
	if len(extended) != 1 || !strings.Contains(extended[0].Detail, "40 systems, archives") {
		t.Errorf("extended events %+v, want one with the reason", extended)
	}

	late := create(t, s, newErasure(t0))
	clk.Advance(31 * 24 * time.Hour)
	_, err = s.ExtendErasure(ctx, late.ID, time.Hour, "late", "token:dpo", nil)
	wantCode(t, err, lethe.KindConflict, "deadline_passed")
	if err := s.ApplyLedger(ctx, late.ID, lethe.LedgerDelta{Status: lethe.RequestCanceled}); err != nil {
		t.Fatal(err)
	}
	_, err = s.ExtendErasure(ctx, late.ID, time.Hour, "finished", "token:dpo", nil)
	wantCode(t, err, lethe.KindConflict, "already_finished")
	_, err = s.ExtendErasure(ctx, "00000000-0000-4000-8000-000000000000", time.Hour, "x", "token:dpo", nil)
	wantCode(t, err, lethe.KindNotFound, "erasure_not_found")
}

// The ledger keeps overdue once written, and lists overdue requests alone.
func TestOverdueFilter(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	late := create(t, s, newErasure(t0))
	create(t, s, newErasure(t0.Add(time.Second)))
	if err := s.ApplyLedger(ctx, late.ID, lethe.LedgerDelta{Overdue: true, Batch: "b1"}); err != nil {
		t.Fatalf("ApplyLedger: %v", err)
	}
	items, _, err := s.ListErasures(ctx, registry.ErasureFilter{Overdue: true})
	if err != nil || len(items) != 1 || items[0].ID != late.ID || !items[0].Overdue {
		t.Fatalf("overdue list = %+v (%v), want only %s", items, err, late.ID)
	}
	all, _, err := s.ListErasures(ctx, registry.ErasureFilter{})
	if err != nil || len(all) != 2 {
		t.Fatalf("full list = %d items (%v), want 2", len(all), err)
	}
}
