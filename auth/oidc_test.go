package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/internal/oidctest"
)

// newOIDC returns a verifier of iss's tokens whose clock is clk.
func newOIDC(t *testing.T, iss *oidctest.Issuer, clk *clock, edit ...func(*auth.OIDCConfig)) *auth.OIDCVerifier {
	t.Helper()
	cfg := auth.OIDCConfig{Issuer: iss.URL, Audience: oidctest.DefaultAudience, Now: clk.Now, HTTPClient: iss.Server.Client()}
	for _, e := range edit {
		e(&cfg)
	}
	v, err := auth.NewOIDCVerifier(cfg)
	if err != nil {
		t.Fatalf("NewOIDCVerifier: %v", err)
	}
	return v
}

// realClock starts at the wall clock, which the issuer's claims use.
func realClock() *clock { return &clock{now: time.Now()} }

func TestOIDCValidTokens(t *testing.T) {
	t.Parallel()
	iss := oidctest.NewIssuer(t)
	v := newOIDC(t, iss, realClock())

	for _, tc := range []struct {
		name  string
		edit  func(map[string]any)
		want  []auth.Scope
		audit string
	}{
		{"scope string", func(c map[string]any) { c["scope"] = "openid erasures:read profile holds:write erasures:read" },
			[]auth.Scope{auth.ErasuresRead, auth.HoldsWrite}, ""},
		{"scp array", func(c map[string]any) { c["scp"] = []string{"systems:admin", "connector:orders", "email"} },
			[]auth.Scope{auth.SystemsAdmin, "connector:orders"}, ""},
		{"scp string (Entra ID)", func(c map[string]any) { c["scp"] = "codec:decode" },
			[]auth.Scope{auth.CodecDecode}, ""},
		{"aud array", func(c map[string]any) {
			c["aud"] = []string{"another-api", oidctest.DefaultAudience}
			c["scope"] = "erasures:write"
		}, []auth.Scope{auth.ErasuresWrite}, ""},
		{"no scopes", func(map[string]any) {}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims := iss.Claims("user-42@corp")
			tc.edit(claims)
			p, err := v.Verify(t.Context(), iss.Token(claims))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Subject != "user-42@corp" || p.Kind != auth.KindOIDC || !slices.Equal(p.Scopes, tc.want) {
				t.Errorf("principal = %+v, want subject user-42@corp, kind oidc, scopes %v", p, tc.want)
			}
		})
	}
}

// TestOIDCKeyRotation checks that the key set is fetched once, and again
// when a token names a key the verifier has not seen, as after a rotation,
// but no sooner than KeyRefresh after the previous fetch.
func TestOIDCKeyRotation(t *testing.T) {
	t.Parallel()
	iss := oidctest.NewIssuer(t)
	clk := realClock()
	v := newOIDC(t, iss, clk)
	old := iss.Token(iss.Claims("ada"))
	for range 3 {
		if _, err := v.Verify(t.Context(), old); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if n := iss.JWKSFetches(); n != 1 {
		t.Errorf("key set fetched %d times for three tokens of one key, want 1", n)
	}
	iss.Rotate()
	rotated := iss.Token(iss.Claims("ada"))
	clk.Advance(auth.DefaultKeyRefresh - time.Second)
	if _, err := v.Verify(t.Context(), rotated); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("a new kid within KeyRefresh of the last fetch: err = %v, want ErrUnauthenticated (no refetch yet)", err)
	}
	if n := iss.JWKSFetches(); n != 1 {
		t.Errorf("key set fetched %d times within KeyRefresh, want still 1", n)
	}
	clk.Advance(time.Second)
	// go-oidc shares one fetch among the verifications that ask while it
	// runs, and clears it on a goroutine of its own: on a loaded machine
	// the first call may still join the throttled fetch just before, so a
	// few tries are allowed. The fetch count below still says that only
	// one more fetch went out.
	var err error
	for try := 0; try < 50; try++ {
		if _, err = v.Verify(t.Context(), rotated); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Verify with the rotated key: %v", err)
	}
	if n := iss.JWKSFetches(); n != 2 {
		t.Errorf("key set fetched %d times after the rotation, want 2 (one refetch for the new kid)", n)
	}
	if _, err := v.Verify(t.Context(), old); err != nil {
		t.Errorf("a token of the old key, still published: %v", err)
	}
}

