package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/internal/oidctest"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

func TestAuthSettingsChain(t *testing.T) {
	ctx := context.Background()
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	iss := oidctest.NewIssuer(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := parseConfig("dev", []string{"--data-dir", t.TempDir()}, func(k string) string {
		return map[string]string{"LETHE_OIDC_ISSUER": iss.URL, "LETHE_OIDC_AUDIENCE": oidctest.DefaultAudience,
			"LETHE_RATE_LIMIT": "5"}[k]
	}, io.Discard, devFlags)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.authSettings(ctx, store, true, log)
	if err != nil {
		t.Fatalf("authSettings: %v", err)
	}
	if !s.devGenerated || !strings.HasPrefix(s.devToken, auth.DevTokenPrefix) {
		t.Errorf("dev token %q (generated %v), want a generated lethe_dev_ token", s.devToken, s.devGenerated)
	}
	tok, _ := auth.NewToken()
	if _, err := store.CreateToken(ctx, registry.NewToken{Name: "svc", Hash: auth.HashToken(tok), Scopes: []auth.Scope{auth.ErasuresRead}}); err != nil {
		t.Fatal(err)
	}
	for cred, want := range map[string]string{
		s.devToken:                       "dev",
		tok:                              "token:svc",
		iss.Token(iss.Claims("ada@sso")): "ada@sso",
	} {
		p, err := s.chain.Verify(ctx, cred)
		if err != nil || p.Subject != want {
			t.Errorf("Verify = %+v, %v; want %s", p, err, want)
		}
	}
	for i := range 5 {
		if ok, _ := s.limiter.Allow("ada@sso"); !ok {
			t.Fatalf("request %d of a burst of 5 refused", i+1)
		}
	}
	if ok, _ := s.limiter.Allow("ada@sso"); ok {
		t.Error("LETHE_RATE_LIMIT=5: the sixth request at once was allowed")
	}
}

func TestAuthSettingsOutsideDev(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := parseConfig("api", nil, func(k string) string {
		return map[string]string{"LETHE_DEV_TOKEN": "lethe_dev_x"}[k]
	}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.authSettings(context.Background(), nil, false, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.chain.Verify(context.Background(), "lethe_dev_x"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("lethe api accepted LETHE_DEV_TOKEN: err = %v", err)
	}
	if ok, _ := s.limiter.Allow("x"); !ok {
		t.Error("the default rate limit (0) refused a request")
	}

	for env, want := range map[string]string{
		"LETHE_RATE_LIMIT":    "LETHE_RATE_LIMIT",
		"LETHE_OIDC_AUDIENCE": "LETHE_OIDC_ISSUER",
		"LETHE_OIDC_ISSUER":   "LETHE_OIDC_AUDIENCE",
	} {
		cfg, err := parseConfig("api", nil, func(k string) string {
			if k == env {
				return map[string]string{"LETHE_RATE_LIMIT": "fast", "LETHE_OIDC_AUDIENCE": "lethe",
					"LETHE_OIDC_ISSUER": "https://login.example.com"}[k]
			}
			return ""
		}, io.Discard, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.authSettings(context.Background(), nil, false, log); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s alone: err = %v, want one naming %s", env, err, want)
		}
	}
}

// TestAPIAccess checks what LETHE_AUTH and LETHE_HTTP_ADDR make of the
// API's door: on checks credentials, off serves anyone and warns, anything
// else is refused; a loopback API answers loopback host names only.
func TestAPIAccess(t *testing.T) {
	ctx := context.Background()
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	for _, c := range []struct {
		name, auth, addr string
		wantErr, off     bool
		wantHosts        bool
	}{
		{"default on loopback", "", "127.0.0.1:8080", false, false, true},
		{"on, all interfaces", "on", "0.0.0.0:8080", false, false, false},
		{"off", "off", "127.0.0.1:8080", false, true, true},
		{"unknown value", "maybe", "127.0.0.1:8080", true, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			cfg, err := parseConfig("api", nil, func(k string) string {
				return map[string]string{"LETHE_AUTH": c.auth, "LETHE_HTTP_ADDR": c.addr}[k]
			}, io.Discard, nil)
			if err != nil {
				t.Fatal(err)
			}
			acc, _, err := cfg.apiAccess(ctx, store, false, log)
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), "LETHE_AUTH") {
					t.Fatalf("apiAccess = %v, want an error naming LETHE_AUTH", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if acc.AuthOff != c.off || (acc.Auth == nil) != c.off {
				t.Errorf("AuthOff %v, verifier %v; want off=%v", acc.AuthOff, acc.Auth != nil, c.off)
			}
			if c.off && !strings.Contains(logs.String(), "LETHE_AUTH=off") {
				t.Errorf("no warning for LETHE_AUTH=off:\n%s", logs.String())
			}
			if (len(acc.AllowedHosts) > 0) != c.wantHosts {
				t.Errorf("AllowedHosts = %v, want loopback names: %v", acc.AllowedHosts, c.wantHosts)
			}
		})
	}
}

// TestCodecAccess checks `lethe codec`'s door: with no way to check a
// credential it serves anyone on loopback only, and refuses any other
// address; with OIDC it needs a credential.
func TestCodecAccess(t *testing.T) {
	ctx := context.Background()
	iss := oidctest.NewIssuer(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name    string
		env     map[string]string
		wantErr bool
		guarded bool
	}{
		{"no auth, loopback", map[string]string{"LETHE_CODEC_ADDR": "127.0.0.1:8234"}, false, false},
		{"no auth, all interfaces", map[string]string{"LETHE_CODEC_ADDR": "0.0.0.0:8234"}, true, false},
		{"off, all interfaces", map[string]string{"LETHE_CODEC_ADDR": "0.0.0.0:8234", "LETHE_AUTH": "off",
			"LETHE_OIDC_ISSUER": iss.URL, "LETHE_OIDC_AUDIENCE": oidctest.DefaultAudience}, true, false},
		{"OIDC, all interfaces", map[string]string{"LETHE_CODEC_ADDR": "0.0.0.0:8234",
			"LETHE_OIDC_ISSUER": iss.URL, "LETHE_OIDC_AUDIENCE": oidctest.DefaultAudience}, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseConfig("codec", nil, func(k string) string { return c.env[k] }, io.Discard, nil)
			if err != nil {
				t.Fatal(err)
			}
			acc, err := cfg.codecAccess(ctx, nil, log)
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), "not loopback") {
					t.Fatalf("codecAccess = %v, want a refusal of the address", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (acc.Verifier != nil) != c.guarded {
				t.Errorf("verifier set %v, want %v", acc.Verifier != nil, c.guarded)
			}
		})
	}
}
