package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// lastLine returns the last non-empty line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestTokenCommands creates a token with `lethe token create`, verifies it
// as the API would, lists it (without its secret), revokes it and checks
// that it is refused afterwards.
func TestTokenCommands(t *testing.T) {
	db, dbURL := testenv.Postgres(t)
	env := map[string]string{"LETHE_DATABASE_URL": dbURL}
	ctx := context.Background()
	verifier := auth.NewTokenVerifier(registry.New(db))

	out, err := runCommand(t, env, "token", "create", "--name", "ci-deploy", "--scopes", "erasures:write,systems:read", "--ttl", "720h")
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	tok := lastLine(out)
	p, err := verifier.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("the printed token does not verify: %v (stdout %q)", err, out)
	}
	if p.Subject != "token:ci-deploy" || !slices.Equal(p.Scopes, []auth.Scope{auth.ErasuresWrite, auth.SystemsRead}) {
		t.Errorf("principal = %+v, want token:ci-deploy with erasures:write, systems:read", p)
	}

	_, err = runCommand(t, env, "token", "create", "--name", "ci-deploy", "--scopes", "erasures:read")
	if lethe.ErrorCode(err) != "token_exists" {
		t.Errorf("creating an active name again: err = %v, want token_exists", err)
	}
	for _, args := range [][]string{
		{"token", "create", "--scopes", "erasures:read"},
		{"token", "create", "--name", "x", "--scopes", "root"},
		{"token", "create", "--name", "x"},
		{"token", "create", "--name", "x", "--scopes", "erasures:read", "--ttl", "-1h"},
		{"token", "revoke"},
		{"token", "rotate"},
		{"token"},
	} {
		if _, err := runCommand(t, env, args...); err == nil {
			t.Errorf("lethe %s succeeded, want an error", strings.Join(args, " "))
		}
	}

	for _, format := range []string{"table", "json"} {
		args := []string{"token", "list"}
		if format == "json" {
			args = append(args, "--json")
		}
		out, err := runCommand(t, env, args...)
		if err != nil {
			t.Fatalf("token list (%s): %v", format, err)
		}
		secret := strings.TrimPrefix(tok, auth.TokenPrefix)
		if strings.Contains(out, secret) || strings.Contains(out, auth.HashToken(tok)) {
			t.Errorf("token list (%s) shows the token or its hash:\n%s", format, out)
		}
		if !strings.Contains(out, "ci-deploy") || !strings.Contains(out, "erasures:write") {
			t.Errorf("token list (%s) does not show ci-deploy and its scopes:\n%s", format, out)
		}
		if format == "json" {
			var views []struct {
				Name      string     `json:"name"`
				ExpiresAt *time.Time `json:"expires_at"`
				RevokedAt *time.Time `json:"revoked_at"`
			}
			if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 1 ||
				views[0].ExpiresAt == nil || views[0].RevokedAt != nil {
				t.Errorf("token list --json = %s (%v), want one active token with an expiry", out, err)
			}
		}
	}

	out, err = runCommand(t, env, "token", "revoke", "--name", "ci-deploy")
	if err != nil || !strings.Contains(out, "ci-deploy revoked") {
		t.Fatalf("token revoke = %q, %v", out, err)
	}
	if _, err := verifier.Verify(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("after revoke: err = %v, want ErrUnauthenticated", err)
	}
	if _, err := runCommand(t, env, "token", "revoke", "--name", "ci-deploy"); lethe.ErrorCode(err) != "token_not_found" {
		t.Errorf("revoking again: err = %v, want token_not_found", err)
	}
	out, err = runCommand(t, env, "token", "list")
	if err != nil {
		t.Fatal(err)
	}
	if rows := strings.Split(strings.TrimSpace(out), "\n"); len(rows) != 2 || strings.HasSuffix(rows[1], "-") {
		t.Errorf("token list after revoke:\n%s\nwant the header and ci-deploy with its revocation time", out)
	}
}
