package registry_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/registry"
)

func newToken(t *testing.T, name string, ttl time.Duration, scopes ...auth.Scope) (registry.NewToken, string) {
	t.Helper()
	tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(scopes) == 0 {
		scopes = []auth.Scope{auth.ErasuresRead}
	}
	return registry.NewToken{Name: name, Hash: auth.HashToken(tok), Scopes: scopes, TTL: ttl}, tok
}

func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, clock := newStore(t)

	in, tok := newToken(t, "ci", 24*time.Hour, auth.ErasuresWrite, auth.Scope("connector:orders"))
	rec, err := s.CreateToken(ctx, in)
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if rec.Name != "ci" || !rec.CreatedAt.Equal(t0) || rec.ExpiresAt == nil || !rec.ExpiresAt.Equal(t0.Add(24*time.Hour)) ||
		!slices.Equal(rec.Scopes, in.Scopes) || rec.RevokedAt != nil || rec.LastUsedAt != nil {
		t.Errorf("created %+v, want ci created at t0, expiring a day later, with its scopes", rec)
	}

	got, found, err := s.LookupToken(ctx, auth.HashToken(tok))
	if err != nil || !found || got.Name != "ci" {
		t.Fatalf("LookupToken = %+v, %v, %v; want ci", got, found, err)
	}
	if _, found, err := s.LookupToken(ctx, auth.HashToken(tok+"x")); err != nil || found {
		t.Errorf("LookupToken(other) found=%v err=%v, want not found", found, err)
	}

	// The same name is refused while the token is active.
	again, _ := newToken(t, "ci", 0)
	_, err = s.CreateToken(ctx, again)
	wantCode(t, err, lethe.KindConflict, "token_exists")

	// Last use only moves forward.
	if err := s.TouchToken(ctx, in.Hash, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchToken(ctx, in.Hash, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.LookupToken(ctx, in.Hash)
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("last_used_at = %v, want %v (the later use)", got.LastUsedAt, t0.Add(time.Hour))
	}

	clock.Advance(2 * time.Hour)
	revoked, err := s.RevokeToken(ctx, "ci", "token:ops")
	if err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if revoked.RevokedAt == nil || !revoked.RevokedAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("revoked_at = %v, want %v", revoked.RevokedAt, t0.Add(2*time.Hour))
	}
	_, err = s.RevokeToken(ctx, "ci", "token:ops")
	wantCode(t, err, lethe.KindNotFound, "token_not_found")
	_, err = s.RevokeToken(ctx, "never-was", "token:ops")
	wantCode(t, err, lethe.KindNotFound, "token_not_found")

	// A revoked name may be taken again; both tokens stay listed.
	if _, err := s.CreateToken(ctx, again); err != nil {
		t.Fatalf("CreateToken over a revoked name: %v", err)
	}
	list, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].RevokedAt == nil || list[1].RevokedAt != nil || list[1].ExpiresAt != nil {
		t.Errorf("ListTokens = %+v, want the revoked ci then the new ci that never expires", list)
	}
}

// TestTokenLifeIsAudited checks that creating and revoking a token are
// audit events with their actor, in the verified chain, naming the token
// without its value or hash.
func TestTokenLifeIsAudited(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, _ := newStore(t)
	in, tok := newToken(t, "crm-sync", time.Hour, auth.ErasuresWrite)
	in.Actor = "cli:alice"
	if _, err := s.CreateToken(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeToken(ctx, "crm-sync", "cli:bob"); err != nil {
		t.Fatal(err)
	}
	rows, err := s.DB().QueryContext(ctx, `SELECT kind, actor, detail FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var kind, actor, detail string
		if err := rows.Scan(&kind, &actor, &detail); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(detail, in.Hash) || strings.Contains(detail, strings.TrimPrefix(tok, auth.TokenPrefix)) {
			t.Errorf("%s event holds the token or its hash: %s", kind, detail)
		}
		if !strings.Contains(detail, `"name":"crm-sync"`) || !strings.Contains(detail, `"erasures:write"`) {
			t.Errorf("%s event detail %s lacks the name or the scopes", kind, detail)
		}
		got = append(got, kind+" by "+actor)
	}
	if want := []string{"token_created by cli:alice", "token_revoked by cli:bob"}; !slices.Equal(got, want) {
		t.Errorf("audit = %q, want %q", got, want)
	}
	if v, err := s.VerifyAudit(ctx); err != nil || !v.Intact() || v.Checked != 2 {
		t.Errorf("VerifyAudit = %+v, %v", v, err)
	}
}

func TestTokenStoresOnlyTheHash(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, _ := newStore(t)
	in, tok := newToken(t, "secret-check", 0)
	if _, err := s.CreateToken(ctx, in); err != nil {
		t.Fatal(err)
	}
	var row string
	if err := s.DB().QueryRowContext(ctx, `SELECT t::text FROM api_tokens t`).Scan(&row); err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimPrefix(tok, auth.TokenPrefix)
	if strings.Contains(row, secret) {
		t.Errorf("api_tokens row %q contains the token", row)
	}
}

func TestCreateTokenValidates(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, _ := newStore(t)
	for _, tc := range []struct {
		name string
		edit func(*registry.NewToken)
		code string
	}{
		{"upper-case name", func(n *registry.NewToken) { n.Name = "CI" }, "invalid_token_name"},
		{"empty name", func(n *registry.NewToken) { n.Name = "" }, "invalid_token_name"},
		{"hash not hex", func(n *registry.NewToken) { n.Hash = strings.Repeat("z", 64) }, "invalid_token_hash"},
		{"no scopes", func(n *registry.NewToken) { n.Scopes = nil }, "invalid_scopes"},
		{"unknown scope", func(n *registry.NewToken) { n.Scopes = []auth.Scope{"root"} }, "invalid_scopes"},
		{"negative ttl", func(n *registry.NewToken) { n.TTL = -time.Second }, "invalid_ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, _ := newToken(t, "ok", 0)
			tc.edit(&in)
			_, err := s.CreateToken(ctx, in)
			wantCode(t, err, lethe.KindInvalid, tc.code)
		})
	}
}