func TestOIDCForgeriesRefused(t *testing.T) {
	t.Parallel()
	iss := oidctest.NewIssuer(t)
	other := oidctest.NewIssuer(t)
	clk := realClock()
	v := newOIDC(t, iss, clk)
	// Discover and cache the keys with a valid token first, so the forgeries
	// meet a warm verifier.
	if _, err := v.Verify(t.Context(), iss.Token(iss.Claims("ada"))); err != nil {
		t.Fatal(err)
	}

	foreignKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(iss.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	withClaims := func(edit func(map[string]any)) map[string]any {
		c := iss.Claims("mallory")
		c["scope"] = "erasures:admin"
		edit(c)
		return c
	}
	same := func(map[string]any) {}

	for _, tc := range []struct {
		name, reason string
		token        string
	}{
		{"foreign issuer's key", "signature", other.Token(withClaims(same))},
		{"foreign key under the issuer's kid", "signature", oidctest.Sign(t, jose.SigningKey{Algorithm: jose.RS256,
			Key: jose.JSONWebKey{Key: foreignKey, KeyID: iss.KeyID()}}, withClaims(same))},
		{"wrong aud", "audience", iss.Token(withClaims(func(c map[string]any) { c["aud"] = "another-api" }))},
		{"no aud", "audience", iss.Token(withClaims(func(c map[string]any) { delete(c, "aud") }))},
		{"wrong iss", "different provider", iss.Token(withClaims(func(c map[string]any) { c["iss"] = other.URL }))},
		{"alg none", `"none"`, oidctest.Unsigned(t, iss.KeyID(), withClaims(same))},
		{"HS256 with the public key (PEM) as secret", `"HS256"`, oidctest.Sign(t, jose.SigningKey{Algorithm: jose.HS256,
			Key: jose.JSONWebKey{Key: pubPEM, KeyID: iss.KeyID()}}, withClaims(same))},
		{"HS256 with the public key (DER) as secret", `"HS256"`, oidctest.Sign(t, jose.SigningKey{Algorithm: jose.HS256,
			Key: pubDER}, withClaims(same))},
		{"expired beyond the leeway", "expired", iss.Token(withClaims(func(c map[string]any) {
			c["exp"] = clk.Now().Add(-auth.DefaultLeeway - time.Second).Unix()
		}))},
		{"nbf beyond the leeway", "not valid before", iss.Token(withClaims(func(c map[string]any) {
			c["nbf"] = clk.Now().Add(auth.DefaultLeeway + 2*time.Second).Unix()
		}))},
		{"no exp", "no exp claim", iss.Token(withClaims(func(c map[string]any) { delete(c, "exp") }))},
		{"no sub", "no sub claim", iss.Token(withClaims(func(c map[string]any) { delete(c, "sub") }))},
		{"tampered payload", "signature", tamper(t, iss.Token(withClaims(same)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), tc.token)
			wantRefused(t, err, tc.token, tc.reason)
		})
	}
	// Forged tokens name keys the verifier lacks, and go-oidc refetches the
	// key set for each; the throttle keeps the issuer from seeing them.
	if n := iss.JWKSFetches(); n != 1 {
		t.Errorf("key set fetched %d times for one valid and many forged tokens within KeyRefresh, want 1", n)
	}
}

// TestOIDCLeeway pins the leeway at its edges: a token is still accepted
// just inside it, on both exp and nbf, and refused just outside (above).
func TestOIDCLeeway(t *testing.T) {
	t.Parallel()
	iss := oidctest.NewIssuer(t)
	clk := realClock()
	now := clk.Now().Truncate(time.Second)
	clk.now = now
	v := newOIDC(t, iss, clk)
	for _, tc := range []struct {
		name  string
		claim string
		at    time.Time
		ok    bool
	}{
		{"exp 29s ago", "exp", now.Add(-29 * time.Second), true},
		{"exp 31s ago", "exp", now.Add(-31 * time.Second), false},
		{"nbf in 29s", "nbf", now.Add(29 * time.Second), true},
		{"nbf in 31s", "nbf", now.Add(31 * time.Second), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := iss.Claims("ada")
			c[tc.claim] = tc.at.Unix()
			_, err := v.Verify(t.Context(), iss.Token(c))
			if tc.ok && err != nil {
				t.Errorf("refused inside the leeway: %v", err)
			}
			if !tc.ok && !errors.Is(err, auth.ErrUnauthenticated) {
				t.Errorf("err = %v outside the leeway, want ErrUnauthenticated", err)
			}
		})
	}
	t.Run("a leeway of one's own", func(t *testing.T) {
		strict := newOIDC(t, iss, clk, func(c *auth.OIDCConfig) { c.Leeway = time.Second })
		c := iss.Claims("ada")
		c["exp"] = now.Add(-5 * time.Second).Unix()
		if _, err := strict.Verify(t.Context(), iss.Token(c)); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("err = %v 5s after exp with a 1s leeway, want ErrUnauthenticated", err)
		}
	})
}

