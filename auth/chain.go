package auth

import (
	"context"
	"strings"
)

// Chain is the API's one Verifier: it sends each credential to the
// verifier its shape calls for, so that a Lethe token never reaches the
// OIDC issuer and a JWT never costs a database lookup. A nil field turns
// that kind of credential off.
type Chain struct {
	// Dev, set by `lethe dev` only, accepts the dev token whatever its
	// shape (LETHE_DEV_TOKEN may be any string).
	Dev *DevVerifier
	// Tokens verifies "lethe_" tokens, normally a *TokenVerifier.
	Tokens Verifier
	// OIDC verifies JWTs (three dot-separated parts), normally an
	// *OIDCVerifier.
	OIDC Verifier
}

// Verify picks the verifier by the credential's shape: the dev token,
// then "lethe_" tokens, then JWTs; anything else is refused. Each refusal
// says which rule refused it, never quoting the credential.
func (c *Chain) Verify(ctx context.Context, credential string) (Principal, error) {
	switch {
	case credential == "":
		return Principal{}, refuse("no credential")
	case c.Dev != nil && c.Dev.Matches(credential):
		return c.Dev.Verify(ctx, credential)
	case strings.HasPrefix(credential, TokenPrefix):
		if c.Tokens == nil {
			return Principal{}, refuse("lethe tokens are not accepted here")
		}
		return c.Tokens.Verify(ctx, credential)
	case looksLikeJWT(credential):
		if c.OIDC == nil {
			return Principal{}, refuse("a JWT, but no OIDC issuer is configured")
		}
		return c.OIDC.Verify(ctx, credential)
	}
	return Principal{}, refuse("neither a lethe token nor a JWT")
}

// looksLikeJWT reports whether s is three non-empty dot-separated parts of
// base64url characters, the compact serialisation of a signed JWT.
func looksLikeJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.IndexFunc(p, func(r rune) bool {
			return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) >= 0 {
			return false
		}
	}
	return true
}

var _ Verifier = (*Chain)(nil)
