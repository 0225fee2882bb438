// Package oidctest runs an OIDC issuer in a test: a discovery document and
// a JWKS served by httptest, and RSA keys that sign JWTs with whatever
// claims the test wants. It lets the auth package and the API's end-to-end
// tests exercise SSO without a real identity provider, including key
// rotation and an issuer that is down.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// DefaultAudience is the aud that Claims puts in a token, and what tests
// configure as LETHE_OIDC_AUDIENCE.
const DefaultAudience = "lethe-test"

// Issuer is a running test issuer. Its methods are safe for concurrent use.
type Issuer struct {
	// URL is the issuer's URL: the iss of its tokens and the base of its
	// discovery document.
	URL string
	// Server is the underlying test server, for its Client.
	Server *httptest.Server

	t  testing.TB
	mu sync.Mutex
	// keys are the published keys, the last one signing.
	keys        []jose.JSONWebKey
	down        bool
	jwksFetches int
	discoveries int
}

// NewIssuer starts an issuer with one signing key; it stops when the test
// ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	iss := &Issuer{t: t}
	iss.keys = []jose.JSONWebKey{iss.newKey()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", iss.serveDiscovery)
	mux.HandleFunc("GET /jwks", iss.serveJWKS)
	iss.Server = httptest.NewServer(mux)
	iss.URL = iss.Server.URL
	t.Cleanup(iss.Server.Close)
	return iss
}

func (iss *Issuer) newKey() jose.JSONWebKey {
	iss.t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		iss.t.Fatalf("oidctest: generate key: %v", err)
	}
	var kid [8]byte
	rand.Read(kid[:])
	return jose.JSONWebKey{Key: priv, KeyID: fmt.Sprintf("%x", kid), Algorithm: string(jose.RS256), Use: "sig"}
}

func (iss *Issuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	iss.mu.Lock()
	down := iss.down
	iss.discoveries++
	iss.mu.Unlock()
	if down {
		http.Error(w, "issuer down", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, map[string]any{
		"issuer":                                iss.URL,
		"jwks_uri":                              iss.URL + "/jwks",
		"authorization_endpoint":                iss.URL + "/authorize",
		"token_endpoint":                        iss.URL + "/token",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (iss *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	iss.mu.Lock()
	down := iss.down
	iss.jwksFetches++
	set := jose.JSONWebKeySet{}
	for _, k := range iss.keys {
		set.Keys = append(set.Keys, k.Public())
	}
	iss.mu.Unlock()
	if down {
		http.Error(w, "issuer down", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, set)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Claims returns the claims of a valid token for sub: this issuer, the
// DefaultAudience, issued now and expiring in an hour. Tests edit the map
// before passing it to Token.
func (iss *Issuer) Claims(sub string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss.URL,
		"aud": DefaultAudience,
		"sub": sub,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// Token signs claims with the issuer's current key (RS256, its kid in the
// header) and returns the compact JWT.
func (iss *Issuer) Token(claims map[string]any) string {
	iss.t.Helper()
	iss.mu.Lock()
	key := iss.keys[len(iss.keys)-1]
	iss.mu.Unlock()
	return Sign(iss.t, jose.SigningKey{Algorithm: jose.RS256, Key: key}, claims)
}

// Rotate makes a new key the signing key and publishes it next to the old
// ones, as an issuer does when it rotates; it returns the new kid. A
// verifier learns the key when a token names it.
func (iss *Issuer) Rotate() string {
	iss.t.Helper()
	k := iss.newKey()
	iss.mu.Lock()
	iss.keys = append(iss.keys, k)
	iss.mu.Unlock()
	return k.KeyID
}

// KeyID returns the kid of the current signing key.
func (iss *Issuer) KeyID() string {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.keys[len(iss.keys)-1].KeyID
}

// PublicKey returns the current signing key's public half, which tests use
// to forge tokens (HS256 with the public key as secret).
func (iss *Issuer) PublicKey() *rsa.PublicKey {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return &iss.keys[len(iss.keys)-1].Key.(*rsa.PrivateKey).PublicKey
}

// SetDown makes the discovery document and the JWKS answer 503 (true) or
// work again (false).
func (iss *Issuer) SetDown(down bool) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.down = down
}

// JWKSFetches returns how many times the key set was requested.
func (iss *Issuer) JWKSFetches() int {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.jwksFetches
}

// Discoveries returns how many times the discovery document was requested.
func (iss *Issuer) Discoveries() int {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.discoveries
}

// Sign signs claims with key as a compact JWT of type JWT. A key given as
// a jose.JSONWebKey puts its kid in the header.
func Sign(t testing.TB, key jose.SigningKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatalf("oidctest: signer: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("oidctest: claims: %v", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("oidctest: sign: %v", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("oidctest: serialize: %v", err)
	}
	return out
}

// Unsigned builds an "alg": "none" JWT naming kid, with the empty signature
// a forger sends, for tests that a verifier refuses it.
func Unsigned(t testing.TB, kid string, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + "."
}