// TestOIDCIssuerDownAtStart starts the verifier while the issuer is down:
// JWTs are answered "unavailable" (503), not refused, discovery is retried
// at most once per DiscoveryRetry, and tokens verify once it is back.
func TestOIDCIssuerDownAtStart(t *testing.T) {
	t.Parallel()
	iss := oidctest.NewIssuer(t)
	iss.SetDown(true)
	tok := iss.Token(iss.Claims("ada"))

	slow := newOIDC(t, iss, realClock(), func(c *auth.OIDCConfig) { c.DiscoveryRetry = time.Hour })
	for range 3 {
		_, err := slow.Verify(t.Context(), tok)
		if !errors.Is(err, auth.ErrOIDCUnavailable) || errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("err = %v, want ErrOIDCUnavailable and not ErrUnauthenticated", err)
		}
	}
	if n := iss.Discoveries(); n != 1 {
		t.Errorf("discovery tried %d times within DiscoveryRetry, want 1", n)
	}
	if err := slow.Discover(t.Context()); !errors.Is(err, auth.ErrOIDCUnavailable) {
		t.Errorf("Discover = %v, want ErrOIDCUnavailable", err)
	}

	clk := realClock()
	eager := newOIDC(t, iss, clk, func(c *auth.OIDCConfig) { c.DiscoveryRetry = time.Second })
	if _, err := eager.Verify(t.Context(), tok); !errors.Is(err, auth.ErrOIDCUnavailable) {
		t.Fatalf("err = %v, want ErrOIDCUnavailable", err)
	}
	iss.SetDown(false)
	if _, err := eager.Verify(t.Context(), tok); !errors.Is(err, auth.ErrOIDCUnavailable) {
		t.Fatalf("within DiscoveryRetry of the failure: err = %v, want ErrOIDCUnavailable", err)
	}
	clk.Advance(time.Second)
	p, err := eager.Verify(t.Context(), tok)
	if err != nil || p.Subject != "ada" {
		t.Fatalf("once the issuer is back: %+v, %v; want ada", p, err)
	}
}

// TestOIDCKeySetDownIsUnavailable: a token of a new key that cannot be
// fetched is not known to be forged, so it is answered 503, not 401.
func TestOIDCKeySetDownIsUnavailable(t *testing.T) {
	t.Parallel()
	iss := oidctest.NewIssuer(t)
	clk := realClock()
	v := newOIDC(t, iss, clk)
	known := iss.Token(iss.Claims("ada"))
	if _, err := v.Verify(t.Context(), known); err != nil {
		t.Fatal(err)
	}
	iss.SetDown(true)
	iss.Rotate()
	clk.Advance(auth.DefaultKeyRefresh)
	_, err := v.Verify(t.Context(), iss.Token(iss.Claims("ada")))
	if !errors.Is(err, auth.ErrOIDCUnavailable) || errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("err = %v, want ErrOIDCUnavailable and not ErrUnauthenticated", err)
	}
	if _, err := v.Verify(t.Context(), known); err != nil {
		t.Errorf("a token of a cached key while the issuer is down: %v", err)
	}
}

func TestOIDCConfigValidate(t *testing.T) {
	for _, cfg := range []auth.OIDCConfig{
		{Audience: "a"},
		{Issuer: "login.example.com", Audience: "a"},
		{Issuer: "https://login.example.com"},
		{Issuer: "https://login.example.com", Audience: "a", Leeway: -time.Second},
	} {
		if _, err := auth.NewOIDCVerifier(cfg); err == nil {
			t.Errorf("NewOIDCVerifier(%+v) accepted", cfg)
		}
	}
}

// tamper swaps a signed token's payload for one that names another sub.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err := json.Unmarshal(p, &c); err != nil {
		t.Fatal(err)
	}
	c["sub"] = "admin"
	p, _ = json.Marshal(c)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
}
