package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// DefaultLeeway is the clock skew OIDCVerifier tolerates between Lethe and
// the issuer, on both sides: a token stays valid this long after its exp,
// and is accepted this long before its nbf. go-oidc itself checks exp with
// no leeway and nbf with five minutes; Lethe checks both itself, with one
// explicit leeway.
const DefaultLeeway = 30 * time.Second

// DefaultDiscoveryRetry is how long OIDCVerifier waits after a failed
// discovery before it asks the issuer again; in between, JWTs are answered
// at once with ErrOIDCUnavailable instead of each waiting on the issuer.
const DefaultDiscoveryRetry = 5 * time.Second

// defaultHTTPTimeout bounds each request to the issuer when the caller
// gives no client of its own.
const defaultHTTPTimeout = 10 * time.Second

// ErrOIDCUnavailable means the issuer's discovery document or key set
// could not be fetched, so a JWT could be neither accepted nor refused. It
// does not wrap ErrUnauthenticated: the API answers 503, and the caller may
// retry.
var ErrOIDCUnavailable = errors.New("oidc issuer unavailable")

// signingAlgs are the algorithms a JWT may be signed with: asymmetric ones
// only. Listing them explicitly keeps "none" and HS256 out (an HS256 token
// "signed" with the issuer's public key as HMAC secret is the classic
// forgery), whatever the issuer's discovery document says.
var signingAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.EdDSA,
}

// OIDCConfig is where OIDCVerifier finds the issuer and what it requires of
// a token.
type OIDCConfig struct {
	// Issuer is the issuer URL (LETHE_OIDC_ISSUER), exactly as tokens carry
	// it in iss; its discovery document is Issuer + "/.well-known/openid-configuration".
	Issuer string
	// Audience must be one of a token's aud values (LETHE_OIDC_AUDIENCE).
	Audience string
	// Leeway is the tolerated clock skew; zero means DefaultLeeway.
	Leeway time.Duration
	// DiscoveryRetry is how long a failed discovery is remembered; zero
	// means DefaultDiscoveryRetry.
	DiscoveryRetry time.Duration
	// KeyRefresh is the shortest time between two fetches of the key set;
	// zero means DefaultKeyRefresh.
	KeyRefresh time.Duration
	// HTTPClient fetches the discovery document and the key set; nil means
	// a client with a 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock for exp and nbf, and for the discovery and key set
	// intervals; nil means time.Now.
	Now func() time.Time
}

// Validate checks the settings without contacting the issuer.
func (c OIDCConfig) Validate() error {
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		return errors.New("LETHE_OIDC_ISSUER is empty")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return fmt.Errorf("LETHE_OIDC_ISSUER %q: want the issuer's URL, such as https://login.example.com", c.Issuer)
	case c.Audience == "":
		return errors.New("LETHE_OIDC_AUDIENCE is empty: tokens must name Lethe in aud, or a token minted for another service would be accepted")
	case c.Leeway < 0:
		return errors.New("OIDC leeway cannot be negative")
	case c.DiscoveryRetry < 0 || c.KeyRefresh < 0:
		return errors.New("OIDC discovery retry and key refresh cannot be negative")
	}
	return nil
}

// OIDCVerifier accepts JWTs (access or ID tokens) signed by one OIDC issuer
// for one audience: principal = sub, scopes from `scope` or `scp`.
//
// It starts without contacting the issuer: discovery happens on the first
// JWT (or an explicit Discover), so an issuer that is down when Lethe starts
// does not keep the API from starting. While discovery fails, each JWT is
// answered with ErrOIDCUnavailable (503), and discovery is tried again at
// most once per DiscoveryRetry. Once discovered, the issuer's key set
// (JWKS) is cached and fetched again when a token names a key it does not
// hold, which is how a key rotation reaches Lethe; such refetches are at
// least KeyRefresh apart, so forged tokens cannot make Lethe flood the
// issuer.
type OIDCVerifier struct {
	cfg    OIDCConfig
	client *http.Client

	mu          sync.Mutex // held during discovery, so callers share one attempt
	verifier    *oidc.IDTokenVerifier
	lastErr     error
	lastAttempt time.Time
}

// NewOIDCVerifier checks cfg and returns a verifier that has not yet
// contacted the issuer.
func NewOIDCVerifier(cfg OIDCConfig) (*OIDCVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.DiscoveryRetry == 0 {
		cfg.DiscoveryRetry = DefaultDiscoveryRetry
	}
	if cfg.KeyRefresh == 0 {
		cfg.KeyRefresh = DefaultKeyRefresh
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: defaultHTTPTimeout}
	}
	return &OIDCVerifier{cfg: cfg, client: client}, nil
}

// Discover fetches the issuer's discovery document now, unless that was
// done already; a process calls it at start to log an unreachable issuer
// early. Its failure is not fatal: Verify tries again later.
func (v *OIDCVerifier) Discover(ctx context.Context) error {
	_, err := v.discover(ctx, true)
	return err
}

