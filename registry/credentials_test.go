package registry_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/credential"
)

func TestIssueCredentialRotates(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, clk := newStore(t)
	putSystems(t, s,
		lethe.System{Name: "orders", Identifiers: []string{"user_id"}},
		lethe.System{Name: "billing", Identifiers: []string{"user_id"}})

	creds, err := s.SystemCredentials(ctx, []string{"orders", "billing"}, clk.Now())
	if err != nil || len(creds) != 0 {
		t.Fatalf("SystemCredentials before any issue = %v, %v; want none", creds, err)
	}
	first, err := s.IssueCredential(ctx, "orders", "alice", 24*time.Hour)
	if err != nil {
		t.Fatalf("IssueCredential: %v", err)
	}
	if !credential.ValidKeyID(first) {
		t.Errorf("key id %q has not the form k_ + 16 hex", first)
	}
	if cur, found, err := s.CurrentCredential(ctx, "orders"); err != nil || !found || cur != first {
		t.Errorf("CurrentCredential = %q, %v, %v; want %q", cur, found, err, first)
	}

	clk.Advance(time.Hour)
	second, err := s.IssueCredential(ctx, "orders", "bob", 24*time.Hour)
	if err != nil {
		t.Fatalf("IssueCredential again: %v", err)
	}
	if cur, _, _ := s.CurrentCredential(ctx, "orders"); cur != second {
		t.Errorf("CurrentCredential after rotation = %q, want the new %q", cur, second)
	}
	for _, tc := range []struct {
		at   time.Duration // after the second issue
		want []string
	}{
		{0, []string{second, first}},
		{24*time.Hour - time.Second, []string{second, first}},
		{24 * time.Hour, []string{second}},
	} {
		got, err := s.ValidCredentials(ctx, "orders", clk.Now().Add(tc.at))
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ValidCredentials at +%s = %v, %v; want %v", tc.at, got, err, tc.want)
		}
	}

	// A third issue with a longer overlap leaves the first's sooner expiry.
	clk.Advance(time.Hour)
	third, err := s.IssueCredential(ctx, "orders", "", 48*time.Hour)
	if err != nil {
		t.Fatalf("IssueCredential a third time: %v", err)
	}
	got, _ := s.ValidCredentials(ctx, "orders", clk.Now().Add(30*time.Hour))
	if want := []string{third, second}; !slices.Equal(got, want) {
		t.Errorf("ValidCredentials 30h after a 48h-overlap issue = %v, want %v (the first expired at its earlier cut)", got, want)
	}

	creds, err = s.SystemCredentials(ctx, []string{"orders", "billing", "unknown"}, clk.Now().Add(100*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if ids, ok := creds["orders"]; !ok || !slices.Equal(ids, []string{third}) {
		t.Errorf("SystemCredentials[orders] = %v, %v; want [%s]", ids, ok, third)
	}
	if _, ok := creds["billing"]; ok {
		t.Error("billing, which has no credential, is listed as having some")
	}

	rows, err := s.DB().QueryContext(ctx,
		`SELECT request_id IS NULL, system, detail, actor FROM audit_events WHERE kind = 'credential_issued' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var details []string
	for rows.Next() {
		var noRequest bool
		var system, detail, actor string
		if err := rows.Scan(&noRequest, &system, &detail, &actor); err != nil {
			t.Fatal(err)
		}
		if !noRequest || system != "orders" {
			t.Errorf("audit event: request_id null %v, system %q; want null and orders", noRequest, system)
		}
		details = append(details, detail+" by="+actor)
	}
	want := []string{"key_id=" + first + " by=alice", "key_id=" + second + " by=bob", "key_id=" + third + " by="}
	if !slices.Equal(details, want) {
		t.Errorf("audit details = %q, want %q", details, want)
	}
	if v, err := s.VerifyAudit(ctx); err != nil || !v.Intact() {
		t.Errorf("VerifyAudit = %+v, %v", v, err)
	}
}

func TestIssueCredentialNeedsAnActiveSystem(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, _ := newStore(t)
	_, err := s.IssueCredential(ctx, "nobody", "", time.Hour)
	wantCode(t, err, lethe.KindNotFound, "system_not_found")

	putSystems(t, s, lethe.System{Name: "old", Identifiers: []string{"user_id"}})
	if err := s.RetireSystem(ctx, "old", "token:ops"); err != nil {
		t.Fatal(err)
	}
	_, err = s.IssueCredential(ctx, "old", "", time.Hour)
	wantCode(t, err, lethe.KindNotFound, "system_not_found")

	var n int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM system_credentials`).Scan(&n); err != nil || n != 0 {
		t.Errorf("system_credentials has %d rows (%v) after refused issues, want 0", n, err)
	}
}

func TestCredentialTableHoldsNoSecret(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, _ := newStore(t)
	var cols []string
	rows, err := s.DB().QueryContext(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_name = 'system_credentials' ORDER BY ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var c string
		rows.Scan(&c)
		cols = append(cols, c)
	}
	if got := strings.Join(cols, ","); got != "key_id,system,created_at,expires_at" {
		t.Errorf("system_credentials columns = %s; want key_id,system,created_at,expires_at and no secret", got)
	}
}
