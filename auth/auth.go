// Package auth decides who is calling Lethe's API and what they may do. A
// caller presents a bearer credential; a Verifier turns it into a Principal
// (who, and with which scopes) or refuses it. Three kinds of credential share
// that one interface: Lethe tokens kept as hashes in PostgreSQL (for services
// and scripts), OIDC JWTs (for people behind SSO), and the dev token of
// `lethe dev`. The API checks each route's Scope against the Principal and
// records the Principal's Subject as the actor of everything it writes.
package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// Scope is one permission a credential may carry. Each API route needs
// exactly one; docs/security.md and the README list them in one table.
type Scope string

// The scopes of the public contract.
const (
	ErasuresRead     Scope = "erasures:read"
	ErasuresWrite    Scope = "erasures:write"
	ErasuresAdmin    Scope = "erasures:admin"
	SystemsRead      Scope = "systems:read"
	SystemsWrite     Scope = "systems:write"
	SystemsAdmin     Scope = "systems:admin"
	HoldsRead        Scope = "holds:read"
	HoldsWrite       Scope = "holds:write"
	SuppressionsRead Scope = "suppressions:read"
	CertificatesRead Scope = "certificates:read"
	CodecDecode      Scope = "codec:decode"
)

// ConnectorScopePrefix starts the scope of a pull-mode connector acting for
// one system: "connector:<system>".
const ConnectorScopePrefix = "connector:"

// AllScopes lists every fixed scope, in the order the docs show them. The
// dev token carries all of them.
var AllScopes = []Scope{
	ErasuresRead, ErasuresWrite, ErasuresAdmin,
	SystemsRead, SystemsWrite, SystemsAdmin,
	HoldsRead, HoldsWrite,
	SuppressionsRead, CertificatesRead, CodecDecode,
}

// ParseScope checks that s names a scope of the contract: one of AllScopes,
// or "connector:<system>" with a valid system name.
func ParseScope(s string) (Scope, error) {
	if slices.Contains(AllScopes, Scope(s)) {
		return Scope(s), nil
	}
	if name, ok := strings.CutPrefix(s, ConnectorScopePrefix); ok && validSystemName(name) {
		return Scope(s), nil
	}
	return "", errors.New("unknown scope " + quote(s) + "; scopes are " + scopeList() + " or connector:<system>")
}

// ParseScopes reads a comma- or space-separated list of scopes, rejecting
// unknown ones and dropping repeats.
func ParseScopes(list string) ([]Scope, error) {
	var out []Scope
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		sc, err := ParseScope(f)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scopes given; scopes are " + scopeList() + " or connector:<system>")
	}
	return out, nil
}

func scopeList() string {
	parts := make([]string, len(AllScopes))
	for i, s := range AllScopes {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

func quote(s string) string { return "\"" + s + "\"" }

// validSystemName mirrors lethe.ValidSystemName without importing the
// domain package, which would make auth depend on everything it guards.
func validSystemName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Kind says which kind of credential authenticated a Principal, for logs and
// the audit; it never changes what a Principal may do.
type Kind string

// The kinds of credential.
const (
	KindToken Kind = "token"
	KindOIDC  Kind = "oidc"
	KindDev   Kind = "dev"
)

// Principal is an authenticated caller: who they are and what they may do.
type Principal struct {
	// Subject names the caller everywhere Lethe records an actor: a Lethe
	// token's name prefixed "token:", an OIDC token's sub, or "dev".
	Subject string
	Kind    Kind
	Scopes  []Scope
}

// Has reports whether the principal carries scope.
func (p Principal) Has(scope Scope) bool { return slices.Contains(p.Scopes, scope) }

// ErrUnauthenticated is returned (wrapped) by a Verifier that refuses a
// credential: missing, malformed, unknown, expired, revoked or forged. The
// API answers it with 401 whatever the reason, and logs only the reason.
var ErrUnauthenticated = errors.New("unauthenticated")

// Verifier turns a bearer credential into the Principal it stands for. It
// returns an error wrapping ErrUnauthenticated for a credential it refuses;
// any other error means it could not decide (its database or issuer is
// unreachable) and the API answers 503.
type Verifier interface {
	Verify(ctx context.Context, credential string) (Principal, error)
}

type principalKey struct{}

// NewContext returns ctx carrying p, as the API's middleware does for every
// authenticated request.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the API authenticated for this request;
// ok is false when there is none (an open route, or auth switched off).
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Token68 reports whether s can travel as a bearer credential: one or more
// of RFC 6750's token68 characters, so that a header with spaces, commas or
// quotes in it is malformed rather than half-read.
func Token68(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}