// discover returns the token verifier, running discovery when there is
// none yet and the last failure is older than DiscoveryRetry (or force).
func (v *OIDCVerifier) discover(ctx context.Context, force bool) (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.verifier != nil {
		return v.verifier, nil
	}
	now := v.cfg.Now()
	if !force && v.lastErr != nil && now.Sub(v.lastAttempt) < v.cfg.DiscoveryRetry {
		return nil, v.lastErr
	}
	v.lastAttempt = now
	// The attempt serves every caller waiting on the lock, so a caller that
	// hangs up does not cut it short; the timeout bounds it instead.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultHTTPTimeout)
	defer cancel()
	provider, err := oidc.NewProvider(oidc.ClientContext(dctx, v.client), v.cfg.Issuer)
	if err != nil {
		v.lastErr = fmt.Errorf("%w: discovery at %s: %v", ErrOIDCUnavailable, v.cfg.Issuer, err)
		return nil, v.lastErr
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := provider.Claims(&doc); err != nil || doc.JWKSURI == "" {
		v.lastErr = fmt.Errorf("%w: the discovery document of %s names no jwks_uri", ErrOIDCUnavailable, v.cfg.Issuer)
		return nil, v.lastErr
	}
	keys := newKeySet(v.client, doc.JWKSURI, v.cfg.KeyRefresh, v.cfg.Now)
	v.verifier = oidc.NewVerifier(v.cfg.Issuer, keys, &oidc.Config{
		ClientID:             v.cfg.Audience,
		SupportedSigningAlgs: signingAlgs,
		// exp and nbf are checked below, with one explicit leeway.
		SkipExpiryCheck: true,
	})
	v.lastErr = nil
	return v.verifier, nil
}

// Verify checks a JWT's signature against the issuer's keys, its iss, aud,
// exp and nbf, and returns its sub with the scopes it carries.
func (v *OIDCVerifier) Verify(ctx context.Context, credential string) (Principal, error) {
	verifier, err := v.discover(ctx, false)
	if err != nil {
		return Principal{}, err
	}
	fetch := &fetchFailure{}
	tok, err := verifier.Verify(context.WithValue(ctx, fetchFailureKey{}, fetch), credential)
	if fetch.err != nil {
		return Principal{}, fmt.Errorf("%w: key set: %v", ErrOIDCUnavailable, fetch.err)
	}
	if err != nil {
		return Principal{}, refuse("jwt: " + err.Error())
	}
	var c claims
	if err := tok.Claims(&c); err != nil {
		return Principal{}, refuse("jwt: malformed claims: " + err.Error())
	}
	now := v.cfg.Now()
	switch {
	case c.Expiry == nil:
		return Principal{}, refuse("jwt: no exp claim")
	case now.After(c.Expiry.Add(v.cfg.Leeway)):
		return Principal{}, refuse("jwt: expired at " + c.Expiry.UTC().Format(time.RFC3339))
	case c.NotBefore != nil && now.Add(v.cfg.Leeway).Before(c.NotBefore.Time):
		return Principal{}, refuse("jwt: not valid before " + c.NotBefore.UTC().Format(time.RFC3339))
	case tok.Subject == "":
		return Principal{}, refuse("jwt: no sub claim")
	}
	return Principal{Subject: tok.Subject, Kind: KindOIDC, Scopes: knownScopes(c.Scope, c.Scp)}, nil
}

var _ Verifier = (*OIDCVerifier)(nil)

// claims are the parts of a JWT Lethe reads beyond what go-oidc checks.
type claims struct {
	Expiry    *unixTime `json:"exp"`
	NotBefore *unixTime `json:"nbf"`
	// Scope is the OAuth 2.0 access token's space-separated scopes (RFC
	// 9068); Scp is the same as an array (Okta, Keycloak clients) or, from
	// Entra ID, a space-separated string. Both forms are read from both.
	Scope claimScopes `json:"scope"`
	Scp   claimScopes `json:"scp"`
}

type unixTime struct{ time.Time }

func (t *unixTime) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	f, err := n.Float64()
	if err != nil {
		return err
	}
	t.Time = time.Unix(0, 0).Add(time.Duration(f * float64(time.Second)))
	return nil
}

// claimScopes reads a space-separated string or an array of strings.
type claimScopes []string

func (s *claimScopes) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = strings.Fields(one)
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("scope must be a string or an array of strings")
	}
	*s = many
	return nil
}

// knownScopes keeps the scopes Lethe knows, once each. An issuer also
// grants scopes for other services (openid, profile, …): they are ignored,
// not a reason to refuse the token.
func knownScopes(lists ...claimScopes) []Scope {
	var out []Scope
	for _, l := range lists {
		for _, s := range l {
			sc, err := ParseScope(s)
			if err == nil && !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
	}
	return out
}
